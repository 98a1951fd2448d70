"""Rater pages (server-rendered). Business logic lives in services.py and assignment.py.

One entry URL, ``/s/<slug>/``, shows whatever page the rater's session stage calls
for (consent, instructions, training, rating, completion), so a reload or a
returning rater always lands in the right place. Forms post to small views that
advance the stage and redirect back to the entry URL.
"""

from __future__ import annotations

from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_POST

from annotation import protocol, rater_api, services
from annotation.models import Rater, Session, Study

DEFAULT_CONSENT = (
    "This is a research study on how natural images look to people. You will see a series "
    "of images and rate each of them on a few scales. It takes about {minutes} minutes. "
    "Taking part is voluntary and you may stop at any time by closing the window. We record "
    "your ratings, how long each image was shown, and the identifier your recruitment "
    "platform passes to us; your data are analysed under a pseudonym and never published "
    "with your platform identifier."
)
GROUP_TITLES = {
    "overall": "Overall",
    "technical": "Technical perspective",
    "rationality": "Rationality perspective",
}


def _unavailable(request: HttpRequest, study: Study) -> HttpResponse:
    return render(request, "annotation/study_unavailable.html", {"study": study})


def _get_study(slug: str) -> Study:
    return get_object_or_404(Study, slug=slug)


@never_cache  # the page depends on the rater's cookie and stage: never from a cache
def study_entry(request: HttpRequest, slug: str) -> HttpResponse:
    """The study link: recognise (or register) the rater, then show their current page."""
    study = _get_study(slug)
    if not study.is_open:
        return _unavailable(request, study)
    params = rater_api.entry_params(request.GET)
    if params.preview:
        return render(request, "annotation/preview.html", _study_context(study))
    if params.external_id:
        rater, _ = services.rater_enter(
            study=study,
            source=params.source,
            external_id=params.external_id,
            platform=params.platform,
        )
    else:
        rater = rater_api.rater_from_request(request, study)
        if rater is None:
            # A new visitor of the anonymous link: the consent page, and nothing written
            # until they agree (link previews and crawlers fetch links too, and would
            # otherwise each leave a rater behind). The consent form registers them.
            context = {**_consent_context(study), "new_visitor": True}
            return render(request, "annotation/consent.html", context)
    response = _stage_page(request, study, rater, params.platform_session_id)
    rater_api.set_rater_cookie(response, study, rater)
    return response


def _stage_page(
    request: HttpRequest, study: Study, rater: Rater, platform_session_id: str = ""
) -> HttpResponse:
    if rater.status == Rater.Status.EXCLUDED:
        return _ended(request, study, rater)
    if rater.status == Rater.Status.COMPLETED:
        # Coming back after the end (e.g. to copy the code again) shows the end again.
        return _completion(request, study, rater)
    session = services.session_start(
        rater=rater,
        user_agent=request.headers.get("User-Agent", ""),
        platform_session_id=platform_session_id,
    )
    if session.stage == Session.Stage.CONSENT:
        return render(request, "annotation/consent.html", _consent_context(study))
    if session.stage == Session.Stage.INSTRUCTIONS:
        return render(request, "annotation/instructions.html", _instructions_context(study))
    if session.stage == Session.Stage.TRAINING:
        item = rater_api.next_training_item(request, rater)
        if item is not None:
            return _rate_page(request, study, "training", item, _training_progress(request, rater))
        services.session_advance(session=session, stage=Session.Stage.RATING)
    step = rater_api.next_step(study, session)
    if step["step"] == "rate":
        claim_stimulus = study.stimuli.get(pk=step["stimulus"]["id"])
        return _rate_page(
            request, study, "rating", claim_stimulus, rater_api.progress_payload(session)
        )
    if step["step"] == "ended":
        return _ended(request, study, rater)
    if step["step"] == "unavailable":
        return _unavailable(request, study)
    rater.refresh_from_db(fields=["status"])
    return _completion(request, study, rater)


def _rater_or_page(request: HttpRequest, study: Study) -> Rater | HttpResponse:
    """The rater behind the cookie, or a page that explains what to do."""
    rater = rater_api.rater_from_request(request, study)
    if rater is None:
        return render(request, "annotation/not_recognised.html", {"study": study}, status=403)
    return rater


def _posting_rater(request: HttpRequest, slug: str):
    """(study, session) for a stage form, or the page to show instead."""
    study = _get_study(slug)
    if not study.is_open:
        return _unavailable(request, study)
    rater = _rater_or_page(request, study)
    if isinstance(rater, HttpResponse):
        return rater
    return study, rater_api.current_session(rater)


@require_POST
def consent(request: HttpRequest, slug: str) -> HttpResponse:
    study = _get_study(slug)
    new_visitor = request.POST.get("new_visitor") == "1"
    if (
        new_visitor
        and study.is_open
        and request.POST.get("action") == "agree"
        and rater_api.rater_from_request(request, study) is None
    ):
        # A new visitor of the anonymous link agreeing: registered now, with consent.
        # Only from the page shown to such a visitor: a crowd-platform rater whose
        # cookie went missing must not become an anonymous stranger (their platform
        # id would be lost); they are told to open their link again instead.
        rater, _ = services.rater_enter(study=study)
        session = services.session_start(
            rater=rater, user_agent=request.headers.get("User-Agent", "")
        )
        services.session_advance(session=session, stage=Session.Stage.INSTRUCTIONS)
        response = redirect(rater_api.entry_url(study))
        rater_api.set_rater_cookie(response, study, rater)
        return response
    found = _posting_rater(request, slug)
    if isinstance(found, HttpResponse):
        if new_visitor and request.POST.get("action") != "agree" and study.is_open:
            return render(request, "annotation/declined.html", {"study": study})  # nothing kept
        return found
    study, session = found
    if session is not None and session.stage == Session.Stage.CONSENT:
        if request.POST.get("action") != "agree":
            # Nothing is written: session_advance(STOPPED) would also set consented_at.
            # The session stays at consent, so the link asks again if they come back.
            return render(request, "annotation/declined.html", {"study": study})
        services.session_advance(session=session, stage=Session.Stage.INSTRUCTIONS)
    return redirect(rater_api.entry_url(study))


@require_POST
def instructions(request: HttpRequest, slug: str) -> HttpResponse:
    found = _posting_rater(request, slug)
    if isinstance(found, HttpResponse):
        return found
    study, session = found
    if session is not None and session.stage == Session.Stage.INSTRUCTIONS:
        has_training = bool(rater_api.training_items(study))
        stage = Session.Stage.TRAINING if has_training else Session.Stage.RATING
        services.session_advance(session=session, stage=stage)
    return redirect(rater_api.entry_url(study))


# --- Page contexts ---------------------------------------------------------------------


def _study_context(study: Study) -> dict:
    scale = study.scale_def
    return {
        "study": study,
        "groups": [
            (GROUP_TITLES[group], dims)
            for group, dims in protocol.grouped_dimensions(study.protocol)
        ],
        "scale": scale,
        "anchors": [{"value": f"{v:g}", "label": label} for v, label in scale.anchor_positions()],
    }


def _consent_context(study: Study) -> dict:
    # About 10 s per dimension-image pair is typical; round up to whole minutes.
    seconds = study.session_size * (10 + 4 * len(study.dimensions))
    text = study.consent_text or DEFAULT_CONSENT.format(minutes=max(5, round(seconds / 60)))
    return {**_study_context(study), "consent_text": text}


def _instructions_context(study: Study) -> dict:
    scale = study.scale_def
    examples = [
        {
            "stimulus": s,
            "center": s.expected_center,
            "anchor": (
                rater_api.anchor_label(scale, s.expected_center)
                if s.expected_center is not None
                else ""
            ),
        }
        for s in rater_api.training_items(study)
    ]
    return {**_study_context(study), "examples": examples}


def _training_progress(request: HttpRequest, rater: Rater) -> dict:
    items = rater_api.training_items(rater.study)
    answered = rater_api.training_state(request, rater)["answers"]
    return {"done": sum(1 for s in items if str(s.pk) in answered), "planned": len(items)}


def _rate_page(request: HttpRequest, study: Study, mode: str, stimulus, progress: dict):
    scale = study.scale_def
    context = _study_context(study)
    mid = scale.minimum + (scale.maximum - scale.minimum) / 2
    if scale.integer:
        mid = round(mid)
    config = {
        "mode": mode,
        "submit_url": reverse(
            "annotation:rater-training" if mode == "training" else "annotation:rater-submit",
            args=[study.slug],
        ),
        "next_url": reverse("annotation:rater-next", args=[study.slug]),
        "entry_url": rater_api.entry_url(study),
        "min_view_seconds": study.min_view_seconds,
        "scale": {
            "min": scale.minimum,
            "max": scale.maximum,
            "step": scale.step,
            "anchors": [[v, label] for v, label in scale.anchor_positions()],
        },
        "dimensions": [d.key for d in study.dimensions],
        "stimulus": rater_api.stimulus_payload(stimulus),
        "progress": progress,
    }
    return render(
        request,
        "annotation/rate.html",
        {
            **context,
            "mode": mode,
            "stimulus": stimulus,
            "progress": progress,
            "position": min(progress["done"] + 1, max(progress["planned"], 1)),
            "mid": f"{mid:g}",
            "config": config,
        },
    )


def _ended(request: HttpRequest, study: Study, rater: Rater) -> HttpResponse:
    session = rater_api.current_session(rater)
    if session is not None:
        services.session_advance(session=session, stage=Session.Stage.STOPPED)
    return render(request, "annotation/ended.html", {"study": study})


def completion_target(study: Study, rater: Rater) -> dict | None:
    """Where the rater goes at the end: a link, or MTurk's externalSubmit form."""
    code = study.completion_code
    if rater.source == Rater.Source.MTURK:
        submit_to = (rater.platform.get("turk_submit_to") or "").rstrip("/")
        assignment_id = rater.platform.get("assignment_id")
        if submit_to in rater_api.MTURK_SUBMIT_HOSTS and assignment_id:
            return {
                "method": "post",
                "url": f"{submit_to}/mturk/externalSubmit",
                "fields": {"assignmentId": assignment_id, "completionCode": code},
                "label": "Submit the HIT on MTurk",
            }
    url = study.completion_url
    if not url:
        return None
    if rater.source == Rater.Source.PROLIFIC:
        parts = urlsplit(url)
        query = parse_qsl(parts.query, keep_blank_values=True)
        if not any(key == "cc" for key, _ in query):
            url = urlunsplit(parts._replace(query=urlencode([*query, ("cc", code)])))
        return {"method": "get", "url": url, "label": "Return to Prolific"}
    return {"method": "get", "url": url, "label": "Continue"}


def _completion(request: HttpRequest, study: Study, rater: Rater) -> HttpResponse:
    session = rater.sessions.filter(stage=Session.Stage.DONE).order_by(
        "-finished_at"
    ).first() or rater_api.current_session(rater)
    progress = rater_api.progress_payload(session) if session else {"done": 0, "planned": 0}
    return render(
        request,
        "annotation/completion.html",
        {
            "study": study,
            "code": study.completion_code,
            "target": completion_target(study, rater),
            "progress": progress,
        },
    )
