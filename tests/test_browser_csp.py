"""The pages work under the real Content-Security-Policy: no violation is reported
while a rater goes through consent, instructions and a rating, nor on the admin."""

from __future__ import annotations

import pytest

from tests.test_browser_rating import make_study

pytestmark = [
    pytest.mark.browser,
    pytest.mark.django_db(transaction=True),
    pytest.mark.usefixtures("serve_media"),
]


def test_no_csp_violation_in_the_rater_flow_and_admin(live_server, csp_page, admin_user):
    page, violations = csp_page
    study = make_study("csp")
    page.goto(f"{live_server.url}/s/{study.slug}/?PROLIFIC_PID=csp-1")
    page.click("#agree")
    page.click("#start")
    slider = page.locator("input.slider").first
    slider.wait_for()
    for s in page.locator("input.slider").all():
        s.focus()
        page.keyboard.press("ArrowRight")
    page.locator("#rate-submit:enabled").wait_for()
    page.click("#rate-submit")
    page.locator("#progress-text").filter(has_text="Image 2 of 5").wait_for()
    page.goto(f"{live_server.url}/admin/login/")
    page.fill("#id_username", "admin")
    page.fill("#id_password", "pw")
    page.click("input[type=submit]")
    page.goto(f"{live_server.url}/admin/annotation/study/{study.pk}/change/")
    page.locator("#study_form").wait_for()
    assert violations == []
