"""The front ends' pages (JupyterLab, Notebook 7) and the lab APIs they call.

Pages need a login (an anonymous visit goes to the login page and comes back);
``?token=<t>`` logs the browser in first (``accounts.middleware``). Per-user
settings and workspaces are served by ``accounts``.
"""

from functools import wraps
from typing import Any

from django.conf import settings
from django.contrib.auth.decorators import login_required
from django.contrib.auth.models import User
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import render
from django.utils.http import content_disposition_header
from django.views.decorators.cache import never_cache

from accounts import labsettings
from frontend import exporters, licenses, pageconfig, translations
from frontend.assets import AppName
from frontend.pageconfig import NotebookPage
from jserver.api import api_view, json_response
from jserver.errors import BadRequest, NotFound

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


@page
def notebook(request: HttpRequest, page: NotebookPage, path: str | None = None):
    """Notebook 7: the file browser (``/tree``), notebook, editor and console pages."""
    path = (path or "").strip("/")
    if page == "notebooks" and not path:
        return HttpResponseRedirect(settings.BASE_URL + "tree")
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
