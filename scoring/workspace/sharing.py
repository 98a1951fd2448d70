"""The study's sharing page: who else sees or edits the study (rules in
annotation.studies: study_share, study_unshare; levels in annotation.permissions)."""

from __future__ import annotations

from django import forms
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_http_methods, require_POST

from annotation.models import StudyShare
from annotation.permissions import (
    can_edit_study,
    can_share_study,
)
from annotation.studies import StudyRuleError, study_share, study_unshare
from scoring.workspace.access import study_for, study_to_share
from studyweb.forms import PlainTextForm


class ShareForm(PlainTextForm):
    username = forms.CharField(
        label="User name",
        max_length=150,
        help_text="The researcher's account name on this site.",
    )
    level = forms.ChoiceField(
        label="Access",
        choices=StudyShare.Level.choices,
        initial=StudyShare.Level.VIEW,
        help_text="View: the study page, results and downloads. "
        "Edit: also settings, stimuli, opening and closing.",
    )


@login_required
@require_http_methods(["GET", "POST"])
def study_sharing(request: HttpRequest, slug: str) -> HttpResponse:
    """The list of shares; the owner adds a researcher or changes a level (POST)."""
    study = study_for(request, slug) if request.method == "GET" else study_to_share(request, slug)
    form = ShareForm(request.POST if request.method == "POST" else None)
    if form.is_bound and form.is_valid():
        try:
            share = study_share(study=study, **form.cleaned_data)
        except StudyRuleError as exc:
            form.add_error(exc.field if exc.field in form.fields else None, exc.message)
        else:
            messages.success(
                request,
                f"Shared with {share.user.get_username()}: {share.get_level_display().lower()}.",
            )
            return redirect("scoring:study-sharing", slug=study.slug)
    context = {
        "study": study,
        "form": form,
        "shares": study.shares.select_related("user").order_by("user__username"),
        "can_share": can_share_study(request.user, study),
        "can_edit": can_edit_study(request.user, study),
        "levels": StudyShare.Level.choices,
        "here": "sharing",
    }
    return render(request, "workspace/sharing.html", context, status=400 if form.errors else 200)


@login_required
@require_POST
def study_unshare_page(request: HttpRequest, slug: str, share_id: int) -> HttpResponse:
    study = study_to_share(request, slug)
    try:
        study_unshare(study=study, share_id=share_id)
    except StudyRuleError as exc:
        messages.error(request, f"Nothing changed: {exc.message}.")
    else:
        messages.success(request, "Sharing removed.")
    return redirect("scoring:study-sharing", slug=study.slug)
