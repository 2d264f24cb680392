"""WebSocket authentication and the per-user events socket, in process."""

import asyncio

import pytest
from asgiref.sync import sync_to_async
from channels.testing import WebsocketCommunicator

from jserver import events
from jserver.asgi import application
from tests.factories import make_token, make_user

pytestmark = pytest.mark.django_db(transaction=True)

PATH = "/api/events/subscribe"


def communicator(path=PATH, headers=()):
    return WebsocketCommunicator(
        application, path, headers=[(b"host", b"127.0.0.1:8888"), *headers]
    )


async def session_cookie(user) -> bytes:
    def make():
        from django.test import Client

        client = Client()
        client.force_login(user)
        return client.cookies["jserver-session"].value

    return f"jserver-session={await sync_to_async(make)()}".encode()


async def refused(comm) -> bool:
    connected, _ = await comm.connect()
    if connected:
        await comm.disconnect()
    return not connected


async def test_anonymous_handshake_is_refused():
    assert await refused(communicator())


async def test_token_header_and_query_authenticate():
    user = await sync_to_async(make_user)()
    raw = await sync_to_async(make_token)(user)
    for comm in (
        communicator(headers=[(b"authorization", f"token {raw}".encode())]),
        communicator(f"{PATH}?token={raw}"),
    ):
        assert (await comm.connect())[0]
        await comm.disconnect()


async def test_wrong_token_is_refused():
    assert await refused(communicator(headers=[(b"authorization", b"token nope")]))


@pytest.mark.parametrize(
    ("origin", "allowed"),
    [
        (None, True),  # non-browser client
        (b"http://127.0.0.1:8888", True),
        (b"http://127.0.0.1:8888.evil.example", False),
        (b"http://evil.example", False),
        (b"https://127.0.0.1:9999", False),
        (b"null", False),
    ],
)
async def test_cookie_handshake_checks_origin(origin, allowed):
    user = await sync_to_async(make_user)()
    headers = [(b"cookie", await session_cookie(user))]
    if origin is not None:
        headers.append((b"origin", origin))
    assert await refused(communicator(headers=headers)) is not allowed


async def test_token_handshake_skips_the_origin_check():
    user = await sync_to_async(make_user)()
    raw = await sync_to_async(make_token)(user)
    comm = communicator(
        headers=[
            (b"authorization", f"token {raw}".encode()),
            (b"origin", b"http://elsewhere"),
        ]
    )
    assert (await comm.connect())[0]
    await comm.disconnect()


async def test_host_outside_allowed_hosts_is_refused():
    user = await sync_to_async(make_user)()
    raw = await sync_to_async(make_token)(user)
    comm = WebsocketCommunicator(
        application,
        PATH,
        headers=[
            (b"host", b"rebound.evil.example"),
            (b"authorization", f"token {raw}".encode()),
        ],
    )
    assert await refused(comm)


async def test_events_reach_only_their_owner():
    alice = await sync_to_async(make_user)()
    bob = await sync_to_async(make_user)()
    sockets = {}
    for user in (alice, bob):
        raw = await sync_to_async(make_token)(user)
        sockets[user] = communicator(f"{PATH}?token={raw}")
        assert (await sockets[user].connect())[0]
    data = {"action": "save", "path": "a.ipynb"}
    await events.emit(
        alice, "https://events.jupyter.org/jupyter_server/contents_service/v1", data
    )
    received = await sockets[alice].receive_json_from(timeout=2)
    assert received == {
        "schema_id": "https://events.jupyter.org/jupyter_server/contents_service/v1",
        **data,
    }
    assert await sockets[bob].receive_nothing(timeout=0.2)
    for comm in sockets.values():
        await comm.disconnect()
    await asyncio.sleep(0)
