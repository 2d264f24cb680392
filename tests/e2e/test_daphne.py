"""A real daphne (``manage.py serve``) driven over HTTP and WebSockets."""

import asyncio
import http.cookiejar
import json
import re
import urllib.error
import urllib.parse
import urllib.request

import pytest
import websockets

from tests.conftest import start_daphne, stop_daphne
from tests.factories import PASSWORD, make_token, make_user

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None


class Browser:
    """A minimal cookie-keeping HTTP client that does not follow redirects."""

    def __init__(self, base: str) -> None:
        self.base = base
        self.jar = http.cookiejar.CookieJar()
        self.opener = urllib.request.build_opener(
            urllib.request.HTTPCookieProcessor(self.jar), _NoRedirect()
        )

    def cookie(self, name: str) -> http.cookiejar.Cookie | None:
        return next((c for c in self.jar if c.name == name), None)

    def request(self, method, path, data=None, headers=None, form=None):
        body = None
        headers = dict(headers or {})
        if form is not None:
            body = urllib.parse.urlencode(form).encode()
            headers["Content-Type"] = "application/x-www-form-urlencoded"
        elif data is not None:
            body = json.dumps(data).encode()
            headers["Content-Type"] = "application/json"
        request = urllib.request.Request(self.base + path, body, headers, method=method)
        try:
            with self.opener.open(request, timeout=10) as response:
                return response.status, dict(response.headers), response.read().decode()
        except urllib.error.HTTPError as error:
            return error.code, dict(error.headers), error.read().decode()

    def login(self, username: str, password: str = PASSWORD, next_url: str = ""):
        status, _, page = self.request(
            "GET", "login" + (f"?next={next_url}" if next_url else "")
        )
        assert status == 200
        csrf = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page).group(1)
        form = {"username": username, "password": password, "csrfmiddlewaretoken": csrf}
        if next_url:
            form["next"] = next_url
        return self.request(
            "POST", "login", form=form, headers={"Referer": self.base + "login"}
        )


def test_new_user_logs_in_creates_a_token_and_calls_the_api(daphne_server):
    make_user("erin", first_name="Erin")
    browser = Browser(daphne_server.url)
    status, headers, _ = browser.login("erin", next_url="/tokens")
    assert status == 302 and headers["Location"] == "/tokens"
    session = browser.cookie("jserver-session")
    assert session is not None and session.has_nonstandard_attr("HttpOnly")

    status, _, page = browser.request("GET", "tokens")
    assert status == 200 and "Create a token" in page
    csrf = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page).group(1)
    status, _, page = browser.request(
        "POST",
        "tokens",
        form={"name": "curl", "expires_in_days": "", "csrfmiddlewaretoken": csrf},
        headers={"Referer": daphne_server.url + "tokens"},
    )
    assert status == 200
    raw = re.search(r'id="new-token"[^>]*value="([0-9a-f]{48})"', page).group(1)

    api = Browser(daphne_server.url)
    status, headers, body = api.request(
        "GET", "api/me", headers={"Authorization": f"token {raw}"}
    )
    assert status == 200 and headers["Content-Type"] == "application/json"
    assert json.loads(body)["identity"]["username"] == "erin"
    assert api.cookie("jserver-session") is None  # an API call starts no session

    status, _, body = api.request("GET", "api/me")
    assert status == 403 and json.loads(body) == {
        "message": "Forbidden",
        "reason": None,
    }

    # The token never appears in the server's log, even in a URL.
    api.request("GET", f"api/me?token={raw}")
    api.request("GET", f"api/nothing?token={raw}")
    log = daphne_server.log()
    assert '"GET /api/me?token=[secret]" 200' in log
    assert raw not in log


def test_xsrf_is_enforced_on_cookie_sessions(daphne_server):
    make_user("frank")
    browser = Browser(daphne_server.url)
    browser.login("frank")
    xsrf = browser.cookie("_xsrf").value
    status, _, body = browser.request("PUT", "api/config/notebook", data={"a": 1})
    assert status == 403 and "_xsrf" in json.loads(body)["message"]
    status, _, _ = browser.request(
        "PUT", "api/config/notebook", data={"a": 1}, headers={"X-XSRFToken": xsrf}
    )
    assert status == 204


async def _handshake(url: str, headers: dict[str, str]) -> int:
    try:
        async with websockets.connect(url, additional_headers=headers, open_timeout=5):
            return 101
    except websockets.InvalidStatus as error:
        return error.response.status_code


def test_websocket_origin_rules_over_daphne(daphne_server):
    make_user("grace")
    browser = Browser(daphne_server.url)
    browser.login("grace")
    cookie = f"jserver-session={browser.cookie('jserver-session').value}"
    ws = f"ws://127.0.0.1:{daphne_server.port}/api/events/subscribe"
    own = f"http://127.0.0.1:{daphne_server.port}"

    async def run():
        return [
            await _handshake(ws, {"Cookie": cookie, "Origin": own}),
            await _handshake(ws, {"Cookie": cookie}),
            await _handshake(ws, {"Cookie": cookie, "Origin": "https://evil.example"}),
            await _handshake(ws, {}),
        ]

    assert asyncio.run(run()) == [101, 101, 403, 403]


def test_websocket_message_size_limit(daphne_server):
    user = make_user("heidi")
    raw = make_token(user)
    url = f"ws://127.0.0.1:{daphne_server.port}/api/events/subscribe?token={raw}"

    async def run():
        async with websockets.connect(url, max_size=None) as socket:
            await socket.send(b"x" * (9 * 1024 * 1024))  # under 10 MiB: accepted
            await asyncio.wait_for(await socket.ping(), 10)  # still open
            with pytest.raises(websockets.ConnectionClosed):
                await socket.send(b"x" * (11 * 1024 * 1024))  # over: daphne drops it
                await asyncio.wait_for(socket.recv(), 10)

    asyncio.run(run())


def test_base_url_prefixes_every_route_cookie_and_redirect(daphne_server, tmp_path):
    server = start_daphne(tmp_path, JSERVER_BASE_URL="/jupyter/")
    try:
        make_user("ivan")
        root = Browser(f"http://127.0.0.1:{server.port}/")
        assert root.request("GET", "api")[0] == 404
        browser = Browser(server.url)
        status, body = browser.request("GET", "api")[::2]
        assert status == 200 and json.loads(body) == {"version": "2.21.1"}
        status, headers, _ = browser.request("GET", "tokens")
        assert (
            status == 302
            and headers["Location"] == "/jupyter/login?next=/jupyter/tokens"
        )
        status, headers, _ = browser.login("ivan", next_url="/jupyter/tokens")
        assert status == 302 and headers["Location"] == "/jupyter/tokens"
        assert browser.cookie("jserver-session").path == "/jupyter/"
        assert browser.cookie("_xsrf").path == "/jupyter/"
        status, headers, _ = browser.request("GET", "api/")
        assert status == 302 and headers["Location"] == "/jupyter/api"
        status, _, page = browser.request("GET", "tokens")
        assert 'href="/jupyter/static/jserver/site.css' in page
        assert browser.request("GET", "static/jserver/site.css")[0] == 200
        cookie = f"jserver-session={browser.cookie('jserver-session').value}"

        async def run():
            ws = f"ws://127.0.0.1:{server.port}/jupyter/api/events/subscribe"
            bare = f"ws://127.0.0.1:{server.port}/api/events/subscribe"
            return [
                await _handshake(ws, {"Cookie": cookie}),
                await _handshake(bare, {"Cookie": cookie}),
            ]

        assert asyncio.run(run())[0] == 101
        assert asyncio.run(run())[1] != 101
    finally:
        stop_daphne(server)
