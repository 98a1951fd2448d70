"""The one exception services raise for a request they refuse.

It carries what every caller needs to answer it: a code, a message, the field it
concerns (if any) and an HTTP status. The API's exception handler turns it into
``{"error": code, "detail": message, "fields": {field: message}}``; pages show
the message; commands print it. Nothing picks a field by reading the message.
"""

from __future__ import annotations

import logging

from django.core.exceptions import PermissionDenied


class ServiceError(ValueError):
    code = "invalid"
    status = 400

    def __init__(
        self,
        message: str,
        *,
        code: str | None = None,
        field: str | None = None,
        status: int | None = None,
    ):
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        if status is not None:
            self.status = status
        self.field = field

    @property
    def fields(self) -> dict[str, str]:
        return {self.field: self.message} if self.field else {}

    def as_dict(self) -> dict:
        return {"error": self.code, "detail": self.message, "fields": self.fields}


class RefusalLogFilter(logging.Filter):
    """Drops the traceback Django attaches to its log line of a refused request (403,
    ``PermissionDenied``): the line says what was refused, and a traceback per refusal
    buries the real faults. Every other record passes as it is."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and isinstance(record.exc_info[1], PermissionDenied):
            record.exc_info = None
            record.exc_text = None
        return True
