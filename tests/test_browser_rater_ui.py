"""The rating page in real Chromium where it used to lose the rater: focus while submit
is not allowed, answers across a reload, a stale second tab, a reload during a break,
and the phone's "Next unset slider"."""

from __future__ import annotations

import pytest

from annotation.models import Claim, Rating, Session
from tests.test_browser_rating import arrive, focused_id, make_study

pytestmark = [
    pytest.mark.browser,
    pytest.mark.django_db(transaction=True),
    pytest.mark.usefixtures("serve_media"),
]


def wait_for_focus(page, element_id: str) -> None:
    page.wait_for_function(
        f"document.activeElement && document.activeElement.id === '{element_id}'"
    )


def label(page, key: str) -> str:
    return page.locator(f"label[for=dim-{key}]").inner_text().strip()


def toast(page) -> str:
    page.locator("#rate-status:not([hidden])").wait_for()
    return page.locator("#rate-status").inner_text()


def test_enter_and_tab_say_what_is_missing_and_go_there(live_server, page):
    study = make_study("focus", min_view_seconds=0)
    arrive(page, live_server, study, "focus-1")
    wait_for_focus(page, "dim-overall")
    page.keyboard.press("ArrowRight")  # overall set; technical and rationality not

    # Enter on a slider while submit is disabled: says which slider, and goes there.
    page.keyboard.press("Enter")
    assert f"“{label(page, 'technical')}”" in toast(page)
    assert "2 sliders still unset" in toast(page)
    assert focused_id(page) == "dim-technical"

    # Tab from the last slider with one unset: focus goes back to it, not to the body.
    page.focus("#dim-rationality")
    page.keyboard.press("ArrowRight")
    page.keyboard.press("Tab")
    assert focused_id(page) == "dim-technical"
    assert f"“{label(page, 'technical')}”" in toast(page)
    assert label(page, "technical") in page.locator("#rate-hint").inner_text()
    assert page.locator("#rate-submit").is_disabled()
    assert Rating.objects.count() == 0

    # Once every slider is set, Enter sends as before.
    page.keyboard.press("ArrowLeft")
    page.locator("#rate-submit:enabled").wait_for()
    page.keyboard.press("Enter")
    page.wait_for_function(
        "document.getElementById('progress-text').textContent === 'Image 2 of 5'"
    )
    assert Rating.objects.get().scores() == {"overall": 51, "technical": 49, "rationality": 51}


def test_tab_while_the_image_must_still_be_seen_keeps_the_focus(live_server, page):
    study = make_study("look", min_view_seconds=5)
    arrive(page, live_server, study, "look-1")
    wait_for_focus(page, "dim-overall")
    for i in range(3):
        if i:
            page.keyboard.press("Tab")
        page.keyboard.press("ArrowRight")
    page.keyboard.press("Tab")  # from the last slider: submit is still waiting
    assert focused_id(page) == "dim-rationality"
    assert "keep looking at the image" in toast(page)


def test_slider_values_survive_a_reload(live_server, page):
    study = make_study("keep", min_view_seconds=0)
    arrive(page, live_server, study, "keep-1")
    wait_for_focus(page, "dim-overall")
    first = page.locator("#stimulus").get_attribute("data-id")
    for _ in range(3):
        page.keyboard.press("ArrowRight")
    page.keyboard.press("Tab")
    page.keyboard.press("ArrowLeft")

    page.reload()
    # The same image, the two answers back, the third still unset and focused.
    wait_for_focus(page, "dim-rationality")
    assert page.locator("#stimulus").get_attribute("data-id") == first
    assert page.locator("#dim-overall").input_value() == "53"
    assert page.locator("#dim-overall").get_attribute("aria-valuetext") == "53 (Fair)"
    assert page.locator("#dim-technical").input_value() == "49"
    assert "untouched" not in page.locator("#dim-technical").get_attribute("class")
    assert "untouched" in page.locator("#dim-rationality").get_attribute("class")
    assert page.locator("#val-rationality").inner_text() == "–"

    page.keyboard.press("End")
    page.locator("#rate-submit:enabled").wait_for()
    page.keyboard.press("Enter")
    page.wait_for_function(
        "document.getElementById('progress-text').textContent === 'Image 2 of 5'"
    )
    assert Rating.objects.get().scores() == {"overall": 53, "technical": 49, "rationality": 100}
    # Sent answers are forgotten: the next image (and a reload of it) starts untouched.
    kept = page.evaluate("Object.keys(sessionStorage).filter(k => k.startsWith('rate:'))")
    assert kept == []
    page.reload()
    wait_for_focus(page, "dim-overall")
    assert page.locator("input.slider.untouched").count() == 3


def test_a_stale_tab_keeps_its_answers_and_says_what_happened(live_server, page):
    study = make_study("tabs", min_view_seconds=0)
    arrive(page, live_server, study, "tabs-1")
    wait_for_focus(page, "dim-overall")
    shown = page.locator("#stimulus").get_attribute("data-id")

    # A second tab of the same session shows the same image, rates it and moves on.
    other = page.context.new_page()
    other.set_default_timeout(15_000)
    other.goto(f"{live_server.url}/s/{study.slug}/")
    wait_for_focus(other, "dim-overall")
    assert other.locator("#stimulus").get_attribute("data-id") == shown
    for i in range(3):
        if i:
            other.keyboard.press("Tab")
        other.keyboard.press("ArrowRight")
    other.locator("#rate-submit:enabled").wait_for()
    other.keyboard.press("Enter")
    other.wait_for_function(
        "document.getElementById('progress-text').textContent === 'Image 2 of 5'"
    )
    now_shown = other.locator("#stimulus").get_attribute("data-id")

    # The first tab answers the image that is no longer its own.
    page.bring_to_front()
    page.focus("#dim-overall")
    for i in range(3):
        if i:
            page.keyboard.press("Tab")
        page.keyboard.press("ArrowLeft")
    page.locator("#rate-submit:enabled").wait_for()
    page.keyboard.press("Enter")
    message = toast(page)
    assert "another tab or window" in message and "Reload the page" in message
    assert "not assigned" not in message
    # Its answers stay on the page and in the tab's storage; focus is on Reload.
    assert [page.locator(f"#dim-{k}").input_value() for k in ("overall", "technical")] == [
        "49",
        "49",
    ]
    assert page.locator("#stimulus").get_attribute("data-id") == shown
    wait_for_focus(page, "rate-reload")
    assert page.locator("#rate-submit").is_disabled()
    assert "reload the page" in page.locator("#rate-hint").inner_text()
    kept = page.evaluate(
        "Object.keys(sessionStorage).filter(k => k.startsWith('rate:'))"
        ".map(k => JSON.parse(sessionStorage.getItem(k)))"
    )
    assert kept == [{"overall": "49", "technical": "49", "rationality": "49"}]
    assert Rating.objects.count() == 1  # the other tab's only

    page.click("#rate-reload")
    wait_for_focus(page, "dim-overall")
    assert page.locator("#stimulus").get_attribute("data-id") == now_shown
    other.close()


def test_reloading_during_a_break_still_shows_the_break(live_server, page, monkeypatch):
    monkeypatch.setattr("annotation.rater_flow.BREAK_SECONDS", 4)
    study = make_study("rest", min_view_seconds=0, break_every=1)
    arrive(page, live_server, study, "rest-1")
    wait_for_focus(page, "dim-overall")
    for i in range(3):
        if i:
            page.keyboard.press("Tab")
        page.keyboard.press("ArrowRight")
    page.locator("#rate-submit:enabled").wait_for()
    page.keyboard.press("Enter")
    page.locator("#break:not([hidden])").wait_for()
    assert focused_id(page) == "break-continue"
    assert page.locator("#break-continue").inner_text().startswith("Continue in ")

    # Continue too early: it says how long is left and stays.
    page.keyboard.press("Enter")
    assert "rest a little longer" in page.locator("#break-wait").inner_text()
    assert page.locator("#work").is_hidden()

    page.reload()
    page.locator("#break:not([hidden])").wait_for()
    assert page.locator("#work").is_hidden()
    assert page.locator("#break-continue").inner_text().startswith("Continue in ")
    assert focused_id(page) == "break-continue"
    assert not Claim.objects.exists()
    assert Session.objects.get().break_until is not None

    # When it is over, Continue goes on to the next image.
    page.wait_for_function(
        "document.getElementById('break-continue').textContent === 'Continue'", timeout=8000
    )
    assert "break is over" in page.locator("#break-wait").inner_text()
    page.keyboard.press("Enter")
    wait_for_focus(page, "dim-overall")
    assert page.locator("#progress-text").inner_text() == "Image 2 of 5"
    assert page.locator("#work").is_visible()


def test_next_unset_slider_on_a_phone(live_server, browser):
    study = make_study("phone", min_view_seconds=0, protocol="agin")
    context = browser.new_context(viewport={"width": 375, "height": 667}, bypass_csp=True)
    tab = context.new_page()
    tab.set_default_timeout(15_000)
    arrive(tab, live_server, study, "phone-1")
    wait_for_focus(tab, "dim-overall")
    sliders = tab.locator("input.slider")
    assert sliders.count() == 13
    button = tab.locator("#next-unset")
    assert button.is_visible()

    tab.keyboard.press("ArrowRight")  # the first one set: the button goes to the second
    button.click()
    second = sliders.nth(1).get_attribute("id")
    assert focused_id(tab) == second
    box = sliders.nth(1).bounding_box()
    stage = tab.locator("#stage").bounding_box()
    # Scrolled into view, below the image that stays at the top of the screen.
    assert stage["y"] + stage["height"] <= box["y"] and box["y"] + box["height"] <= 667

    # Set all but the last one, then the button goes there.
    for i in range(1, 12):
        sliders.nth(i).focus()
        tab.keyboard.press("ArrowLeft")
    button.click()
    assert focused_id(tab) == sliders.nth(12).get_attribute("id")
    tab.keyboard.press("ArrowLeft")
    assert button.is_hidden()  # nothing left unset
    tab.locator("#rate-submit:enabled").wait_for()
    sizes = tab.evaluate("[document.documentElement.scrollWidth, window.innerWidth]")
    assert sizes[0] <= sizes[1]
    context.close()


def test_wide_screens_have_no_next_unset_button(live_server, page):
    study = make_study("wide", min_view_seconds=0)
    arrive(page, live_server, study, "wide-1")
    wait_for_focus(page, "dim-overall")
    assert page.locator("#next-unset").is_hidden()


def test_the_break_and_its_reload_keep_the_content_security_policy(
    live_server, csp_page, monkeypatch
):
    page, violations = csp_page  # the real policy: no eval, so locators only
    monkeypatch.setattr("annotation.rater_flow.BREAK_SECONDS", 30)
    study = make_study("strict", min_view_seconds=0, break_every=1)
    arrive(page, live_server, study, "strict-1")
    page.locator("#dim-overall:focus").wait_for()
    page.keyboard.press("Enter")  # refused: says what is missing
    page.locator("#rate-status:not([hidden])").wait_for()
    for i in range(3):
        if i:
            page.keyboard.press("Tab")
        page.keyboard.press("ArrowRight")
    page.locator("#rate-submit:enabled").wait_for()
    page.keyboard.press("Enter")
    page.locator("#break:not([hidden])").wait_for()
    page.reload()
    page.locator("#break-continue:focus").wait_for()
    assert page.locator("#break-continue").inner_text().startswith("Continue in ")
    assert violations == []
