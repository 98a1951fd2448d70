"""Rater pages (server-rendered). Business logic lives in services.py."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, render

from annotation.models import Study


def study_entry(request: HttpRequest, slug: str) -> HttpResponse:
    study = get_object_or_404(Study, slug=slug)
    if not study.is_open:
        return render(request, "annotation/study_unavailable.html", {"study": study}, status=200)
    return render(request, "annotation/study_unavailable.html", {"study": study})
