from django.urls import re_path

from frontend import views

_WORKSPACE = r"(?:/workspaces/(?P<workspace>[A-Za-z0-9_-]+))?"
_TREE = r"(?:/tree/(?P<tree>.*))?"

urlpatterns = [
    # JupyterLab, as jupyterlab_server routes it; reloads land on /lab/tree/<doc>.
    re_path(rf"^(?P<mode>lab|doc){_WORKSPACE}{_TREE}$", views.lab, name="lab"),
    re_path(r"^lab/api/licenses/?$", views.licenses_report, name="lab-licenses"),
    re_path(r"^lab/api/translations/?$", views.translations_list),
    re_path(r"^lab/api/translations/(?P<locale>[^/]*)$", views.translations_pack),
    re_path(r"^lab/api/(?P<rest>.*)$", views.lab_api_not_found),
    re_path(r"^lab/extensions/(?P<rest>.*)$", views.not_found),
    re_path(r"^lab/(?P<rest>.*)$", views.lab_not_found),
    # Notebook 7.
    re_path(r"^tree(?:/(?P<path>.*))?$", views.notebook, {"page": "tree"}, name="tree"),
    re_path(r"^notebooks(?:/(?P<path>.*))?$", views.notebook, {"page": "notebooks"}),
    re_path(r"^edit(?:/(?P<path>.*))?$", views.notebook, {"page": "edit"}),
    re_path(r"^consoles/(?P<path>.*)$", views.notebook, {"page": "consoles"}),
    re_path(r"^lsp/status$", views.lsp_status),
    re_path(r"^api/nbconvert$", views.nbconvert_formats, name="api-nbconvert"),
    # Exports, as jupyter_server's nbconvert handlers.
    re_path(r"^nbconvert/(?P<format>\w+)$", views.nbconvert_post),
    re_path(
        r"^nbconvert/(?P<format>\w+)(?P<path>(?:/[^/]+)+|/?)$",
        views.nbconvert_download,
        name="nbconvert",
    ),
    # The hub menu's Control Panel and Restart Server lead to the dashboard.
    re_path(r"^home$", views.dashboard_redirect),
    re_path(r"^spawn(?P<rest>/.*)?$", views.dashboard_redirect),
]
