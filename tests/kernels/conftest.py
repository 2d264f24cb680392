"""Kernel tests: a live daphne, real ipykernels, a real WebSocket client.

- ``kernel_server``: the session's live daphne (``daphne_server``); after each
  test every kernel of the test's users is shut down and no kernel process of
  this data directory may be left.
- ``Api``: REST calls with a user's token, off the event loop.
- ``KernelSocket``: a client of ``/api/kernels/<id>/channels`` in either
  framing, built on the ``websockets`` library and ``kernels/protocol.py``.
"""

import asyncio
import json
import os
import time
import urllib.error
import urllib.request
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import websockets
from asgiref.sync import SyncToAsync, sync_to_async
from django.conf import settings
from django.db import connections

from kernels import protocol
from tests.factories import make_token, make_user


def kernel_processes(data_dir: Path | None = None) -> list[int]:
    """Return the pids of processes whose command line names a kernel runtime dir."""
    marker = str(Path(os.path.realpath(data_dir or settings.DATA_DIR)) / "runtime")
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as handle:
                cmdline = handle.read().decode(errors="replace")
        except OSError:
            continue
        if marker in cmdline and "ipykernel" in cmdline:
            found.append(int(entry))
    return found


def wait_no_kernel_processes(timeout: float = 15) -> list[int]:
    deadline = time.monotonic() + timeout
    while (left := kernel_processes()) and time.monotonic() < deadline:
        time.sleep(0.1)
    return left


@dataclass
class Api:
    base: str
    token: str
    kernels: list = field(default_factory=list)

    def call_sync(self, method, path, body=None, *, raw=None):
        data = (
            raw
            if raw is not None
            else (json.dumps(body).encode() if body is not None else None)
        )
        request = urllib.request.Request(
            self.base + path,
            data,
            {"Authorization": f"token {self.token}"},
            method=method,
        )
        try:
            with urllib.request.urlopen(request, timeout=120) as response:
                status, headers, payload = (
                    response.status,
                    dict(response.headers),
                    response.read(),
                )
        except urllib.error.HTTPError as error:
            status, headers, payload = error.code, dict(error.headers), error.read()
        return status, headers, json.loads(payload) if payload else None

    async def call(self, method, path, body=None, *, raw=None):
        return await asyncio.to_thread(self.call_sync, method, path, body, raw=raw)

    async def start(self, **body) -> dict:
        status, _, model = await self.call("POST", "api/kernels", body)
        assert status == 201, model
        self.kernels.append(model["id"])
        return model

    def ws_url(self, kernel_id: str, session_id: str) -> str:
        base = self.base.replace("http://", "ws://", 1)
        return f"{base}api/kernels/{kernel_id}/channels?session_id={session_id}"


class KernelSocket:
    """One client WebSocket to a kernel."""

    def __init__(self, ws, *, v1: bool, session_id: str) -> None:
        self.ws, self.v1, self.session_id = ws, v1, session_id
        self.pending: list[tuple[str, dict]] = []

    @classmethod
    async def open(
        cls, api: Api, kernel_id: str, *, v1: bool = True, session_id: str | None = None
    ) -> "KernelSocket":
        session_id = session_id or uuid.uuid4().hex
        ws = await websockets.connect(
            api.ws_url(kernel_id, session_id),
            subprotocols=[protocol.V1_SUBPROTOCOL] if v1 else None,
            additional_headers={"Authorization": f"token {api.token}"},
            compression=None,
            max_size=None,
            open_timeout=60,
        )
        assert ws.subprotocol == (protocol.V1_SUBPROTOCOL if v1 else None)
        return cls(ws, v1=v1, session_id=session_id)

    async def close(self) -> None:
        await self.ws.close()

    async def send(
        self, channel: str, msg_type: str, content: dict, *, buffers=(), session=None
    ) -> str:
        message = protocol.new_message(
            msg_type, content, session=session or self.session_id
        )
        message["buffers"] = list(buffers)
        parts = protocol.msg_to_parts(message)
        await self.ws.send(protocol.to_websocket(channel, parts, v1=self.v1))
        return message["header"]["msg_id"]

    async def recv(self, timeout: float = 30) -> tuple[str, dict]:
        if self.pending:
            return self.pending.pop(0)
        data = await asyncio.wait_for(self.ws.recv(), timeout)
        channel, parts = protocol.from_websocket(data, v1=self.v1)
        return channel, protocol.parts_to_msg(parts)

    async def submit(
        self, code: str, *, allow_stdin: bool = False, **content: object
    ) -> str:
        """Send an execute_request for ``code``; return its msg_id."""
        return await self.send(
            "shell",
            "execute_request",
            {
                "code": code,
                "silent": False,
                "store_history": False,
                "user_expressions": {},
                "allow_stdin": allow_stdin,
                **content,
            },
        )

    async def execute(
        self, code: str, *, timeout: float = 60, allow_stdin: bool = False
    ) -> "Execution":
        msg_id = await self.submit(
            code, allow_stdin=allow_stdin, store_history=True, stop_on_error=True
        )
        return await self.collect(msg_id, timeout=timeout)

    async def collect(self, msg_id: str, *, timeout: float = 60) -> "Execution":
        result = Execution(msg_id)
        deadline = asyncio.get_running_loop().time() + timeout
        while result.reply is None or not result.idle:
            left = deadline - asyncio.get_running_loop().time()
            channel, message = await self.recv(timeout=max(left, 0.01))
            if message["parent_header"].get("msg_id") != msg_id:
                result.other.append((channel, message))
                continue
            if channel == "shell":
                result.reply = message
            elif channel == "iopub":
                if (
                    message["msg_type"] == "status"
                    and message["content"]["execution_state"] == "idle"
                ):
                    result.idle = True
                else:
                    result.outputs.append(message)
            else:
                result.other.append((channel, message))
        return result

    async def wait_for(self, predicate, *, timeout: float = 30) -> tuple[str, dict]:
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            left = deadline - asyncio.get_running_loop().time()
            channel, message = await self.recv(timeout=max(left, 0.01))
            if predicate(channel, message):
                return channel, message


@dataclass
class Execution:
    msg_id: str
    reply: dict | None = None
    idle: bool = False
    outputs: list = field(default_factory=list)
    other: list = field(default_factory=list)

    @property
    def status(self) -> str:
        return self.reply["content"]["status"]

    def stream(self, name: str = "stdout") -> str:
        return "".join(
            m["content"]["text"]
            for m in self.outputs
            if m["msg_type"] == "stream" and m["content"]["name"] == name
        )

    def result(self) -> str | None:
        for message in self.outputs:
            if message["msg_type"] == "execute_result":
                return message["content"]["data"]["text/plain"]
        return None


def make_api(server, username: str) -> Api:
    user = make_user(username)
    return Api(server.url, make_token(user))


@pytest.fixture(autouse=True)
def _close_async_orm_connections():
    """Close what the async ORM opened on asgiref's thread, after each test.

    Outside a request, ``sync_to_async`` runs the ORM on one long-lived thread
    whose connection nothing else closes; left open, PostgreSQL refuses to drop
    the test database at the end of the run.
    """
    yield
    executor = SyncToAsync.single_thread_executor
    executor.submit(connections.close_all).result(timeout=30)


@pytest.fixture
def kernel_server(daphne_server, transactional_db):
    """The live daphne; no kernel outlives a test."""
    apis: list[Api] = []
    daphne_server.apis = apis
    yield daphne_server
    for api in apis:
        status, _, kernels = api.call_sync("GET", "api/kernels")
        for kernel in kernels or []:
            api.call_sync("DELETE", f"api/kernels/{kernel['id']}")
    left = wait_no_kernel_processes()
    assert not left, f"kernel processes left behind: {left}"


@pytest.fixture
def api_for(kernel_server, transactional_db):
    """``await api_for(name)``: a new user and an ``Api`` with their token."""

    async def make(username: str) -> Api:
        api = await sync_to_async(make_api)(kernel_server, username)
        kernel_server.apis.append(api)
        return api

    return make
