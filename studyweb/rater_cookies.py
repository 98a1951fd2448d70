"""SameSite=None for a rater's cookies on rater pages, when crowd platforms frame them.

MTurk shows rater pages inside a frame on its own site. There, browsers send only
``SameSite=None`` cookies, and a framed rater needs three: the rater token
(annotation.rater_api sets it with ``RATER_COOKIE_SAMESITE``), the CSRF cookie (the
consent and instructions forms, the rating posts) and the session cookie (training
answers). Django sets the last two with one site-wide SameSite, which stays ``Lax``
so that a researcher's signed-in session is never sent cross-site; this middleware
relaxes them on responses to rater pages (``/s/...``) for visitors who are not
signed in, whose session holds nothing but training answers. Signing in rotates
both (a new session key and CSRF token), re-set as ``Lax``.
"""

from __future__ import annotations

from django.conf import settings

RATER_PAGES = "/s/"


class RaterFrameCookiesMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response
        self.names = (settings.SESSION_COOKIE_NAME, settings.CSRF_COOKIE_NAME)

    def __call__(self, request):
        response = self.get_response(request)
        cross_site = settings.RATER_COOKIE_SAMESITE == "None" and settings.SESSION_COOKIE_SECURE
        if not cross_site or not request.path.startswith(RATER_PAGES):
            return response
        cookies = [response.cookies[n] for n in self.names if n in response.cookies]
        # The user is looked at only when a cookie is being set (it may cost a query).
        user = getattr(request, "user", None)
        if cookies and not (user is not None and user.is_authenticated):
            for cookie in cookies:
                if cookie.value:  # a deletion (empty value) keeps its attributes
                    cookie["samesite"] = "None"
        return response
