"""The rater's side of the wire: link parameters, the token cookie, and the JSON endpoints.

Parsing lives here; the rater flow's decisions live in ``rater_flow`` and every
write goes through it, ``services`` and ``assignment``.
Errors are answered as ``{"error": code, "detail": message, "fields": {...}}``,
the shape of ``SubmitRefused.as_dict()``, so the page's script handles one shape.

Authentication is the rater's token: the per-study cookie set by the entry page,
or an ``X-Rater-Token`` header for scripts. Requests authenticated by the cookie
are CSRF-checked; a custom header cannot be sent cross-site without CORS, so
header-authenticated requests need no CSRF token.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from django.conf import settings
from django.db import transaction
from django.http import HttpRequest, HttpResponse, JsonResponse, QueryDict
from django.middleware.csrf import CsrfViewMiddleware
from django.urls import reverse
from django.views.decorators.cache import never_cache
from django.views.decorators.csrf import csrf_exempt

from annotation import pilot, protocol, rater_flow, services, statements
from annotation.models import Rater, Stimulus, Study
from annotation.rater_flow import Progress, Step, StepKind
from annotation.services import SubmitRefused
from studyweb import boundary
from studyweb.ratelimit import limited_response, new_rater_wait

RATER_COOKIE = "rater_token"
RATER_HEADER = "X-Rater-Token"
COOKIE_MAX_AGE = 60 * 60 * 24 * 60  # long enough to come back to a paused study
MTURK_PREVIEW = "ASSIGNMENT_ID_NOT_AVAILABLE"
TRAINING_SESSION_KEY = "training:{rater}"
PARAM_MAX = 128


# --- Entry links ---------------------------------------------------------------


@dataclass(frozen=True)
class EntryParams:
    """Who a study link says the rater is."""

    source: str = Rater.Source.ANONYMOUS
    external_id: str = ""
    platform: dict[str, str] = field(default_factory=dict)
    platform_session_id: str = ""
    preview: bool = False  # MTurk shows the task before a worker accepts it
    # A platform parameter longer than PARAM_MAX: no platform sends one, and cut to
    # length two different ids could become one rater, so the link is refused.
    too_long: str = ""


# The platforms' parameters that say who the rater is, or which session.
_ID_PARAMS = ("PROLIFIC_PID", "STUDY_ID", "SESSION_ID", "workerId", "assignmentId", "hitId")


def _param(query: QueryDict, name: str) -> str:
    return (query.get(name) or "").strip()[:PARAM_MAX]


def _too_long(query: QueryDict) -> str:
    return next(
        (name for name in _ID_PARAMS if len((query.get(name) or "").strip()) > PARAM_MAX), ""
    )


def entry_params(query: QueryDict) -> EntryParams:
    """Prolific (PROLIFIC_PID, STUDY_ID, SESSION_ID), MTurk (workerId, assignmentId,
    hitId, turkSubmitTo) or an anonymous link."""
    if too_long := _too_long(query):
        return EntryParams(too_long=too_long)
    pid = _param(query, "PROLIFIC_PID")
    if pid:
        platform = {
            "study_id": _param(query, "STUDY_ID"),
            "session_id": _param(query, "SESSION_ID"),
        }
        return EntryParams(
            Rater.Source.PROLIFIC,
            pid,
            {k: v for k, v in platform.items() if v},
            platform_session_id=platform["session_id"],
        )
    if "assignmentId" in query or "workerId" in query:
        assignment_id = _param(query, "assignmentId")
        worker = _param(query, "workerId")
        if assignment_id == MTURK_PREVIEW or not worker:
            return EntryParams(Rater.Source.MTURK, preview=True)
        platform = {
            "assignment_id": assignment_id,
            "hit_id": _param(query, "hitId"),
            "turk_submit_to": (query.get("turkSubmitTo") or "").strip()[:200],
        }
        return EntryParams(
            Rater.Source.MTURK,
            worker,
            {k: v for k, v in platform.items() if v},
            platform_session_id=assignment_id,
        )
    return EntryParams()


def entry_url(study: Study) -> str:
    return reverse("annotation:study-entry", args=[study.slug])


def set_rater_cookie(response: HttpResponse, study: Study, rater: Rater) -> None:
    """The token cookie, scoped to this study's URLs only."""
    response.set_cookie(
        RATER_COOKIE,
        rater.token,
        max_age=COOKIE_MAX_AGE,
        path=entry_url(study),
        httponly=True,
        # "None" when rater pages may be framed by a crowd platform over HTTPS (MTurk).
        samesite=settings.RATER_COOKIE_SAMESITE if settings.SESSION_COOKIE_SECURE else "Lax",
        # SESSION_COOKIE_SECURE follows SECURE_COOKIES, which defaults to "not DEBUG".
        secure=settings.SESSION_COOKIE_SECURE,
    )


def request_token(request: HttpRequest) -> str:
    return request.headers.get(RATER_HEADER) or request.COOKIES.get(RATER_COOKIE) or ""


def rater_from_request(request: HttpRequest, study: Study) -> Rater | None:
    """The rater of this study behind the request's token, or None."""
    token = request_token(request)
    if not token:
        return None
    return Rater.objects.select_related("study").filter(study=study, token=token).first()


# --- Training answers: kept in the Django session, never as Ratings -----------------
# Read only where the rater is at the training stage: reading the Django session
# costs a query and makes the response vary by cookie.


def training_answers(request: HttpRequest, rater: Rater) -> Mapping[str, dict]:
    state = request.session.get(TRAINING_SESSION_KEY.format(rater=rater.pk), {})
    return state.get("answers", {})


def _training_answers_keep(request: HttpRequest, rater: Rater, answers: dict[str, dict]) -> None:
    key = TRAINING_SESSION_KEY.format(rater=rater.pk)
    request.session[key] = {**request.session.get(key, {}), "answers": answers}


# --- Shapes shared by pages and endpoints ------------------------------------------


def stimulus_payload(stimulus: Stimulus) -> dict:
    """What the browser needs to show a stimulus (never its role or expected range)."""
    return {
        "id": stimulus.pk,
        "image_url": stimulus.image.url,
        "width": stimulus.width,
        "height": stimulus.height,
    }


def progress_payload(progress: Progress) -> dict:
    """Items rated in the session (or training examples answered) and planned."""
    return {"done": progress.done, "planned": progress.planned}


def step_payload(study: Study, step: Step) -> dict:
    """A rating-stage step as the page's script and scripted clients read it."""
    if step.kind == StepKind.RATE:
        return {
            "step": step.kind.value,
            "stimulus": stimulus_payload(step.stimulus),
            # The page keeps unsent answers under the claim's id (a repeat of an image
            # is a new claim, so it starts untouched).
            "claim": step.claim.pk,
            "claim_expires_at": step.claim.expires_at.isoformat(),
        }
    if step.kind == StepKind.TRAIN:
        return {"step": step.kind.value, "stimulus": stimulus_payload(step.stimulus)}
    if step.kind == StepKind.BREAK:
        # Back to the endpoint that claims the next stimulus when the break is over;
        # asked before then, it answers the same break (rater_flow.BREAK_SECONDS).
        return {
            "step": step.kind.value,
            "url": reverse("annotation:rater-next", args=[study.slug]),
            "until": step.until.isoformat() if step.until else None,
            "seconds_left": step.seconds_left(),
        }
    if step.kind == StepKind.UNAVAILABLE and step.end is not None:
        return {
            "step": step.kind.value,
            "url": entry_url(study),
            "outcome": _outcome_payload(step.end),
        }
    return {"step": step.kind.value, "url": entry_url(study)}


# --- JSON helpers ------------------------------------------------------------------


def error(code: str, detail: str, status: int, fields: dict[str, str] | None = None):
    return JsonResponse({"error": code, "detail": detail, "fields": fields or {}}, status=status)


class BadBody(Exception):
    """A request body that is not a JSON object."""

    def __init__(
        self, code: str, detail: str, fields: dict[str, str] | None = None, status: int = 400
    ):
        self.code, self.detail, self.fields, self.status = code, detail, fields or {}, status
        super().__init__(detail)


def _is_json(content_type: str) -> bool:
    media = content_type.split(";", 1)[0].strip().lower()
    return media == "application/json" or (
        media.startswith("application/") and media.endswith("+json")
    )


def json_object(request: HttpRequest) -> dict:
    # A body in another format is refused as such (415), not read as malformed JSON;
    # an empty body (finish) may come without a type.
    if request.body and not _is_json(request.content_type or ""):
        raise BadBody(
            "unsupported_media_type",
            f"send the body as application/json, not {request.content_type or 'no type'}",
            status=415,
        )
    # The project's bounded reader (depth, integer size, finite numbers, control
    # characters): studyweb.boundary; its refusals name the top-level field.
    try:
        body = boundary.json_loads(request.body)
    except boundary.BadJSON as exc:
        raise BadBody(exc.code, exc.detail, exc.fields) from None
    if not isinstance(body, dict):
        raise BadBody("not_an_object", "the request body must be a JSON object")
    return body


def _csrf_refusal(request: HttpRequest) -> JsonResponse | None:
    """CSRF check for cookie-authenticated requests (the views are csrf_exempt for scripts)."""
    if request.headers.get(RATER_HEADER):
        return None
    if CsrfViewMiddleware(lambda r: HttpResponse()).process_view(request, None, (), {}) is None:
        return None
    return error(
        "csrf_failed", "your page is out of date: please reload it and try again", status=403
    )


def _authenticate(
    request: HttpRequest, slug: str, method: str
) -> tuple[Study, Rater] | JsonResponse:
    if request.method != method:
        response = error("method_not_allowed", f"use {method}", status=405)
        response["Allow"] = method
        return response
    # The usual case in one query: the rater behind the token, with the study of the
    # URL. Only when that finds nobody is the study looked up alone, to tell an
    # unknown study (404) from an unknown rater (403). The answers and their order
    # are the same as study first, then CSRF, then rater.
    token = request_token(request)
    rater = statements.rater_by_token(slug, token) if token else None
    study = rater.study if rater is not None else Study.objects.filter(slug=slug).first()
    if study is None:
        return error("unknown_study", "no such study", status=404)
    if method == "POST" and (refusal := _csrf_refusal(request)) is not None:
        return refusal
    if rater is None or (
        # A pilot's token works only for its researcher (signed in): annotation.pilot.
        rater.source == Rater.Source.PILOT
        and not pilot.pilot_allowed(rater=rater, user=request.user)
    ):
        return error(
            "unknown_rater",
            "we could not recognise you for this study: please open the study link again",
            status=403,
        )
    if rater.status == Rater.Status.EXCLUDED:
        return error("rater_excluded", "your participation has ended", status=403)
    return study, rater


#: Stimulus ids are PostgreSQL integers: anything larger names no image.
STIMULUS_ID_MAX = 2**31 - 1


def _stimulus_id(body: dict) -> int:
    value = body.get("stimulus")
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= STIMULUS_ID_MAX:
        raise SubmitRefused(
            "invalid_stimulus", "stimulus must be the integer id of an image", field="stimulus"
        )
    return value


def _scores_shape(body: dict) -> None:
    """The scores are an object of dimension -> number (checked in full by the service)."""
    scores = body.get("scores")
    if not isinstance(scores, dict) or not all(
        isinstance(v, int | float) and not isinstance(v, bool) for v in scores.values()
    ):
        raise SubmitRefused(
            "invalid_scores", "scores must be an object of dimension: number", field="scores"
        )


# --- Endpoints -----------------------------------------------------------------------


@never_cache
@csrf_exempt
def submit(request: HttpRequest, slug: str) -> JsonResponse:
    """POST one rating: 201 new, 200 replay, 4xx refusal; with progress and the next step."""
    auth = _authenticate(request, slug, "POST")
    if isinstance(auth, JsonResponse):
        return auth
    study, rater = auth
    try:
        body = json_object(request)
        result = services.rating_submit(
            rater=rater,
            stimulus_id=_stimulus_id(body),
            scores=body.get("scores"),
            client_id=body.get("client_id"),
            viewing_seconds=body.get("viewing_seconds"),
            # Optional (annotation.viewing): the shown size and the viewing conditions.
            display=body.get("display"),
            viewing=body.get("viewing"),
        )
    except BadBody as exc:
        return error(exc.code, exc.detail, status=exc.status, fields=exc.fields)
    except SubmitRefused as exc:
        return JsonResponse(exc.as_dict(), status=exc.status)
    # The rating's session read again: the quality checks may just have excluded the rater.
    context = rater_flow.rater_context(study, rater, session=result.rating.session)
    return JsonResponse(
        {
            "created": result.created,
            "rating": {
                "id": result.rating.pk,
                "stimulus": result.rating.stimulus_id,
                "client_id": str(result.rating.client_id),
            },
            "progress": progress_payload(context.progress),
            # A replay starts no second break (the first answer started it): during
            # the break it is answered with the break all the same (rater_flow).
            "next": step_payload(
                study, rater_flow.next_step(context=context, after_rating=result.created)
            ),
        },
        status=201 if result.created else 200,
    )


@never_cache
def next_item(request: HttpRequest, slug: str) -> JsonResponse:
    """GET the current claim, or claim the next stimulus (a reload resumes the same one)."""
    auth = _authenticate(request, slug, "GET")
    if isinstance(auth, JsonResponse):
        return auth
    study, rater = auth
    context = rater_flow.rater_context(study, rater)
    step = rater_flow.next_step(context=context)
    return JsonResponse(
        {"progress": progress_payload(context.progress), "next": step_payload(study, step)}
    )


@never_cache
@csrf_exempt
def training_submit(request: HttpRequest, slug: str) -> JsonResponse:
    """POST a training answer: checked like a rating, kept in the Django session, and
    answered with feedback. When the last example is done the session moves to rating."""
    auth = _authenticate(request, slug, "POST")
    if isinstance(auth, JsonResponse):
        return auth
    study, rater = auth
    try:
        body = json_object(request)  # the body is read (and refused) before any state
    except BadBody as exc:
        return error(exc.code, exc.detail, status=exc.status, fields=exc.fields)
    try:  # what the body holds is refused before any state (a missing field after it)
        if "stimulus" in body:
            _stimulus_id(body)
        if "scores" in body:
            _scores_shape(body)
    except SubmitRefused as exc:
        return JsonResponse(exc.as_dict(), status=exc.status)
    context = rater_flow.rater_context(study, rater)
    if not rater_flow.training_open(context):
        return error("wrong_stage", "training is not the current step", status=409)
    context = context.with_training_answers(training_answers(request, rater))
    try:
        answered = rater_flow.training_answer_submit(
            context=context, stimulus_id=_stimulus_id(body), scores=body.get("scores")
        )
    except SubmitRefused as exc:
        return JsonResponse(exc.as_dict(), status=exc.status)
    _training_answers_keep(request, rater, answered.answers)
    return JsonResponse(
        {
            "feedback": answered.feedback,
            "progress": progress_payload(answered.progress),
            "next": step_payload(study, answered.step),
        }
    )


# --- Session start and finish for scripted clients (/api/v1/rater/<slug>/...) -------

START_SOURCES = {Rater.Source.PROLIFIC, Rater.Source.MTURK, Rater.Source.ANONYMOUS}


@never_cache
@csrf_exempt
def start(request: HttpRequest, slug: str) -> JsonResponse:
    """POST {"consent": true, "source": "prolific", "external_id": "...", "platform": {...}}:
    the rater (found again or new) and their session, in the rating stage; the answer
    carries the rater token for the X-Rater-Token header of the other endpoints.

    The client shows consent and instructions itself; ``consent`` must be true.
    """
    if request.method != "POST":
        response = error("method_not_allowed", "use POST", status=405)
        response["Allow"] = "POST"
        return response
    study = Study.objects.filter(slug=slug).first()
    if study is None:
        return error("unknown_study", "no such study", status=404)
    if not study.is_open:
        return error("study_unavailable", f"this study is {study.status}", status=409)
    try:
        body = json_object(request)
    except BadBody as exc:
        return error(exc.code, exc.detail, status=exc.status, fields=exc.fields)
    fields: dict[str, str] = {}
    if body.get("consent") is not True:
        fields["consent"] = "the rater must consent first (true)"
    source = body.get("source", Rater.Source.ANONYMOUS)
    if not isinstance(source, str) or source not in START_SOURCES:
        fields["source"] = f"one of {', '.join(sorted(START_SOURCES))}"
    external_id = body.get("external_id", "")
    if not isinstance(external_id, str) or len(external_id) > PARAM_MAX:
        fields["external_id"] = f"a string of at most {PARAM_MAX} characters"
    elif source != Rater.Source.ANONYMOUS and not external_id.strip():
        fields["external_id"] = "required for a crowd-platform rater"
    platform = body.get("platform", {})
    if (
        not isinstance(platform, dict)
        or not all(
            isinstance(k, str) and isinstance(v, str) and len(k) <= 64 and len(v) <= 200
            for k, v in platform.items()
        )
        or len(platform) > 10
    ):
        fields["platform"] = "an object of at most 10 string values (keys of at most 64)"
    if fields:
        return error("invalid", next(iter(fields.values())), 400, fields)
    if source not in study.platforms:
        return error(
            "link_not_accepted",
            f"this study does not take {source} raters",
            status=403,
            fields={"source": f"one of {', '.join(study.platforms)}"},
        )
    try:
        # One transaction: a rater the study has no places for leaves no row behind.
        with transaction.atomic():
            rater, created = services.rater_enter(
                study=study,
                source=source,
                external_id=external_id.strip(),
                platform=platform,
                token=request_token(request) or None,
            )
            if created and (wait := new_rater_wait(request)) is not None:
                raise _NewRatersLimited(wait)  # rolls the new rater back
            if pilot.is_pilot(rater) and not pilot.pilot_allowed(rater=rater, user=request.user):
                return error(
                    "unknown_rater",
                    "we could not recognise you for this study: please open the study link again",
                    status=403,
                )
            if rater.status == Rater.Status.EXCLUDED:
                return error("rater_excluded", "your participation has ended", status=403)
            session = rater_flow.scripted_session_start(
                rater=rater, user_agent=request.headers.get("User-Agent", "")
            )
    except services.StudyFull as exc:
        end = rater_flow.no_work(study, source, platform)
        body = {**exc.as_dict(), "outcome": _outcome_payload(end)}
        return JsonResponse(body, status=exc.status)
    except _NewRatersLimited as exc:
        return limited_response("too many new raters from this address", exc.wait)
    return JsonResponse(
        {
            "token": rater.token,
            "rater": rater.pseudonym,
            "session": session.pk,
            "progress": progress_payload(Progress(session.ratings.count(), session.planned_items)),
            "protocol": {
                "preset": study.protocol,
                "scale": study.scale,
                "dimensions": list(protocol.PRESETS[study.protocol]),
            },
        },
        status=201 if created else 200,
    )


class _NewRatersLimited(Exception):
    def __init__(self, wait: int):
        super().__init__(wait)
        self.wait = wait


def _outcome_payload(end: rater_flow.Completion) -> dict:
    """An outcome for scripted clients: its kind, code and where to send the rater."""
    return {"kind": end.kind, "code": end.code, "target": end.target}


@never_cache
@csrf_exempt
def finish(request: HttpRequest, slug: str) -> JsonResponse:
    """POST: end the session once its items are rated (unrated claims go back to the
    pool); the outcome's code: completed, or screened out when the quality checks
    excluded the rater. Refused (409, nothing changes) while work is left."""
    auth = _authenticate(request, slug, "POST")
    if isinstance(auth, JsonResponse):
        return auth
    study, rater = auth
    try:
        status = rater_flow.rater_finish(context=rater_flow.rater_context(study, rater))
    except SubmitRefused as exc:
        return JsonResponse(exc.as_dict(), status=exc.status)
    # A pilot preview earns no completion code and goes to no crowd platform.
    shown = not pilot.is_pilot(rater)
    kind = "screened_out" if status == Rater.Status.EXCLUDED else "completed"
    code, url = rater_flow.outcome_code(study, kind, rater.source) if shown else ("", "")
    return JsonResponse(
        {"completion_code": code, "completion_url": url, "status": status, "outcome": kind}
    )
