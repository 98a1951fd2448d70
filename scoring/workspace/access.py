"""Which study a researcher page works on, by share level (annotation.permissions):
every page of the workspace reads its study through these, so "not yours" answers
exactly like "missing" (404) and a refused change is a 403 saying why."""

from __future__ import annotations

from django.core.exceptions import PermissionDenied
from django.http import HttpRequest

from annotation.models import Study
from annotation.permissions import (
    OWNER_ONLY_DELETE,
    OWNER_ONLY_SHARES,
    VIEW_ONLY,
    can_edit_study,
    can_share_study,
    visible_study_or_404,
)


def study_for(request: HttpRequest, slug: str) -> Study:
    """The study, if the user may see it; 404 alike for a missing study and another's."""
    return visible_study_or_404(request.user, slug)


def study_to_change(request: HttpRequest, slug: str, why: str = VIEW_ONLY) -> Study:
    """The study, if the user may change it (owner, admin, or shared for editing)."""
    study = study_for(request, slug)
    if not can_edit_study(request.user, study):
        raise PermissionDenied(why)
    return study


def study_to_share(request: HttpRequest, slug: str) -> Study:
    """The study, if the user may share it (owner or admin)."""
    study = study_for(request, slug)
    if not can_share_study(request.user, study):
        raise PermissionDenied(OWNER_ONLY_SHARES)
    return study


def study_to_delete(request: HttpRequest, slug: str) -> Study:
    """The study, if the user may delete it (owner or admin, as for sharing)."""
    study = study_for(request, slug)
    if not can_share_study(request.user, study):
        raise PermissionDenied(OWNER_ONLY_DELETE)
    return study
