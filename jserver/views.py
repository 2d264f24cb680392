"""Views of the project itself: ``/api``, ``/api/status``, errors, trailing slashes."""

from django.conf import settings
from django.contrib.auth.models import User
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import render

from jserver import activity
from jserver.api import api_view, isoformat, json_response, unhandled_response
from kernels import manager


@api_view("GET", auth=False)
async def api_root(request: HttpRequest) -> HttpResponse:
    """Return the jupyter_server version whose API this server speaks."""
    return json_response({"version": settings.JUPYTER_SERVER_VERSION})


@api_view("GET", track_activity=False)
async def api_status(request: HttpRequest, user: User) -> HttpResponse:
    """Return the server's status as the user sees it (their kernels only)."""
    kernels, connections = await manager.status_counts(owner=user)
    return json_response(
        {
            "started": isoformat(activity.STARTED),
            "last_activity": isoformat(activity.last_activity(user)),
            "kernels": kernels,
            "connections": connections,
        }
    )


def strip_trailing_slash(request: HttpRequest, path: str) -> HttpResponse:
    """Redirect ``/x/`` to ``/x`` (302), as jupyter_server's TrailingSlashHandler."""
    target = settings.BASE_URL + path
    if query := request.META.get("QUERY_STRING"):
        target += "?" + query
    return HttpResponseRedirect(target)


def _is_api(request: HttpRequest) -> bool:
    api = settings.BASE_URL + "api"
    return request.path == api or request.path.startswith(api + "/")


def not_found(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    """Answer an unknown path: JSON under /api, a page elsewhere."""
    if _is_api(request):
        return json_response({"message": "Not Found", "reason": None}, status=404)
    return render(request, "404.html", status=404)


def server_error(request: HttpRequest) -> HttpResponse:
    """Answer an unhandled error without a traceback: JSON under /api."""
    if _is_api(request):
        return unhandled_response()
    return render(request, "500.html", status=500)


def csrf_failure(request: HttpRequest, reason: str = "") -> HttpResponse:
    """Answer a form posted without a valid XSRF token (a stale or forged form)."""
    return render(request, "403_csrf.html", status=403)
