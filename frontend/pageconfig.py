"""The page config (``jupyter-config-data``) of the JupyterLab and Notebook 7 shells.

The keys and their meaning are jupyterlab_server's and notebook's. What jserver
does not offer is switched off here so that the front ends neither show it nor
call for it: terminals, the extension and plugin managers (extensions are the
installation's), language servers, build checks, news, the quit button. What
the contents and kernels APIs do is described as jupyter_server does
(``delete_to_trash``, ``untracked_message_types``, ``notebookStartsKernel``). No API
token is ever put in a page: the browser authenticates with its session cookie
and the ``_xsrf`` cookie. The JupyterHub keys (``hubPrefix``, ``hubUser``) give
both front ends a File > Log Out entry that opens ``<baseUrl>logout``, and a
File > Hub Control Panel entry that opens ``<baseUrl>home``, the dashboard.
No server directory is disclosed (the ``*Dir`` keys stay out).
"""

import copy
import functools
import json
from typing import Any, Literal

from django.conf import settings
from django.contrib.auth.models import User

from frontend import assets
from kernels.manager import UNTRACKED

NotebookPage = Literal["tree", "notebooks", "edit", "consoles"]

# Plugins whose server side jserver does not offer (ids or whole packages).
UNSUPPORTED_PLUGINS = [
    "@jupyterlab/extensionmanager-extension",  # installs are the administrator's
    "@jupyterlab/pluginmanager-extension",  # so is which plugins run
    "@jupyterlab/apputils-extension:announcements",  # no news or update checks
    "@jupyterlab/hub-extension:connectionlost",  # keep the plain reconnect dialog
]

# The lab URLs, relative to the base URL as jupyterlab_server's LabConfig has them.
_LAB_URLS = {
    "appUrl": "/lab",
    "labextensionsUrl": "/lab/extensions",
    "licensesUrl": "/lab/api/licenses",
    "settingsUrl": "/lab/api/settings",
    "themesUrl": "/lab/api/themes",
    "translationsApiUrl": "/lab/api/translations",
    "treeUrl": "/lab/tree",
    "workspacesApiUrl": "/lab/api/workspaces",
}


def _disabled_extensions() -> list[str]:
    disabled = [*UNSUPPORTED_PLUGINS, *settings.DISABLED_EXTENSIONS]
    for extension in assets.labextensions().values():
        disabled += extension.disables  # an extension may replace core plugins
    return list(dict.fromkeys(disabled))


@functools.cache
def _common(app: assets.AppName, *configuration: Any) -> dict[str, Any]:
    """Return what every page of ``app`` shares, for one configuration."""
    base_url = settings.BASE_URL
    front_end = assets.front_end(app)
    version = [int(part) for part in settings.JUPYTER_SERVER_VERSION.split(".")]
    config: dict[str, Any] = {
        "appName": front_end.app_name,
        "appNamespace": front_end.namespace,
        "appVersion": front_end.version,
        "baseUrl": base_url,
        "wsUrl": "",  # derived from baseUrl and the page's origin
        "token": "",  # the session cookie authenticates, never a token in a page
        "fullStaticUrl": f"{base_url}static/{app}",
        **_LAB_URLS,
        **{
            "full" + key[0].upper() + key[1:]: base_url + value[1:]
            for key, value in _LAB_URLS.items()
        },
        "federated_extensions": [
            extension.page_config_entry()
            for extension in assets.labextensions().values()
        ],
        "disabledExtensions": _disabled_extensions(),
        "deferredExtensions": [],
        "ignorePlugins": [],
        "terminalsAvailable": False,
        "notebookStartsKernel": True,
        "buildAvailable": False,
        "buildCheck": False,
        "cacheFiles": app == "notebook",
        "devMode": False,
        "exposeAppInBrowser": False,
        "quitButton": False,
        "news": {"disabled": True},
        "allow_hidden_files": False,
        # Deleting moves to the owner's trash (contents.manager.delete), as
        # jupyter_server's delete_to_trash; JupyterLab's dialogs say so.
        "delete_to_trash": True,
        "copyAbsolutePath": False,
        "nbclassic_enabled": False,
        "notebookVersion": json.dumps(version),
        "preferredPath": "/",
        "serverRoot": "",
        "store_id": 0,
        "mathjaxConfig": "TeX-AMS_HTML-full,Safe",
        "hubPrefix": base_url,
        "hubHost": "",
        # Replies to these leave the kernel's activity alone, and JupyterLab
        # ignores the busy/idle status of their requests (jupyterlab_server
        # copies the kernel manager's list here).
        "untracked_message_types": sorted(UNTRACKED),
    }
    if app == "notebook":
        config["frontendUrl"] = base_url
    return config


def _for_user(app: assets.AppName, user: User) -> dict[str, Any]:
    configuration = (
        settings.BASE_URL,
        settings.LAB_APP_DIR,
        tuple(settings.LABEXTENSIONS_PATH),
        tuple(settings.DISABLED_EXTENSIONS),
    )
    config = copy.deepcopy(_common(app, *configuration))
    config["hubUser"] = user.get_username()
    return config


def lab_page_config(
    user: User,
    *,
    single_document: bool = False,
    workspace: str = "default",
    tree_path: str = "",
    not_found_url: str | None = None,
) -> dict[str, Any]:
    """Return the page config of a JupyterLab page (``/lab``, ``/doc``)."""
    config = _for_user("lab", user)
    config["mode"] = "single-document" if single_document else "multiple-document"
    config["workspace"] = workspace
    config["treePath"] = tree_path
    if not_found_url is not None:
        config["notFoundUrl"] = not_found_url
    return config


def notebook_page_config(
    user: User, page: NotebookPage, *, tree_path: str | None = None
) -> dict[str, Any]:
    """Return the page config of a Notebook 7 page (``/tree``, ``/notebooks``...)."""
    config = _for_user("notebook", user)
    config["notebookPage"] = page
    if tree_path is not None:
        config["treePath"] = tree_path
    return config


def main_bundle_url(app: assets.AppName) -> str:
    """Return the URL of the front end's entry point, cache-busted by its hash."""
    bundle = assets.front_end(app).main_bundle
    digest = bundle.split(".")[1]
    return f"{settings.BASE_URL}static/{app}/{bundle}?v={digest}"
