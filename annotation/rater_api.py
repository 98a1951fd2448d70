"""The rater's side of the wire: link parameters, the token cookie, and the JSON endpoints.

Parsing lives here; every write goes through ``services`` and ``assignment``.
Errors are answered as ``{"error": code, "detail": message, "fields": {...}}``,
the shape of ``SubmitRefused.as_dict()``, so the page's script handles one shape.

Authentication is the rater's token: the per-study cookie set by the entry page,
or an ``X-Rater-Token`` header for scripts. Requests authenticated by the cookie
are CSRF-checked; a custom header cannot be sent cross-site without CORS, so
header-authenticated requests need no CSRF token.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from django.conf import settings
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse, JsonResponse, QueryDict
from django.middleware.csrf import CsrfViewMiddleware
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.cache import never_cache
from django.views.decorators.csrf import csrf_exempt

from annotation import assignment, protocol, services, statements
from annotation.models import Claim, Rater, Session, Stimulus, Study
from annotation.services import SubmitRefused

RATER_COOKIE = "rater_token"
RATER_HEADER = "X-Rater-Token"
COOKIE_MAX_AGE = 60 * 60 * 24 * 60  # long enough to come back to a paused study
MTURK_PREVIEW = "ASSIGNMENT_ID_NOT_AVAILABLE"
# Where MTurk's externalSubmit may be posted: never to a host taken from the link alone.
MTURK_SUBMIT_HOSTS = ("https://www.mturk.com", "https://workersandbox.mturk.com")
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


def _param(query: QueryDict, name: str) -> str:
    return (query.get(name) or "").strip()[:PARAM_MAX]


def entry_params(query: QueryDict) -> EntryParams:
    """Prolific (PROLIFIC_PID, STUDY_ID, SESSION_ID), MTurk (workerId, assignmentId,
    hitId, turkSubmitTo) or an anonymous link."""
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
        samesite=settings.SESSION_COOKIE_SAMESITE if settings.SESSION_COOKIE_SECURE else "Lax",
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


def current_session_queryset(rater: Rater) -> QuerySet[Session]:
    """The rater's unfinished sessions, the current one first."""
    return (
        rater.sessions.filter(finished_at__isnull=True)
        .exclude(stage__in=[Session.Stage.DONE, Session.Stage.STOPPED])
        .order_by("-started_at")
    )


def current_session(rater: Rater) -> Session | None:
    """The rater's unfinished session, without starting one."""
    return current_session_queryset(rater).first()


# --- Shapes shared by pages and endpoints ------------------------------------------


def stimulus_payload(stimulus: Stimulus) -> dict:
    """What the browser needs to show a stimulus (never its role or expected range)."""
    return {
        "id": stimulus.pk,
        "image_url": stimulus.image.url,
        "width": stimulus.width,
        "height": stimulus.height,
    }


def progress_payload(session: Session, done: int | None = None) -> dict:
    """Items rated in the session and planned; ``done`` when the caller has counted them."""
    if done is None:
        done = session.ratings.count()
    return {"done": done, "planned": session.planned_items}


def _refresh_states(study: Study, session: Session) -> tuple[int, Claim | None]:
    """The session's stage, the rater's and the study's status, fresh, in one query
    that also counts the session's ratings and finds its live claim (returned: the
    progress and the next step need them).

    Another request (a quality check, the researcher pausing the study) may have
    changed them since these objects were read.
    """
    stage, finished_at, rater_status, study_status, done, live = statements.session_states(
        session, timezone.now()
    )
    session.stage, session.finished_at = stage, finished_at
    session.rater.status = rater_status
    study.status = study_status
    return done, live


def next_step(
    study: Study,
    session: Session,
    *,
    after_rating: bool = False,
    done: int | None = None,
    fresh: bool = False,
    live=assignment.UNREAD,
) -> dict:
    """What the rater does next: rate a stimulus, take a break, or leave the page.

    Claims the next stimulus when one is due; finishes the session when nothing is
    left, and stops it when quality checks excluded the rater meanwhile.

    ``done`` is the session's rating count when the caller has just counted it;
    ``fresh`` says the session, its rater and the study were all read from the
    database earlier in this request, after any write of it (saves a query);
    ``live`` the session's live claim (or None) when the caller read it with them.
    """
    url = entry_url(study)
    if not fresh:
        counted, live = _refresh_states(study, session)
        done = counted if done is None else done
    if session.stage != Session.Stage.RATING:
        return {"step": "done" if session.stage == Session.Stage.DONE else "page", "url": url}
    rater = session.rater
    if rater.status == Rater.Status.EXCLUDED:
        services.session_advance(session=session, stage=Session.Stage.STOPPED)
        return {"step": "ended", "url": url}
    if not study.is_open:
        return {"step": "unavailable", "url": url}
    if done is None:
        done = session.ratings.count()
    planned = session.planned_items
    if after_rating and 0 < done < planned and done % study.break_every == 0:
        # No claim during the break: its time to live would run out while resting.
        return {"step": "break", "url": reverse("annotation:rater-next", args=[study.slug])}
    claim = assignment.claim_next(session=session, done=done, status_checked=True, live=live)
    if claim is None:
        rater.refresh_from_db(fields=["status"])
        if rater.status == Rater.Status.EXCLUDED:
            services.session_advance(session=session, stage=Session.Stage.STOPPED)
            return {"step": "ended", "url": url}
        services.session_finish(session=session)
        return {"step": "done", "url": url}
    return {
        "step": "rate",
        "stimulus": stimulus_payload(claim.stimulus),
        "claim_expires_at": claim.expires_at.isoformat(),
    }


# --- Training: answers live in the Django session, never as Ratings ---------------


def training_items(study: Study) -> list[Stimulus]:
    return list(study.stimuli.filter(role=Stimulus.Role.TRAINING).order_by("id"))


def training_state(request: HttpRequest, rater: Rater) -> dict:
    return request.session.get(TRAINING_SESSION_KEY.format(rater=rater.pk), {"answers": {}})


def next_training_item(request: HttpRequest, rater: Rater) -> Stimulus | None:
    answered = training_state(request, rater)["answers"]
    for stimulus in training_items(rater.study):
        if str(stimulus.pk) not in answered:
            return stimulus
    return None


def training_feedback(study: Study, stimulus: Stimulus, scores: dict[str, float]) -> dict:
    """ "Experts rated this around 80": the centre of the expected overall range."""
    center = stimulus.expected_center
    yours = scores.get("overall")
    scale = study.scale_def
    if center is None:
        message = "There is no reference answer for this example; any honest rating is fine."
    else:
        message = (
            f"Experts rated this image around {center:g} ({anchor_label(scale, center)}) for "
            f"overall naturalness. You rated it {yours:g}."
        )
    return {
        "expected": center,
        "low": stimulus.expected_low,
        "high": stimulus.expected_high,
        "yours": yours,
        "message": message,
    }


def anchor_label(scale: protocol.Scale, value: float) -> str:
    """The anchor word closest to a value (e.g. 80 -> "Good")."""
    return min(scale.anchor_positions(), key=lambda pos: abs(pos[0] - value))[1]


# --- JSON helpers ------------------------------------------------------------------


def error(code: str, detail: str, status: int, fields: dict[str, str] | None = None):
    return JsonResponse({"error": code, "detail": detail, "fields": fields or {}}, status=status)


class BadBody(Exception):
    """A request body that is not a JSON object."""

    def __init__(self, code: str, detail: str):
        self.code, self.detail = code, detail
        super().__init__(detail)


def json_object(request: HttpRequest) -> dict:
    # Python's json accepts the NaN/Infinity tokens; validate_scores refuses them later
    # as "must be a finite number", so they get a message that names the dimension.
    try:
        body = json.loads(request.body.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BadBody("malformed_json", f"the request body is not valid JSON: {exc}") from None
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
    if rater is None:
        return error(
            "unknown_rater",
            "we could not recognise you for this study: please open the study link again",
            status=403,
        )
    if rater.status == Rater.Status.EXCLUDED:
        return error("rater_excluded", "your participation has ended", status=403)
    return study, rater


def _stimulus_id(body: dict) -> int:
    value = body.get("stimulus")
    if isinstance(value, bool) or not isinstance(value, int):
        raise SubmitRefused(
            "invalid_stimulus", "stimulus must be the integer id of an image", field="stimulus"
        )
    return value


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
        )
    except BadBody as exc:
        return error(exc.code, exc.detail, status=400)
    except SubmitRefused as exc:
        return JsonResponse(exc.as_dict(), status=exc.status)
    session = result.rating.session
    if session.rater_id == rater.pk:
        session.rater = rater  # the same row: spare next_step a query for it
    # Fresh states (the quality checks may just have excluded the rater), the
    # session's rating count and live claim, in one query, for the progress and
    # for next_step.
    done, live = _refresh_states(study, session)
    return JsonResponse(
        {
            "created": result.created,
            "rating": {
                "id": result.rating.pk,
                "stimulus": result.rating.stimulus_id,
                "client_id": str(result.rating.client_id),
            },
            "progress": progress_payload(session, done),
            "next": next_step(study, session, after_rating=True, done=done, fresh=True, live=live),
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
    # current_session, its rating count (the progress) and its live claim in one query.
    session, done, live = statements.current_session(rater, timezone.now())
    if session is None or session.stage != Session.Stage.RATING:
        # Not rating (yet or any more): the entry page knows which page to show.
        progress = progress_payload(session, done) if session else {"done": 0, "planned": 0}
        return JsonResponse(
            {"progress": progress, "next": {"step": "page", "url": entry_url(study)}}
        )
    # Session, rater and study were all read in this request: no refresh needed.
    step = next_step(study, session, done=done, fresh=True, live=live)
    return JsonResponse({"progress": progress_payload(session, done), "next": step})


@never_cache
@csrf_exempt
def training_submit(request: HttpRequest, slug: str) -> JsonResponse:
    """POST a training answer: checked like a rating, kept in the Django session, and
    answered with feedback. When the last example is done the session moves to rating."""
    auth = _authenticate(request, slug, "POST")
    if isinstance(auth, JsonResponse):
        return auth
    study, rater = auth
    session = current_session(rater)
    if session is None or session.stage != Session.Stage.TRAINING:
        return error("wrong_stage", "training is not the current step", status=409)
    try:
        body = json_object(request)
        stimulus_id = _stimulus_id(body)
        scores = protocol.validate_scores(study.protocol, study.scale, body.get("scores"))
    except BadBody as exc:
        return error(exc.code, exc.detail, status=400)
    except SubmitRefused as exc:
        return JsonResponse(exc.as_dict(), status=exc.status)
    except protocol.ProtocolError as exc:
        return error(
            "invalid_scores", f"the scores do not fit this study: {exc}", 400, fields=exc.errors
        )
    stimulus = study.stimuli.filter(pk=stimulus_id, role=Stimulus.Role.TRAINING).first()
    if stimulus is None:
        return error("unknown_stimulus", "no such training image", 404, {"stimulus": "unknown"})

    feedback = training_feedback(study, stimulus, scores)
    state = training_state(request, rater)
    state["answers"][str(stimulus.pk)] = {"scores": scores, "feedback": feedback["message"]}
    request.session[TRAINING_SESSION_KEY.format(rater=rater.pk)] = state
    items = training_items(study)
    following = next_training_item(request, rater)
    if following is None:
        services.session_advance(session=session, stage=Session.Stage.RATING)
        step = {"step": "page", "url": entry_url(study)}
    else:
        step = {"step": "train", "stimulus": stimulus_payload(following)}
    answered = sum(1 for s in items if str(s.pk) in state["answers"])
    return JsonResponse(
        {"feedback": feedback, "progress": {"done": answered, "planned": len(items)}, "next": step}
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
        return error(exc.code, exc.detail, status=400)
    fields: dict[str, str] = {}
    if body.get("consent") is not True:
        fields["consent"] = "the rater must consent first (true)"
    source = body.get("source", Rater.Source.ANONYMOUS)
    if source not in START_SOURCES:
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
            isinstance(k, str) and isinstance(v, str) and len(v) <= 200 for k, v in platform.items()
        )
        or len(platform) > 10
    ):
        fields["platform"] = "an object of at most 10 string values"
    if fields:
        return error("invalid", next(iter(fields.values())), 400, fields)
    rater, created = services.rater_enter(
        study=study,
        source=source,
        external_id=external_id.strip(),
        platform=platform,
        token=request_token(request) or None,
    )
    if rater.status == Rater.Status.EXCLUDED:
        return error("rater_excluded", "your participation has ended", status=403)
    session = services.session_start(rater=rater, user_agent=request.headers.get("User-Agent", ""))
    if session.stage in (Session.Stage.CONSENT, Session.Stage.INSTRUCTIONS, Session.Stage.TRAINING):
        services.session_advance(session=session, stage=Session.Stage.RATING)
    done = session.ratings.count()
    return JsonResponse(
        {
            "token": rater.token,
            "rater": rater.pseudonym,
            "session": session.pk,
            "progress": progress_payload(session, done),
            "protocol": {
                "preset": study.protocol,
                "scale": study.scale,
                "dimensions": list(protocol.PRESETS[study.protocol]),
            },
        },
        status=201 if created else 200,
    )


@never_cache
@csrf_exempt
def finish(request: HttpRequest, slug: str) -> JsonResponse:
    """POST: end the session (unrated claims go back to the pool); the completion code."""
    auth = _authenticate(request, slug, "POST")
    if isinstance(auth, JsonResponse):
        return auth
    study, rater = auth
    session = current_session(rater)
    if session is not None:
        services.session_finish(session=session)
    rater.refresh_from_db(fields=["status"])
    return JsonResponse(
        {
            "completion_code": study.completion_code,
            "completion_url": study.completion_url,
            "status": rater.status,
        }
    )
