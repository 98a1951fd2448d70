"""Rater pages (server-rendered). The rater flow's decisions live in rater_flow.py, the
writes in services.py and assignment.py.

One entry URL, ``/s/<slug>/``, shows whatever page the rater's session stage calls
for (consent, instructions, training, rating, completion), so a reload or a
returning rater always lands in the right place. Forms post to small views that
advance the stage and redirect back to the entry URL.
"""

from __future__ import annotations

from collections.abc import Iterable

from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils.translation import gettext, gettext_lazy
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_POST

from annotation import pilot, protocol, rater_api, rater_flow, services, studies
from annotation.models import Rater, Session, Stimulus, Study
from annotation.rater_flow import RaterContext, StepKind
from annotation.services import StudyFull
from studyweb.ratelimit import new_rater_wait

DEFAULT_CONSENT = gettext_lazy(
    "This is a research study on how natural images look to people. You will see a series "
    "of images and rate each of them on a few scales. "
    "Taking part is voluntary and you may stop at any time by closing the window. We record "
    "your ratings, how long each image was shown, and the identifier your recruitment "
    "platform passes to us; your data are analysed under a pseudonym and never published "
    "with your platform identifier."
)
#: Typical seconds per image: a look, then each dimension's slider (see _consent_context).
SECONDS_PER_IMAGE = 10
SECONDS_PER_DIMENSION = 4
GROUP_TITLES = {
    "overall": gettext_lazy("Overall"),
    "technical": gettext_lazy("Technical perspective"),
    "rationality": gettext_lazy("Rationality perspective"),
}


def _unavailable(request: HttpRequest, study: Study, rater: Rater | None = None) -> HttpResponse:
    """The study is not open. A rater it closed on before they finished also gets
    the no-work code and the way back to their platform (a crowd worker needs a code
    to be paid for what they did); a paused study keeps them for later instead."""
    context: dict = {"study": study}
    end = rater_flow.stopped_outcome(study, rater) if rater is not None else None
    if end is not None:
        context.update(code=end.code, target=end.target, stopped=True)
    return render(request, "annotation/study_unavailable.html", context)


def _study_full(
    request: HttpRequest, study: Study, source: str, platform: dict | None = None
) -> HttpResponse:
    """A rater the study has no places for: the no-work code and the way back to their
    platform. Nothing of theirs was written; the study may have just completed."""
    studies.study_complete_check(study=study)
    end = rater_flow.no_work(study, source, platform or {})
    context = {"study": study, "code": end.code, "target": end.target}
    return render(request, "annotation/study_full.html", context, status=409)


def _too_many_new_raters(request: HttpRequest, study: Study, wait: int) -> HttpResponse:
    """More new raters from this address in the hour than a study link takes
    (studyweb.ratelimit.new_rater_wait): nothing written, and when to try again."""
    minutes = max(1, -(-wait // 60))
    context = {"study": study, "minutes": minutes}
    response = render(request, "annotation/too_many_new_raters.html", context, status=429)
    response["Retry-After"] = str(wait)
    return response


def _get_study(slug: str) -> Study:
    return get_object_or_404(Study, slug=slug)


def _already_in(request: HttpRequest, study: Study, params: rater_api.EntryParams) -> bool:
    """A rater who started before the study stopped taking their platform's link
    finishes what they started."""
    if params.external_id:
        return Rater.objects.filter(
            study=study, source=params.source, external_id=params.external_id
        ).exists()
    return rater_api.rater_from_request(request, study) is not None


def _link_not_accepted(request: HttpRequest, study: Study, source: str) -> HttpResponse:
    """A new rater arriving by a platform's link that the study does not take (its
    crowd-platforms setting): nothing is written."""
    label = dict(Rater.Source.choices).get(source, source)
    context = {"study": study, "link": label}
    return render(request, "annotation/link_not_accepted.html", context, status=403)


@never_cache  # the page depends on the rater's cookie and stage: never from a cache
def study_entry(request: HttpRequest, slug: str) -> HttpResponse:
    """The study link: recognise (or register) the rater, then show their current page."""
    study = _get_study(slug)
    params = rater_api.entry_params(request.GET)
    if params.too_long:
        context = {"study": study, "parameter": params.too_long, "limit": rater_api.PARAM_MAX}
        return render(request, "annotation/bad_link.html", context, status=400)
    if not study.is_open:
        # Only a researcher's pilot preview walks a study that is not open, and raters
        # who finished (or were screened out) see their end page and code again: the
        # last rating may have closed the study (annotation.studies.study_complete_check).
        if params.external_id:  # the link says who it is, whatever the cookie
            rater = Rater.objects.filter(
                study=study, source=params.source, external_id=params.external_id
            ).first()
        else:
            rater = rater_api.rater_from_request(request, study)
        if rater is not None and not pilot.is_pilot(rater) and rater.status != Rater.Status.ACTIVE:
            return _stage_page(request, study, rater)
        if rater is None:
            return _unavailable(request, study)
        if not pilot.is_pilot(rater):
            return _unavailable(request, study, rater)  # active: stopped before the end
        return _pilot_refused(request, study, rater) or _stage_page(request, study, rater)
    if params.source not in study.platforms and not _already_in(request, study, params):
        return _link_not_accepted(request, study, params.source)
    if params.preview:
        return render(request, "annotation/preview.html", _study_context(study))
    if params.external_id:
        if not _already_in(request, study, params) and (wait := new_rater_wait(request)):
            return _too_many_new_raters(request, study, wait)
        try:
            entered = rater_flow.platform_enter(
                study=study,
                source=params.source,
                external_id=params.external_id,
                platform=params.platform,
                user_agent=request.headers.get("User-Agent", ""),
                platform_session_id=params.platform_session_id,
            )
        except StudyFull:
            return _study_full(request, study, params.source, params.platform)
        response = _stage_page(request, study, entered.rater, entered=entered)
        rater_api.set_rater_cookie(response, study, entered.rater)
        return response
    rater = rater_api.rater_from_request(request, study)
    if rater is None:
        # A new visitor of the anonymous link: the consent page, and nothing written
        # until they agree (link previews and crawlers fetch links too, and would
        # otherwise each leave a rater behind). The consent form registers them with
        # the number of items this page promised.
        offered = services.session_offer(study=study)
        if offered == 0:
            return _study_full(request, study, Rater.Source.ANONYMOUS)
        context = {**_consent_context(study, offered), "new_visitor": True}
        return render(request, "annotation/consent.html", context)
    if refused := _pilot_refused(request, study, rater):
        return refused
    response = _stage_page(request, study, rater, params.platform_session_id)
    rater_api.set_rater_cookie(response, study, rater)
    return response


def _stage_page(
    request: HttpRequest,
    study: Study,
    rater: Rater,
    platform_session_id: str = "",
    entered: RaterContext | None = None,
) -> HttpResponse:
    context = entered
    if context is None:
        try:
            context = rater_flow.session_enter(
                study=study,
                rater=rater,
                user_agent=request.headers.get("User-Agent", ""),
                platform_session_id=platform_session_id,
            )
        except StudyFull:
            return _study_full(request, study, rater.source, rater.platform)
    if rater_flow.training_open(context):
        context = context.with_training_answers(rater_api.training_answers(request, rater))
    step = rater_flow.page_step(context=context)
    banner = _pilot_context(study, rater)
    if step.kind == StepKind.CONSENT:
        page = {**_consent_context(study, context.session.planned_items), **banner}
        # Back from a consent form whose numbers were no longer true (visitor_register).
        page["numbers_changed"] = request.GET.get("changed") == "1"
        return render(request, "annotation/consent.html", page)
    if step.kind == StepKind.INSTRUCTIONS:
        examples = _instructions_context(study, context.training.items)
        return render(request, "annotation/instructions.html", {**examples, **banner})
    if step.kind == StepKind.TRAIN:
        progress = rater_api.progress_payload(step.progress)
        return _rate_page(request, study, "training", step.stimulus, progress, banner)
    if step.kind == StepKind.RATE:
        # The whole row: the claim's stimulus may carry only what the JSON answers show.
        stimulus = study.stimuli.get(pk=step.claim.stimulus_id)
        progress = rater_api.progress_payload(step.progress)
        return _rate_page(request, study, "rating", stimulus, progress, banner, step=step)
    if step.kind == StepKind.BREAK:
        # A reload during a break shows the break again, with the time it has left.
        progress = rater_api.progress_payload(step.progress)
        return _rate_page(request, study, "rating", None, progress, banner, step=step)
    if step.kind == StepKind.ENDED:
        end = rater_flow.screened_out(context)
        page = {"study": study, "code": end.code, "target": end.target, **banner}
        page["progress"] = rater_api.progress_payload(end.progress)
        return render(request, "annotation/ended.html", page)
    if step.kind == StepKind.UNAVAILABLE:
        return _unavailable(request, study)
    return _completion(request, context)


def _pilot_context(study: Study, rater: Rater) -> dict:
    """The pilot banner's context (empty for every other rater): every rater page
    shows it, with the way back to the study page."""
    if not pilot.is_pilot(rater):
        return {}
    # By URL name: the annotation app does not import the researcher pages.
    return {"pilot": True, "pilot_back_url": reverse("scoring:study-detail", args=[study.slug])}


def _pilot_refused(request: HttpRequest, study: Study, rater: Rater) -> HttpResponse | None:
    """For a pilot rater's token in the hands of anyone but its researcher (signed in,
    still allowed to view the study): the page that says so; else None."""
    if not pilot.is_pilot(rater) or pilot.pilot_allowed(rater=rater, user=request.user):
        return None
    context = {"study": study, "pilot_refused": True}
    return render(request, "annotation/not_recognised.html", context, status=403)


def _posting_context(request: HttpRequest, study: Study) -> RaterContext | HttpResponse:
    """The context of the rater behind the cookie for a stage form, or the page to
    show instead. A pilot rater's forms work whatever the study's status."""
    rater = rater_api.rater_from_request(request, study)
    if rater is not None and pilot.is_pilot(rater):
        return _pilot_refused(request, study, rater) or rater_flow.rater_context(study, rater)
    if not study.is_open:
        return _unavailable(request, study)
    if rater is None:
        return render(request, "annotation/not_recognised.html", {"study": study}, status=403)
    return rater_flow.rater_context(study, rater)


@require_POST
def consent(request: HttpRequest, slug: str) -> HttpResponse:
    study = _get_study(slug)
    new_visitor = request.POST.get("new_visitor") == "1"
    agreed = request.POST.get("action") == "agree"
    if (
        new_visitor
        and study.is_open
        and agreed
        and rater_api.rater_from_request(request, study) is None
    ):
        if Rater.Source.ANONYMOUS not in study.platforms:
            return _link_not_accepted(request, study, Rater.Source.ANONYMOUS)
        # Only from the page shown to a new visitor of the anonymous link: a
        # crowd-platform rater whose cookie went missing must not become an anonymous
        # stranger (their platform id would be lost); they are told to open their link
        # again instead.
        if wait := new_rater_wait(request):
            return _too_many_new_raters(request, study, wait)
        try:
            rater = rater_flow.visitor_register(
                study=study,
                user_agent=request.headers.get("User-Agent", ""),
                promised=_promised(request),
            )
        except StudyFull:
            return _study_full(request, study, Rater.Source.ANONYMOUS)
        url = rater_api.entry_url(study)
        if Session.objects.filter(rater=rater, stage=Session.Stage.CONSENT).exists():
            url += "?changed=1"  # fewer places than the page said: asked again
        response = redirect(url)
        rater_api.set_rater_cookie(response, study, rater)
        return response
    found = _posting_context(request, study)
    if isinstance(found, HttpResponse):
        if new_visitor and not agreed and study.is_open:
            return render(request, "annotation/declined.html", {"study": study})  # nothing kept
        return found
    context = found
    if context.stage == Session.Stage.CONSENT and not agreed:
        # Nothing is written: session_advance(STOPPED) would also set consented_at.
        # The session stays at consent, so the link asks again if they come back.
        declined = {"study": study, **_pilot_context(study, context.rater)}
        return render(request, "annotation/declined.html", declined)
    rater_flow.consent_give(context=context)
    return redirect(rater_api.entry_url(study))


@require_POST
def instructions(request: HttpRequest, slug: str) -> HttpResponse:
    study = _get_study(slug)
    found = _posting_context(request, study)
    if isinstance(found, HttpResponse):
        return found
    rater_flow.instructions_finish(context=found)
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
        "anchors": [
            {"value": f"{v:g}", "label": gettext(label)} for v, label in scale.anchor_positions()
        ],
    }


def _promised(request: HttpRequest) -> int | None:
    """The number of items the new visitor's consent page stated (None: unreadable)."""
    try:
        return max(0, int(request.POST.get("items", "")))
    except ValueError:
        return None


def _consent_context(study: Study, items: int, training: int | None = None) -> dict:
    """The consent page with the real numbers: the items planned for the rater's session
    (the places taken, or offered to a new visitor) and the time they take, training
    examples included; rounded up to whole minutes."""
    if training is None:
        training = study.stimuli.filter(role=Stimulus.Role.TRAINING).count()
    per_image = SECONDS_PER_IMAGE + SECONDS_PER_DIMENSION * len(study.dimensions)
    minutes = max(1, -(-(items + training) * per_image // 60))
    text = study.rater_consent_text or DEFAULT_CONSENT
    return {
        **_study_context(study),
        "consent_text": text,
        "items": items,
        "training_items": training,
        "minutes": minutes,
    }


def _instructions_context(study: Study, training_items: Iterable[Stimulus]) -> dict:
    scale = study.scale_def
    examples = [
        {
            "stimulus": s,
            "center": s.expected_center,
            "anchor": (
                rater_flow.anchor_label(scale, s.expected_center)
                if s.expected_center is not None
                else ""
            ),
        }
        for s in training_items
    ]
    # Expert answers are promised only when every example has one to show.
    with_reference = all(ex["center"] is not None for ex in examples)
    return {**_study_context(study), "examples": examples, "with_reference": with_reference}


def _rate_page(
    request: HttpRequest,
    study: Study,
    mode: str,
    stimulus,
    progress: dict,
    banner: dict,
    step: rater_flow.Step | None = None,
):
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
        # The study's viewing conditions (annotation.viewing): checked by the page before
        # the first image, and by the submit, which refuses what breaks them.
        "viewing": {
            "min_viewport_width": study.min_viewport_width,
            "min_viewport_height": study.min_viewport_height,
            "refuse_touch": study.refuse_touch,
            "native_pixels": study.native_pixels,
        },
        "scale": {
            "min": scale.minimum,
            "max": scale.maximum,
            "step": scale.step,
            "anchors": [[v, gettext(label)] for v, label in scale.anchor_positions()],
        },
        "dimensions": [d.key for d in study.dimensions],
        "stimulus": rater_api.stimulus_payload(stimulus) if stimulus is not None else None,
        "progress": progress,
        # Unsent answers are kept in the tab under the claim (rate.js); on a break
        # the page opens on the break screen (no stimulus: nothing is claimed).
        "claim": step.claim.pk if step is not None and step.claim is not None else None,
        "break": rater_api.step_payload(study, step)
        if step is not None and step.kind == StepKind.BREAK
        else None,
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
            # The practice heading promises expert answers only when every example has one.
            "practice_reference": mode == "training"
            and not study.stimuli.filter(
                role=Stimulus.Role.TRAINING, expected_low__isnull=True
            ).exists(),
            **banner,
        },
    )


def _completion(request: HttpRequest, context: RaterContext) -> HttpResponse:
    end = rater_flow.completion(context)
    banner = _pilot_context(context.study, context.rater)
    if banner:
        # A preview ends here: no completion code, nowhere on a crowd platform to go.
        progress = rater_api.progress_payload(end.progress)
        page = {"study": context.study, "progress": progress, **banner}
        return render(request, "annotation/completion.html", page)
    return render(
        request,
        "annotation/completion.html",
        {
            "study": context.study,
            "code": end.code,
            "target": end.target,
            "progress": rater_api.progress_payload(end.progress),
        },
    )
