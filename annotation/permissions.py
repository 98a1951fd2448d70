"""Who may see what: admins everything, researchers their own and shared studies."""

from __future__ import annotations

from django.db.models import Q, QuerySet

from annotation.models import Study


def visible_studies(user) -> QuerySet[Study]:
    if not user.is_authenticated:
        return Study.objects.none()
    if user.is_superuser:
        return Study.objects.all()
    return Study.objects.filter(Q(owner=user) | Q(shared_with=user)).distinct()


def can_view_study(user, study: Study) -> bool:
    if not user.is_authenticated:
        return False
    if user.is_superuser or study.owner_id == user.pk:
        return True
    return study.shared_with.filter(pk=user.pk).exists()


def can_edit_study(user, study: Study) -> bool:
    """Change settings, clone, open, pause or close: the owner or a superuser.

    A researcher the study is shared with only views it."""
    if not user.is_authenticated:
        return False
    return bool(user.is_superuser or study.owner_id == user.pk)
