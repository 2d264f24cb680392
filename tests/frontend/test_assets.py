"""Prebuilt labextensions and installation-wide defaults, from system directories."""

import json
from pathlib import Path

import pytest
from django.conf import settings
from django.test import Client, override_settings

from frontend import assets, pageconfig

pytestmark = pytest.mark.django_db

REMOTE_ENTRY = "static/remoteEntry.0123456789abcdef0123.js"


def write_extension(root: Path, name: str, **jupyterlab) -> Path:
    """Write a prebuilt labextension ``name`` under ``root``; return its directory."""
    path = root.joinpath(*name.split("/"))
    (path / "static").mkdir(parents=True)
    (path / REMOTE_ENTRY).write_text("/* remote entry */")
    build = {"load": REMOTE_ENTRY, "extension": "./extension", "style": "./style"}
    package = {
        "name": name,
        "version": "1.2.3",
        "jupyterlab": {"_build": build, **jupyterlab},
    }
    (path / "package.json").write_text(json.dumps(package))
    return path


@pytest.fixture
def extensions(tmp_path):
    first, second = tmp_path / "first", tmp_path / "second"
    acme = write_extension(
        first, "@acme/ext", disabledExtensions=["@jupyterlab/help-extension:about"]
    )
    schemas = acme / "schemas" / "@acme" / "ext"
    schemas.mkdir(parents=True)
    (schemas / "plugin.json").write_text(
        json.dumps(
            {
                "title": "Acme",
                "type": "object",
                "properties": {"colour": {"type": "string", "default": "red"}},
            }
        )
    )
    (schemas / "package.json.orig").write_text(json.dumps({"version": "1.2.3"}))
    themes = acme / "themes" / "@acme" / "ext"
    themes.mkdir(parents=True)
    (themes / "index.css").write_text(":root { --acme: 1; }")
    (acme / "static" / "third-party-licenses.json").write_text(
        json.dumps({"packages": [{"name": "left-pad", "licenseId": "MIT"}]})
    )
    write_extension(second, "@acme/ext")  # shadowed by the first directory's
    write_extension(second, "plain")
    (second / "broken").mkdir()
    (second / "broken" / "package.json").write_text("{not json")
    (second / "source-only").mkdir()
    (second / "source-only" / "package.json").write_text(
        json.dumps({"name": "source-only", "jupyterlab": {"extension": True}})
    )
    with override_settings(LABEXTENSIONS_PATH=[first, tmp_path / "missing", second]):
        yield first, second


def test_first_directory_wins_and_bad_extensions_are_skipped(extensions):
    first, _ = extensions
    found = assets.labextensions()
    assert sorted(found) == ["@acme/ext", "plain"]
    assert found["@acme/ext"].path == first / "@acme" / "ext"


def test_extensions_reach_the_page_config(extensions, user):
    config = pageconfig.lab_page_config(user)
    assert config["federated_extensions"] == [
        {
            "name": "@acme/ext",
            "load": REMOTE_ENTRY,
            "extension": "./extension",
            "style": "./style",
            "entrypoints": None,
        },
        {
            "name": "plain",
            "load": REMOTE_ENTRY,
            "extension": "./extension",
            "style": "./style",
            "entrypoints": None,
        },
    ]
    assert "@jupyterlab/help-extension:about" in config["disabledExtensions"]


def test_extension_files_schemas_themes_and_licences_are_served(extensions, user):
    client = Client()
    client.force_login(user)
    response = client.get(f"/lab/extensions/@acme/ext/{REMOTE_ENTRY}")
    assert response.status_code == 200
    assert b"".join(response.streaming_content) == b"/* remote entry */"
    response = client.get("/lab/api/themes/@acme/ext/index.css")
    assert response.status_code == 200
    assert b"".join(response.streaming_content) == b":root { --acme: 1; }"
    setting = client.get("/lab/api/settings/@acme/ext:plugin").json()
    assert setting["version"] == "1.2.3"
    assert setting["schema"]["properties"]["colour"]["default"] == "red"
    bundles = client.get("/lab/api/licenses/").json()["bundles"]
    assert bundles["@acme/ext"] == {
        "packages": [{"name": "left-pad", "licenseId": "MIT"}]
    }


def test_default_search_path_is_the_environment_and_the_system_only():
    home = Path.home()
    for path in settings.LABEXTENSIONS_PATH:
        assert not path.is_relative_to(home) or home == Path("/")
        assert "JUPYTER" not in str(path)
    assert settings.LABEXTENSIONS_PATH[1:] == [
        Path("/usr/local/share/jupyter/labextensions"),
        Path("/usr/share/jupyter/labextensions"),
    ]


@pytest.fixture
def app_dir(tmp_path):
    """A JupyterLab app directory whose installation overrides a default."""
    real = settings.LAB_APP_DIR
    app = tmp_path / "lab"
    app.mkdir()
    for name in ("static", "schemas", "themes"):
        (app / name).symlink_to(real / name)
    (app / "settings").mkdir()
    (app / "settings" / "overrides.json").write_text(
        json.dumps(
            {
                "@jupyterlab/apputils-extension:themes": {"theme": "JupyterLab Dark"},
                "@jupyterlab/notebook-extension:tracker": {"nope": 1},
            }
        )
    )
    with override_settings(LAB_APP_DIR=app):
        yield app


def test_installation_overrides_change_defaults(app_dir, client_for, user):
    client = client_for(user)
    schema = client.get("/lab/api/settings/@jupyterlab/apputils-extension:themes")
    assert schema.json()["schema"]["properties"]["theme"]["default"] == (
        "JupyterLab Dark"
    )
    tracker = client.get("/lab/api/settings/@jupyterlab/notebook-extension:tracker")
    assert tracker.json()["schema"]["properties"]["nope"] == {"default": 1}


def test_broken_overrides_are_ignored(app_dir, client_for, user):
    (app_dir / "settings" / "overrides.json").write_text("{broken")
    response = client_for(user).get(
        "/lab/api/settings/@jupyterlab/apputils-extension:themes"
    )
    assert response.json()["schema"]["properties"]["theme"]["default"] == (
        "JupyterLab Light"
    )


def test_system_check_reports_a_missing_front_end(tmp_path):
    from frontend.checks import front_ends_installed

    assert front_ends_installed(None) == []
    with override_settings(LAB_APP_DIR=tmp_path / "nowhere"):
        errors = front_ends_installed(None)
    assert [error.id for error in errors] == ["frontend.E001"]
    assert "lab front end cannot be served" in errors[0].msg
