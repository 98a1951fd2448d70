"""Raters in their own language (issue 14, item 7): the rater pages in English or
Simplified Chinese, chosen by the rater's switcher, the study's setting or the
browser; the researcher's own texts per language; complete catalogues."""

from __future__ import annotations

import gettext
import re
import shutil
import subprocess
from html import unescape
from pathlib import Path

import polib
import pytest
from django.conf import settings
from django.test import Client

from annotation.models import Study
from tests.factories import StimulusFactory, StudyFactory, UserFactory

ROOT = Path(__file__).resolve().parent.parent
CATALOGUES = sorted((ROOT / "locale").glob("*/LC_MESSAGES/*.po"))
ZH = {"HTTP_ACCEPT_LANGUAGE": "zh-CN,zh;q=0.9,en;q=0.5"}


def visible_text(html: str) -> str:
    """The words a rater reads: no tags, scripts or styles."""
    html = re.sub(r"<(script|style)\b.*?</\1>", " ", html, flags=re.S)
    return unescape(re.sub(r"<[^>]+>", " ", html))


def english_left(text: str, catalogue: polib.POFile) -> list[str]:
    """English interface strings of the catalogue found in ``text`` (whole msgids, and
    the fixed words around a placeholder)."""
    found = []
    for entry in catalogue:
        for msgid in filter(None, (entry.msgid, entry.msgid_plural)):
            plain = unescape(re.sub(r"<[^>]+>", "", msgid))
            for part in re.split(r"%\(\w+\)s", plain):
                part = part.strip(" .,:;()")
                if len(part) >= 12 and part in text:
                    found.append(part)
    return found


@pytest.fixture
def zh_catalogue():
    return polib.pofile(str(ROOT / "locale/zh_Hans/LC_MESSAGES/django.po"))


@pytest.mark.parametrize("path", CATALOGUES, ids=lambda p: f"{p.parent.parent.name}/{p.name}")
def test_every_string_of_the_catalogue_is_translated(path):
    catalogue = polib.pofile(str(path))
    assert catalogue.percent_translated() == 100, [
        e.msgid for e in catalogue.untranslated_entries()
    ]
    assert not catalogue.fuzzy_entries(), [e.msgid for e in catalogue.fuzzy_entries()]
    for entry in catalogue.translated_entries():  # the same placeholders in both
        wanted = sorted(re.findall(r"%\(\w+\)s", entry.msgid))
        for text in [entry.msgstr, *entry.msgstr_plural.values()]:
            if text:
                assert sorted(set(re.findall(r"%\(\w+\)s", text))) == sorted(set(wanted)), (
                    entry.msgid
                )


@pytest.mark.parametrize("path", CATALOGUES, ids=lambda p: f"{p.parent.parent.name}/{p.name}")
def test_the_compiled_catalogue_is_the_current_one(path, tmp_path):
    """The committed .mo is compiled from the committed .po (`make messages`)."""
    msgfmt = shutil.which("msgfmt")
    if msgfmt is None:
        pytest.fail("msgfmt (Debian: gettext) is needed to check the compiled catalogues")
    fresh = tmp_path / "fresh.mo"
    subprocess.run([msgfmt, "--check-format", "-o", str(fresh), str(path)], check=True)
    with fresh.open("rb") as a, path.with_suffix(".mo").open("rb") as b:
        assert gettext.GNUTranslations(a)._catalog == gettext.GNUTranslations(b)._catalog


@pytest.fixture
def study(db):
    study = StudyFactory(slug="lang", status="open", protocol="perspectives", session_size=3)
    StimulusFactory.create_batch(4, study=study)
    return study


def consent_page(client: Client, slug: str, pid: str, **headers):
    return client.get(f"/s/{slug}/", {"PROLIFIC_PID": pid}, **headers)


def test_a_chinese_browser_gets_the_consent_page_in_chinese(study, zh_catalogue):
    page = consent_page(Client(), study.slug, "P-zh", **ZH)
    assert page.status_code == 200
    assert '<html lang="zh-hans">' in page.text and page["Content-Language"] == "zh-hans"
    text = visible_text(page.text)
    assert "开始之前" in text and "我同意，继续" in text and "你将为 3 张图像评分" in text
    assert english_left(text, zh_catalogue) == []
    assert "Accept-Language" in page["Vary"]


def test_an_english_browser_gets_english_and_the_switcher_keeps_the_platform_id(study):
    page = consent_page(Client(), study.slug, "P-en", HTTP_ACCEPT_LANGUAGE="en-GB,en")
    assert "Before you start" in page.text and '<html lang="en">' in page.text
    switch = re.search(r'href="([^"]*lang=zh-hans)"', page.text).group(1)
    assert "PROLIFIC_PID=P-en" in unescape(switch)


def test_the_raters_choice_wins_and_is_kept(study):
    client = Client()
    page = client.get(f"/s/{study.slug}/", {"PROLIFIC_PID": "P-pick", "lang": "zh-hans"})
    assert "开始之前" in page.text
    assert page.cookies["rater_language"].value == "zh-hans"
    # Later pages: the cookie, whatever the browser says.
    again = consent_page(client, study.slug, "P-pick", HTTP_ACCEPT_LANGUAGE="en")
    assert "开始之前" in again.text
    back = client.get(f"/s/{study.slug}/", {"PROLIFIC_PID": "P-pick", "lang": "en"})
    assert "Before you start" in back.text


def test_unknown_languages_are_ignored(study):
    page = consent_page(Client(), study.slug, "P-x", HTTP_ACCEPT_LANGUAGE="fr-FR,fr")
    assert "Before you start" in page.text
    picked = Client().get(f"/s/{study.slug}/", {"PROLIFIC_PID": "P-y", "lang": "xx"})
    assert "Before you start" in picked.text and "rater_language" not in picked.cookies


def test_the_studys_language_is_used_unless_the_rater_picks_another(study):
    Study.objects.filter(pk=study.pk).update(language="zh-hans")
    page = consent_page(Client(), study.slug, "P-s", HTTP_ACCEPT_LANGUAGE="en")
    assert "开始之前" in page.text
    picked = Client().get(f"/s/{study.slug}/", {"PROLIFIC_PID": "P-t", "lang": "en"})
    assert "Before you start" in picked.text


def test_the_researchers_texts_per_language(study):
    Study.objects.filter(pk=study.pk).update(
        title="Naturalness of generated images",
        consent_text="English consent.",
        texts={"zh-hans": {"title": "生成图像的自然度", "consent_text": "中文知情同意。"}},
    )
    zh = visible_text(consent_page(Client(), study.slug, "P-1", **ZH).text)
    assert "生成图像的自然度" in zh and "中文知情同意。" in zh and "English consent" not in zh
    en = visible_text(consent_page(Client(), study.slug, "P-2").text)
    assert "Naturalness of generated images" in en and "English consent." in en


def test_protocol_words_are_translated_on_the_instructions(study, zh_catalogue):
    client = Client()
    consent_page(client, study.slug, "P-ins", **ZH)
    page = client.post(f"/s/{study.slug}/consent", {"action": "agree"}, follow=True, **ZH)
    text = visible_text(page.text)
    assert "如何评分" in text and "整体自然度" in text and "很差" in text and "很好" in text
    assert english_left(text, zh_catalogue) == []


def test_researcher_pages_stay_in_english(study):
    owner = UserFactory(username="lang-owner", is_staff=True)
    Study.objects.filter(pk=study.pk).update(owner=owner)
    client = Client()
    client.force_login(owner)
    page = client.get(f"/studies/{study.slug}/", **ZH)
    assert page.status_code == 200 and '<html lang="en">' in page.text
    assert "lang=" not in page.get("Content-Language", "")


def test_study_texts_are_validated(study):
    from django.core.exceptions import ValidationError

    for bad in (
        {"fr": {"title": "x"}},
        {"zh-hans": {"slug": "x"}},
        {"zh-hans": {"title": "x" * 201}},
        {"zh-hans": {"title": "a\x01b"}},
        ["zh-hans"],
    ):
        study.texts = bad
        with pytest.raises(ValidationError):
            study.full_clean()


def test_settings_list_the_languages():
    assert [code for code, _ in settings.LANGUAGES] == ["en", "zh-hans"]


def test_the_api_reads_and_writes_the_language_and_the_texts(client, db):
    owner = UserFactory(username="lang-api", is_staff=True)
    StudyFactory(owner=owner, slug="lang-api")
    client.force_login(owner)
    url = "/api/v1/studies/lang-api/"
    body = {"language": "zh-hans", "texts": {"zh-hans": {"title": "标题", "instructions": "说明"}}}
    answer = client.patch(url, body, content_type="application/json")
    assert answer.status_code == 200, answer.content
    assert answer.json()["language"] == "zh-hans"
    assert answer.json()["texts"] == body["texts"]
    for bad, field in (
        ({"texts": {"fr": {"title": "x"}}}, "texts"),
        ({"language": "fr"}, "language"),
    ):
        refused = client.patch(url, bad, content_type="application/json")
        assert refused.status_code == 400 and field in refused.json()["fields"], refused.content
    assert Study.objects.get(slug="lang-api").texts == body["texts"]
