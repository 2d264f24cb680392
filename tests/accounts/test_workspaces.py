"""Per-user JupyterLab workspaces: /lab/api/workspaces, as in jupyterlab_server."""

import json

import pytest

from accounts.models import Workspace

pytestmark = pytest.mark.django_db

URL = "/lab/api/workspaces"


@pytest.fixture
def api(client_for, user):
    return client_for(user)


def put(client, name, document):
    body = document if isinstance(document, str | bytes) else json.dumps(document)
    return client.put(f"{URL}/{name}", body, content_type="application/json")


def layout(name, **data):
    return {"data": data, "metadata": {"id": f"/{name}"}}


def test_an_unsaved_workspace_is_empty(api):
    assert api.get(f"{URL}/default").json() == {
        "data": {},
        "metadata": {"id": "/default"},
    }
    assert api.get(URL).json() == {"workspaces": {"ids": [], "values": []}}


def test_save_load_list_delete(api):
    document = layout("default", **{"layout-restorer:data": {"main": {"current": "x"}}})
    response = put(api, "default", document)
    assert response.status_code == 204 and response.content == b""
    loaded = api.get(f"{URL}/default").json()
    assert loaded["data"] == document["data"]
    metadata = loaded["metadata"]
    assert metadata["id"] == "/default"
    assert metadata["created"].endswith("+00:00")
    assert metadata["last_modified"] >= metadata["created"]
    put(api, "w2", {"data": {}, "metadata": {"id": "w2"}})
    listing = api.get(f"{URL}/").json()["workspaces"]
    assert listing["ids"] == ["/default", "w2"]
    assert listing["values"][0] == loaded
    assert api.delete(f"{URL}/default").status_code == 204
    assert api.get(URL).json()["workspaces"]["ids"] == ["w2"]
    assert api.get(f"{URL}/default").json()["data"] == {}


def test_saving_again_replaces_the_layout(api):
    put(api, "default", layout("default", a=1))
    created = api.get(f"{URL}/default").json()["metadata"]["created"]
    put(api, "default", layout("default", b=2))
    loaded = api.get(f"{URL}/default").json()
    assert loaded["data"] == {"b": 2}
    assert loaded["metadata"]["created"] == created
    assert Workspace.objects.count() == 1


def test_names_may_hold_slashes_and_escapes(api):
    assert (
        put(api, "a/b", {"data": {}, "metadata": {"id": "/a%2Fb"}}).status_code == 204
    )
    assert api.get(f"{URL}/a/b").json()["metadata"]["id"] == "/a%2Fb"


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (layout("other"), "Workspace metadata ID mismatch: expected 'default' got"),
        ('{"data":', "Expecting value"),
        ({"data": {}}, "A workspace must be"),
        ({"metadata": {"id": "/default"}}, "A workspace must be"),
        ({"data": [], "metadata": {"id": "/default"}}, "A workspace must be"),
        ({"data": {}, "metadata": {"id": 3}}, "A workspace must be"),
        ([], "A workspace must be"),
        (layout("default", x="a\u0000b"), "A workspace cannot contain NUL"),
        ("[" * 100000 + "]" * 100000, ""),
    ],
)
def test_bad_workspaces_are_refused_and_nothing_is_stored(api, body, message):
    response = put(api, "default", body)
    assert response.status_code == 400
    assert response.json()["message"].startswith(message)
    assert not Workspace.objects.exists()


def test_too_large_workspaces_are_refused(api):
    response = put(api, "default", layout("default", x="y" * (8 * 1024 * 1024)))
    assert response.status_code == 413
    assert not Workspace.objects.exists()


def test_deleting_a_missing_workspace_is_not_found(api):
    response = api.delete(f"{URL}/nope")
    assert response.status_code == 404
    assert response.json()["message"] == "Workspace 'nope' not found"


def test_writing_needs_a_name(api):
    assert api.put(URL, "{}", content_type="application/json").status_code == 400
    assert api.delete(URL).status_code == 400


def test_workspaces_are_per_user(api, client_for, other_user):
    put(api, "default", layout("default", mine=True))
    other = client_for(other_user)
    assert other.get(f"{URL}/default").json()["data"] == {}
    assert other.get(URL).json()["workspaces"]["ids"] == []
    assert other.delete(f"{URL}/default").status_code == 404
    assert api.get(f"{URL}/default").json()["data"] == {"mine": True}


def test_anonymous_is_refused(client):
    assert client.get(URL).status_code == 403
    assert put(client, "default", layout("default")).status_code == 403
