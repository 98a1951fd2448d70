"""Researchers' named API tokens: create (the key is returned once), list, revoke,
and the lookup the API's authentication makes (annotation.auth).

A key is ``swt_`` and 40 hex characters; only its SHA-256 is stored, so a leaked
database does not leak working keys. The prefix tells these keys apart from DRF's
one-per-account tokens (40 hex characters, no prefix), which keep working.
"""

from __future__ import annotations

import hashlib
import secrets
from datetime import timedelta

from django.db import IntegrityError, transaction
from django.db.models import QuerySet
from django.utils import timezone

from annotation.models import ApiToken
from studyweb.errors import ServiceError

KEY_PREFIX = "swt_"
NAME_MAX_LENGTH = ApiToken.NAME_MAX_LENGTH
#: last_used_at is written at most this often per token (not on every API request).
LAST_USED_RESOLUTION = timedelta(minutes=1)


def key_hash(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()


def clean_token_name(name: str) -> str:
    """The name, stripped; refused when empty, too long or holding control characters."""
    name = (name or "").strip()
    if not name:
        raise ServiceError("give the token a name", code="required", field="name")
    if len(name) > NAME_MAX_LENGTH:
        raise ServiceError(
            f"the name is longer than {NAME_MAX_LENGTH} characters", code="too_long", field="name"
        )
    if any(ord(c) < 32 or ord(c) == 127 for c in name):
        raise ServiceError(
            "the name contains control characters (NUL, line breaks, ...)",
            code="invalid",
            field="name",
        )
    return name


def token_create(user, name: str) -> tuple[ApiToken, str]:
    """A new token of ``user`` named ``name``, and its key (stored nowhere: show it once)."""
    name = clean_token_name(name)
    duplicate = ServiceError(
        f"you already have a token named {name!r}", code="duplicate", field="name", status=409
    )
    if ApiToken.objects.filter(user=user, name=name).exists():
        raise duplicate
    key = KEY_PREFIX + secrets.token_hex(20)
    try:
        with transaction.atomic():
            token = ApiToken.objects.create(
                user=user,
                name=name,
                key_hash=key_hash(key),
                key_prefix=key[: len(KEY_PREFIX) + 4],
            )
    except IntegrityError as exc:  # the same name created at the same moment
        raise duplicate from exc
    return token, key


def tokens_for(user) -> QuerySet[ApiToken]:
    """The user's tokens, newest first."""
    return ApiToken.objects.filter(user=user).order_by("-created_at", "-id")


def token_revoke(user, token_id: int) -> ApiToken:
    """Delete one of ``user``'s tokens; another user's token is 'not found' (404)."""
    token = ApiToken.objects.filter(user=user, pk=token_id).first()
    if token is None:
        raise ServiceError("no such token", code="not_found", status=404)
    token.delete()
    return token


def token_authenticate(key: str) -> ApiToken | None:
    """The token with this key (its user loaded), or None; notes when it was used."""
    if not key.startswith(KEY_PREFIX):
        return None
    token = ApiToken.objects.select_related("user").filter(key_hash=key_hash(key)).first()
    if token is None:
        return None
    now = timezone.now()
    if token.last_used_at is None or now - token.last_used_at >= LAST_USED_RESOLUTION:
        ApiToken.objects.filter(pk=token.pk).update(last_used_at=now)
        token.last_used_at = now
    return token
