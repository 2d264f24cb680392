"""The API edge: authentication, XSRF, error shapes, /api, /api/status, /api/me."""

import datetime
import json

import pytest
from django.test import Client
from django.utils import timezone

from accounts.models import ApiToken
from tests.factories import make_token

pytestmark = pytest.mark.django_db

FORBIDDEN = {"message": "Forbidden", "reason": None}


def test_api_root_answers_version_without_auth(client):
    response = client.get("/api")
    assert response.status_code == 200
    assert response.json() == {"version": "2.21.1"}
    assert response["Content-Type"] == "application/json"


def test_api_trailing_slash_redirects(client):
    response = client.get("/api/?x=1")
    assert response.status_code == 302
    assert response["Location"] == "/api?x=1"


@pytest.mark.parametrize("path", ["/api/me", "/api/status", "/api/config/notebook"])
def test_unauthenticated_api_is_403_json(client, path):
    response = client.get(path)
    assert response.status_code == 403
    assert response.json() == FORBIDDEN
    assert "frame-ancestors 'self'" in response["Content-Security-Policy"]


def test_unknown_api_path_is_json_404(client):
    response = client.get("/api/no/such/thing")
    assert response.status_code == 404
    assert response.json() == {"message": "Not Found", "reason": None}


def test_unknown_page_is_html_404(client):
    response = client.get("/no-such-page")
    assert response.status_code == 404
    assert response["Content-Type"].startswith("text/html")


@pytest.mark.parametrize("scheme", ["token", "Token", "bearer", "Bearer", "TOKEN"])
def test_authorization_header_schemes(client, user, token, scheme):
    response = client.get("/api/me", headers={"Authorization": f"{scheme} {token}"})
    assert response.status_code == 200
    assert response.json()["identity"]["username"] == "alice"


def test_token_query_parameter(client, user, token):
    response = client.get(f"/api/me?token={token}")
    assert response.status_code == 200
    assert response.json()["identity"]["username"] == "alice"


def test_token_api_call_does_not_start_a_browser_session(client, token):
    response = client.get(f"/api/me?token={token}")
    assert response.status_code == 200
    assert "jserver-session" not in response.cookies
    assert client.get("/api/me").status_code == 403


def test_session_cookie_authenticates(client_for, user):
    assert client_for(user).get("/api/me").json()["identity"]["username"] == "alice"


@pytest.mark.parametrize(
    "header",
    ["token wrong", "token ", "Basic abc", "token " + "x" * 300, "bearer"],
)
def test_wrong_credentials_are_403(client, user, token, header):
    response = client.get("/api/me", headers={"Authorization": header})
    assert response.status_code == 403
    assert response.json() == FORBIDDEN


def test_wrong_token_wins_over_a_valid_session(client_for, user):
    client = client_for(user)
    response = client.get("/api/me", headers={"Authorization": "token nope"})
    assert response.status_code == 403


def test_expired_token_is_403(client, user):
    raw = make_token(user)
    ApiToken.objects.update(expires_at=timezone.now() - datetime.timedelta(seconds=1))
    assert (
        client.get("/api/me", headers={"Authorization": f"token {raw}"}).status_code
        == 403
    )


def test_revoked_token_is_403(client, user, token):
    assert (
        client.get("/api/me", headers={"Authorization": f"token {token}"}).status_code
        == 200
    )
    ApiToken.objects.filter(user=user).delete()
    assert (
        client.get("/api/me", headers={"Authorization": f"token {token}"}).status_code
        == 403
    )


def test_deactivated_users_token_is_403(client, user, token):
    user.is_active = False
    user.save()
    assert (
        client.get("/api/me", headers={"Authorization": f"token {token}"}).status_code
        == 403
    )


def test_identity_model(token_client):
    body = token_client.get("/api/me").json()
    assert body == {
        "identity": {
            "username": "alice",
            "name": "Alice Liddell",
            "display_name": "Alice",
            "initials": "AL",
            "avatar_url": None,
            "color": None,
        },
        "permissions": {"updatable_fields": []},
    }


def test_permissions_are_answered(token_client):
    asked = json.dumps({"contents": ["read", "write"], "kernels": []})
    body = token_client.get("/api/me", {"permissions": asked}).json()
    assert body["permissions"] == {
        "contents": ["read", "write"],
        "kernels": [],
        "updatable_fields": [],
    }


@pytest.mark.parametrize("bad", ["{", "[1]", '{"contents": "read"}', '{"x": [1]}', "3"])
def test_bad_permissions_are_400(token_client, bad):
    response = token_client.get("/api/me", {"permissions": bad})
    assert response.status_code == 400
    assert response.json() == {
        "message": 'permissions should be a JSON dict of {"resource": ["action",]}, '
        f"got {bad!r}",
        "reason": None,
    }


def test_status_model(token_client):
    body = token_client.get("/api/status").json()
    assert set(body) == {"started", "last_activity", "kernels", "connections"}
    assert body["kernels"] == 0 and body["connections"] == 0
    assert body["started"].endswith("Z")
    datetime.datetime.fromisoformat(body["started"].removesuffix("Z"))


def test_status_reports_the_users_last_activity(token_client):
    before = token_client.get("/api/status").json()["last_activity"]
    token_client.get("/api/me")
    after = token_client.get("/api/status").json()["last_activity"]
    assert after > before


def test_method_not_allowed_is_json_405(token_client):
    response = token_client.delete("/api/me")
    assert response.status_code == 405
    assert response.json() == {"message": "Method Not Allowed", "reason": None}


def test_options_needs_no_auth(client):
    assert client.options("/api/me").status_code == 204


# ---- /api/config/<section>: per user, and the unsafe methods for XSRF -------


def test_config_get_unknown_section_is_empty(token_client):
    response = token_client.get("/api/config/notebook")
    assert response.status_code == 200
    assert response.json() == {}


def test_config_put_replaces_and_patch_merges(token_client):
    put = token_client.put(
        "/api/config/notebook",
        {"a": {"b": 1, "c": 2}, "d": 3},
        content_type="application/json",
    )
    assert put.status_code == 204
    patch = token_client.patch(
        "/api/config/notebook",
        {"a": {"b": None, "e": 5}, "d": None, "f": [1]},
        content_type="application/json",
    )
    assert patch.status_code == 200
    assert patch.json() == {"a": {"c": 2, "e": 5}, "f": [1]}
    assert token_client.get("/api/config/notebook").json() == patch.json()


def test_config_is_per_user(token_client, other_user):
    token_client.put("/api/config/common", {"x": 1}, content_type="application/json")
    other = Client(headers={"Authorization": f"token {make_token(other_user)}"})
    assert other.get("/api/config/common").json() == {}


def test_config_invalid_json_is_400(token_client):
    response = token_client.patch(
        "/api/config/notebook", "{nope", content_type="application/json"
    )
    assert response.status_code == 400
    assert response.json() == {
        "message": "Invalid JSON in body of request",
        "reason": None,
    }


@pytest.mark.parametrize("body", ["[1, 2]", '"text"', "null"])
def test_config_non_object_is_400(token_client, body):
    response = token_client.put(
        "/api/config/notebook", body, content_type="application/json"
    )
    assert response.status_code == 400
    assert token_client.get("/api/config/notebook").json() == {}


def test_config_bad_section_name_is_404(token_client):
    assert token_client.get("/api/config/no-dashes").status_code == 404


def test_deeply_nested_json_is_400_not_500(token_client):
    body = "[" * 100_000 + "]" * 100_000
    response = token_client.put(
        "/api/config/notebook", body, content_type="application/json"
    )
    assert response.status_code == 400


# ---- XSRF: cookie-authenticated unsafe requests -----------------------------


@pytest.fixture
def browser(user):
    """A cookie-authenticated client that enforces XSRF like a real browser."""
    client = Client(enforce_csrf_checks=True)
    client.force_login(user)
    client.get("/tokens")  # any page sets the _xsrf cookie
    assert "_xsrf" in client.cookies
    return client


def _patch(client, **headers):
    return client.patch(
        "/api/config/notebook",
        {"k": 1},
        content_type="application/json",
        headers=headers,
    )


def test_cookie_request_without_xsrf_is_403(browser):
    response = _patch(browser)
    assert response.status_code == 403
    assert response.json() == {
        "message": "'_xsrf' argument missing from POST",
        "reason": None,
    }
    assert browser.get("/api/config/notebook").json() == {}


def test_cookie_request_with_wrong_xsrf_is_403(browser):
    response = _patch(browser, **{"X-XSRFToken": "a" * 32})
    assert response.status_code == 403
    assert response.json()["message"] == "XSRF cookie does not match POST argument"


def test_cookie_request_with_xsrf_header_succeeds(browser):
    xsrf = browser.cookies["_xsrf"].value
    assert _patch(browser, **{"X-XSRFToken": xsrf}).status_code == 200
    assert browser.get("/api/config/notebook").json() == {"k": 1}


def test_x_csrftoken_header_is_accepted_too(browser):
    xsrf = browser.cookies["_xsrf"].value
    assert _patch(browser, **{"X-CSRFToken": xsrf}).status_code == 200


def test_cookie_request_from_foreign_origin_is_403(browser):
    xsrf = browser.cookies["_xsrf"].value
    response = _patch(
        browser, **{"X-XSRFToken": xsrf, "Origin": "https://evil.example"}
    )
    assert response.status_code == 403


def test_token_request_needs_no_xsrf(user, token):
    client = Client(enforce_csrf_checks=True)
    response = _patch(client, Authorization=f"token {token}")
    assert response.status_code == 200


def test_pages_set_the_xsrf_cookie_readable_by_javascript(client):
    response = client.get("/login")
    cookie = response.cookies["_xsrf"]
    assert cookie["httponly"] == ""
    assert cookie["samesite"] == "Lax"
    assert cookie["path"] == "/"


def test_full_token_never_reaches_the_log(client, user, caplog):
    raw = make_token(user)
    wrong = raw[:-1] + ("0" if raw[-1] != "0" else "1")
    client.get(f"/api/me?token={wrong}")
    client.get("/api/me", headers={"Authorization": f"token {wrong}"})
    client.get(f"/api/me?token={raw}")
    assert caplog.records, "the rejected token should have been logged"
    text = "\n".join(record.getMessage() for record in caplog.records)
    assert wrong not in text and raw not in text
    assert wrong[:4] in text
