"""The language of the rater pages.

Raters read the study in their own language; researchers' pages and the admin stay
in English (they are not translated, and Django's own strings would mix in). On the
rater pages (``/s/...``) the language is, in order:

1. the one the rater picked with the switcher (``?lang=``, then kept in a cookie);
2. the study's own setting (``Study.language``), when the researcher fixed one;
3. the browser's ``Accept-Language``, among ``settings.LANGUAGES``;
4. English.
"""

from __future__ import annotations

import re

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.utils import translation
from django.utils.cache import patch_vary_headers

COOKIE = "rater_language"
_SILENT = re.compile(r"^/s/[^/]+/(?:next|submit)$")
RATER_PAGES = "/s/"


def supported(code: str | None) -> str | None:
    """``code`` when it is one of settings.LANGUAGES (any case), else None."""
    if not code:
        return None
    code = code.strip().lower()
    return code if code in {c for c, _ in settings.LANGUAGES} else None


def _study_language(path: str) -> str | None:
    from annotation.models import Study  # the pages' study, by the slug in the path

    slug = path[len(RATER_PAGES) :].split("/", 1)[0]
    if not slug:
        return None
    found = Study.objects.filter(slug=slug).values_list("language", flat=True).first()
    return supported(found)


def rater_language(request: HttpRequest) -> tuple[str, str | None]:
    """(language, picked): the language of this rater page, and the code the rater
    just picked with ``?lang=`` (to keep in the cookie), if any."""
    picked = supported(request.GET.get("lang"))
    if picked:
        return picked, picked
    chosen = supported(request.COOKIES.get(COOKIE))
    if chosen:
        return chosen, None
    # The rating endpoints' answers carry no words (rate.js has its own catalogue):
    # they skip the study's row, read on every rating otherwise.
    study = None if _SILENT.match(request.path_info) else _study_language(request.path_info)
    if study:
        return study, None
    browser = translation.get_language_from_request(request)
    return supported(browser) or settings.LANGUAGE_CODE, None


class RaterLanguageMiddleware:
    """Activates the rater's language on rater pages and English everywhere else."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if not request.path_info.startswith(RATER_PAGES):
            translation.activate(settings.LANGUAGE_CODE)
            request.LANGUAGE_CODE = settings.LANGUAGE_CODE
            return self.get_response(request)
        language, picked = rater_language(request)
        translation.activate(language)
        request.LANGUAGE_CODE = language
        response = self.get_response(request)
        patch_vary_headers(response, ("Accept-Language", "Cookie"))
        response.headers.setdefault("Content-Language", language)
        if picked:
            # Sent in a crowd platform's frame too, like the rater's own cookie.
            cross_site = settings.RATER_COOKIE_SAMESITE == "None" and settings.SESSION_COOKIE_SECURE
            response.set_cookie(
                COOKIE,
                picked,
                max_age=365 * 24 * 3600,
                samesite="None" if cross_site else "Lax",
                secure=settings.SESSION_COOKIE_SECURE,
                httponly=True,
            )
        translation.deactivate()
        return response
