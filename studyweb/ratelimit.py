"""Fixed-window rate limits for the rater endpoints, per rater token and per address,
and for new raters per address (``new_rater_wait``).

Counters live in the default cache: Redis when ``CACHE_URL`` is set (shared by
every web replica), else process memory (one process, ``make run``). Over the
limit the answer is 429 with ``Retry-After``.

The address behind a proxy is the one the proxy appended to ``X-Forwarded-For``
(``TRUSTED_PROXY_HOPS`` proxies from the right), never the first entry: a client
can send its own header, and every proxy only appends.
"""

from __future__ import annotations

import functools
import time

from django.conf import settings
from django.core.cache import cache
from django.http import JsonResponse


def client_address(request) -> str:
    """The client's address: REMOTE_ADDR, or behind ``TRUSTED_PROXY_HOPS`` proxies the
    X-Forwarded-For entry that the outermost trusted proxy appended.

    Each proxy appends the address it was connected from, so with N trusted proxies
    the last N entries are theirs and the Nth from the right is the client as the
    outermost one saw it; anything left of it came from the client and is ignored.
    Fewer entries than hops means the request skipped an outer proxy: its leftmost
    entry was still appended by a trusted one.
    """
    hops = settings.TRUSTED_PROXY_HOPS
    if hops:
        entries = [e.strip() for e in request.META.get("HTTP_X_FORWARDED_FOR", "").split(",")]
        entries = [e for e in entries if e]
        if entries:
            return entries[-hops if len(entries) >= hops else 0][:64]
    return request.META.get("REMOTE_ADDR", "")[:64]


def _hit(scope: str, key: str, limit: int, window: int) -> int | None:
    """Count one request; return seconds to wait when over the limit, else None."""
    now = time.time()
    slot = int(now // window)
    name = f"rl:{scope}:{key}:{slot}"
    try:
        count = cache.incr(name)
    except ValueError:
        cache.add(name, 0, timeout=window + 1)
        count = cache.incr(name)
    if count > limit:
        return max(1, int((slot + 1) * window - now) + 1)
    return None


def limited_response(what: str, wait: int) -> JsonResponse:
    """The JSON 429 of a limit, with ``Retry-After``."""
    response = JsonResponse(
        {"error": "rate_limited", "detail": f"{what}; try again in {wait} s", "fields": {}},
        status=429,
    )
    response["Retry-After"] = str(wait)
    return response


def rate_limited(scope: str):
    """Decorator for rater views: RATE_LIMIT_RATER_PER_MIN per token, RATE_LIMIT_ADDRESS_PER_MIN
    per address (0 disables)."""

    def decorate(view):
        @functools.wraps(view)
        def wrapper(request, *args, **kwargs):
            checks = []
            token = request.headers.get("X-Rater-Token") or request.COOKIES.get("rater_token")
            if token and settings.RATE_LIMIT_RATER_PER_MIN:
                checks.append(("token", token[:64], settings.RATE_LIMIT_RATER_PER_MIN))
            if settings.RATE_LIMIT_ADDRESS_PER_MIN:
                checks.append(
                    ("addr", client_address(request), settings.RATE_LIMIT_ADDRESS_PER_MIN)
                )
            for kind, key, limit in checks:
                wait = _hit(f"{scope}:{kind}", key, limit, 60)
                if wait is not None:
                    return limited_response("too many requests", wait)
            return view(request, *args, **kwargs)

        return wrapper

    return decorate


def new_rater_wait(request) -> int | None:
    """Count one new rater registered from the request's address; the seconds to wait
    when the address is over ``RATE_LIMIT_NEW_RATERS_PER_HOUR`` (None: go on; 0
    disables).

    A study link registers a rater (and holds their places, an hour) on the first
    request that names a new platform id: without this, one script inventing ids
    could fill a study's places and turn every real rater away as "full". Only
    registrations count, so a rater coming back, and raters on other addresses, are
    never held up; a lab of raters behind one address needs the limit raised."""
    limit = settings.RATE_LIMIT_NEW_RATERS_PER_HOUR
    if not limit:
        return None
    return _hit("new-rater:addr", client_address(request), limit, 3600)
