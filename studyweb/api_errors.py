"""One error shape for the whole API, the same as the rater endpoints':
``{"error": code, "detail": message, "fields": {field: message}}``."""

from __future__ import annotations

from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.http import Http404
from rest_framework import exceptions
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_handler

from studyweb.errors import ServiceError
from studyweb.jobs import BrokerUnavailable


def _flatten(value) -> str:
    if isinstance(value, list | tuple):
        return "; ".join(_flatten(v) for v in value)
    if isinstance(value, dict):
        return "; ".join(f"{k}: {_flatten(v)}" for k, v in value.items())
    return str(value)


def service_error_response(exc: ServiceError) -> Response:
    """A refusal from a service, as the API answers it (503 names the waiting job)."""
    body = exc.as_dict()
    headers = {}
    if isinstance(exc, BrokerUnavailable):
        job = exc.job
        body["job"] = {
            "kind": job.noun,
            "id": job.pk,
            "status": job.status,
            "waiting_for_broker": job.waiting_for_broker,
        }
        headers["Retry-After"] = "30"
    return Response(body, status=exc.status, headers=headers)


def exception_handler(exc, context):
    if isinstance(exc, ServiceError):
        return service_error_response(exc)
    response = drf_handler(exc, context)
    if response is None:
        return None
    data = response.data
    if isinstance(exc, exceptions.ValidationError):
        if isinstance(data, dict):
            fields = {str(k): _flatten(v) for k, v in data.items()}
        else:
            fields = {"non_field_errors": _flatten(data)}
        first = next(iter(fields.items()), ("", "invalid input"))
        detail = f"{first[0]}: {first[1]}" if first[0] != "non_field_errors" else first[1]
        response.data = {"error": "invalid", "detail": detail, "fields": fields}
    else:
        # Django's own Http404 and PermissionDenied (DRF answers them) get DRF's codes.
        if isinstance(exc, Http404):
            exc = exceptions.NotFound(*exc.args)
        elif isinstance(exc, DjangoPermissionDenied):
            exc = exceptions.PermissionDenied(*exc.args)
        code = getattr(exc, "default_code", "error")
        if isinstance(exc, exceptions.APIException):
            codes = exc.get_codes()
            code = codes if isinstance(codes, str) else code
        detail = data.get("detail") if isinstance(data, dict) else data
        # A refused body (studyweb.boundary.BodyRefused) names its field.
        fields = dict(getattr(exc, "fields", None) or {})
        response.data = {"error": str(code), "detail": _flatten(detail), "fields": fields}
    return response
