"""Researchers' accounts: the app's own sign-in, sign-out and password change
(Django's auth views, styled like the app), and the API tokens page.

Mounted at /accounts/ (studyweb.urls). The admin keeps its own sign-in for admins.
"""

from __future__ import annotations

from django import forms
from django.contrib import messages
from django.contrib.auth import views as auth_views
from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import path
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_http_methods, require_POST

from annotation import tokens
from studyweb.errors import ServiceError
from studyweb.forms import PlainTextForm


class SignOutView(auth_views.LogoutView):
    """Sign out (POST only, as Django's LogoutView), then the sign-in page says so."""

    def post(self, request, *args, **kwargs):
        response = super().post(request, *args, **kwargs)
        messages.info(request, "You are signed out.")
        return response


class TokenForm(PlainTextForm):
    name = forms.CharField(
        max_length=tokens.NAME_MAX_LENGTH,
        help_text="What the token is for, e.g. the script or machine that uses it.",
    )


def _tokens_page(request: HttpRequest, form: TokenForm, created=None, key: str = "", status=200):
    context = {
        "tokens": tokens.tokens_for(request.user),
        "form": form,
        "created": created,
        "new_key": key,
        "key_prefix": tokens.KEY_PREFIX,
    }
    return render(request, "accounts/tokens.html", context, status=status)


@never_cache
@login_required
@require_http_methods(["GET", "POST"])
def api_tokens(request: HttpRequest) -> HttpResponse:
    """The user's API tokens; POST creates one and shows its key, this once."""
    if request.method == "GET":
        return _tokens_page(request, TokenForm())
    form = TokenForm(request.POST)
    if form.is_valid():
        try:
            token, key = tokens.token_create(request.user, form.cleaned_data["name"])
        except ServiceError as exc:
            form.add_error("name", exc.message)
        else:
            # Rendered, not redirected: the key is stored nowhere to show it again.
            return _tokens_page(request, TokenForm(), created=token, key=key, status=201)
    return _tokens_page(request, form, status=400)


@login_required
@require_POST
def api_token_revoke(request: HttpRequest, token_id: int) -> HttpResponse:
    try:
        token = tokens.token_revoke(request.user, token_id)
    except ServiceError as exc:
        raise Http404(exc.message) from exc
    messages.success(request, f"Token {token.name!r} revoked: it no longer works.")
    return redirect("api-tokens")


urlpatterns = [
    path(
        "login/",
        auth_views.LoginView.as_view(redirect_authenticated_user=True),
        name="login",
    ),
    path("logout/", SignOutView.as_view(), name="logout"),
    path("password/", auth_views.PasswordChangeView.as_view(), name="password_change"),
    path(
        "password/done/",
        auth_views.PasswordChangeDoneView.as_view(),
        name="password_change_done",
    ),
    path("tokens/", api_tokens, name="api-tokens"),
    path("tokens/<int:token_id>/revoke/", api_token_revoke, name="api-token-revoke"),
]
