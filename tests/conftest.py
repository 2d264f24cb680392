"""Fixtures shared by every suite.

- ``user``, ``other_user``, ``staff_user``: active accounts (password ``PASSWORD``).
- ``token``: a raw API token of ``user``.
- ``client_for``: ``client_for(user)`` is a Django test client logged in as that user.
- ``token_client``: a Django test client sending ``Authorization: token <token>``.
- ``fresh_data``: a new data directory for the test (users' files and trash)
  and a cleared cache (quotas, usage); the run's gzipped front-end files stay
  where they are (``FRONTEND_CACHE_DIR``): they take seconds to build.
- ``daphne_server``: a real daphne (``manage.py serve``) on the test database,
  session-scoped; tests using it need ``transactional_db``. Its log is at
  ``daphne_server.log_path``.
"""

import os
import re
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import pytest
from django.conf import settings
from django.core.cache import cache
from django.test import Client

from tests.factories import make_token, make_user

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture
def fresh_data(settings, tmp_path):
    settings.DATA_DIR = tmp_path / "data"
    settings.DATA_DIR.mkdir()
    cache.clear()  # quotas and usage measured in another data directory
    yield settings.DATA_DIR
    cache.clear()


@pytest.fixture
def user(db):
    return make_user("alice", first_name="Alice", last_name="Liddell")


@pytest.fixture
def other_user(db):
    return make_user("bob")


@pytest.fixture
def staff_user(db):
    return make_user("staff", staff=True)


@pytest.fixture
def token(user):
    return make_token(user)


@pytest.fixture
def client_for(db):
    def make(user, **kwargs):
        client = Client(**kwargs)
        client.force_login(user)
        return client

    return make


@pytest.fixture
def token_client(token):
    return Client(headers={"Authorization": f"token {token}"})


def database_url() -> str:
    """Return a ``JSERVER_DATABASE_URL`` for the test database now in use."""
    db = settings.DATABASES["default"]
    if db["ENGINE"].endswith("sqlite3"):
        return "sqlite:///" + quote(str(db["NAME"]))
    user = quote(db["USER"] or "")
    password = f":{quote(db['PASSWORD'])}" if db["PASSWORD"] else ""
    auth = f"{user}{password}@" if user else ""
    port = f":{db['PORT']}" if db["PORT"] else ""
    return f"postgresql://{auth}{db['HOST']}{port}/{quote(db['NAME'])}"


_KERNEL_OUTPUT = re.compile(r"kernels\.launcher\] kernel [0-9a-f-]{36}: ")


@dataclass
class LiveServer:
    url: str
    host: str
    port: int
    process: subprocess.Popen
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def server_log(self) -> str:
        """The log without the lines relayed from kernels' own output.

        A kernel writes what it likes to its stdout and stderr (a traceback
        of its own while it is being shut down, say); those lines are the
        kernel's, not the server's.
        """
        return "\n".join(
            line for line in self.log().splitlines() if not _KERNEL_OUTPUT.search(line)
        )


def start_daphne(tmp_dir: Path, **env: str) -> LiveServer:
    """Start ``manage.py serve`` on a socket bound here, wait until it answers."""
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", 0))
    listener.listen(128)
    port = listener.getsockname()[1]
    log_path = tmp_dir / f"daphne-{port}.log"
    environment = {
        **{k: v for k, v in os.environ.items() if k != "DJANGO_ALLOW_ASYNC_UNSAFE"},
        "DJANGO_SETTINGS_MODULE": "tests.settings",
        "JSERVER_DATABASE_URL": database_url(),
        "PYTHONUNBUFFERED": "1",
        **env,
    }
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            [sys.executable, "manage.py", "serve", "--fd", str(listener.fileno())],
            cwd=REPO,
            env=environment,
            stdout=log,
            stderr=subprocess.STDOUT,
            pass_fds=[listener.fileno()],
        )
    listener.close()
    base = env.get("JSERVER_BASE_URL", "/")
    url = f"http://127.0.0.1:{port}{base}"
    deadline = time.monotonic() + 30
    while True:
        try:
            with urllib.request.urlopen(url + "api", timeout=2) as response:
                if response.status == 200:
                    break
        except OSError:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            raise RuntimeError(f"daphne did not start:\n{log_path.read_text()}")
        time.sleep(0.1)
    return LiveServer(url, "127.0.0.1", port, process, log_path)


def stop_daphne(server: LiveServer) -> None:
    server.process.terminate()
    try:
        server.process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        server.process.kill()
        server.process.wait()


@pytest.fixture(scope="session")
def daphne_server(django_db_setup, django_db_blocker, tmp_path_factory):
    server = start_daphne(tmp_path_factory.mktemp("daphne"))
    try:
        yield server
    finally:
        stop_daphne(server)
