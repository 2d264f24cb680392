"""Authentication at the edges: ``?token=`` page logins, and WebSocket handshakes.

API views authenticate in ``jserver.api.api_view``; WebSocket consumers get a
``scope["user"]`` from ``WebsocketAuthMiddleware`` resolved the same way
(token first, else the session cookie, with an Origin check for cookies).
"""

import logging
import re
from inspect import iscoroutinefunction
from urllib.parse import parse_qs, urlencode, urlsplit

from channels.auth import get_user
from channels.sessions import CookieMiddleware, SessionMiddleware
from django.conf import settings
from django.contrib.auth import alogin, login
from django.contrib.auth.models import AnonymousUser
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.http.request import split_domain_port, validate_host
from django.utils.decorators import sync_and_async_middleware

from accounts import audit, tokens

log = logging.getLogger(__name__)

MODEL_BACKEND = "django.contrib.auth.backends.ModelBackend"
_AUTH_HEADER = re.compile(rb"(?i)^\s*(token|bearer)\s+(\S+)\s*$")


def client_address(request: HttpRequest) -> str | None:
    """Return the client's IP address (daphne applies trusted proxy headers)."""
    return request.META.get("REMOTE_ADDR") or None


def _url_without_token(request: HttpRequest) -> str:
    query = [(k, v) for k, v in request.GET.lists() if k != "token"]
    return request.path + (f"?{urlencode(query, doseq=True)}" if query else "")


# Routes that authenticate a ``?token=`` themselves, as API calls do: a download
# with a token answers the file, not a login and a redirect.
_TOKEN_AUTHENTICATED = ("api/", "files/", "nbconvert/", "kernelspecs/")


def _wants_token_login(request: HttpRequest) -> bool:
    return (
        request.method in {"GET", "HEAD"}
        and "token" in request.GET
        and not request.path.startswith(
            tuple(settings.BASE_URL + prefix for prefix in _TOKEN_AUTHENTICATED)
        )
    )


def _logged_in(request: HttpRequest, token: tokens.ApiToken) -> HttpResponse:
    log.info("user %s logged in with token %s…", token.user.pk, token.prefix)
    return HttpResponseRedirect(_url_without_token(request))


@sync_and_async_middleware
def token_login_middleware(get_response):
    """Log the browser in when a page is opened with a valid ``?token=``.

    As jupyter_server's token login: ``/lab?token=<t>`` starts a session (a new
    session key, so no fixation), then the browser is redirected to the same
    URL without the token so it stays out of history and Referer headers. An
    invalid token is ignored: the page then asks for a login as usual.
    """
    if iscoroutinefunction(get_response):

        async def middleware(request: HttpRequest) -> HttpResponse:
            if _wants_token_login(request):
                token = await tokens.aauthenticate_token(request.GET["token"])
                if token is not None:
                    await alogin(request, token.user, backend=MODEL_BACKEND)
                    await audit.arecord(
                        "login",
                        actor=token.user,
                        address=client_address(request),
                        method="token",
                    )
                    return _logged_in(request, token)
            return await get_response(request)

    else:

        def middleware(request: HttpRequest) -> HttpResponse:
            if _wants_token_login(request):
                token = tokens.authenticate_token(request.GET["token"])
                if token is not None:
                    login(request, token.user, backend=MODEL_BACKEND)
                    audit.record(
                        "login",
                        actor=token.user,
                        address=client_address(request),
                        method="token",
                    )
                    return _logged_in(request, token)
            return get_response(request)

    return middleware


def _headers(scope: dict) -> dict[bytes, bytes]:
    return {name.lower(): value for name, value in scope.get("headers", [])}


def scope_token(scope: dict) -> str | None:
    """Return the API token a WebSocket handshake presents (``?token=`` first)."""
    query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
    if values := query.get("token"):
        return values[0]
    header = _headers(scope).get(b"authorization", b"")
    if match := _AUTH_HEADER.match(header):
        return match.group(2).decode("latin-1")
    return None


def host_allowed(scope: dict) -> bool:
    """Return whether the handshake's ``Host`` is one of ``ALLOWED_HOSTS``."""
    host = _headers(scope).get(b"host", b"").decode("latin-1")
    domain, _port = split_domain_port(host)
    return bool(domain) and validate_host(domain, settings.ALLOWED_HOSTS)


def origin_allowed(scope: dict) -> bool:
    """Return whether a cookie-authenticated handshake may come from its ``Origin``.

    A missing Origin is a non-browser client and allowed, as in jupyter_server;
    ``null`` is refused; otherwise the origin's host must be the ``Host`` the
    browser connected to, or an origin listed in ``JSERVER_ALLOW_ORIGINS``.
    """
    headers = _headers(scope)
    origin = headers.get(b"origin")
    if origin is None:
        return True
    origin_text = origin.decode("latin-1").strip()
    if origin_text in settings.ALLOW_ORIGINS:
        return True
    parts = urlsplit(origin_text)
    if parts.scheme not in {"http", "https"} or not parts.netloc:
        return False
    host = headers.get(b"host", b"").decode("latin-1")
    return parts.netloc.lower() == host.lower()


class WebsocketAuthMiddleware:
    """Put the handshake's user in ``scope["user"]`` (``AnonymousUser`` if none).

    A token (query or header) authenticates without an Origin check, as in
    jupyter_server; otherwise the session cookie does, only from an allowed
    Origin. Consumers refuse anonymous users by closing before ``accept()``.
    """

    def __init__(self, inner) -> None:
        self.inner = inner
        self.cookie_stack = CookieMiddleware(SessionMiddleware(self._session_user))

    async def __call__(self, scope, receive, send):
        if not host_allowed(scope):
            log.warning("refused WebSocket for a host not in ALLOWED_HOSTS")
            return await self.inner(dict(scope, user=AnonymousUser()), receive, send)
        raw = scope_token(scope)
        if raw is not None:
            token = await tokens.aauthenticate_token(raw)
            user = token.user if token is not None else AnonymousUser()
            scope = dict(scope, user=user, token_authenticated=True)
            return await self.inner(scope, receive, send)
        return await self.cookie_stack(scope, receive, send)

    async def _session_user(self, scope, receive, send):
        user = await get_user(scope)
        if user.is_authenticated and not origin_allowed(scope):
            log.warning("refused cookie-authenticated WebSocket from a foreign Origin")
            user = AnonymousUser()
        return await self.inner(dict(scope, user=user), receive, send)
