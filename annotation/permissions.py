"""Who may see what: admins everything; researchers their own studies and those shared
with them, view-only or edit (StudyShare).

- view: the study page, results, downloads, agreement; run analyses and exports.
- edit: also settings, stimuli, status (open, pause, close), cloning.
- owner (or superuser): also sharing and deleting the study.
"""

from __future__ import annotations

from django.db.models import Q, QuerySet
from django.http import Http404

from annotation.models import Study, StudyShare


def visible_studies(user) -> QuerySet[Study]:
    if not user.is_authenticated:
        return Study.objects.none()
    if user.is_superuser:
        return Study.objects.all()
    return Study.objects.filter(Q(owner=user) | Q(shares__user=user)).distinct()


def visible_study_or_404(user, slug: str) -> Study:
    """The study a URL names, for a user who may see it; 404 alike whether it does not
    exist or is another researcher's, so nobody learns which studies exist."""
    study = visible_studies(user).filter(slug=slug).first()
    if study is None:
        raise Http404("no such study")
    return study


# The refusal a view-only share meets on a change, on pages and in the API alike.
VIEW_ONLY = "this study is shared with you view-only: only its owner or an editor can change it"
OWNER_ONLY_SHARES = "only the study's owner can share it"
OWNER_ONLY_DELETE = "only the study's owner can delete it"


def share_level(user, study: Study) -> str | None:
    """ "owner", "edit", "view" or None: what the user may do with the study."""
    if not user.is_authenticated:
        return None
    if user.is_superuser or study.owner_id == user.pk:
        return "owner"
    return StudyShare.objects.filter(study=study, user=user).values_list("level", flat=True).first()


def can_view_study(user, study: Study) -> bool:
    return share_level(user, study) is not None


def can_edit_study(user, study: Study) -> bool:
    """Change settings and stimuli, clone, open, pause or close: the owner, a superuser
    or a researcher the study is shared with for editing."""
    return share_level(user, study) in ("owner", StudyShare.Level.EDIT)


def can_share_study(user, study: Study) -> bool:
    """Share, change shares, delete: the owner or a superuser."""
    return share_level(user, study) == "owner"
