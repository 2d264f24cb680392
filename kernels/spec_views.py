"""``/api/kernelspecs`` and ``/kernelspecs/<name>/<resource>``, as jupyter_server's.

The views are synchronous: their work is reading a few small installed files,
and HTTP requests already run on worker threads (jserver/handler.py).
"""

import email.utils
import mimetypes
import os
import stat
from urllib.parse import unquote

from django.contrib.auth.models import User
from django.contrib.auth.views import redirect_to_login
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseNotAllowed
from django.urls import path, re_path
from django.utils.http import http_date

from jserver.api import api_view, authenticate, json_response
from jserver.errors import Forbidden, NotFound
from kernels import specs

# jupyter_server lets browsers cache PNG kernel logos for 30 days.
PNG_MAX_AGE_SECONDS = 30 * 24 * 3600
# Installed files, not user bytes; still, an SVG opened on its own runs nothing
# with the viewer's session.
RESOURCE_CSP = "frame-ancestors 'self'; sandbox allow-scripts"
# jupyter_server registers these two types over the platform's (init_mime_overrides).
_FIXED_TYPES = {".js": "application/javascript", ".css": "text/css"}


@api_view("GET")
def kernelspecs(request: HttpRequest, user: User) -> HttpResponse:
    """List the kernelspecs and name the default one."""
    models = {name: specs.spec_model(spec) for name, spec in specs.find_specs().items()}
    return json_response({"default": specs.default_name(), "kernelspecs": models})


@api_view("GET")
def kernelspec(request: HttpRequest, user: User, name: str) -> HttpResponse:
    """Return one kernelspec's model."""
    name = unquote(name)  # jupyter_server unescapes the (decoded) name once more
    try:
        spec = specs.get_spec(name)
    except specs.NoSuchKernel:
        raise NotFound(f"Kernel spec {name} not found") from None
    return json_response(specs.spec_model(spec))


def resource_content_type(filename: str) -> str:
    """Return the Content-Type jupyter_server's static handler sends for a file."""
    if fixed := _FIXED_TYPES.get(os.path.splitext(filename)[1].lower()):
        return fixed
    mimetype, encoding = mimetypes.guess_type(filename)
    if encoding == "gzip":
        return "application/gzip"
    if encoding is not None or mimetype is None:
        return "application/octet-stream"
    return mimetype


def kernelspec_resource(request: HttpRequest, name: str, resource: str) -> HttpResponse:
    """Serve a kernelspec's resource file (a logo, ``kernel.js``).

    A page, not API: an unauthenticated browser is sent to the login page.
    """
    if request.method not in {"GET", "HEAD"}:
        return HttpResponseNotAllowed(["GET", "HEAD"])
    try:
        authenticate(request)
    except Forbidden:
        return redirect_to_login(request.get_full_path())
    try:
        spec = specs.get_spec(name)
    except specs.NoSuchKernel:
        raise Http404 from None
    found = specs.resource_path(spec, resource)
    if found is None:
        raise Http404
    try:
        with open(found, "rb") as handle:
            st = os.fstat(handle.fileno())
            if not stat.S_ISREG(st.st_mode):
                raise Http404
            body = b"" if request.method == "HEAD" else handle.read()
    except OSError:
        raise Http404 from None
    since = request.headers.get("If-Modified-Since")
    if since and int(st.st_mtime) <= _parse_http_date(since):
        response = HttpResponse(status=304)
    else:
        response = HttpResponse(body, content_type=resource_content_type(found.name))
        response["Content-Length"] = str(st.st_size)
    response["Last-Modified"] = http_date(st.st_mtime)
    if found.name.lower().endswith(".png"):
        response["Cache-Control"] = f"max-age={PNG_MAX_AGE_SECONDS}"
    response["Content-Security-Policy"] = RESOURCE_CSP
    response["X-Content-Type-Options"] = "nosniff"
    return response


def _parse_http_date(value: str) -> float:
    """Return an HTTP date as a timestamp, or -1 when it is not one."""
    try:
        return email.utils.parsedate_to_datetime(value).timestamp()
    except (TypeError, ValueError, IndexError, OverflowError):
        return -1


urlpatterns = [
    path("api/kernelspecs", kernelspecs, name="api-kernelspecs"),
    path("api/kernelspecs/<str:name>", kernelspec, name="api-kernelspec"),
    re_path(
        r"^kernelspecs/(?P<name>[^/]+)/(?P<resource>.+)$",
        kernelspec_resource,
        name="kernelspec-resource",
    ),
]
