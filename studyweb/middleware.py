"""Security headers: a Content-Security-Policy without inline scripts, and framing
rules that let crowd platforms (MTurk shows tasks in a frame) embed rater pages
and nothing else."""

from __future__ import annotations

from django.conf import settings


def _policy(frame_ancestors: str) -> str:
    directives = {
        "default-src": "'self'",
        "script-src": "'self'",
        # Inline style attributes (Django admin uses some); never inline scripts.
        "style-src": "'self' 'unsafe-inline'",
        # Stimuli from an object store come by presigned URL from exactly its origin.
        "img-src": " ".join(["'self'", "data:", "blob:", *filter(None, [settings.MEDIA_ORIGIN])]),
        "font-src": "'self'",
        "connect-src": "'self'",
        "object-src": "'none'",
        "base-uri": "'self'",
        "form-action": " ".join(["'self'", *settings.RATER_FRAME_ANCESTORS]),
        "frame-ancestors": frame_ancestors,
    }
    return "; ".join(f"{k} {v}" for k, v in directives.items())


class SecurityHeadersMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response
        self._build()

    def _build(self) -> None:
        self.media_origin = settings.MEDIA_ORIGIN
        self.default_policy = _policy("'none'")
        ancestors = " ".join(["'self'", *settings.RATER_FRAME_ANCESTORS])
        self.rater_policy = _policy(ancestors)

    def __call__(self, request):
        if settings.MEDIA_ORIGIN != self.media_origin:
            self._build()  # the store changed (a test's settings): img-src follows it
        response = self.get_response(request)
        rater_page = request.path.startswith("/s/")
        if "Content-Security-Policy" not in response:
            response["Content-Security-Policy"] = (
                self.rater_policy if rater_page else self.default_policy
            )
        if rater_page and settings.RATER_FRAME_ANCESTORS:
            # frame-ancestors governs framing for modern browsers; X-Frame-Options
            # cannot list several origins, so rater pages go without it.
            response.xframe_options_exempt = True
        response.setdefault("Permissions-Policy", "camera=(), microphone=(), geolocation=()")
        response.setdefault("Cross-Origin-Opener-Policy", "same-origin")
        return response
