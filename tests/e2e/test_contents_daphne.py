"""The Contents API and /files through a real daphne: events reach the user's
socket, a chunked upload lands whole, large files stream, cookies work."""

import asyncio
import base64
import json
import os
import urllib.error
import urllib.request

import pytest
import websockets

from contents.storage import user_root
from tests.e2e.test_daphne import Browser
from tests.factories import make_token, make_user

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

SCHEMA = "https://events.jupyter.org/jupyter_server/contents_service/v1"


def call(server, method, path, token, body=None, headers=None):
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(
        server.url + path,
        data,
        {"Authorization": f"token {token}", **(headers or {})},
        method=method,
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), error.read()


def test_saves_reach_the_events_socket_of_their_owner_only(daphne_server):
    alice, bob = make_user("events-alice"), make_user("events-bob")
    alice_token, bob_token = make_token(alice), make_token(bob)
    base = f"ws://127.0.0.1:{daphne_server.port}/api/events/subscribe?token="

    async def run():
        async with websockets.connect(base + alice_token) as mine:
            async with websockets.connect(base + bob_token) as theirs:
                status, _, _ = await asyncio.to_thread(
                    call,
                    daphne_server,
                    "PUT",
                    "api/contents/e.txt",
                    alice_token,
                    {"type": "file", "format": "text", "content": "x"},
                )
                assert status == 201
                event = json.loads(await asyncio.wait_for(mine.recv(), 10))
                with pytest.raises(TimeoutError):
                    await asyncio.wait_for(theirs.recv(), 0.5)
                return event

    assert asyncio.run(run()) == {
        "schema_id": SCHEMA,
        "action": "save",
        "path": "e.txt",
    }


def test_chunked_upload_then_stream_it_back(daphne_server):
    user = make_user("uploader")
    token = make_token(user)
    payload = os.urandom(3 * 1024 * 1024 + 123)
    chunk_size = 1024 * 1024
    for offset in range(0, len(payload), chunk_size):
        last = offset + chunk_size >= len(payload)
        body = {
            "type": "file",
            "format": "base64",
            "chunk": -1 if last else offset // chunk_size + 1,
            "content": base64.b64encode(payload[offset : offset + chunk_size]).decode(),
        }
        status, _, _ = call(daphne_server, "PUT", "api/contents/big.bin", token, body)
        assert status == 201
        if not last:
            assert not (user_root(user) / "big.bin").exists()
    assert (user_root(user) / "big.bin").read_bytes() == payload

    status, headers, body = call(daphne_server, "GET", "files/big.bin", token)
    assert status == 200 and body == payload
    assert headers["Content-Security-Policy"] == (
        "frame-ancestors 'self'; sandbox allow-scripts"
    )
    assert headers["Content-Type"] == "application/octet-stream"
    status, headers, body = call(
        daphne_server,
        "GET",
        "files/big.bin",
        token,
        headers={"Range": "bytes=1048570-"},
    )
    assert status == 206 and body == payload[1048570:]


def test_a_logged_in_browser_saves_and_downloads(daphne_server):
    make_user("carol")
    browser = Browser(daphne_server.url)
    browser.login("carol")
    xsrf = browser.cookie("_xsrf").value
    status, headers, _ = browser.request(
        "PUT",
        "api/contents/page.html",
        data={"type": "file", "format": "text", "content": "<script>x()</script>"},
        headers={"X-XSRFToken": xsrf},
    )
    assert status == 201 and headers["Location"] == "/api/contents/page.html"
    status, _, _ = browser.request("GET", "files/page.html")
    assert status == 403  # neither the XSRF cookie echoed nor a same-site Referer
    status, headers, body = browser.request("GET", f"files/page.html?_xsrf={xsrf}")
    assert status == 200 and body == "<script>x()</script>"
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert "sandbox allow-scripts" in headers["Content-Security-Policy"]
    anonymous = Browser(daphne_server.url)
    status, headers, _ = anonymous.request("GET", "files/page.html")
    assert status == 302 and headers["Location"] == "/login?next=/files/page.html"
