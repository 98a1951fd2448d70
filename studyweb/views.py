from __future__ import annotations

import logging

from django.db import connection
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render

from annotation.models import Study

logger = logging.getLogger("studyweb")


def home(request: HttpRequest) -> HttpResponse:
    studies = Study.objects.filter(status=Study.Status.OPEN).order_by("title")
    return render(request, "home.html", {"studies": studies})


def healthz(request: HttpRequest) -> JsonResponse:
    """Liveness for the proxy: the database answers.

    Anyone can call it, so a failure answers a code only: the driver's message
    names the database host and port, and goes to the log instead.
    """
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
    except Exception:  # any database failure means unhealthy; the log keeps the detail
        logger.exception("healthz: the database does not answer")
        return JsonResponse(
            {
                "ok": False,
                "error": "database_unavailable",
                "detail": "the database does not answer",
                "fields": {},
            },
            status=503,
        )
    return JsonResponse({"ok": True})
