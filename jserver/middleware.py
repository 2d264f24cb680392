"""Project-wide middleware."""

from inspect import iscoroutinefunction

from django.http import HttpRequest, HttpResponse
from django.middleware.csrf import get_token
from django.utils.decorators import sync_and_async_middleware


def _ensure_xsrf_cookie(request: HttpRequest, response: HttpResponse) -> HttpResponse:
    if response.get("Content-Type", "").startswith("text/html"):
        get_token(request)  # CsrfViewMiddleware then sets the _xsrf cookie
    return response


@sync_and_async_middleware
def xsrf_cookie_middleware(get_response):
    """Set the ``_xsrf`` cookie on every page, as jupyter_server does.

    JupyterLab reads it and echoes it in ``X-XSRFToken`` on unsafe requests.
    Must come after ``CsrfViewMiddleware`` in ``MIDDLEWARE``.
    """
    if iscoroutinefunction(get_response):

        async def middleware(request: HttpRequest) -> HttpResponse:
            return _ensure_xsrf_cookie(request, await get_response(request))

    else:

        def middleware(request: HttpRequest) -> HttpResponse:
            return _ensure_xsrf_cookie(request, get_response(request))

    return middleware
