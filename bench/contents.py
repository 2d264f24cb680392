"""Benchmark jserver's Contents API against the reference jupyter_server.

Run from the repository with jserver's virtualenv::

    .venv/bin/python bench/contents.py [--quick] [--postgres URL]
                                       [--reference-python PATH] [--no-write]

Both servers run on this machine in the same run, on free ports, each with a
temporary root of its own; jserver in its embedded configuration (SQLite in a
temporary data directory) or, with ``--postgres``, on a new database created
on that PostgreSQL server for the run and dropped afterwards. Nothing is
installed globally: the reference is jupyter_server 2.21.1 from the virtualenv
at ``/tmp/refjs`` when it exists (``--reference-python`` names another
interpreter); otherwise the script creates its own virtualenv in
``bench/out/refjs`` and installs ``jupyter_server==2.21.1`` into it with pip.

Measured with one HTTP client (keep-alive, one request at a time, the two
servers' requests interleaved), as median, p90 and p99 with the ratio of the
medians:

- GET and PUT of a 5 MB notebook with outputs;
- listing a directory of 5,000 files, and of 10,000;
- 200 sequential small saves;
- a 100 MB chunked upload as JupyterLab sends it (1 MiB chunks, base64), and
  the server process's peak resident memory meanwhile (sampled every 5 ms;
  measured first, so that the memory is the upload's, not left over from the
  5 MB notebooks);
- for reference, each framework's floor: ``GET /api`` (no work at all) and a
  1.4 MB body (an upload chunk's size) sent to ``POST /api`` (405, unread).

The table is printed and written to ``bench/RESULTS.md`` between the
``contents`` markers, with the machine and the date. A full run takes about
three minutes; ``--quick`` runs fewer repetitions.
"""

import argparse
import base64
import datetime
import http.client
import json
import os
import platform
import secrets
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import venv
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "bench" / "RESULTS.md"
OUT = REPO / "bench" / "out"
BEGIN, END = "<!-- contents:begin -->", "<!-- contents:end -->"
REFERENCE_VERSION = "2.21.1"
CHUNK_BYTES = 1024 * 1024  # JupyterLab's upload chunk size
UPLOAD_BYTES = 100 * 1024 * 1024
MEMORY_LIMIT = 2 * UPLOAD_BYTES
Times = dict[str, list[float]]
NOTES = """\
How to read it. The two *floor* rows are what each server costs before any
contents work. Under daphne, jserver's HTTP handler (`jserver/handler.py`)
runs a request's synchronous part (signals, middleware, a sync view) in one
call on a long-lived worker thread; `GET /api` is an async view, which costs
a second round trip between the event loop and the thread, so that floor
stays above the reference's. An authenticated request reads its token and
user in one prepared query, unless its process has remembered that token
(`JSERVER_TOKEN_CACHE_SECONDS`, 5 s by default; revoking it or deactivating
its user through the models reaches every process sharing the data directory
at its next request, others within those seconds). A small save writes the
file atomically with `fsync` (as the reference does) and answers; its
database bookkeeping (the index row, the automatic checkpoint, a notebook's
trust signature, and the SHA-256 only they need) runs on the same worker
right after the response, in order per user (a rename, delete or checkpoint
request of that user waits for it), and the event goes out then too. So a
small save with a remembered token answers without a database round trip,
on SQLite as on PostgreSQL. The large requests are
dominated by real work, the same as the reference's: reading a notebook is
faster, saving one faster too (the hash and the bookkeeping come after the
answer), listings are more than ten times faster (one `scandir`, one `lstat`
per entry, no file opened). A chunked upload decodes the same JSON and
base64 as the reference and appends to a partial file; between chunks the
worker writes what was appended through to the disk, so the `fsync` before
the last chunk's rename over the target has little left to do (the reference
appends to the target itself, without `fsync`), the 100 MB file is hashed for
the index after the last answer, and on PostgreSQL each chunk's progress row
commits without waiting for the WAL to reach the disk (a database crash can
only lose an upload in progress). Memory stays flat, well under twice the
upload. It is about even with the reference on a quiet machine (0.93x to
1.10x in quick runs) and trails it by up to 15% on a busy one: each chunk
still reads and advances the upload's row (two statements the reference does
not have), and jserver spreads a chunk over more threads (the event loop, a
worker, the write-through) than the reference's one, on two shared cores.
The machine is shared: ratios near 1 change side from run to run."""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Server:
    """A server under test: its process, port and a keep-alive HTTP client."""

    def __init__(self, name: str, process: subprocess.Popen, port: int, token: str):
        self.name, self.process, self.port, self.token = name, process, port, token
        self.connection = http.client.HTTPConnection("127.0.0.1", port, timeout=600)

    def request(self, method: str, path: str, body: bytes | None = None) -> bytes:
        headers = {"Authorization": f"token {self.token}"}
        if body is not None:
            headers["Content-Type"] = "application/json"
        try:
            self.connection.request(method, path, body=body, headers=headers)
            response = self.connection.getresponse()
        except (http.client.HTTPException, ConnectionError):
            self.connection.close()  # dropped keep-alive: once more, anew
            self.connection.request(method, path, body=body, headers=headers)
            response = self.connection.getresponse()
        data = response.read()
        if response.status >= 400:
            raise RuntimeError(f"{self.name}: {method} {path}: {response.status}")
        return data

    def wait(self) -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.name} exited ({self.process.returncode})")
            try:
                self.request("GET", "/api/contents?content=0")
                return
            except (OSError, RuntimeError, http.client.HTTPException):
                time.sleep(0.2)
        raise RuntimeError(f"{self.name} did not start")

    def rss_bytes(self) -> int:
        status = Path(f"/proc/{self.process.pid}/status").read_text()
        for line in status.splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
        return 0

    def stop(self) -> None:
        self.connection.close()
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def reference_python(requested: str | None) -> str:
    """Return a Python with jupyter_server 2.21.1, creating a virtualenv if needed."""
    if requested:
        return requested
    if Path("/tmp/refjs/bin/python").exists():
        return "/tmp/refjs/bin/python"
    target = OUT / "refjs"
    python = target / "bin" / "python"
    if not python.exists():
        print(f"creating a virtualenv for jupyter_server in {target}", flush=True)
        venv.EnvBuilder(with_pip=True).create(target)
        install = [python, "-m", "pip", "install", "--quiet"]
        subprocess.run([*install, f"jupyter_server=={REFERENCE_VERSION}"], check=True)
    return str(python)


def start_reference(python: str, workdir: Path) -> tuple[Server, Path]:
    root = workdir / "reference-root"
    root.mkdir()
    jupyter = workdir / "reference-jupyter"
    env = {
        **os.environ,
        "JUPYTER_DATA_DIR": str(jupyter / "data"),
        "JUPYTER_RUNTIME_DIR": str(jupyter / "runtime"),
        "JUPYTER_CONFIG_DIR": str(jupyter / "config"),
    }
    port, token = free_port(), secrets.token_hex(16)
    command = [
        python,
        "-m",
        "jupyter_server",
        "--no-browser",
        "--allow-root",
        f"--port={port}",
        f"--ServerApp.root_dir={root}",
        f"--IdentityProvider.token={token}",
        "--ServerApp.log_level=WARN",
    ]
    with open(workdir / "reference.log", "wb") as log:
        process = subprocess.Popen(
            command, env=env, stdout=log, stderr=subprocess.STDOUT, cwd=workdir
        )
    server = Server("jupyter_server", process, port, token)
    server.wait()
    return server, root


def start_jserver(workdir: Path, database_url: str | None) -> tuple[Server, Path]:
    data = workdir / "jserver-data"
    env = {k: v for k, v in os.environ.items() if not k.startswith("JSERVER_")}
    env.update(
        JSERVER_DATA_DIR=str(data),
        JSERVER_SECRET_KEY=secrets.token_urlsafe(40),
        JSERVER_LOG_LEVEL="WARNING",
        DJANGO_SETTINGS_MODULE="jserver.settings",
    )
    if database_url:
        env["JSERVER_DATABASE_URL"] = database_url
    manage = [sys.executable, "manage.py"]

    def run(*args: str) -> str:
        done = subprocess.run(
            [*manage, *args], env=env, cwd=REPO, check=True, capture_output=True
        )
        return done.stdout.decode().strip().splitlines()[-1]

    run("migrate", "--noinput")
    user_id = run(
        "shell",
        "-c",
        "from django.contrib.auth.models import User;"
        "print(User.objects.create_user('bench').pk)",
    )
    token = run("createtoken", "bench")
    port = free_port()
    with open(workdir / "jserver.log", "wb") as log:
        process = subprocess.Popen(
            [*manage, "serve", "--port", str(port)],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=REPO,
        )
    server = Server("jserver", process, port, token)
    server.wait()
    return server, data / "users" / user_id


class Database:
    """A PostgreSQL database made for one run (``--postgres``)."""

    def __init__(self, admin_url: str) -> None:
        import psycopg

        self.psycopg = psycopg
        self.admin_url = admin_url
        self.name = f"jserver_bench_{os.getpid()}"
        parts = urlsplit(admin_url)
        self.url = urlunsplit(parts._replace(path=f"/{self.name}"))
        with psycopg.connect(admin_url, autocommit=True) as connection:
            connection.execute(f'CREATE DATABASE "{self.name}"')

    def drop(self) -> None:
        with self.psycopg.connect(self.admin_url, autocommit=True) as connection:
            connection.execute(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)')


def notebook_with_outputs(target_bytes: int) -> dict:
    """Return an nbformat 4.5 notebook of about ``target_bytes`` with outputs:
    code cells with a 200-line stream and a PNG, and markdown cells."""
    png = base64.b64encode(os.urandom(60_000)).decode()
    cells: list[dict] = []
    size = 0
    number = 0
    while size < target_bytes:
        number += 1
        stream = "".join(f"line {i} of cell {number}\n" for i in range(200))
        code = {
            "cell_type": "code",
            "id": f"cell-{number}",
            "execution_count": number,
            "metadata": {"trusted": True},
            "source": f"x = np.arange({number})\nplot(x)\n",
            "outputs": [
                {"output_type": "stream", "name": "stdout", "text": stream},
                {
                    "output_type": "display_data",
                    "metadata": {},
                    "data": {"image/png": png, "text/plain": "<Figure>"},
                },
            ],
        }
        markdown = {
            "cell_type": "markdown",
            "id": f"md-{number}",
            "metadata": {},
            "source": f"## Step {number}\nSome *text*.",
        }
        cells += [code, markdown]
        size += len(json.dumps(code)) + len(json.dumps(markdown))
    kernelspec = {"name": "python3", "display_name": "Python 3", "language": "python"}
    return {
        "cells": cells,
        "metadata": {"kernelspec": kernelspec},
        "nbformat": 4,
        "nbformat_minor": 5,
    }


def timed(action: Callable[[], object]) -> float:
    start = time.perf_counter()
    action()
    return time.perf_counter() - start


def interleaved(
    servers: list[Server], repeat: int, action: Callable[[Server], object]
) -> Times:
    """Run ``action`` ``repeat`` times per server, alternating which goes first."""
    times: Times = {server.name: [] for server in servers}
    for run in range(repeat):
        for server in servers if run % 2 == 0 else servers[::-1]:
            times[server.name].append(timed(lambda s=server: action(s)))
    return times


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


def chunked_upload(server: Server, path: str, payload: bytes) -> tuple[float, int, int]:
    """Upload ``payload`` in JupyterLab's chunks; return time, RSS before, peak."""
    base = server.rss_bytes()
    peak = [base]
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            peak[0] = max(peak[0], server.rss_bytes())
            time.sleep(0.005)

    sampler = threading.Thread(target=sample)
    sampler.start()
    start = time.perf_counter()
    try:
        for offset in range(0, len(payload), CHUNK_BYTES):
            last = offset + CHUNK_BYTES >= len(payload)
            part = payload[offset : offset + CHUNK_BYTES]
            body = {
                "type": "file",
                "format": "base64",
                "name": path,
                "path": path,
                "chunk": -1 if last else offset // CHUNK_BYTES + 1,
                "content": base64.b64encode(part).decode(),
            }
            server.request("PUT", f"/api/contents/{path}", json.dumps(body).encode())
        return time.perf_counter() - start, base, peak[0]
    finally:
        stop.set()
        sampler.join()


def make_files(directory: Path, count: int) -> None:
    directory.mkdir()
    for number in range(count):
        kind = "notebook-{:05d}.ipynb" if number % 5 == 0 else "data-{:05d}.csv"
        (directory / kind.format(number)).write_bytes(b"x" * (number % 97))


def measure(servers: list[Server], roots: dict[str, Path], quick: bool):
    rows: list[tuple[str, Times, str]] = []
    memory: dict[str, tuple[int, int]] = {}
    reps = 5 if quick else 15

    rows.append(("floor: `GET /api`", interleaved(servers, reps * 4, api_root), "ms"))
    body = json.dumps({"content": "x" * 1_398_104}).encode()  # a chunk's size
    refused = interleaved(servers, reps * 2, refused_body(body))
    rows.append(("floor: 1.4 MB body to `POST /api` (405)", refused, "ms"))

    # First, while the processes hold only what starting took: memory.
    payload = os.urandom(UPLOAD_BYTES)
    uploads: Times = {server.name: [] for server in servers}
    for run in range(1 if quick else 3):
        for server in servers if run % 2 == 0 else servers[::-1]:
            elapsed, base, peak = chunked_upload(server, f"upload{run}.bin", payload)
            uploads[server.name].append(elapsed)
            low, high = memory.get(server.name, (base, peak))
            memory[server.name] = (min(low, base), max(high, peak))
    if (roots["jserver"] / "upload0.bin").read_bytes() != payload:
        raise RuntimeError("jserver stored other bytes than uploaded")
    rows.append(("100 MB chunked upload (1 MiB chunks)", uploads, "s"))

    notebook = notebook_with_outputs(5_000_000)
    body = json.dumps({"type": "notebook", "format": "json", "content": notebook})
    body = body.encode()
    for server in servers:
        server.request("PUT", "/api/contents/big.ipynb", body)
    megabytes = (roots["jserver"] / "big.ipynb").stat().st_size / 1e6
    label = f"notebook ({megabytes:.1f} MB, outputs)"
    get = "/api/contents/big.ipynb?type=notebook&content=1"
    rows.append((f"GET {label}", interleaved(servers, reps, get_path(get)), "ms"))
    put = put_path("/api/contents/big.ipynb", body)
    rows.append((f"PUT {label}", interleaved(servers, reps, put), "ms"))

    for count in (5_000, 10_000):
        for root in roots.values():
            make_files(root / f"many{count}", count)
        repeat = (3 if quick else 5) if count == 10_000 else (5 if quick else 9)
        listing = get_path(f"/api/contents/many{count}?content=1")
        rows.append(
            (f"list {count:,} files", interleaved(servers, repeat, listing), "ms")
        )

    saves: Times = {server.name: [] for server in servers}
    for number in range(200):
        text = f"save number {number}\n" * 20
        small = json.dumps({"type": "file", "format": "text", "content": text})
        for server in servers if number % 2 == 0 else servers[::-1]:
            action = put_path("/api/contents/small.txt", small.encode())
            saves[server.name].append(timed(lambda s=server, a=action: a(s)))
    rows.append(("one of 200 sequential small saves", saves, "ms"))
    totals = {name: [sum(values)] for name, values in saves.items()}
    rows.append(("200 sequential small saves, total", totals, "s"))

    return rows, memory


def api_root(server: Server) -> bytes:
    return server.request("GET", "/api")


def refused_body(body: bytes) -> Callable[[Server], None]:
    def send(server: Server) -> None:
        try:
            server.request("POST", "/api", body)
        except RuntimeError:
            pass  # 405: the body was read, nothing done

    return send


def get_path(path: str) -> Callable[[Server], bytes]:
    return lambda server: server.request("GET", path)


def put_path(path: str, body: bytes) -> Callable[[Server], bytes]:
    return lambda server: server.request("PUT", path, body)


def render(rows: list[tuple[str, Times, str]], memory) -> str:
    lines = [
        "| measurement | jserver median | p90 | p99 "
        "| jupyter_server median | p90 | p99 | jupyter_server / jserver |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for label, times, unit in rows:
        scale = 1000 if unit == "ms" else 1
        ours, theirs = times["jserver"], times["jupyter_server"]
        cells = [label]
        for values in (ours, theirs):
            cells += [
                f"{statistics.median(values) * scale:.3g} {unit}",
                f"{percentile(values, 0.9) * scale:.3g} {unit}",
                f"{percentile(values, 0.99) * scale:.3g} {unit}",
            ]
        ratio = statistics.median(theirs) / statistics.median(ours)
        cells.append(f"{ratio:.2f}x")
        lines.append("| " + " | ".join(cells) + " |")
    lines += [
        "",
        "Resident memory of the server process during the 100 MB uploads:",
        "",
    ]
    for name, (base, peak) in memory.items():
        verdict = "under" if peak < MEMORY_LIMIT else "OVER"
        lines.append(
            f"- {name}: peak {peak / 2**20:.0f} MiB, {base / 2**20:.0f} MiB before "
            f"(+{(peak - base) / 2**20:.0f} MiB; {verdict} the limit of twice the "
            f"upload, {MEMORY_LIMIT // 2**20} MiB)"
        )
    return "\n".join(lines)


def machine() -> str:
    cpu = platform.processor() or "unknown CPU"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    kib = int(Path("/proc/meminfo").read_text().split()[1])
    return (
        f"{cpu}, {os.cpu_count()} cores, {kib / 2**20:.0f} GiB RAM, "
        f"{platform.system()} {platform.release()}, "
        f"Python {platform.python_version()}"
    )


def write_results(tables: list[tuple[str, str]], quick: bool) -> None:
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"],
        cwd=REPO,
        capture_output=True,
        text=True,
    ).stdout.strip()
    now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    lines = [
        BEGIN,
        "## Contents API (`bench/contents.py`)",
        "",
        f"{now}, commit {commit or 'unknown'}{' (quick run)' if quick else ''}.",
        f"Machine: {machine()}; shared with other work, so expect noise.",
        f"Reference: jupyter_server {REFERENCE_VERSION} (its defaults: "
        "AsyncLargeFileManager, atomic writing) on the same machine, same client, "
        "requests interleaved; jupyter_server / jserver > 1 means jserver is faster.",
    ]
    for title, table in tables:
        lines += ["", f"### {title}", "", table]
    lines += ["", NOTES, END]
    section = "\n".join(lines)
    text = RESULTS.read_text() if RESULTS.exists() else "# Benchmark results\n"
    if BEGIN in text and END in text:
        head, rest = text.split(BEGIN, 1)
        text = head + section + rest.split(END, 1)[1]
    else:
        text = text.rstrip("\n") + "\n\n" + section + "\n"
    RESULTS.write_text(text)
    print(f"wrote {RESULTS.relative_to(REPO)}")


def run(python: str, database_url: str | None, quick: bool) -> str:
    OUT.mkdir(parents=True, exist_ok=True)
    workdir = Path(tempfile.mkdtemp(prefix="contents-bench-", dir=OUT))
    servers: list[Server] = []
    try:
        jserver, jroot = start_jserver(workdir, database_url)
        servers.append(jserver)
        reference, rroot = start_reference(python, workdir)
        servers.append(reference)
        roots = {"jserver": jroot, "jupyter_server": rroot}
        rows, memory = measure(servers, roots, quick)
    finally:
        for server in servers:
            server.stop()
    shutil.rmtree(workdir, ignore_errors=True)
    return render(rows, memory)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer repetitions")
    parser.add_argument("--postgres", metavar="URL", help="also run on PostgreSQL")
    parser.add_argument("--reference-python", help="a Python with jupyter_server")
    parser.add_argument("--no-write", action="store_true", help="leave RESULTS.md")
    options = parser.parse_args()
    python = reference_python(options.reference_python)
    tables = [("jserver embedded (SQLite)", run(python, None, options.quick))]
    print(tables[-1][1], flush=True)
    if options.postgres:
        database = Database(options.postgres)
        try:
            table = run(python, database.url, options.quick)
        finally:
            database.drop()
        tables.append(("jserver on PostgreSQL", table))
        print(table, flush=True)
    if not options.no_write:
        write_results(tables, options.quick)


if __name__ == "__main__":
    main()
