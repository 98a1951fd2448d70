"""Shared fixtures: the named personas of every permission test, and media in tmp."""

from __future__ import annotations

import pytest

from tests.browser import browser, csp_page, page, serve_media  # noqa: F401 - one Chromium for the run
from tests.factories import RaterFactory, StudyFactory, UserFactory


@pytest.fixture(autouse=True)
def _media_in_tmp(settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path / "media"


@pytest.fixture
def admin_user(db):
    return UserFactory(username="admin", is_staff=True, is_superuser=True)


@pytest.fixture
def researcher_a(db):
    return UserFactory(username="researcher_a", is_staff=True)


@pytest.fixture
def researcher_b(db):
    return UserFactory(username="researcher_b", is_staff=True)


@pytest.fixture
def study_a(researcher_a):
    return StudyFactory(owner=researcher_a, slug="study-a", title="A's study")


@pytest.fixture
def rater_a(study_a):
    """A rater of researcher A's study."""
    return RaterFactory(study=study_a)


# --- The SQLite run (TEST_DATABASE_URL=sqlite:///..., see studyweb/test_settings.py) ---


def pytest_collection_modifyitems(config, items):
    """On SQLite, run what is marked ``sqlite_too`` and skip, saying why, the tests
    marked ``postgresql_only(reason)`` and every test not marked ``sqlite_too``."""
    from django.db import connection

    if connection.vendor != "sqlite":
        return
    for item in items:
        only = item.get_closest_marker("postgresql_only")
        if only is not None:
            reason = only.kwargs.get("reason") or (only.args[0] if only.args else "")
            item.add_marker(pytest.mark.skip(reason=f"PostgreSQL only: {reason}"))
        elif item.get_closest_marker("sqlite_too") is None:
            item.add_marker(pytest.mark.skip(reason="not marked sqlite_too: PostgreSQL runs it"))
