"""Kernel start through jserver, sandboxed against unsandboxed, in one run.

Run from the repository with jserver's virtualenv::

    .venv/bin/python bench/kernel_start.py [--rounds N]

Two servers on this machine, each with a fresh data directory: one as
configured (bubblewrap sandbox), one with the sandbox unavailable
(``JSERVER_SANDBOX_BWRAP`` pointing nowhere, unsandboxed kernels allowed).
Rounds alternate between them; each round is ``POST /api/kernels`` until the
kernel answers ``kernel_info_request`` over its WebSocket, then ``DELETE``.
Prints medians, p90 and the ratio (the tenant-isolation target: within 1.2x).
"""

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from pathlib import Path

import websockets

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from kernels import protocol  # noqa: E402


def serve(port, data, extra):
    env = {**os.environ, "JSERVER_DATA_DIR": data, **extra}
    subprocess.run(
        [sys.executable, "manage.py", "migrate", "-v0"], env=env, cwd=REPO, check=True
    )
    subprocess.run(
        [
            sys.executable,
            "manage.py",
            "shell",
            "-c",
            "from django.contrib.auth.models import User; "
            "User.objects.create_user('bench', password=None)",
        ],
        env=env,
        cwd=REPO,
        check=True,
        capture_output=True,
    )
    tok = subprocess.run(
        [sys.executable, "manage.py", "createtoken", "bench"],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()[-1]
    p = subprocess.Popen(
        [sys.executable, "manage.py", "serve", "--port", str(port)],
        env=env,
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    for _ in range(100):
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/api")
            break
        except OSError:
            time.sleep(0.3)
    return p, tok


def req(port, tok, method, path):
    r = urllib.request.Request(
        f"http://127.0.0.1:{port}{path}",
        method=method,
        headers={"Authorization": f"token {tok}"},
    )
    with urllib.request.urlopen(r) as resp:
        return json.loads(resp.read() or b"null")


async def start_once(port, tok):
    t = time.perf_counter()
    k = await asyncio.to_thread(req, port, tok, "POST", "/api/kernels")
    sid = uuid.uuid4().hex
    async with websockets.connect(
        f"ws://127.0.0.1:{port}/api/kernels/{k['id']}/channels?session_id={sid}",
        subprotocols=[protocol.V1],
        additional_headers={"Authorization": f"token {tok}"},
    ) as ws:
        m = protocol.new_message("kernel_info_request", {}, session=sid)
        await ws.send(protocol.to_websocket("shell", protocol.msg_to_parts(m), v1=True))
        while True:
            ch, p = protocol.from_websocket(await ws.recv(), v1=True)
            if ch == "shell":
                break
    dt = time.perf_counter() - t
    await asyncio.to_thread(req, port, tok, "DELETE", f"/api/kernels/{k['id']}")
    return dt


async def main(rounds: int, scratch: str):
    a, ta = serve(18901, f"{scratch}/a", {})
    b, tb = serve(
        18902,
        f"{scratch}/b",
        {
            "JSERVER_SANDBOX_BWRAP": "/nonexistent",
            "JSERVER_SANDBOX_ALLOW_UNSANDBOXED": "1",
        },
    )
    try:
        res = {"sandboxed": [], "unsandboxed": []}
        for _ in range(rounds):
            res["sandboxed"].append(await start_once(18901, ta))
            res["unsandboxed"].append(await start_once(18902, tb))
        for name, times in res.items():
            median = statistics.median(times) * 1000
            p90 = sorted(times)[int(len(times) * 0.9) - 1] * 1000
            print(f"{name}: median {median:.0f} ms, p90 {p90:.0f} ms")
        ratio = statistics.median(res["sandboxed"]) / statistics.median(
            res["unsandboxed"]
        )
        print(f"sandboxed / unsandboxed (medians): {ratio:.2f}")
    finally:
        a.terminate()
        b.terminate()
        a.wait()
        b.wait()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=9)
    arguments = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="jserver-bench-") as scratch:
        asyncio.run(main(arguments.rounds, scratch))
