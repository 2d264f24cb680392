"""Account pages: login (throttled, safe redirects), logout, password, tokens, admin."""

import re
from urllib.parse import urljoin, urlsplit

import pytest
from django.contrib.sessions.models import Session
from django.test import Client, override_settings

from accounts.models import ApiToken, AuditEvent, LoginFailure
from tests.factories import PASSWORD, make_token, make_user

pytestmark = pytest.mark.django_db


def login(client, username="alice", password=PASSWORD, next_url=None, **extra):
    data = {"username": username, "password": password}
    if next_url is not None:
        data["next"] = next_url
    return client.post("/login", data, **extra)


# ---- login ------------------------------------------------------------------


def test_login_page_renders_with_labels(client):
    response = client.get("/login?next=/tokens")
    assert response.status_code == 200
    html = response.content.decode()
    assert '<label for="id_username">' in html and '<label for="id_password">' in html
    assert 'name="next" value="/tokens"' in html


def test_login_logs_in_and_redirects_home(client, user):
    response = login(client)
    assert response.status_code == 302
    assert response["Location"] == "/"
    cookie = response.cookies["jserver-session"]
    assert cookie["httponly"] is True
    assert cookie["samesite"] == "Lax"
    assert cookie["path"] == "/"
    assert client.get("/api/me").json()["identity"]["username"] == "alice"
    assert AuditEvent.objects.filter(action="login", actor=user).exists()


def test_login_needs_the_forms_xsrf_token(user):
    client = Client(enforce_csrf_checks=True)
    response = login(client)
    assert response.status_code == 403
    assert client.get("/api/me").status_code == 403


def test_login_with_the_forms_xsrf_token(user):
    client = Client(enforce_csrf_checks=True)
    page = client.get("/login").content.decode()
    csrf = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page).group(1)
    response = client.post(
        "/login",
        {"username": "alice", "password": PASSWORD, "csrfmiddlewaretoken": csrf},
    )
    assert response.status_code == 302


def test_login_follows_a_local_next(client, user):
    response = login(client, next_url="/tokens?x=1")
    assert response["Location"] == "/tokens?x=1"


@pytest.mark.parametrize(
    "target",
    [
        "https://evil.example/",
        "//evil.example",
        "///evil.example",
        "\\\\evil.example",
        "/\\evil.example",
        "\\/evil.example",
        "https:evil.example",
        "http://testserver.evil.example/",
        " //evil.example",
        "\t//evil.example",
        "javascript:alert(1)",
        "/%2F%2Fevil.example",
        "%2F%2Fevil.example",
        "/login",
    ],
)
def test_login_next_never_leaves_the_site(client, user, target):
    response = login(client, next_url=target)
    assert response.status_code == 302
    # Read the Location as a browser would: tabs and newlines dropped,
    # backslashes as slashes, relative to the login page.
    location = re.sub(r"[\t\n\r]", "", response["Location"]).replace("\\", "/")
    assert urlsplit(urljoin("http://testserver/login", location)).netloc == "testserver"


def test_wrong_password_is_refused_and_counted(client, user):
    response = login(client, password="wrong")
    assert response.status_code == 200
    assert "Please enter a correct username and password" in response.content.decode()
    assert client.get("/api/me").status_code == 403
    assert LoginFailure.objects.filter(username="alice").count() == 1
    assert AuditEvent.objects.filter(action="login_failed", actor_name="alice").exists()


def test_logged_in_user_visiting_login_goes_home(client_for, user):
    response = client_for(user).get("/login")
    assert response.status_code == 302 and response["Location"] == "/"


@override_settings(LOGIN_FAILURES_PER_ACCOUNT=3)
def test_account_is_throttled_after_failures(client, user):
    for _ in range(3):
        assert login(client, password="wrong").status_code == 200
    response = login(client)  # even the right password
    assert response.status_code == 429
    assert (
        "Too many failed login attempts. Try again in 15 minutes."
        in response.content.decode()
    )
    assert client.get("/api/me").status_code == 403
    # Another account from the same address is not affected.
    make_user("carol")
    assert login(client, username="carol").status_code == 302


@override_settings(LOGIN_FAILURES_PER_ACCOUNT=3)
def test_account_throttle_ignores_username_case(client, user):
    for name in ["alice", "ALICE", "Alice"]:
        login(client, username=name, password="wrong")
    assert login(client).status_code == 429


@override_settings(LOGIN_FAILURES_PER_ADDRESS=4, LOGIN_FAILURES_PER_ACCOUNT=100)
def test_address_is_throttled_after_failures(user):
    attacker = Client(REMOTE_ADDR="203.0.113.7")
    for number in range(4):
        login(attacker, username=f"guess{number}", password="wrong")
    assert login(attacker).status_code == 429
    # The real user, from elsewhere, still logs in.
    assert login(Client(REMOTE_ADDR="198.51.100.1")).status_code == 302


@override_settings(LOGIN_FAILURES_PER_ACCOUNT=3)
def test_success_clears_the_accounts_failures(client, user):
    for _ in range(2):
        login(client, password="wrong")
    assert login(client).status_code == 302
    assert not LoginFailure.objects.filter(username="alice").exists()


def test_inactive_user_cannot_log_in(client):
    make_user("dave", is_active=False)
    response = login(client, username="dave")
    assert response.status_code == 200
    assert client.get("/api/me").status_code == 403


# ---- logout and password change ---------------------------------------------


@pytest.mark.parametrize("method", ["get", "post"])
def test_logout_makes_the_old_cookie_worthless(client, user, method):
    login(client)
    cookie = client.cookies["jserver-session"].value
    response = getattr(client, method)("/logout")
    assert response.status_code == 200
    assert "You have been logged out" in response.content.decode()
    assert not Session.objects.filter(session_key=cookie).exists()
    replay = Client()
    replay.cookies["jserver-session"] = cookie
    assert replay.get("/api/me").status_code == 403


def test_password_change_ends_other_sessions(user):
    first, second = Client(), Client()
    login(first)
    login(second)
    response = first.post(
        "/password",
        {
            "old_password": PASSWORD,
            "new_password1": "a new pass phrase 42",
            "new_password2": "a new pass phrase 42",
        },
    )
    assert response.status_code == 302 and response["Location"] == "/password/done"
    assert first.get("/api/me").status_code == 200
    assert second.get("/api/me").status_code == 403
    assert AuditEvent.objects.filter(action="password_changed").exists()


def test_password_change_with_wrong_old_password(client_for, user):
    client = client_for(user)
    response = client.post(
        "/password",
        {
            "old_password": "nope",
            "new_password1": "a new pass phrase 42",
            "new_password2": "a new pass phrase 42",
        },
    )
    assert response.status_code == 200
    assert "Your old password was entered incorrectly" in response.content.decode()
    user.refresh_from_db()
    assert user.check_password(PASSWORD)


# ---- pages need a login -----------------------------------------------------


@pytest.mark.parametrize("path", ["/", "/tokens", "/password"])
def test_pages_redirect_to_login_with_next(client, path):
    response = client.get(path)
    assert response.status_code == 302
    assert response["Location"] == f"/login?next={path}"


def test_token_in_page_url_logs_the_browser_in(client, user, token):
    response = client.get(f"/tokens?token={token}&x=1")
    assert response.status_code == 302
    assert response["Location"] == "/tokens?x=1"
    assert client.get("/tokens").status_code == 200
    assert client.get("/api/me").json()["identity"]["username"] == "alice"


def test_downloads_answer_a_token_in_the_url_without_a_login(client, user, token):
    from contents.storage import user_root

    (user_root(user) / "x.txt").write_text("hello")
    response = client.get(f"/files/x.txt?token={token}")
    assert response.status_code == 200
    assert (
        b"".join(
            response.streaming_content if response.streaming else [response.content]
        )
        == b"hello"
    )
    response = client.get(f"/kernelspecs/python3/logo-64x64.png?token={token}")
    assert response.status_code == 200
    # It authenticated that request only: the browser is not logged in.
    assert client.get("/api/me").status_code == 403


def test_invalid_token_in_page_url_does_not_log_in(client, user):
    response = client.get("/tokens?token=wrong")
    assert response.status_code == 302
    assert response["Location"].startswith("/login")
    assert client.get("/api/me").status_code == 403


# ---- the tokens page --------------------------------------------------------


def test_create_token_shows_it_once_and_it_works(client_for, user):
    client = client_for(user)
    response = client.post("/tokens", {"name": "laptop", "expires_in_days": "30"})
    assert response.status_code == 200
    assert response["Cache-Control"] == "no-store"
    raw = re.search(
        r'id="new-token"[^>]*value="([0-9a-f]{48})"', response.content.decode()
    ).group(1)
    token = ApiToken.objects.get(user=user, name="laptop")
    assert token.digest != raw and raw not in token.digest
    assert token.expires_at is not None
    listing = client.get("/tokens").content.decode()
    assert raw not in listing and "laptop" in listing and f"{raw[:4]}…" in listing
    api = Client(headers={"Authorization": f"token {raw}"})
    assert api.get("/api/me").json()["identity"]["username"] == "alice"


def test_create_token_without_name_is_an_error(client_for, user):
    response = client_for(user).post("/tokens", {"name": "  "})
    assert response.status_code == 400
    assert not ApiToken.objects.exists()


def test_revoke_token(client_for, user):
    raw = make_token(user, "old")
    client = client_for(user)
    token = ApiToken.objects.get(user=user)
    response = client.post("/tokens", {"revoke": token.pk}, follow=True)
    assert "Token revoked" in response.content.decode()
    assert (
        Client(headers={"Authorization": f"token {raw}"}).get("/api/me").status_code
        == 403
    )


def test_cannot_revoke_another_users_token(client_for, user, other_user):
    raw = make_token(other_user)
    theirs = ApiToken.objects.get(user=other_user)
    response = client_for(user).post("/tokens", {"revoke": theirs.pk}, follow=True)
    assert "does not exist" in response.content.decode()
    assert ApiToken.objects.filter(pk=theirs.pk).exists()
    assert (
        Client(headers={"Authorization": f"token {raw}"}).get("/api/me").status_code
        == 200
    )


def test_tokens_page_lists_only_own_tokens(client_for, user, other_user):
    make_token(other_user, "bobs secret thing")
    assert "bobs secret thing" not in client_for(user).get("/tokens").content.decode()


# ---- admin ------------------------------------------------------------------


def test_admin_login_goes_through_the_site_login(client):
    response = client.get("/admin/")
    assert response.status_code == 302
    follow = client.get(response["Location"])
    assert follow.status_code == 302
    assert follow["Location"] == "/login?next=%2Fadmin%2F"


def test_admin_is_staff_only(client_for, user):
    client = client_for(user)
    response = client.get("/admin/", follow=True)
    assert response.status_code == 403
    assert "Staff only" in response.content.decode()


def test_admin_token_list_for_staff(client_for, user, staff_user):
    make_token(user, "visible to staff")
    response = client_for(staff_user).get("/admin/accounts/apitoken/")
    assert response.status_code == 200
    html = response.content.decode()
    assert "visible to staff" in html
    assert ApiToken.objects.get(user=user).digest not in html


def test_admin_audit_trail_is_read_only(client_for, user, staff_user):
    login(Client())
    event = AuditEvent.objects.get(action="login")
    client = client_for(staff_user)
    assert client.get("/admin/accounts/auditevent/").status_code == 200
    response = client.post(
        f"/admin/accounts/auditevent/{event.pk}/delete/", {"post": "yes"}
    )
    assert response.status_code == 403
    assert AuditEvent.objects.filter(pk=event.pk).exists()


def test_admin_logout_and_password_pages_are_the_sites(client_for, staff_user):
    client = client_for(staff_user)
    page = client.get("/admin/password_change/")
    assert page.status_code == 200 and "Changing it logs out" in page.content.decode()
    client.post("/admin/logout/")
    assert client.get("/api/me").status_code == 403
    assert AuditEvent.objects.filter(action="logout", actor=staff_user).exists()
