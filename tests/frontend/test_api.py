"""The lab APIs the front ends call on start: translations, licences, nbconvert, LSP."""

import csv
import io
import json

import pytest
from django.test import Client, override_settings

from frontend import translations

pytestmark = pytest.mark.django_db


@pytest.fixture
def api(client_for, user):
    return client_for(user)


@pytest.mark.parametrize(
    "path",
    [
        "/lab/api/translations",
        "/lab/api/translations/default",
        "/lab/api/licenses",
        "/api/nbconvert",
        "/lsp/status",
        "/lab/api/nope",
    ],
)
def test_apis_need_authentication(client, path):
    response = client.get(path)
    assert response.status_code == 403
    assert response.json() == {"message": "Forbidden", "reason": None}


def test_token_authenticates(token):
    client = Client(headers={"Authorization": f"token {token}"})
    assert client.get("/lab/api/translations").status_code == 200


def test_unknown_lab_api_is_a_json_404(api):
    for method in ("get", "put", "delete"):
        response = getattr(api, method)("/lab/api/build")
        assert response.status_code == 404, method
        assert response.json() == {"message": "Not Found", "reason": None}


# ---- translations -------------------------------------------------------------------


def test_english_is_always_offered(api):
    assert api.get("/lab/api/translations").json() == {
        "data": {"en": {"displayName": "English", "nativeName": "English"}},
        "message": "",
    }
    assert api.get("/lab/api/translations/").status_code == 200


@pytest.mark.parametrize("locale", ["default", "en", "en_US", "en-GB"])
def test_english_needs_no_language_pack(api, locale):
    response = api.get(f"/lab/api/translations/{locale}")
    assert response.json() == {"data": {}, "message": ""}


def test_a_missing_language_pack_degrades_to_english(api):
    assert api.get("/lab/api/translations/fr_FR").json() == {
        "data": {},
        "message": "Language pack 'fr_FR' not installed!",
    }


@pytest.mark.parametrize("locale", ["x", "fr_FR;rm", "a" * 40, "..", "fr FR"])
def test_an_invalid_locale_is_reported(api, locale):
    response = api.get(f"/lab/api/translations/{locale}")
    assert response.status_code == 200
    assert response.json() == {
        "data": {},
        "message": f"Language pack '{locale}' not valid!",
    }


def test_a_locale_with_a_slash_is_not_found(api):
    assert api.get("/lab/api/translations/..%2Fetc").status_code == 404


@pytest.fixture
def french(tmp_path, monkeypatch):
    """An installed French language pack (as a pack package lays its files out)."""
    messages = tmp_path / "locale" / "fr_FR" / "LC_MESSAGES"
    messages.mkdir(parents=True)
    (messages / "jupyterlab.json").write_text(
        json.dumps({"": {"language": "fr_FR"}, "File": ["Fichier"]})
    )
    (messages / "broken.json").write_text("{")
    monkeypatch.setattr(translations, "language_packs", lambda: {"fr_FR": tmp_path})


def test_installed_language_packs_are_listed_and_served(api, french):
    listing = api.get("/lab/api/translations").json()
    assert listing["data"]["fr_FR"] == {
        "displayName": "French (France)",
        "nativeName": "Français (France)",
    }
    pack = api.get("/lab/api/translations/fr_FR").json()
    assert pack["data"] == {
        "jupyterlab": {"": {"language": "fr_FR"}, "File": ["Fichier"]}
    }
    assert "broken.json" in pack["message"]


def test_languages_are_named_in_the_users_language(api, french):
    api.put(
        "/lab/api/settings/@jupyterlab/translation-extension:plugin",
        {"raw": '{"locale": "fr_FR"}'},
        content_type="application/json",
    )
    listing = api.get("/lab/api/translations").json()["data"]
    assert listing["en"]["displayName"] == "Anglais"
    assert listing["fr_FR"]["displayName"] == "Français (France)"


# ---- licences -----------------------------------------------------------------------


def test_licences_report_every_bundle(api):
    response = api.get("/lab/api/licenses/")
    assert response.status_code == 200
    bundles = response.json()["bundles"]
    assert {
        "@jupyterlab/application-top",
        "notebook",
        "jupyterlab_pygments",
        "@jupyter-notebook/lab-extension",
    } <= set(bundles)
    package = bundles["@jupyterlab/application-top"]["packages"][0]
    assert {"name", "versionInfo", "licenseId", "extractedText"} <= set(package)


def test_licences_as_csv_and_markdown_downloads(api):
    response = api.get("/lab/api/licenses?format=csv&download=1")
    assert response["Content-Type"] == "text/csv; charset=utf-8"
    assert response["Content-Disposition"] == (
        'attachment; filename="jupyterlab-licenses.csv"'
    )
    rows = list(csv.DictReader(io.StringIO(response.content.decode())))
    assert rows[0].keys() == {
        "bundle",
        "name",
        "versionInfo",
        "licenseId",
        "extractedText",
    }
    short = api.get("/lab/api/licenses?format=markdown&full_text=false")
    full = api.get("/lab/api/licenses?format=markdown")
    assert short["Content-Type"] == "text/markdown; charset=utf-8"
    assert "Content-Disposition" not in short
    assert short.content.decode().startswith("# ")
    assert len(full.content) > len(short.content)


def test_licence_bundles_are_selected_without_regular_expressions(api):
    def names(selection):
        response = api.get("/lab/api/licenses", {"bundles": selection})
        return set(response.json()["bundles"])

    assert names("jupyterlab_pygments") == {"jupyterlab_pygments"}
    assert names("@jupyter-notebook/.*|notebook") == {
        "@jupyter-notebook/lab-extension",
        "notebook",
    }
    assert names("(a+)+$") == set()


@pytest.mark.parametrize(
    "query", ["format=pdf", "full_text=maybe", "download=yes please"]
)
def test_bad_licence_report_options_are_400(api, query):
    response = api.get(f"/lab/api/licenses?{query}")
    assert response.status_code == 400
    assert response.json()["message"]


# ---- nbconvert, LSP -----------------------------------------------------------------


def test_export_formats(api):
    assert api.get("/api/nbconvert").json() == {
        "html": {"output_mimetype": "text/html"},
        "markdown": {"output_mimetype": "text/markdown"},
        "notebook": {"output_mimetype": "application/json"},
        "python": {"output_mimetype": "text/x-python"},
        "script": {"output_mimetype": ""},
    }


@override_settings(NBCONVERT_FORMATS=["latex", "os.path", "nope", "html"])
def test_only_configured_and_installed_formats_are_offered(api):
    assert api.get("/api/nbconvert").json() == {
        "html": {"output_mimetype": "text/html"},
        "latex": {"output_mimetype": "text/latex"},
    }


def test_lsp_status_reports_no_language_servers(api):
    response = api.get("/lsp/status")
    assert response.json() == {"version": 2, "sessions": {}, "specs": {}}
