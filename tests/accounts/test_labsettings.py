"""Per-user JupyterLab settings: /lab/api/settings, as jupyterlab_server serves them."""

import datetime
import json
import re

import pytest
from django.test import Client

from accounts.models import LabSetting
from frontend import schemas

pytestmark = pytest.mark.django_db

THEMES = "@jupyterlab/apputils-extension:themes"
URL = f"/lab/api/settings/{THEMES}"
DARK = '{\n  // chosen in the Settings menu\n  "theme": "JupyterLab Dark",\n}'


@pytest.fixture
def api(client_for, user):
    return client_for(user)


def put(client, url, body, **kwargs):
    data = body if isinstance(body, str | bytes) else json.dumps(body)
    return client.put(url, data, content_type="application/json", **kwargs)


def parse_time(value):
    return datetime.datetime.fromisoformat(value)


def test_listing_has_every_plugin_with_defaults(api):
    listing = api.get("/lab/api/settings").json()["settings"]
    ids = [item["id"] for item in listing]
    assert ids == sorted(ids, reverse=True)  # jupyterlab_server's order
    assert len(ids) == len(schemas.all_schemas()) > 80
    assert {"@jupyterlab/hub-extension:menu", THEMES} <= set(ids)
    assert any(i.startswith("@jupyter-notebook/") for i in ids)  # Notebook 7's
    themes = next(item for item in listing if item["id"] == THEMES)
    assert themes.keys() == {
        "id",
        "schema",
        "version",
        "raw",
        "settings",
        "warning",
        "last_modified",
        "created",
    }
    assert themes["raw"] == "{}" and themes["settings"] == {}
    assert themes["warning"] is None
    assert themes["last_modified"] is None and themes["created"] is None
    assert re.match(r"^4\.\d+\.\d+$", themes["version"])
    assert themes["schema"]["properties"]["theme"]["default"] == "JupyterLab Light"
    assert api.get("/lab/api/settings/").status_code == 200


def test_ids_only(api):
    listing = api.get("/lab/api/settings?ids_only=true").json()["settings"]
    assert listing[0].keys() == {"id"}
    assert len(listing) == len(schemas.all_schemas())


def test_one_plugin(api):
    body = api.get(URL).json()
    assert body.keys() == {
        "id",
        "schema",
        "version",
        "raw",
        "settings",
        "last_modified",
        "created",
    }
    assert body["id"] == THEMES and body["raw"] == "{}"


def test_save_keeps_the_json5_text_as_written(api, user):
    before = datetime.datetime.now(datetime.UTC)
    response = put(api, URL, {"raw": DARK})
    assert response.status_code == 204 and response.content == b""
    body = api.get(URL).json()
    assert body["raw"] == DARK
    assert body["settings"] == {"theme": "JupyterLab Dark"}
    assert parse_time(body["created"]) >= before
    assert body["last_modified"].endswith("+00:00")
    listed = next(
        item
        for item in api.get("/lab/api/settings").json()["settings"]
        if item["id"] == THEMES
    )
    assert listed["raw"] == DARK and listed["warning"] is None


def test_saving_again_updates_last_modified_only(api):
    put(api, URL, {"raw": DARK})
    first = api.get(URL).json()
    put(api, URL, {"raw": "{}"})
    second = api.get(URL).json()
    assert second["raw"] == "{}" and second["settings"] == {}
    assert second["created"] == first["created"]
    assert parse_time(second["last_modified"]) >= parse_time(first["last_modified"])


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"raw": '{"theme": 3}'}, "Failed validating input: 3 is not of type"),
        ({"raw": '{"nope": true}'}, "Failed validating input: Additional properties"),
        ({"raw": "{theme: 'x'"}, "Failed parsing settings"),
        ({"raw": "[1, 2]"}, "Settings must be a JSON5 object"),
        ({"raw": '{"theme": NaN}'}, "Failed parsing settings"),
        ({"raw": '{"theme": "a\\u0000b"}'}, "Settings cannot contain NUL"),
        ({"raw": 3}, "Invalid format for JSON payload"),
        ({"rw": "{}"}, "Invalid format for JSON payload"),
        ([], "Invalid format for JSON payload"),
        ("{not json", "Invalid JSON in body of request"),
        ({"raw": "[" * 5000 + "]" * 5000}, "Failed parsing settings"),
    ],
)
def test_bad_settings_are_refused_and_nothing_is_stored(api, body, message):
    response = put(api, URL, body)
    assert response.status_code == 400
    assert response.json()["message"].startswith(message), response.json()
    assert not LabSetting.objects.exists()


def test_too_large_settings_are_refused(api):
    raw = '{"theme": "' + "x" * (1024 * 1024) + '"}'
    response = put(api, URL, {"raw": raw})
    assert response.status_code == 413
    assert not LabSetting.objects.exists()


@pytest.mark.parametrize(
    ("plugin", "message"),
    [
        ("@jupyterlab/nope-extension:themes", "Schema not found"),
        ("nope", "Settings not found (nope)"),
        ("../../../../etc/passwd:x", "Settings not found"),
    ],
)
def test_unknown_plugins_are_not_found(api, plugin, message):
    for response in (
        api.get(f"/lab/api/settings/{plugin}"),
        put(api, f"/lab/api/settings/{plugin}", {"raw": "{}"}),
    ):
        assert response.status_code == 404
        assert response.json()["message"].startswith(message)


def test_settings_are_per_user(api, client_for, other_user):
    put(api, URL, {"raw": DARK})
    other = client_for(other_user)
    assert other.get(URL).json()["raw"] == "{}"
    put(other, URL, {"raw": '{"theme": "JupyterLab Light"}'})
    assert api.get(URL).json()["raw"] == DARK


def test_values_that_no_longer_validate_read_as_defaults_with_a_warning(api, user):
    LabSetting.objects.create(
        user=user, plugin=THEMES, raw='{"theme": 1}', values={"theme": 1}
    )
    listed = next(
        item
        for item in api.get("/lab/api/settings").json()["settings"]
        if item["id"] == THEMES
    )
    assert listed["raw"] == "{}" and listed["settings"] == {}
    assert listed["warning"].startswith(f"Failed validating settings ({THEMES})")
    assert api.get(URL).json()["settings"] == {}


def test_cookie_authenticated_writes_need_the_xsrf_token(user):
    client = Client(enforce_csrf_checks=True)
    client.force_login(user)
    assert put(client, URL, {"raw": DARK}).status_code == 403
    client.get("/lab")  # the page sets the _xsrf cookie
    xsrf = client.cookies["_xsrf"].value
    assert (
        put(client, URL, {"raw": DARK}, headers={"X-XSRFToken": xsrf}).status_code
        == 204
    )


def test_token_authenticated_writes(token_client):
    assert put(token_client, URL, {"raw": DARK}).status_code == 204


def test_anonymous_is_refused(client):
    assert client.get("/lab/api/settings").status_code == 403
    assert put(client, URL, {"raw": DARK}).status_code == 403


def test_other_methods_are_405(api):
    assert api.post(URL).status_code == 405
    assert api.delete(URL).status_code == 405
