"""The front ends' pages (JupyterLab, Notebook 7), the lab APIs they call, and
notebook exports (``/nbconvert``).

Pages need a login (an anonymous visit goes to the login page and comes back);
``?token=<t>`` logs the browser in first (``accounts.middleware``). Per-user
settings and workspaces are served by ``accounts``; the home dashboard's view is
``accounts.views.home`` over ``frontend.dashboard``.
"""

import datetime
from functools import wraps
from typing import Any
from urllib.parse import quote

from django.conf import settings
from django.contrib.auth.decorators import login_required
from django.contrib.auth.models import User
from django.contrib.auth.views import redirect_to_login
from django.http import (
    Http404,
    HttpRequest,
    HttpResponse,
    HttpResponseNotAllowed,
    HttpResponseRedirect,
)
from django.shortcuts import render
from django.utils import timezone
from django.utils.http import content_disposition_header, http_date
from django.views.decorators.cache import never_cache

from accounts import labsettings
from contents import manager as contents_manager
from frontend import exporters, licenses, pageconfig, translations
from frontend.assets import AppName
from frontend.pageconfig import NotebookPage
from jserver.api import (
    api_view,
    cross_site_refusal,
    download_user,
    json_body,
    json_response,
)
from jserver.errors import BadRequest, JupyterError, NotFound

# Notebook 7's page titles and favicons, as its templates have them.
_NOTEBOOK_PAGES: dict[str, tuple[str, str]] = {
    "tree": ("Home", "favicon.ico"),
    "notebooks": ("Jupyter Notebook - Notebook", "favicon-notebook.ico"),
    "edit": ("Jupyter Notebook - Edit", "favicon-file.ico"),
    "consoles": ("Jupyter Notebook - Console", "favicon-console.ico"),
}


def page(view):
    """Make ``view`` a front-end page: login required, never cached, no end slash.

    A trailing slash is stripped with a redirect, as jupyter_server does.
    """

    @wraps(view)
    def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        if request.path.endswith("/") and request.path != settings.BASE_URL:
            target = request.path.rstrip("/")
            if query := request.META.get("QUERY_STRING"):
                target += "?" + query
            return HttpResponseRedirect(target)
        return view(request, *args, **kwargs)

    return never_cache(login_required(wrapper))


def _render(
    request: HttpRequest, app: AppName, config: dict, **context: Any
) -> HttpResponse:
    context |= {"page_config": config, "main_url": pageconfig.main_bundle_url(app)}
    return render(request, f"frontend/{app}.html", context)


@page
def lab(
    request: HttpRequest,
    mode: str,
    workspace: str | None = None,
    tree: str | None = None,
) -> HttpResponse:
    """JupyterLab: ``/lab`` or ``/doc``, ``[/workspaces/<name>][/tree/<path>]``."""
    config = pageconfig.lab_page_config(
        request.user,
        single_document=mode == "doc",
        workspace=workspace or "default",
        tree_path=tree or "",
    )
    return _render(request, "lab", config)


@page
def lab_not_found(request: HttpRequest, rest: str) -> HttpResponse:
    """Any other ``/lab/...`` page: JupyterLab, telling the user it was not found."""
    config = pageconfig.lab_page_config(request.user, not_found_url=request.path)
    return _render(request, "lab", config)


def _kind(user: User, path: str) -> str | None:
    """Return what ``path`` is among ``user``'s files, ``None`` if nothing is there."""
    try:
        return contents_manager.get(path, owner=user, content=False)["type"]
    except JupyterError:  # missing, hidden, not readable: nothing to show
        return None


def _page_url(prefix: str, path: str) -> str:
    """Return ``<base>prefix/<path>``, each segment percent-encoded."""
    return f"{settings.BASE_URL}{prefix}/" + "/".join(map(quote, path.split("/")))


@page
def notebook(request: HttpRequest, page: NotebookPage, path: str | None = None):
    """Notebook 7: the file browser (``/tree``), notebook, editor and console pages.

    As notebook's app: ``/tree/<dir>`` lists a directory, ``/tree/<notebook>``
    goes to ``/notebooks/<notebook>``, ``/tree/<other file>`` to
    ``/files/<file>``, anything else is a 404; ``/notebooks/<dir>`` goes to
    ``/tree/<dir>``.
    """
    path = (path or "").strip("/")
    if page == "notebooks" and not path:
        return HttpResponseRedirect(settings.BASE_URL + "tree")
    if page == "tree" and path:
        kind = _kind(request.user, path)
        if kind is None:
            raise Http404
        if kind != "directory":
            prefix = "notebooks" if kind == "notebook" else "files"
            return HttpResponseRedirect(_page_url(prefix, path))
    if page == "notebooks" and _kind(request.user, path) == "directory":
        return HttpResponseRedirect(_page_url("tree", path))
    config = pageconfig.notebook_page_config(
        request.user, page, tree_path=path if page == "tree" else None
    )
    title, favicon = _NOTEBOOK_PAGES[page]
    return _render(
        request,
        "notebook",
        config,
        title=title,
        favicon=favicon,
        notebook_page=page,
    )


def dashboard_redirect(request: HttpRequest, rest: str = "") -> HttpResponse:
    """``/home`` and ``/spawn``, the hub menu's targets: the dashboard."""
    return HttpResponseRedirect(settings.BASE_URL)


def not_found(request: HttpRequest, rest: str = "") -> HttpResponse:
    """A missing asset under a front-end prefix: a plain 404, never a page."""
    raise Http404


@api_view("GET", "PUT", "POST", "PATCH", "DELETE")
def lab_api_not_found(request: HttpRequest, user: User, rest: str) -> HttpResponse:
    """An unknown ``/lab/api/...`` path: jupyter_server's JSON 404."""
    raise NotFound("Not Found")


@api_view("GET")
def translations_list(request: HttpRequest, user: User) -> HttpResponse:
    """The interface languages on offer."""
    display = labsettings.user_locale(user)
    return json_response(translations.languages(display))


@api_view("GET")
def translations_pack(request: HttpRequest, user: User, locale: str) -> HttpResponse:
    """The translations of one language (``default``: the user's server default)."""
    return json_response(translations.language_pack(locale))


def _flag(request: HttpRequest, name: str, default: bool) -> bool:
    value = request.GET.get(name)
    if value is None:
        return default
    if value.lower() in {"1", "true"}:
        return True
    if value.lower() in {"0", "false"}:
        return False
    raise BadRequest(f"{name} must be true or false")


@api_view("GET")
def licenses_report(request: HttpRequest, user: User) -> HttpResponse:
    """The third-party licence report (``format``, ``full_text``, ``download``)."""
    report_format = request.GET.get("format", "json")
    body, content_type = licenses.report(
        report_format,
        full_text=_flag(request, "full_text", True),
        selection=request.GET.get("bundles", ".*"),
    )
    response = HttpResponse(body, content_type=f"{content_type}; charset=utf-8")
    if _flag(request, "download", False):
        filename = f"jupyterlab-licenses{licenses.EXTENSIONS[report_format]}"
        response["Content-Disposition"] = content_disposition_header(True, filename)
    return response


@api_view("GET")
def lsp_status(request: HttpRequest, user: User) -> HttpResponse:
    """No language servers: what jupyter-lsp answers when none is installed.

    JupyterLab's language-server manager asks on start whatever its settings
    say; this answer keeps LSP features quietly empty.
    """
    return json_response({"version": 2, "sessions": {}, "specs": {}})


@api_view("GET")
def nbconvert_formats(request: HttpRequest, user: User) -> HttpResponse:
    """The notebook export formats on offer."""
    return json_response(exporters.export_formats())


# Converted notebooks run, if at all, in a sandbox of their own origin: exported
# HTML (the notebook's own HTML and scripts) never acts with the viewer's session.
NBCONVERT_CSP = "frame-ancestors 'self'; sandbox allow-scripts"


def _sandboxed(response: HttpResponse) -> HttpResponse:
    response["Content-Security-Policy"] = NBCONVERT_CSP
    response["X-Content-Type-Options"] = "nosniff"
    return response


def _refusal(request: HttpRequest, status: int, message: str = "") -> HttpResponse:
    if status == 404:
        return _sandboxed(render(request, "404.html", status=404))
    return _sandboxed(HttpResponse(message, status=status, content_type="text/plain"))


@never_cache
def nbconvert_download(request: HttpRequest, format: str, path: str) -> HttpResponse:
    """One of the user's notebooks converted (``/nbconvert/<format>/<path>``).

    ``?download=true`` makes it an attachment, ``?sanitize_html=true|false``
    sets HTML sanitising. A directory goes to ``/tree``, another file to
    ``/files``; another user's notebook, like a missing one, is a 404.
    """
    if request.method != "GET":
        return _sandboxed(HttpResponseNotAllowed(["GET"]))
    user, by_token = download_user(request)
    if user is None:
        return redirect_to_login(request.get_full_path())
    if not by_token and (refusal := cross_site_refusal(request)):
        return _refusal(request, 403, refusal)
    path = path.strip("/")
    try:
        exporters.exporter_class(format)
        model = contents_manager.get(path, owner=user)
    except NotFound:
        return _refusal(request, 404)
    except JupyterError as error:
        return _refusal(request, error.status, error.message)
    if model["type"] != "notebook":
        prefix = "tree" if model["type"] == "directory" else "files"
        return HttpResponseRedirect(_page_url(prefix, path))
    sanitize = request.GET.get("sanitize_html")
    modified = datetime.datetime.fromisoformat(model["last_modified"])
    try:
        result = exporters.export(
            model["name"],
            model["content"],
            format=format,
            modified=modified,
            sanitize_html=None if sanitize is None else sanitize.lower() == "true",
        )
    except JupyterError as error:
        return _refusal(request, error.status, error.message)
    response = HttpResponse(result.body, content_type=result.content_type)
    if result.zipped or request.GET.get("download", "false").lower() == "true":
        response["Content-Disposition"] = content_disposition_header(
            True, result.filename
        )
    response["Last-Modified"] = http_date(modified.timestamp())
    return _sandboxed(response)


@api_view("POST")
def nbconvert_post(request: HttpRequest, user: User, format: str) -> HttpResponse:
    """Convert the notebook in the body, ``{"name": ..., "content": {...}}``."""
    body = json_body(request)
    if not isinstance(body, dict) or not isinstance(body.get("content"), dict):
        raise BadRequest("The body must be a notebook model with its content")
    name = body.get("name")
    result = exporters.export(
        name if isinstance(name, str) and name else "notebook.ipynb",
        body["content"],
        format=format,
        modified=timezone.now(),
    )
    response = HttpResponse(result.body, content_type=result.content_type)
    if result.zipped:
        response["Content-Disposition"] = content_disposition_header(
            True, result.filename
        )
    return _sandboxed(response)
