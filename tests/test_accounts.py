"""The app's own sign-in, the researcher header, sign-out and password change."""

from __future__ import annotations

import pytest
from django.contrib.auth import SESSION_KEY

from tests.factories import UserFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def researcher(db):
    """A researcher who is not staff: the admin refuses them, the app does not."""
    return UserFactory(username="rita", is_staff=False)


def test_sign_in_page_renders_without_the_researcher_header(client):
    response = client.get("/accounts/login/")
    assert response.status_code == 200
    html = response.content.decode()
    assert 'name="username"' in html and 'name="password"' in html
    assert "csrfmiddlewaretoken" in html
    assert 'id="sign-out"' not in html


def test_researcher_signs_in_and_lands_on_their_studies(client, researcher):
    response = client.post("/accounts/login/", {"username": "rita", "password": "pw"})
    assert response.status_code == 302
    assert response["Location"] == "/studies/"
    assert client.session[SESSION_KEY] == str(researcher.pk)
    page = client.get("/studies/")
    assert page.status_code == 200
    assert "You don&#x27;t have permission" not in page.content.decode()


def test_wrong_password_is_refused_on_the_page(client, researcher):
    response = client.post("/accounts/login/", {"username": "rita", "password": "nope"})
    assert response.status_code == 200
    assert "enter a correct username and password" in response.content.decode()
    assert SESSION_KEY not in client.session


def test_anonymous_researcher_pages_go_to_the_apps_sign_in_and_back(client, researcher, study_a):
    for url in ("/studies/", "/studies/study-a/", "/accounts/tokens/", "/accounts/password/"):
        response = client.get(url)
        assert response.status_code == 302, url
        assert response["Location"].startswith("/accounts/login/?next="), url
        assert "/admin/" not in response["Location"]
    response = client.get("/studies/")
    login = client.get(response["Location"])
    assert 'value="/studies/"' in login.content.decode()  # the form carries next
    back = client.post(
        "/accounts/login/", {"username": "rita", "password": "pw", "next": "/accounts/tokens/"}
    )
    assert back["Location"] == "/accounts/tokens/"


def test_sign_in_does_not_redirect_off_site(client, researcher):
    response = client.post(
        "/accounts/login/",
        {"username": "rita", "password": "pw", "next": "https://evil.example/"},
    )
    assert response["Location"] == "/studies/"


def test_signed_in_user_visiting_sign_in_goes_to_studies(client, researcher):
    client.force_login(researcher)
    response = client.get("/accounts/login/")
    assert response.status_code == 302 and response["Location"] == "/studies/"


@pytest.mark.parametrize(
    "url", ["/studies/", "/studies/study-a/", "/studies/study-a/agreement/", "/accounts/tokens/"]
)
def test_header_on_researcher_pages(client, researcher_a, study_a, url):
    """researcher_a is staff: the header links to the admin too."""
    client.force_login(researcher_a)
    response = client.get(url)
    assert response.status_code == 200
    html = response.content.decode()
    assert "Signed in as <strong>researcher_a</strong>" in html
    for href in ('href="/studies/"', 'href="/accounts/tokens/"', 'href="/accounts/password/"'):
        assert href in html
    assert 'id="nav-admin"' in html and 'href="/admin/"' in html
    assert '<form method="post" action="/accounts/logout/"' in html
    assert 'id="sign-out"' in html and "csrfmiddlewaretoken" in html


def test_header_hides_the_admin_link_from_non_staff(client, researcher):
    client.force_login(researcher)
    html = client.get("/studies/").content.decode()
    assert "Signed in as <strong>rita</strong>" in html
    assert 'id="nav-admin"' not in html


def test_rater_pages_have_no_researcher_header(client, researcher_a, study_a):
    client.force_login(researcher_a)
    html = client.get(f"/s/{study_a.slug}/").content.decode()
    assert 'id="sign-out"' not in html


def test_home_page_links_to_the_apps_sign_in(client, researcher):
    html = client.get("/").content.decode()
    assert 'href="/accounts/login/"' in html and "Researchers: sign in" in html
    assert 'href="/admin/"' not in html
    client.force_login(researcher)
    assert 'href="/studies/"' in client.get("/").content.decode()


def test_sign_out_is_a_post(client, researcher):
    client.force_login(researcher)
    assert client.get("/accounts/logout/").status_code == 405
    assert SESSION_KEY in client.session
    response = client.post("/accounts/logout/")
    assert response.status_code == 302 and response["Location"] == "/accounts/login/"
    assert SESSION_KEY not in client.session
    assert "You are signed out." in client.get("/accounts/login/").content.decode()
    assert client.get("/studies/").status_code == 302


def test_sign_out_needs_the_csrf_token(researcher):
    from django.test import Client

    strict = Client(enforce_csrf_checks=True)
    strict.force_login(researcher)
    assert strict.post("/accounts/logout/").status_code == 403
    assert SESSION_KEY in strict.session


def test_password_change(client, researcher):
    client.force_login(researcher)
    page = client.get("/accounts/password/")
    assert page.status_code == 200
    assert "Signed in as <strong>rita</strong>" in page.content.decode()
    refused = client.post(
        "/accounts/password/",
        {
            "old_password": "wrong",
            "new_password1": "x7-Naturalness",
            "new_password2": "x7-Naturalness",
        },
    )
    assert refused.status_code == 200
    assert "old password was entered incorrectly" in refused.content.decode()
    response = client.post(
        "/accounts/password/",
        {
            "old_password": "pw",
            "new_password1": "x7-Naturalness",
            "new_password2": "x7-Naturalness",
        },
    )
    assert response.status_code == 302 and response["Location"] == "/accounts/password/done/"
    done = client.get("/accounts/password/done/")
    assert done.status_code == 200 and 'id="password-changed"' in done.content.decode()
    # Still signed in here (the session hash is updated), and the new password works.
    assert client.get("/studies/").status_code == 200
    researcher.refresh_from_db()
    assert researcher.check_password("x7-Naturalness")
    client.post("/accounts/logout/")
    again = client.post("/accounts/login/", {"username": "rita", "password": "x7-Naturalness"})
    assert again["Location"] == "/studies/"


def test_admin_still_signs_in_admins(client, admin_user):
    response = client.post(
        "/admin/login/?next=/admin/", {"username": "admin", "password": "pw", "next": "/admin/"}
    )
    assert response.status_code == 302 and response["Location"] == "/admin/"
    assert client.get("/admin/").status_code == 200
