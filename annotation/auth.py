"""API authentication with researchers' named tokens (annotation.tokens).

The header is the same as DRF's own tokens, ``Authorization: Token <key>``, so
scripts keep working: a key that is not a named token's (no ``swt_`` prefix) is
left to the next class, DRF's ``TokenAuthentication``.
"""

from __future__ import annotations

from rest_framework import exceptions
from rest_framework.authentication import TokenAuthentication

from annotation import tokens


class NamedTokenAuthentication(TokenAuthentication):
    keyword = "Token"

    def authenticate_credentials(self, key):
        if not key.startswith(tokens.KEY_PREFIX):
            return None  # a DRF authtoken key: the next authentication class decides
        token = tokens.token_authenticate(key)
        if token is None:
            raise exceptions.AuthenticationFailed("Invalid token.")
        if not token.user.is_active:
            raise exceptions.AuthenticationFailed("User inactive or deleted.")
        return (token.user, token)
