"""Settings helpers, hosted-mode deploy checks, and the serve command's guard."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.core.management import CommandError, call_command
from django.test import override_settings

from jserver.management.commands.serve import is_loopback
from jserver.settings import database_from_url, normalise_base_url

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("/", "/"),
        ("", "/"),
        ("jupyter", "/jupyter/"),
        ("/a/b/", "/a/b/"),
        ("//a//b", "/a/b/"),
    ],
)
def test_normalise_base_url(value, expected):
    assert normalise_base_url(value) == expected


@pytest.mark.parametrize("value", ["/../x/", "/a b/", "/a?b/", "/%2e%2e/"])
def test_bad_base_url_is_refused(value):
    with pytest.raises(ImproperlyConfigured):
        normalise_base_url(value)


def test_postgresql_url():
    db = database_from_url(
        "postgresql://jserver:p%40ss@db.internal:5433/jserver?sslmode=require&pool_max_size=4"
    )
    assert db["ENGINE"] == "django.db.backends.postgresql"
    assert (db["USER"], db["PASSWORD"], db["HOST"], db["PORT"], db["NAME"]) == (
        "jserver",
        "p@ss",
        "db.internal",
        "5433",
        "jserver",
    )
    assert db["OPTIONS"]["sslmode"] == "require"
    assert db["OPTIONS"]["pool"]["max_size"] == 4
    assert db["TEST"]["NAME"] == "test_jserver"


def test_sqlite_url():
    db = database_from_url("sqlite:////srv/jserver/db.sqlite3")
    assert db["ENGINE"] == "django.db.backends.sqlite3"
    assert db["NAME"] == "/srv/jserver/db.sqlite3"


@pytest.mark.parametrize("url", ["mysql://x/y", "postgresql://host/"])
def test_bad_database_url_is_refused(url):
    with pytest.raises(ImproperlyConfigured):
        database_from_url(url)


def _manage(*args: str, **env: str) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("JSERVER_")}
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=REPO,
        env={**clean, "DJANGO_SETTINGS_MODULE": "jserver.settings", **env},
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_check_deploy_passes_in_hosted_mode(tmp_path):
    result = _manage(
        "check",
        "--deploy",
        "--fail-level",
        "WARNING",
        JSERVER_DATA_DIR=str(tmp_path),
        JSERVER_DATABASE_URL="postgresql://jserver@db.internal/jserver",
        JSERVER_REDIS_URL="redis://redis.internal:6379/0",
        JSERVER_SECRET_KEY="v3ry-l0ng-and-r4ndom-" + "Zq8#x!" * 10,
        JSERVER_ALLOWED_HOSTS="jupyter.example.org",
        JSERVER_HTTPS="1",
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout


def test_hosted_mode_without_secret_key_is_refused(tmp_path):
    result = _manage(
        "check",
        JSERVER_DATA_DIR=str(tmp_path),
        JSERVER_DATABASE_URL="postgresql://jserver@db.internal/jserver",
    )
    assert result.returncode != 0
    assert "JSERVER_SECRET_KEY must be set" in result.stderr


def test_embedded_mode_generates_and_keeps_a_secret_key(tmp_path):
    assert _manage("check", JSERVER_DATA_DIR=str(tmp_path)).returncode == 0
    key_file = tmp_path / "secret_key"
    key = key_file.read_text()
    assert len(key.strip()) >= 50
    assert key_file.stat().st_mode & 0o777 == 0o600
    assert _manage("check", JSERVER_DATA_DIR=str(tmp_path)).returncode == 0
    assert key_file.read_text() == key


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("127.0.0.1", True),
        ("::1", True),
        ("[::1]", True),
        ("localhost", True),
        ("0.0.0.0", False),
        ("10.1.2.3", False),
        ("example.org", False),
    ],
)
def test_is_loopback(host, loopback):
    assert is_loopback(host) is loopback


@override_settings(SECRET_KEY_FROM_ENV=False)
def test_serve_refuses_a_public_bind_with_a_generated_key():
    with pytest.raises(CommandError, match="Refusing to serve on 0.0.0.0"):
        call_command("serve", "--bind", "0.0.0.0", "--port", "1")
