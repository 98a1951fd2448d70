"""Real Chromium (Debian's /usr/bin/chromium) driven by Playwright; never downloaded."""

from __future__ import annotations

import os
import shutil

import pytest

CHROMIUM = "/usr/bin/chromium"
LAUNCH_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


@pytest.fixture(scope="session")
def browser():
    if not shutil.which(CHROMIUM):
        pytest.fail(f"{CHROMIUM} is missing: `make browser` installs Debian's chromium")
    # Playwright's sync API runs an event loop in this thread; the ORM calls the
    # tests make around it are ordinary synchronous code.
    os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        instance = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=LAUNCH_ARGS)
        yield instance
        instance.close()


@pytest.fixture
def page(browser):
    # Playwright's wait_for_function polls with eval(), which our CSP forbids;
    # tests/test_browser_csp.py checks the pages under the real policy.
    context = browser.new_context(viewport={"width": 1280, "height": 720}, bypass_csp=True)
    tab = context.new_page()
    tab.set_default_timeout(15_000)
    yield tab
    context.close()


def new_tab(browser, **options):
    """A tab under the real Content-Security-Policy in a context of its own (Playwright
    context ``options``: viewport, locale, touch...); returns (context, tab, violations),
    the console's CSP messages, for the test to assert empty. The caller closes it."""
    context = browser.new_context(**{"viewport": {"width": 1280, "height": 720}, **options})
    tab = context.new_page()
    tab.set_default_timeout(15_000)
    violations: list[str] = []
    tab.on(
        "console",
        lambda msg: violations.append(msg.text) if "Content Security Policy" in msg.text else None,
    )
    return context, tab, violations


@pytest.fixture
def csp_page(browser):
    """A tab under the real Content-Security-Policy; yields (page, violations)."""
    context, tab, violations = new_tab(browser)
    yield tab, violations
    context.close()


@pytest.fixture
def serve_media(settings):
    """The live server also serves MEDIA_ROOT at /media/ (tests/media_urls.py), as the
    production proxy does: rater pages and thumbnails load the stored images."""
    settings.ROOT_URLCONF = "tests.media_urls"
