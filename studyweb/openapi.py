"""What drf-spectacular cannot see, added to the generated OpenAPI schema by hooks.

- The rater endpoints: plain Django views shared with the browser page (cookie or
  ``X-Rater-Token`` header), described here (``add_rater_endpoints``).
- The error contract (``studyweb.boundary``, ``studyweb.api_errors``): every JSON
  endpoint answers refusals as ``Error``; ``add_error_responses`` documents on each
  REST operation the refusals it can give, so a client (and schemathesis's status and
  schema conformance checks) knows them from the schema alone.
"""

from __future__ import annotations

ERROR = {"$ref": "#/components/schemas/Error"}
TOKEN = [{"raterToken": []}]


def _op(
    operation_id: str,
    summary: str,
    *,
    body: dict | None = None,
    ok: dict,
    codes: dict[str, str],
    created: str | None = None,
) -> dict:
    """A rater operation; ``created`` describes its 201 (answered 200 when nothing
    new was made: a resumed session, a replayed rating)."""
    op = {
        "operationId": operation_id,
        "tags": ["rater"],
        "summary": summary,
        "parameters": [
            {
                "name": "slug",
                "in": "path",
                "required": True,
                "schema": {"type": "string", "pattern": "^[-a-zA-Z0-9_]+$"},
            }
        ],
        "responses": {
            "200": {
                "description": "ok" if created is None else "nothing new: the first answer again",
                "content": {"application/json": {"schema": ok}},
            },
            **(
                {"201": {"description": created, "content": {"application/json": {"schema": ok}}}}
                if created
                else {}
            ),
            **{
                code: {"description": text, "content": {"application/json": {"schema": ERROR}}}
                for code, text in codes.items()
            },
        },
    }
    if body is not None:
        op["requestBody"] = {"required": True, "content": {"application/json": {"schema": body}}}
    return op


ERROR_SCHEMA = {
    "type": "object",
    "description": "A refusal: a stable code, a message for people, and the fields at fault.",
    "properties": {
        "error": {"type": "string"},
        "detail": {"type": "string"},
        "fields": {"type": "object", "additionalProperties": {"type": "string"}},
    },
    "required": ["error", "detail", "fields"],
}

# The refusals of the error contract and when a REST operation can give each one.
_ALWAYS = {
    "400": "malformed input: a bad parameter or body (the fields name which)",
    "401": "no or unknown credentials",
    "403": "not allowed for this account (a share level, an admin-only action)",
    "503": "the database or the broker is unavailable; retry later",
}
_WITH_PARAMETERS = {"404": "no such object, or not one this account may see"}
_WRITES = {"409": "refused in the object's current state (a study's status, a job's)"}
_WITH_BODY = {
    "413": "request body over MAX_REQUEST_BYTES (or an upload over its limit)",
    "415": "unsupported content type",
}


def add_error_responses(result, generator, request, public):
    """Document the error contract's refusals on every REST operation (the rater
    endpoints list their own, ``add_rater_endpoints``)."""
    result.setdefault("components", {}).setdefault("schemas", {})["Error"] = ERROR_SCHEMA
    for path, item in result.get("paths", {}).items():
        if path.startswith("/api/v1/rater/"):
            continue
        for method, operation in item.items():
            if method not in ("get", "post", "put", "patch", "delete"):
                continue
            codes = dict(_ALWAYS)
            if operation.get("parameters") or "{" in path:
                codes.update(_WITH_PARAMETERS)
            if method != "get":
                codes.update(_WRITES)
            if "requestBody" in operation:
                codes.update(_WITH_BODY)
            responses = operation.setdefault("responses", {})
            for code, text in codes.items():
                responses.setdefault(
                    code,
                    {"description": text, "content": {"application/json": {"schema": ERROR}}},
                )
    return result


def add_rater_endpoints(result, generator, request, public):
    components = result.setdefault("components", {})
    schemas = components.setdefault("schemas", {})
    components.setdefault("securitySchemes", {})["raterToken"] = {
        "type": "apiKey",
        "in": "header",
        "name": "X-Rater-Token",
    }
    schemas["Error"] = ERROR_SCHEMA
    scores = {
        "type": "object",
        "additionalProperties": {"type": "number"},
        "description": "one score per dimension of the study's protocol",
    }
    step = {"type": "object", "description": "what to do next: rate, break, done, page"}
    refusals = {
        "400": "malformed or out-of-range input",
        "403": "unknown or excluded rater",
        "404": "unknown study or stimulus",
        "409": "no claim, expired claim, replay mismatch, wrong stage",
        "429": "rate limited (Retry-After)",
    }
    paths = result.setdefault("paths", {})
    base = "/api/v1/rater/{slug}/"
    paths[base + "start"] = {
        "post": _op(
            "rater_start",
            "Start or resume a rater's session (scripted clients)",
            body={
                "type": "object",
                "properties": {
                    "consent": {"type": "boolean"},
                    "source": {"type": "string", "enum": ["prolific", "mturk", "anonymous"]},
                    "external_id": {"type": "string", "maxLength": 128},
                    "platform": {"type": "object", "additionalProperties": {"type": "string"}},
                },
                "required": ["consent"],
            },
            ok={
                "type": "object",
                "properties": {"token": {"type": "string"}, "session": {"type": "integer"}},
            },
            created="a new rater and session (200: an existing one resumed)",
            codes={
                "400": "invalid request",
                "403": "excluded rater",
                "404": "unknown study",
                "409": "study not open",
                "429": "rate limited",
            },
        )
    }
    paths[base + "next"] = {
        "get": {
            **_op(
                "rater_next",
                "The current claim or the next stimulus",
                ok={"type": "object", "properties": {"progress": {"type": "object"}, "next": step}},
                codes=refusals,
            ),
            "security": TOKEN,
        }
    }
    paths[base + "submit"] = {
        "post": {
            **_op(
                "rater_submit",
                "Submit one rating (idempotent on client_id)",
                body={
                    "type": "object",
                    "properties": {
                        "stimulus": {"type": "integer"},
                        "scores": scores,
                        "client_id": {"type": "string", "format": "uuid"},
                        "viewing_seconds": {"type": "number", "minimum": 0},
                    },
                    "required": ["stimulus", "scores", "client_id", "viewing_seconds"],
                },
                ok={"type": "object", "properties": {"created": {"type": "boolean"}, "next": step}},
                created="the rating was written (200: a replay of its client_id)",
                codes=refusals,
            ),
            "security": TOKEN,
        }
    }
    paths[base + "training"] = {
        "post": {
            **_op(
                "rater_training",
                "Answer a training item; feedback in return",
                body={
                    "type": "object",
                    "properties": {"stimulus": {"type": "integer"}, "scores": scores},
                },
                ok={"type": "object", "properties": {"feedback": {"type": "object"}}},
                codes=refusals,
            ),
            "security": TOKEN,
        }
    }
    paths[base + "finish"] = {
        "post": {
            **_op(
                "rater_finish",
                "End the session; the completion code",
                ok={"type": "object", "properties": {"completion_code": {"type": "string"}}},
                codes=refusals,
            ),
            "security": TOKEN,
        }
    }
    return result
