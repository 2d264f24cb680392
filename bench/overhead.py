"""Benchmark the fixed cost of an HTTP request, jserver against jupyter_server.

Run from the repository with jserver's virtualenv::

    .venv/bin/python bench/overhead.py [--requests 400] [--postgres URL]

Starts both servers as ``bench/contents.py`` does (same helpers: jserver
embedded on SQLite in a temporary data directory, or on a new PostgreSQL
database with ``--postgres``; the reference jupyter_server 2.21.1), then times,
on one keep-alive connection per server with the servers interleaved request
by request:

- ``GET /api``: no authentication, no work;
- ``GET /api/me``: token authentication, a tiny answer;
- ``GET /api/contents/small.txt``: a 400-byte file read;
- ``PUT /api/contents/small.txt``: a 400-byte text save (atomic write, index,
  event);

and then the throughput of ``GET /api/me`` from several clients at once
(``--clients``, one connection each). Prints medians, p90 and p99 in
milliseconds and the ratio of the medians (reference / jserver: above 1,
jserver is faster). Nothing is written to ``bench/RESULTS.md``.
"""

import argparse
import importlib.util
import json
import shutil
import statistics
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

HERE = Path(__file__).resolve().parent
_spec = importlib.util.spec_from_file_location("contents_bench", HERE / "contents.py")
contents_bench = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(contents_bench)
Server = contents_bench.Server


def small_body(number: int) -> bytes:
    text = f"save number {number}\n" * 20
    return json.dumps({"type": "file", "format": "text", "content": text}).encode()


def sequential(servers: list, repeat: int) -> dict[str, dict[str, list[float]]]:
    """Time each request kind ``repeat`` times per server, interleaved."""
    kinds: dict[str, Callable[[Server, int], object]] = {
        "`GET /api`": lambda s, n: s.request("GET", "/api"),
        "`GET /api/me` (token)": lambda s, n: s.request("GET", "/api/me"),
        "`GET /api/contents/small.txt`": lambda s, n: s.request(
            "GET", "/api/contents/small.txt?type=file&format=text"
        ),
        "`PUT /api/contents/small.txt`": lambda s, n: s.request(
            "PUT", "/api/contents/small.txt", small_body(n)
        ),
    }
    for server in servers:
        kinds["`PUT /api/contents/small.txt`"](server, 0)
    results: dict[str, dict[str, list[float]]] = {}
    for label, action in kinds.items():
        times: dict[str, list[float]] = {server.name: [] for server in servers}
        for number in range(repeat + 20):
            order = servers if number % 2 == 0 else servers[::-1]
            for server in order:
                start = time.perf_counter()
                action(server, number)
                if number >= 20:  # the first 20 warm up
                    times[server.name].append(time.perf_counter() - start)
        results[label] = times
    return results


def throughput(server: Server, clients: int, seconds: float) -> float:
    """Return requests per second of ``GET /api/me`` from ``clients`` at once."""
    counts = [0] * clients
    stop = time.monotonic() + seconds
    errors: list[BaseException] = []

    def client(index: int) -> None:
        own = Server(server.name, server.process, server.port, server.token)
        try:
            while time.monotonic() < stop:
                own.request("GET", "/api/me")
                counts[index] += 1
        except BaseException as error:  # reported below
            errors.append(error)
        finally:
            own.connection.close()

    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise errors[0]
    return sum(counts) / seconds


def ms(values: list[float], fraction: float | None = None) -> str:
    if fraction is None:
        return f"{statistics.median(values) * 1000:.2f}"
    return f"{contents_bench.percentile(values, fraction) * 1000:.2f}"


def render(results, rates: dict[str, float], clients: int) -> str:
    lines = [
        "| request | jserver p50/p90/p99 ms | jupyter_server p50/p90/p99 ms "
        "| jupyter_server / jserver |",
        "| --- | ---: | ---: | ---: |",
    ]
    for label, times in results.items():
        ours, theirs = times["jserver"], times["jupyter_server"]
        ratio = statistics.median(theirs) / statistics.median(ours)
        lines.append(
            f"| {label} | {ms(ours)}/{ms(ours, 0.9)}/{ms(ours, 0.99)} "
            f"| {ms(theirs)}/{ms(theirs, 0.9)}/{ms(theirs, 0.99)} | {ratio:.2f}x |"
        )
    ratio = rates["jserver"] / rates["jupyter_server"]
    lines.append(
        f"| `GET /api/me`, {clients} clients at once (requests/s) "
        f"| {rates['jserver']:.0f} | {rates['jupyter_server']:.0f} | {ratio:.2f}x |"
    )
    return "\n".join(lines)


def run(python: str, database_url: str | None, repeat: int, clients: int) -> str:
    contents_bench.OUT.mkdir(parents=True, exist_ok=True)
    workdir = Path(tempfile.mkdtemp(prefix="overhead-bench-", dir=contents_bench.OUT))
    servers: list[Server] = []
    try:
        jserver, _ = contents_bench.start_jserver(workdir, database_url)
        servers.append(jserver)
        reference, _ = contents_bench.start_reference(python, workdir)
        servers.append(reference)
        results = sequential(servers, repeat)
        rates = {server.name: throughput(server, clients, 5.0) for server in servers}
    finally:
        for server in servers:
            server.stop()
    shutil.rmtree(workdir, ignore_errors=True)
    return render(results, rates, clients)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=400, help="per kind")
    parser.add_argument("--clients", type=int, default=4, help="for throughput")
    parser.add_argument("--postgres", metavar="URL", help="jserver on PostgreSQL")
    parser.add_argument("--reference-python", help="a Python with jupyter_server")
    options = parser.parse_args()
    python = contents_bench.reference_python(options.reference_python)
    database = None
    if options.postgres:
        database = contents_bench.Database(options.postgres)
    try:
        url = database.url if database else None
        print(run(python, url, options.requests, options.clients), flush=True)
    finally:
        if database:
            database.drop()


if __name__ == "__main__":
    main()
