"""The request boundary: what every request is checked for before any view sees it,
the bounded JSON reader every JSON body goes through, and one error contract for the
JSON endpoints (``{"error": code, "detail": message, "fields": {field: message}}``).

JSON endpoints are the REST API (``/api/``) and the rater endpoints under ``/s/<slug>/``.
Whatever goes wrong on them (a refused character, a body over ``MAX_REQUEST_BYTES``, a
CSRF failure, a path that matches nothing, the database gone away) is answered in
that shape, never with an HTML page and never with a 500 for bad input.

Why here, once: NUL reaches PostgreSQL as a ``DataError`` (a 500) from any string it
is compared with or stored as, so the characters are refused where they enter (path,
query, headers, cookies, form fields, JSON strings), not field by field.
"""

from __future__ import annotations

import codecs
import json
import logging
import math
import re
import sys
from typing import Any
from urllib.parse import parse_qsl, unquote_plus

from django.conf import settings
from django.core.exceptions import (
    BadRequest,
    RequestDataTooBig,
    SuspiciousOperation,
    TooManyFieldsSent,
    TooManyFilesSent,
)
from django.db import InterfaceError, OperationalError
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.template import loader
from django.views import defaults
from django.views.csrf import csrf_failure as django_csrf_failure
from rest_framework import status
from rest_framework.exceptions import APIException
from rest_framework.parsers import FormParser, JSONParser, MultiPartParser

log = logging.getLogger(__name__)

# Control characters: C0 and DEL. Free text (JSON strings, form fields) may hold tab,
# newline and carriage return; paths, query parameters, headers and cookies none.
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_CONTROL_IN_TEXT = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
_RATER_ENDPOINT = re.compile(r"^/s/[^/]+/(?:submit|next|training)$")
# Deeper than any body the API takes (an analysis' options, a study's platforms);
# Python's parser itself recurses and fails with RecursionError near 1,000.
MAX_JSON_DEPTH = 32
# Integers of up to 19 digits: every 8-byte integer; longer ones are refused before
# int() is called (Python refuses more than 4,300 digits with a ValueError).
MAX_INT_CHARS = 20
_INT_LIMIT = 2**63


def has_control_characters(text: str, *, free_text: bool = True) -> bool:
    """True when ``text`` holds NUL or another control character (tab, newline and
    carriage return are allowed in free text)."""
    return (_CONTROL_IN_TEXT if free_text else _CONTROL).search(text) is not None


def is_json_endpoint(path: str) -> bool:
    return path.startswith("/api/") or _RATER_ENDPOINT.match(path) is not None


def error_response(
    code: str, detail: str, status: int, fields: dict[str, str] | None = None
) -> JsonResponse:
    return JsonResponse({"error": code, "detail": detail, "fields": fields or {}}, status=status)


# --- JSON bodies ---------------------------------------------------------------------


class BadJSON(ValueError):
    """A body refused by :func:`json_loads`: a code, a message and the field, if any."""

    def __init__(self, code: str, detail: str, field: str | None = None):
        super().__init__(detail)
        self.code, self.detail, self.field = code, detail, field

    @property
    def fields(self) -> dict[str, str]:
        return {self.field: self.detail} if self.field else {}


class _OutOfRange:
    """An integer token out of range, kept by the parser (which knows no key) for
    the walk to refuse with the field it sits under."""

    def __init__(self, detail: str):
        self.detail = detail


def _parse_int(text: str) -> int | _OutOfRange:
    if len(text) > MAX_INT_CHARS:
        # Not converted: int() of a long token is quadratic (and Python refuses
        # over 4,300 digits anyway).
        return _OutOfRange(f"an integer of {len(text)} digits is out of range")
    value = int(text)
    if not -_INT_LIMIT < value < _INT_LIMIT:
        return _OutOfRange(f"the integer {value} is out of range")
    return value


def _parse_float(text: str) -> float:
    # + 0.0 turns -0.0 into 0.0 (and leaves every other value as it is): a stored
    # negative zero prints as "-0" in exports and compares unequal in JSON fields.
    return float(text) + 0.0


def _check_tree(value: Any) -> None:
    """Depth, control characters in strings (keys too) and finite numbers, in one
    walk of the parsed body (a rating is a few dozen nodes). The field named is the
    key the value sits under (``overall`` for ``{"scores": {"overall": NaN}}``), the
    name the endpoints' own refusals use."""
    stack: list[tuple[Any, int, str | None]] = [(value, 1, None)]
    while stack:
        node, depth, field = stack.pop()
        if isinstance(node, str):
            if _CONTROL_IN_TEXT.search(node):
                raise BadJSON(
                    "control_character", "control characters (NUL and others) are refused", field
                )
        elif isinstance(node, float):
            if not math.isfinite(node):
                raise BadJSON("not_finite", "must be a finite number", field)
        elif isinstance(node, _OutOfRange):
            raise BadJSON("number_out_of_range", node.detail, field)
        elif isinstance(node, dict | list):
            if depth > MAX_JSON_DEPTH:
                raise BadJSON("too_deep", f"JSON nested deeper than {MAX_JSON_DEPTH} levels", field)
            if isinstance(node, dict):
                for key, item in node.items():
                    if _CONTROL_IN_TEXT.search(key):
                        # Named by the object it is in: the key itself is not a name.
                        raise BadJSON(
                            "control_character",
                            "control characters (NUL and others) in a key are refused",
                            field,
                        )
                    stack.append((item, depth + 1, key))
            else:
                stack.extend((item, depth + 1, field) for item in node)


def json_loads(raw: bytes | str) -> Any:
    """Parse a JSON body with bounds, or raise BadJSON.

    NaN and the infinities (tokens Python's parser accepts, or ``1e400`` written out)
    are refused by the walk, which names the field they are in."""
    try:
        text = raw.decode("utf-8") if isinstance(raw, bytes) else raw
        value = json.loads(text, parse_int=_parse_int, parse_float=_parse_float)
    except UnicodeDecodeError:
        raise BadJSON("malformed_json", "the request body is not UTF-8 text") from None
    except json.JSONDecodeError as exc:
        raise BadJSON("malformed_json", f"the request body is not valid JSON: {exc}") from None
    except RecursionError:
        raise BadJSON("too_deep", f"JSON nested deeper than {MAX_JSON_DEPTH} levels") from None
    _check_tree(value)
    return value


class BodyRefused(APIException):
    """A JSON body the API refuses before any serializer sees it."""

    status_code = status.HTTP_400_BAD_REQUEST
    default_code = "invalid"

    def __init__(self, code: str, detail: str, status_code: int = 400, fields=None):
        super().__init__(detail, code)
        self.status_code = status_code
        self.fields = fields or {}


class BoundedJSONParser(JSONParser):
    """DRF's JSON parser with the bounds of :func:`json_loads` and ``MAX_REQUEST_BYTES``
    (DRF reads the stream itself, so Django's own limit on ``request.body`` never applies)."""

    def parse(self, stream, media_type=None, parser_context=None):
        limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
        if stream is None:
            raw = b""
        else:
            raw = stream.read() if limit is None else stream.read(limit + 1)
        if limit is not None and len(raw) > limit:
            raise BodyRefused("too_large", _too_large_detail(), 413)
        try:
            return json_loads(raw)
        except BadJSON as exc:
            raise BodyRefused(exc.code, exc.detail, fields=exc.fields) from None


def _refuse_form_characters(data) -> None:
    """Refuse control characters in a parsed form body's keys and text values (tab,
    newline and carriage return allowed in values), naming the field."""
    for key, values in data.lists():
        if _CONTROL.search(key) or any(
            isinstance(v, str) and _CONTROL_IN_TEXT.search(v) for v in values
        ):
            field = "form" if _CONTROL.search(key) else key
            message = "control characters (NUL and others) are refused"
            raise BodyRefused("control_character", message, fields={field: message})


def _form_limits(parse):
    """Django's limits on form bodies (fields, files, bytes) as JSON 413s, not 500s."""
    try:
        return parse()
    except (RequestDataTooBig, TooManyFieldsSent, TooManyFilesSent) as exc:
        raise BodyRefused("too_large", str(exc) or _too_large_detail(), 413) from None


class BoundedFormParser(FormParser):
    """DRF's form parser (PUT and PATCH too, which Django's ``request.POST`` never
    reads) refusing control characters like the JSON parser does."""

    def parse(self, stream, media_type=None, parser_context=None):
        data = _form_limits(
            lambda: super(BoundedFormParser, self).parse(stream, media_type, parser_context)
        )
        _refuse_form_characters(data)
        return data


class BoundedMultiPartParser(MultiPartParser):
    """DRF's multipart parser refusing control characters in field names and values;
    file names are checked by the importers (they report per file)."""

    def parse(self, stream, media_type=None, parser_context=None):
        result = _form_limits(
            lambda: super(BoundedMultiPartParser, self).parse(stream, media_type, parser_context)
        )
        _refuse_form_characters(result.data)
        return result


def _too_large_detail() -> str:
    return f"the request body is larger than {settings.DATA_UPLOAD_MAX_MEMORY_SIZE:,} bytes"


# --- The middleware --------------------------------------------------------------------


def _refuse_characters(request: HttpRequest, json_endpoint: bool) -> tuple[str, str] | None:
    """(where, message) of the first control character in the request's path, query,
    headers, cookies or form fields; None when there is none."""
    if _CONTROL.search(request.path_info):
        return "path", "the path holds a control character"
    query = request.META.get("QUERY_STRING", "")
    if query and _CONTROL.search(unquote_plus(query)):
        for key, values in request.GET.lists():
            if _CONTROL.search(key) or any(_CONTROL.search(v) for v in values):
                return key, "control characters (NUL and others) are refused"
        return "query", "the query string holds a control character"
    for key, value in request.META.items():
        if key.startswith("HTTP_") and isinstance(value, str) and _CONTROL.search(value):
            return key[5:].lower().replace("_", "-"), "a header holds a control character"
    for key, value in request.COOKIES.items():
        if _CONTROL.search(key) or _CONTROL.search(value):
            return "cookie", "a cookie holds a control character"
    if not json_endpoint and (charset := _page_form_charset_refused(request)):
        return "form", charset
    if _form_not_utf8(request):
        return "form", "the form body is not UTF-8 (send it as UTF-8, or name its charset)"
    # Form bodies: the API's parsers (BoundedFormParser, BoundedMultiPartParser) for
    # every method; pages' forms field by field (studyweb.forms.PlainTextFields), so
    # the page shows the message on its field with the rest of the form kept.
    return None


def _page_form_charset_refused(request: HttpRequest) -> str | None:
    """Django reads an urlencoded page form in UTF-8 only and refuses any other charset
    it knows (a BadRequest raised wherever ``request.POST`` is first read: by then in
    the CSRF check of the error page itself, a 500). Refused here with a message;
    ``utf8`` and other spellings of UTF-8 are read as UTF-8. The API decodes a named
    charset itself (DRF's FormParser), so this is for pages only."""
    if request.content_type != "application/x-www-form-urlencoded":
        return None
    named = request.content_params.get("charset")
    if named is None:
        return None
    try:
        codec = codecs.lookup(named).name
    except LookupError:
        return None  # unknown names are ignored by Django too: read as UTF-8
    if codec != "utf-8":
        return f"form bodies must be UTF-8 (this one says charset={named})"
    if named.lower() != "utf-8":
        request.encoding = "utf-8"
    return None


def _form_not_utf8(request: HttpRequest) -> bool:
    """An urlencoded body said (or taken) to be UTF-8 that is not: Django would decode
    it with replacement characters, and a name saved from it would be silently
    mangled. A body that names another charset is decoded with that one (the API)."""
    if request.content_type != "application/x-www-form-urlencoded":
        return False
    named = request.content_params.get("charset", "utf-8")
    try:
        if codecs.lookup(named).name != "utf-8":
            return False
    except LookupError:
        pass
    body = request.body
    if not body:
        return False
    try:
        parse_qsl(body.decode("utf-8"), keep_blank_values=True, errors="strict")
    except (UnicodeDecodeError, ValueError):
        return True
    return False


class BoundaryMiddleware:
    """Refuses control characters and oversized bodies before any view runs, and answers
    the JSON endpoints' database outages as JSON 503."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        json_endpoint = is_json_endpoint(request.path_info)
        if json_endpoint and request.content_type != "multipart/form-data":
            # Uploads (multipart) are bounded per file by the importers; any other body
            # over the limit is refused before a byte of it is read.
            try:
                length = int(request.META.get("CONTENT_LENGTH") or 0)
            except ValueError:
                length = 0
            if length > settings.DATA_UPLOAD_MAX_MEMORY_SIZE:
                return error_response("too_large", _too_large_detail(), 413)
        try:
            refused = _refuse_characters(request, json_endpoint)
        except (RequestDataTooBig, TooManyFieldsSent, TooManyFilesSent) as exc:
            if not json_endpoint:
                return bad_request_page(request, exc)
            return error_response("too_large", str(exc) or _too_large_detail(), 413)
        except (SuspiciousOperation, BadRequest) as exc:
            if not json_endpoint:
                return bad_request_page(request, exc)
            return error_response("bad_request", str(exc) or "malformed request", 400)
        if refused is not None:
            where, message = refused
            if not json_endpoint:
                return bad_request_page(request, reason=message, field=where)
            return error_response("control_character", message, 400, {where: message})
        return self.get_response(request)

    def process_exception(self, request: HttpRequest, exc: Exception) -> HttpResponse | None:
        if not is_json_endpoint(request.path_info):
            if _sqlite_id_out_of_range(exc):
                return page_not_found(request, exc)
            return None
        return _json_for_exception(exc)


def _sqlite_id_out_of_range(exc: BaseException) -> bool:
    """An id past SQLite's 8-byte integers (``/admin/.../99999999999999999999/``): the
    SQLite driver cannot even send it, where PostgreSQL answers "no such row". The
    same answer here: no such object (a 404), not a 500. Only this message of the
    driver's: any other OverflowError is a real fault."""
    return isinstance(exc, OverflowError) and "SQLite INTEGER" in str(exc)


def _store_unavailable(exc: BaseException | None) -> bool:
    from studyweb.storage import StoreUnavailable  # storage settings load lazily

    return isinstance(exc, StoreUnavailable)


def _json_for_exception(exc: BaseException | None) -> JsonResponse | None:
    if _store_unavailable(exc):
        # The message names the store's endpoint: it goes to the log, not to anyone.
        log.error("file store unavailable: %s", exc)
        response = error_response(
            "storage_unavailable", "the file store is unavailable; try again shortly", 503
        )
        response["Retry-After"] = "10"
        return response
    if isinstance(exc, OperationalError | InterfaceError):
        log.error("database unavailable: %s", exc)
        response = error_response(
            "unavailable", "the database is unavailable; try again shortly", 503
        )
        response["Retry-After"] = "10"
        return response
    if isinstance(exc, RequestDataTooBig | TooManyFieldsSent | TooManyFilesSent):
        return error_response("too_large", str(exc), 413)
    if isinstance(exc, SuspiciousOperation | BadRequest):
        return error_response("bad_request", str(exc) or "malformed request", 400)
    return None


# --- Error views (handler400/403/404/500, CSRF_FAILURE_VIEW) ----------------------------


def bad_request(request, exception, *args, **kwargs):
    if is_json_endpoint(request.path_info):
        return _json_for_exception(exception) or error_response(
            "bad_request", "malformed request", 400
        )
    return bad_request_page(request, exception)


# What a page's 400 says for Django's own refusals of a request body.
_REFUSAL_REASONS = (
    (RequestDataTooBig, "the form is larger than this site accepts ({limit} bytes)"),
    (TooManyFieldsSent, "the form has more fields than this site accepts"),
    (TooManyFilesSent, "more files than this site accepts in one form"),
)


def bad_request_page(
    request: HttpRequest, exception: BaseException | None = None, *, reason: str = "", field=""
) -> HttpResponse:
    """A page's 400 that says what was wrong; JSON for a page's script that asked for
    JSON (the upload form's XHR). Unlike Django's default it never reads the form
    again (its CSRF check would: a body Django refused would raise a second time,
    inside the error page, as a 500)."""
    if not reason:
        for kind, text in _REFUSAL_REASONS:
            if isinstance(exception, kind):
                reason = text.format(limit=f"{settings.DATA_UPLOAD_MAX_MEMORY_SIZE:,}")
                break
        else:
            reason = "the request was malformed"
    if "application/json" in request.headers.get("Accept", ""):
        return error_response("bad_request", reason, 400, {field: reason} if field else None)
    return HttpResponse(loader.get_template("400.html").render({"reason": reason}), status=400)


def permission_denied(request, exception, *args, **kwargs):
    if is_json_endpoint(request.path_info):
        return error_response("permission_denied", "you may not do this", 403)
    return defaults.permission_denied(request, exception, *args, **kwargs)


def page_not_found(request, exception, *args, **kwargs):
    if is_json_endpoint(request.path_info):
        return error_response("not_found", "no such resource", 404)
    return defaults.page_not_found(request, exception, *args, **kwargs)


def server_error(request, *args, **kwargs):
    if is_json_endpoint(request.path_info):
        response = _json_for_exception(sys.exc_info()[1])
        if response is not None and response.status_code == 503:
            return response
        return error_response("server_error", "an unexpected error; it has been logged", 500)
    if isinstance(sys.exc_info()[1], OperationalError | InterfaceError) or _store_unavailable(
        sys.exc_info()[1]
    ):
        # A database or file store outage is temporary: 503 with Retry-After (proxies and monitors
        # read it so), on a page that needs no database to render.
        log.error("database or file store unavailable: %s", sys.exc_info()[1])
        response = HttpResponse(loader.get_template("503.html").render(), status=503)
        response["Retry-After"] = "10"
        return response
    return defaults.server_error(request, *args, **kwargs)


def csrf_failure(request, reason="", **kwargs):
    if is_json_endpoint(request.path_info):
        return error_response(
            "csrf_failed", "your page is out of date: please reload it and try again", 403
        )
    return django_csrf_failure(request, reason, **kwargs)
