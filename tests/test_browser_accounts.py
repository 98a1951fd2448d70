"""A researcher signs in through the app's own form in real Chromium, under the real
Content-Security-Policy, sees the header, makes an API token and signs out."""

from __future__ import annotations

import pytest

from tests.factories import StudyFactory, UserFactory

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_sign_in_header_token_and_sign_out(live_server, csp_page):
    user = UserFactory(username="rita", is_staff=False)
    StudyFactory(owner=user, slug="ritas", title="Rita's study")
    page, violations = csp_page
    page.goto(f"{live_server.url}/")
    page.click("#researcher-sign-in")
    page.wait_for_url(f"{live_server.url}/accounts/login/")
    page.fill("#id_username", "rita")
    page.fill("#id_password", "pw")
    page.click("#sign-in")
    page.wait_for_url(f"{live_server.url}/studies/")
    assert "Rita's study" in page.locator("main").inner_text()
    header = page.locator("header.site-header")
    assert "Signed in as rita" in header.inner_text()
    for link in ("Studies", "API tokens", "Change password"):
        assert header.get_by_role("link", name=link, exact=True).is_visible()
    assert header.locator("#nav-admin").count() == 0  # not staff

    header.get_by_role("link", name="API tokens").click()
    page.wait_for_url(f"{live_server.url}/accounts/tokens/")
    page.fill("#id_name", "browser check")
    page.click("#create-token")
    key = page.locator("#new-token-key").input_value()
    assert key.startswith("swt_")
    assert "browser check" in page.locator("#token-list").inner_text()

    page.click("#sign-out")
    page.wait_for_url(f"{live_server.url}/accounts/login/")
    assert "You are signed out." in page.locator("main").inner_text()
    page.goto(f"{live_server.url}/studies/")
    page.wait_for_url(f"{live_server.url}/accounts/login/?next=/studies/")
    assert violations == []
