"""Benchmark: what JupyterLab asks for on start, jserver against jupyter_server.

Starts both servers on this machine (jserver: ``manage.py serve`` on a fresh
data directory; the reference: ``jupyter lab`` from the same environment, so the
same JupyterLab build), logs one browser-like client into each (a session
cookie from ``?token=``), then times each request kind sequentially on one
keep-alive connection, interleaving the two servers request by request so that
machine noise hits both alike. Prints medians, p90, p99 (ms) and ratios.

    .venv/bin/python bench/frontend.py [--requests 200]
"""

import argparse
import http.client
import json
import os
import re
import secrets
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
PYTHON = sys.executable
JUPYTER = Path(PYTHON).with_name("jupyter")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_until_up(port: int, path: str, process: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            sys.exit(f"server exited:\n{log.read_text()}")
        try:
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            connection.request("GET", path)
            if connection.getresponse().status < 500:
                return
        except OSError:
            time.sleep(0.2)
    sys.exit(f"server did not start:\n{log.read_text()}")


def start_jserver(workdir: Path) -> tuple[subprocess.Popen, int, str]:
    env = {
        **os.environ,
        "JSERVER_DATA_DIR": str(workdir / "jserver"),
        "DJANGO_SETTINGS_MODULE": "jserver.settings",
        "JSERVER_LOG_LEVEL": "WARNING",
    }
    subprocess.run(
        [PYTHON, "manage.py", "migrate", "-v0"], cwd=REPO, env=env, check=True
    )
    make = (
        "import django; django.setup()\n"
        "from django.contrib.auth.models import User\n"
        "from accounts import tokens\n"
        "user = User.objects.create_user('bench', password='x' * 20)\n"
        "print(tokens.create_token(user, 'bench')[1])\n"
    )
    token = subprocess.run(
        [PYTHON, "-c", make],
        cwd=REPO,
        env=env,
        check=True,
        capture_output=True,
        text=True,
    ).stdout.split()[-1]
    port = free_port()
    log = workdir / "jserver.log"
    process = subprocess.Popen(
        [PYTHON, "manage.py", "serve", "--port", str(port)],
        cwd=REPO,
        env=env,
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
    )
    wait_until_up(port, "/api", process, log)
    return process, port, token


def start_reference(workdir: Path) -> tuple[subprocess.Popen, int, str]:
    token = secrets.token_hex(24)
    home = workdir / "home"
    root = workdir / "root"
    home.mkdir()
    root.mkdir()
    port = free_port()
    log = workdir / "reference.log"
    env = {
        **os.environ,
        "HOME": str(home),
        "JUPYTER_CONFIG_DIR": str(home / ".jupyter"),
    }
    args = [
        str(JUPYTER),
        "lab",
        "--no-browser",
        f"--port={port}",
        f"--ServerApp.root_dir={root}",
        f"--IdentityProvider.token={token}",
        "--ServerApp.log_level=WARN",
    ]
    if os.geteuid() == 0:
        args.append("--allow-root")
    process = subprocess.Popen(
        args, env=env, stdout=log.open("wb"), stderr=subprocess.STDOUT
    )
    wait_until_up(port, "/api", process, log)
    return process, port, token


class Client:
    """One keep-alive connection with a browser's cookies and XSRF header."""

    def __init__(self, port: int, token: str) -> None:
        self.connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        self.cookies: dict[str, str] = {}
        status, _ = self.request("GET", f"/lab?token={token}")
        assert self.cookies, "no session cookie after the token login"
        status, body = self.request("GET", "/lab")
        assert status == 200, status
        self.static = re.search(rb"main\.[0-9a-f]+\.js", body).group(0).decode()

    def request(
        self,
        method: str,
        path: str,
        body: bytes | None = None,
        headers: dict | None = None,
    ) -> tuple[int, bytes]:
        headers = dict(headers or {})
        if self.cookies:
            headers["Cookie"] = "; ".join(f"{k}={v}" for k, v in self.cookies.items())
            if "_xsrf" in self.cookies:
                headers["X-XSRFToken"] = self.cookies["_xsrf"]
        self.connection.request(method, path, body=body, headers=headers)
        response = self.connection.getresponse()
        data = response.read()
        for header, value in response.getheaders():
            if header.lower() == "set-cookie":
                name, _, rest = value.partition("=")
                self.cookies[name.strip()] = rest.split(";")[0]
        return response.status, data


WORKSPACE = json.dumps(
    {
        "data": {
            "layout-restorer:data": {
                "main": {
                    "dock": {"type": "tab-area", "currentIndex": 0, "widgets": []}
                },
                "left": {
                    "collapsed": False,
                    "current": "filebrowser",
                    "widgets": ["filebrowser", "running-sessions"],
                },
            },
            "file-browser-filebrowser:cwd": {"path": ""},
        },
        "metadata": {"id": "default"},
    }
).encode()


def cases(client: Client) -> dict[str, tuple[str, str, bytes | None, dict]]:
    return {
        "page /lab": ("GET", "/lab", None, {}),
        "settings (all, 91 schemas)": ("GET", "/lab/api/settings", None, {}),
        "settings (one plugin)": (
            "GET",
            "/lab/api/settings/@jupyterlab/apputils-extension:themes",
            None,
            {},
        ),
        "workspace PUT": (
            "PUT",
            "/lab/api/workspaces/default",
            WORKSPACE,
            {"Content-Type": "application/json"},
        ),
        "workspace GET": ("GET", "/lab/api/workspaces/default", None, {}),
        "translations": ("GET", "/lab/api/translations", None, {}),
        "theme CSS": (
            "GET",
            "/lab/api/themes/@jupyterlab/theme-light-extension/index.css",
            None,
            {},
        ),
        "main bundle (gzip)": (
            "GET",
            f"/static/lab/{client.static}",
            None,
            {"Accept-Encoding": "gzip"},
        ),
    }


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--warmup", type=int, default=20)
    options = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="jserver-bench-"))
    processes = []
    try:
        jserver, jport, jtoken = start_jserver(workdir)
        processes.append(jserver)
        reference, rport, rtoken = start_reference(workdir)
        processes.append(reference)
        clients = {
            "jserver": Client(jport, jtoken),
            "jupyter_server": Client(rport, rtoken),
        }
        print(f"{options.requests} requests per kind per server, one connection each\n")
        print(
            f"{'request':28} {'jserver ms (p50/p90/p99)':>26} "
            f"{'jupyter_server ms':>22} {'p50 ratio':>10}"
        )
        for name in cases(clients["jserver"]):
            times: dict[str, list[float]] = {server: [] for server in clients}
            sizes = {}
            for number in range(options.warmup + options.requests):
                for server, client in clients.items():
                    method, path, body, headers = cases(client)[name]
                    start = time.perf_counter()
                    status, data = client.request(method, path, body, headers)
                    elapsed = (time.perf_counter() - start) * 1000
                    assert status < 300, (server, name, status, data[:200])
                    sizes[server] = len(data)
                    if number >= options.warmup:
                        times[server].append(elapsed)
            row = {
                server: "/".join(
                    f"{q:.2f}"
                    for q in (
                        statistics.median(values),
                        percentile(values, 0.9),
                        percentile(values, 0.99),
                    )
                )
                for server, values in times.items()
            }
            ratio = statistics.median(times["jserver"]) / statistics.median(
                times["jupyter_server"]
            )
            print(
                f"{name:28} {row['jserver']:>26} {row['jupyter_server']:>22} "
                f"{ratio:>9.2f}x   ({sizes['jserver']} vs {sizes['jupyter_server']} B)"
            )
    finally:
        for process in processes:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
