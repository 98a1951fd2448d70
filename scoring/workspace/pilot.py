"""The study page's "Preview as rater" button: the researcher walks the study as a
rater sees it (annotation.pilot says what a pilot preview is and what it never
counts toward)."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect
from django.views.decorators.http import require_POST

from annotation import rater_api
from annotation.pilot import PilotRefused, pilot_start
from scoring.workspace.access import study_for


@login_required
@require_POST
def study_pilot(request: HttpRequest, slug: str) -> HttpResponse:
    """POST: a fresh pilot preview, in the rater pages (consent first), with the pilot
    rater's token in the rater cookie; a refusal is told on the study page."""
    study = study_for(request, slug)  # another's study answers like a missing one: 404
    try:
        started = pilot_start(study=study, user=request.user)
    except PilotRefused as exc:
        messages.error(request, f"The preview did not start: {exc.message}.")
        return redirect("scoring:study-detail", slug=study.slug)
    response = redirect(started.url)
    rater_api.set_rater_cookie(response, study, started.rater)
    return response
