from __future__ import annotations

import io

import pytest
from django.core.management import call_command
from django.db.models import Count

from annotation.models import Rater, Rating, Stimulus, Study

pytestmark = pytest.mark.django_db


def seed(*args) -> str:
    out = io.StringIO()
    call_command("seed_demo", *args, stdout=out)
    return out.getvalue()


def test_seed_demo_twice_is_harmless():
    seed("--simulate-raters", "6")
    study = Study.objects.get(slug="demo")
    counts = (study.stimuli.count(), study.raters.count(), Rating.objects.count())
    assert study.status == "open" and study.protocol == "agin"
    assert counts[0] == 68 and counts[1] == 6 and counts[2] > 0
    seed("--simulate-raters", "6")
    assert (study.stimuli.count(), study.raters.count(), Rating.objects.count()) == counts


def test_demo_content_has_known_ground_truth():
    seed()
    study = Study.objects.get(slug="demo")
    roles = dict(study.stimuli.values_list("role").annotate(n=Count("id")))
    assert roles == {"test": 60, "training": 4, "gold": 4}
    test = study.stimuli.filter(role="test")
    assert {s.metadata["perspective"] for s in test} == {"none", "technical", "rationality"}
    kinds = {s.metadata["degradation"] for s in test}
    assert {"blur", "noise", "luminance", "contrast", "blocks"} <= kinds
    assert {"colors", "duplicate", "floating", "broken", "misplaced"} & kinds
    for s in test:
        truth = s.metadata["truth"]
        assert set(truth) >= {"overall", "technical", "rationality", "blur", "color"}
        if s.metadata["degradation"] == "none":
            assert truth["overall"] >= 80
        assert 0 <= s.metadata["strength"] <= 1
    assert set(test.values_list("generator", flat=True)) == {"painter-a", "painter-b", "painter-c"}
    for gold in study.stimuli.filter(role="gold"):
        assert gold.expected_low < gold.metadata["truth"]["overall"] < gold.expected_high


def test_simulated_raters_follow_their_profiles():
    seed("--simulate-raters", "12")
    study = Study.objects.get(slug="demo")
    k = study.ratings_per_stimulus
    per_stimulus = Stimulus.objects.filter(study=study, role="test").annotate(n=Count("ratings"))
    assert max(s.n for s in per_stimulus) <= k
    # No rater rated a stimulus twice in repetition 1 (the constraint), and careful
    # raters track the truth: their overall scores correlate with it.
    import numpy as np

    def correlation(rater):
        rows = [
            (r.overall, r.stimulus.metadata["truth"]["overall"])
            for r in rater.ratings.select_related("stimulus")
        ]
        scores, truth = np.array(rows).T
        return np.corrcoef(scores, truth)[0, 1]

    careful = Rater.objects.filter(study=study, platform__careless=False)
    careless = Rater.objects.filter(study=study, platform__careless=True)
    assert careful.count() == 11 and careless.count() == 1
    assert min(correlation(r) for r in careful) > 0.6
    assert correlation(careless.get()) < 0.5


# --- Accounts: no default passwords outside DEBUG=1 ----------------------------------


def _user(name):
    from django.contrib.auth import get_user_model

    return get_user_model().objects.get(username=name)


def test_without_debug_the_accounts_get_random_passwords_printed_once(settings, monkeypatch):
    settings.DEBUG = False
    monkeypatch.delenv("SEED_ADMIN_PASSWORD", raising=False)
    monkeypatch.delenv("SEED_RESEARCHER_PASSWORD", raising=False)
    out = seed()
    admin, researcher = _user("admin"), _user("researcher")
    assert not admin.check_password("admin") and not researcher.check_password("researcher")
    printed = {}
    for line in out.splitlines():
        if "generated password" in line:
            name = line.split()[1].rstrip(":")
            printed[name] = line.split("generated password ")[1].split()[0]
    assert set(printed) == {"admin", "researcher"}
    assert admin.check_password(printed["admin"])
    assert researcher.check_password(printed["researcher"])
    assert printed["admin"] != printed["researcher"] and len(printed["admin"]) >= 16
    # A second run leaves both passwords alone and prints none.
    again = seed()
    assert "generated password" not in again and "exists, password unchanged" in again
    assert _user("admin").check_password(printed["admin"])


def test_debug_keeps_the_demo_logins_of_make_run(settings, monkeypatch):
    settings.DEBUG = True
    monkeypatch.delenv("SEED_ADMIN_PASSWORD", raising=False)
    monkeypatch.delenv("SEED_RESEARCHER_PASSWORD", raising=False)
    out = seed()
    assert _user("admin").check_password("admin") and _user("admin").is_superuser
    assert _user("researcher").check_password("researcher")
    assert "generated password" not in out


def test_explicit_passwords_from_options_and_environment(settings, monkeypatch):
    settings.DEBUG = False
    monkeypatch.setenv("SEED_RESEARCHER_PASSWORD", "violet-harbour-lantern-42")
    monkeypatch.delenv("SEED_ADMIN_PASSWORD", raising=False)
    out = seed("--admin-password", "quartz-meadow-signal-17")
    assert _user("admin").check_password("quartz-meadow-signal-17")
    assert _user("researcher").check_password("violet-harbour-lantern-42")
    assert "generated password" not in out
    assert "quartz-meadow" not in out and "violet-harbour" not in out  # never echoed


def test_weak_explicit_password_is_refused_and_nothing_is_created(settings, monkeypatch):
    from django.contrib.auth import get_user_model
    from django.core.management.base import CommandError

    settings.DEBUG = False
    monkeypatch.delenv("SEED_ADMIN_PASSWORD", raising=False)
    monkeypatch.delenv("SEED_RESEARCHER_PASSWORD", raising=False)
    with pytest.raises(CommandError, match="--admin-password.*too common"):
        seed("--admin-password", "admin")
    assert get_user_model().objects.count() == 0
    assert not Study.objects.exists()


def test_an_existing_account_keeps_its_password(settings, django_user_model):
    settings.DEBUG = False
    django_user_model.objects.create_user("admin", password="kept-by-the-operator-99")
    out = seed("--admin-password", "quartz-meadow-signal-17")
    assert _user("admin").check_password("kept-by-the-operator-99")
    assert "account admin: exists, password unchanged" in out
