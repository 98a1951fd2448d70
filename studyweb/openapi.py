"""The rater endpoints in the OpenAPI schema.

They are plain Django views shared with the browser page (cookie or
``X-Rater-Token`` header), so drf-spectacular cannot see them; this hook adds
their description to the generated schema.
"""

from __future__ import annotations

ERROR = {"$ref": "#/components/schemas/RaterError"}
TOKEN = [{"raterToken": []}]


def _op(
    operation_id: str,
    summary: str,
    *,
    body: dict | None = None,
    ok: dict,
    codes: dict[str, str],
) -> dict:
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
            "200": {"description": "ok", "content": {"application/json": {"schema": ok}}},
            **{
                code: {"description": text, "content": {"application/json": {"schema": ERROR}}}
                for code, text in codes.items()
            },
        },
    }
    if body is not None:
        op["requestBody"] = {"required": True, "content": {"application/json": {"schema": body}}}
    return op


def add_rater_endpoints(result, generator, request, public):
    components = result.setdefault("components", {})
    schemas = components.setdefault("schemas", {})
    components.setdefault("securitySchemes", {})["raterToken"] = {
        "type": "apiKey",
        "in": "header",
        "name": "X-Rater-Token",
    }
    schemas["RaterError"] = {
        "type": "object",
        "properties": {
            "error": {"type": "string"},
            "detail": {"type": "string"},
            "fields": {"type": "object", "additionalProperties": {"type": "string"}},
        },
        "required": ["error", "detail", "fields"],
    }
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
