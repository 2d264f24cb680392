"""JSON and authentication glue shared by every /api view.

``api_view`` is the one place where an API request is authenticated (session
cookie, ``Authorization: token|bearer <t>`` or ``?token=<t>``), checked for XSRF
when the cookie authenticated it, checked for its method, and where
``JupyterError`` becomes jupyter_server's error body.
"""

import datetime
import functools
import json
import logging
import re
from collections.abc import Callable
from inspect import iscoroutinefunction
from typing import Any
from urllib.parse import urlsplit

from django.conf import settings
from django.contrib.auth.models import AnonymousUser, User
from django.http import HttpRequest, HttpResponse
from django.middleware.csrf import (
    REASON_CSRF_TOKEN_MISSING,
    REASON_NO_CSRF_COOKIE,
    CsrfViewMiddleware,
)
from django.utils.crypto import constant_time_compare

from accounts import tokens
from jserver import activity
from jserver.errors import BadRequest, Forbidden, JupyterError, MethodNotAllowed

log = logging.getLogger(__name__)

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
# jupyter_server's default headers for API responses.
API_CSP = "frame-ancestors 'self'; default-src 'none'"
_AUTH_HEADER = re.compile(r"(?i)^\s*(token|bearer)\s+(\S.*?)\s*$")


def isoformat(moment: datetime.datetime | None) -> str | None:
    """Return ``moment`` as jupyter_server writes times: UTC, microseconds, ``Z``."""
    if moment is None:
        return None
    moment = moment.astimezone(datetime.UTC).replace(tzinfo=None)
    return moment.isoformat(timespec="microseconds") + "Z"


def _json_default(value: Any) -> Any:
    if isinstance(value, datetime.datetime):
        return isoformat(value)
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def json_response(
    data: Any, *, status: int = 200, headers: dict[str, str] | None = None
) -> HttpResponse:
    """Return ``data`` as an ``application/json`` response."""
    body = json.dumps(data, default=_json_default, separators=(",", ":"))
    return HttpResponse(
        body, status=status, headers=headers, content_type="application/json"
    )


def error_response(error: JupyterError) -> HttpResponse:
    """Render ``error`` as jupyter_server's ``{"message", "reason"}`` body."""
    log.warning("wrote error: %r (%d)", error.message, error.status)
    return json_response(error.model(), status=error.status)


def unhandled_response() -> HttpResponse:
    """Return jupyter_server's body for an unexpected failure (no traceback)."""
    return json_response(
        {"message": "Unhandled error", "reason": None, "traceback": ""}, status=500
    )


def json_body(request: HttpRequest) -> Any:
    """Return the request's JSON body, ``None`` when empty, or raise ``BadRequest``."""
    if not request.body:
        return None
    try:
        return json.loads(request.body)
    except (ValueError, RecursionError):
        raise BadRequest("Invalid JSON in body of request") from None


def request_token(request: HttpRequest) -> str | None:
    """Return the API token a request presents (``?token=`` first), if any."""
    if token := request.GET.get("token"):
        return token
    # META, not request.headers: that builds a dictionary of every header.
    if match := _AUTH_HEADER.match(request.META.get("HTTP_AUTHORIZATION", "")):
        return match.group(2)
    return None


def download_user(request: HttpRequest) -> tuple[User | None, bool]:
    """Return a download's user (None: nobody) and whether a token said so.

    For the file routes (``/files``, ``/nbconvert``): a token in the request
    decides alone; otherwise the session cookie.
    """
    raw = request_token(request)
    if raw is not None:
        token = tokens.authenticate_token(raw)
        return (token.user if token is not None else None), True
    user = request.user
    return (user if user.is_authenticated else None), False


def cross_site_refusal(request: HttpRequest) -> str | None:
    """Return why a cookie-authenticated download is refused, if it is.

    As jupyter_server for a GET of a file: the ``_xsrf`` cookie echoed in
    ``?_xsrf=`` or a header (JupyterLab's downloads), or a Referer from this
    host (links in its pages); other sites may not make a user's browser fetch
    their files (XSSI).
    """
    cookie = request.COOKIES.get(settings.CSRF_COOKIE_NAME, "")
    echoed = (
        request.GET.get("_xsrf")
        or request.headers.get("X-XSRFToken")
        or request.headers.get("X-CSRFToken")
        or ""
    )
    if cookie and echoed and constant_time_compare(cookie, echoed):
        return None
    referer = request.headers.get("Referer")
    if referer and urlsplit(referer).netloc == request.get_host():
        return None
    if referer:
        return f"Blocking Cross Origin request from {referer}."
    return "Blocking request from unknown origin"


def _user_from_token(request: HttpRequest, token: tokens.ApiToken | None) -> User:
    if token is None:
        raise Forbidden("Forbidden")
    request.token_authenticated = True
    request._dont_enforce_csrf_checks = True  # tokens are not ambient credentials
    request.user = token.user
    return token.user


def authenticate(request: HttpRequest) -> User:
    """Return the request's user, or raise ``Forbidden`` (jupyter_server's 403)."""
    raw = request_token(request)
    if raw is not None:
        return _user_from_token(request, tokens.authenticate_token(raw))
    user = request.user
    if not user.is_authenticated:
        raise Forbidden("Forbidden")
    return user


async def aauthenticate(request: HttpRequest) -> User:
    """Async twin of ``authenticate``."""
    raw = request_token(request)
    if raw is not None:
        return _user_from_token(request, await tokens.aauthenticate_token(raw))
    user = await request.auser()
    if isinstance(user, AnonymousUser) or not user.is_authenticated:
        raise Forbidden("Forbidden")
    return user


class _XsrfCheck(CsrfViewMiddleware):
    """Django's CSRF check, answering the failure reason instead of a page."""

    def _reject(self, request: HttpRequest, reason: str) -> str:
        return reason


_XSRF_MESSAGES = {
    REASON_NO_CSRF_COOKIE: "'_xsrf' argument missing from POST",
    REASON_CSRF_TOKEN_MISSING: "'_xsrf' argument missing from POST",
}


def check_xsrf(request: HttpRequest) -> None:
    """Refuse a cookie-authenticated unsafe request without the matching XSRF token.

    JupyterLab sends the ``_xsrf`` cookie back in ``X-XSRFToken``; jupyter_server
    also accepts ``X-CSRFToken`` and an ``_xsrf`` argument, and so does this.
    """
    if request.method in SAFE_METHODS or getattr(request, "token_authenticated", False):
        return
    meta = request.META
    if settings.CSRF_HEADER_NAME not in meta:
        alternative = meta.get("HTTP_X_CSRFTOKEN") or request.GET.get("_xsrf")
        if alternative:
            meta[settings.CSRF_HEADER_NAME] = alternative
    reason = _XsrfCheck(lambda r: None).process_view(request, None, (), {})
    if reason:
        message = _XSRF_MESSAGES.get(reason)
        if message is None and "incorrect" in reason:
            message = "XSRF cookie does not match POST argument"
        raise Forbidden(message or reason)


def _finish(response: HttpResponse) -> HttpResponse:
    if "Content-Security-Policy" not in response:
        response["Content-Security-Policy"] = API_CSP
    return response


def _check_method(request: HttpRequest, methods: frozenset[str]) -> None:
    if request.method not in methods:
        raise MethodNotAllowed("Method Not Allowed")


def api_view(
    *methods: str, auth: bool = True, track_activity: bool = True
) -> Callable[[Callable], Callable]:
    """Make a function an API view: auth, XSRF, method check, JSON errors.

    An authenticated view is called as ``view(request, user, *args, **kwargs)``;
    with ``auth=False`` as ``view(request, *args, **kwargs)``. Views may be
    sync (files) or async (kernels); the wrapper matches.
    """
    allowed = frozenset(methods) | {"OPTIONS"}

    def decorator(view: Callable) -> Callable:
        if iscoroutinefunction(view):

            async def wrapper(request: HttpRequest, *args: Any, **kwargs: Any):
                try:
                    _check_method(request, allowed)
                    if request.method == "OPTIONS":
                        return _finish(HttpResponse(status=204))
                    if not auth:
                        return _finish(await view(request, *args, **kwargs))
                    user = await aauthenticate(request)
                    check_xsrf(request)
                    if track_activity:
                        activity.touch(user)
                    return _finish(await view(request, user, *args, **kwargs))
                except JupyterError as error:
                    return _finish(error_response(error))
                except Exception:
                    log.exception(
                        "Unhandled error in %s %s", request.method, view.__name__
                    )
                    return _finish(unhandled_response())

        else:

            def wrapper(request: HttpRequest, *args: Any, **kwargs: Any):
                try:
                    _check_method(request, allowed)
                    if request.method == "OPTIONS":
                        return _finish(HttpResponse(status=204))
                    if not auth:
                        return _finish(view(request, *args, **kwargs))
                    user = authenticate(request)
                    check_xsrf(request)
                    if track_activity:
                        activity.touch(user)
                    return _finish(view(request, user, *args, **kwargs))
                except JupyterError as error:
                    return _finish(error_response(error))
                except Exception:
                    log.exception(
                        "Unhandled error in %s %s", request.method, view.__name__
                    )
                    return _finish(unhandled_response())

        wrapper.csrf_exempt = True  # checked above, only for cookie authentication
        return functools.wraps(view)(wrapper)

    return decorator
