"""The front ends' pages (JupyterLab, Notebook 7) and what they are configured with."""

import json
import re
from urllib.parse import quote

import pytest
from django.conf import settings
from django.test import override_settings

from contents import manager
from contents.storage import user_root
from frontend import assets, pageconfig
from kernels.manager import UNTRACKED
from tests.factories import PASSWORD, make_notebook, make_token, make_user

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("fresh_data")]


_CONFIG = re.compile(
    r'<script id="jupyter-config-data" type="application/json">(.*?)</script>', re.S
)


def page_config(response) -> dict:
    """Return the page config a front-end page carries."""
    assert response.status_code == 200, response
    return json.loads(_CONFIG.search(response.content.decode()).group(1))


def main_script(response) -> str:
    return re.search(r'<script defer src="([^"]+)"', response.content.decode()).group(1)


# ---- access ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "path",
    [
        "/lab",
        "/lab/tree/a b/c.ipynb",
        "/lab/workspaces/w1",
        "/doc",
        "/tree",
        "/notebooks/x.ipynb",
        "/edit/x.txt",
        "/consoles/x",
        "/lab/anything",
    ],
)
def test_anonymous_visit_goes_to_login_and_comes_back(client, user, path):
    response = client.get(path)
    assert response.status_code == 302
    url = quote(path)  # what the browser asks for, and is sent back to
    assert response["Location"] == f"/login?next={quote(url)}"
    response = client.post(
        "/login", {"username": "alice", "password": PASSWORD, "next": url}
    )
    assert response.status_code == 302 and response["Location"] == url
    assert client.get(path).status_code == 200


def test_token_in_the_url_logs_in_and_is_dropped(client, user):
    token = make_token(user)
    response = client.get(f"/lab/tree/x.ipynb?token={token}&reset")
    assert response.status_code == 302
    assert response["Location"] == "/lab/tree/x.ipynb?reset="
    response = client.get(response["Location"])
    assert token not in response.content.decode()
    assert page_config(response)["token"] == ""


def test_bad_token_in_the_url_still_asks_for_a_login(client, user):
    response = client.get("/lab?token=" + "0" * 48)
    assert response.status_code == 302
    assert response["Location"].startswith("/login?next=")


def test_pages_are_never_cached_and_set_the_xsrf_cookie(client_for, user):
    response = client_for(user).get("/lab")
    assert "no-store" in response["Cache-Control"]
    assert "private" in response["Cache-Control"]
    assert response.cookies["_xsrf"]["httponly"] == ""  # JupyterLab reads it


@pytest.mark.parametrize(
    ("path", "target"),
    [
        ("/lab/", "/lab"),
        ("/lab/tree/dir/", "/lab/tree/dir"),
        ("/tree/dir/?x=1", "/tree/dir?x=1"),
        ("/notebooks", "/tree"),
        ("/notebooks/", "/notebooks"),
    ],
)
def test_trailing_slashes_and_empty_notebook_paths_redirect(
    client_for, user, path, target
):
    response = client_for(user).get(path)
    assert response.status_code == 302 and response["Location"] == target


def test_terminal_pages_are_not_offered(client_for, user):
    assert client_for(user).get("/terminals/1").status_code == 404


# ---- JupyterLab -------------------------------------------------------------------


def test_lab_page_config(client_for, user):
    response = client_for(user).get("/lab")
    config = page_config(response)
    lab = assets.front_end("lab")
    assert config["appName"] == "JupyterLab"
    assert config["appNamespace"] == "lab"
    assert config["appVersion"] == lab.version and lab.version.startswith("4.")
    assert config["baseUrl"] == "/" and config["wsUrl"] == ""
    assert config["token"] == ""
    assert config["fullStaticUrl"] == "/static/lab"
    assert config["appUrl"] == "/lab" and config["fullAppUrl"] == "/lab"
    assert config["fullSettingsUrl"] == "/lab/api/settings"
    assert config["fullThemesUrl"] == "/lab/api/themes"
    assert config["fullTranslationsApiUrl"] == "/lab/api/translations"
    assert config["fullWorkspacesApiUrl"] == "/lab/api/workspaces"
    assert config["fullLicensesUrl"] == "/lab/api/licenses"
    assert config["fullLabextensionsUrl"] == "/lab/extensions"
    assert config["treeUrl"] == "/lab/tree"
    assert config["mode"] == "multiple-document"
    assert config["workspace"] == "default" and config["treePath"] == ""
    assert "notFoundUrl" not in config
    assert config["notebookVersion"] == "[2, 21, 1]"
    # As the contents and kernels APIs behave: deletes go to the trash, the
    # kernel's status for these requests is not the user's activity.
    assert config["delete_to_trash"] is True
    assert config["notebookStartsKernel"] is True
    assert set(config["untracked_message_types"]) == UNTRACKED
    assert {"kernel_info_request", "comm_info_request"} <= UNTRACKED
    assert "execute_request" not in UNTRACKED
    # What jserver does not offer is off.
    assert config["terminalsAvailable"] is False
    assert config["quitButton"] is False
    assert config["buildAvailable"] is False and config["buildCheck"] is False
    assert config["news"] == {"disabled": True}
    for plugin in (
        "@jupyterlab/extensionmanager-extension",
        "@jupyterlab/pluginmanager-extension",
        "@jupyterlab/apputils-extension:announcements",
    ):
        assert plugin in config["disabledExtensions"]
    # The hub keys give File > Log Out (<baseUrl>logout) and the dashboard.
    assert config["hubPrefix"] == "/" and config["hubHost"] == ""
    assert config["hubUser"] == "alice"
    names = {entry["name"] for entry in config["federated_extensions"]}
    assert {"jupyterlab_pygments", "@jupyter-notebook/lab-extension"} <= names
    assert main_script(response) == pageconfig.main_bundle_url("lab")


def test_page_config_discloses_no_server_path(client_for, user):
    text = json.dumps(page_config(client_for(user).get("/lab")))
    for secret in (str(settings.DATA_DIR), str(settings.BASE_DIR), "site-packages"):
        assert secret not in text
    assert not any(key.endswith("Dir") for key in json.loads(text))


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("/lab/tree/a/b c.ipynb", {"treePath": "a/b c.ipynb", "workspace": "default"}),
        ("/lab/workspaces/w-1_x", {"workspace": "w-1_x", "treePath": ""}),
        (
            "/lab/workspaces/w1/tree/d/n.ipynb",
            {"workspace": "w1", "treePath": "d/n.ipynb"},
        ),
        ("/doc", {"mode": "single-document"}),
        ("/doc/tree/n.ipynb", {"mode": "single-document", "treePath": "n.ipynb"}),
        ("/lab/nowhere/x", {"notFoundUrl": "/lab/nowhere/x", "treePath": ""}),
        ("/lab/workspaces/bad name", {"notFoundUrl": "/lab/workspaces/bad name"}),
    ],
)
def test_lab_urls_set_mode_workspace_and_tree_path(client_for, user, path, expected):
    config = page_config(client_for(user).get(path))
    assert {key: config.get(key) for key in expected} == expected


def test_each_user_gets_their_own_identity(client_for, user, other_user):
    assert page_config(client_for(user).get("/lab"))["hubUser"] == "alice"
    assert page_config(client_for(other_user).get("/lab"))["hubUser"] == "bob"


def test_page_config_is_escaped_in_the_page(client_for, db):
    user = make_user("x</script><b>")
    response = client_for(user).get("/lab")
    assert "</script><b>" not in response.content.decode()
    assert page_config(response)["hubUser"] == "x</script><b>"


@override_settings(DISABLED_EXTENSIONS=["@jupyterlab/debugger-extension"])
def test_administrators_can_disable_more_plugins(client_for, user):
    config = page_config(client_for(user).get("/lab"))
    assert "@jupyterlab/debugger-extension" in config["disabledExtensions"]


@override_settings(BASE_URL="/jupyter/")
def test_page_config_follows_the_base_url(user):
    config = pageconfig.lab_page_config(user)
    assert config["baseUrl"] == "/jupyter/"
    assert config["hubPrefix"] == "/jupyter/"
    assert config["fullStaticUrl"] == "/jupyter/static/lab"
    assert config["fullSettingsUrl"] == "/jupyter/lab/api/settings"
    assert config["appUrl"] == "/lab"  # relative to baseUrl, as jupyterlab_server
    assert pageconfig.main_bundle_url("notebook").startswith(
        "/jupyter/static/notebook/"
    )


# ---- Notebook 7 -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "page", "title"),
    [
        ("/tree", "tree", "Home"),
        ("/tree/sub dir", "tree", "Home"),
        ("/notebooks/a/x.ipynb", "notebooks", "Jupyter Notebook - Notebook"),
        ("/edit/a/x.txt", "edit", "Jupyter Notebook - Edit"),
        ("/consoles/a/x.py", "consoles", "Jupyter Notebook - Console"),
    ],
)
def test_notebook_pages(client_for, user, path, page, title):
    manager.save({"type": "directory"}, "sub dir", owner=user)
    response = client_for(user).get(path)
    config = page_config(response)
    html = response.content.decode()
    assert config["notebookPage"] == page
    assert config["appName"] == "Jupyter Notebook"
    assert config["appNamespace"] == "notebook"
    assert config["appVersion"].startswith("7.")
    assert config["fullStaticUrl"] == "/static/notebook"
    assert config["frontendUrl"] == "/"
    assert config["appUrl"] == "/lab"  # settings and themes live under /lab
    assert config["token"] == "" and config["terminalsAvailable"] is False
    assert config["hubUser"] == "alice"
    assert f"<title>{title}</title>" in html
    assert 'href="/custom/custom.css"' in html
    assert main_script(response) == pageconfig.main_bundle_url("notebook")
    if page == "tree":
        assert config["treePath"] == path.removeprefix("/tree").strip("/")
    else:
        assert "treePath" not in config
    has_attribute = f'data-notebook="{page}"' in html
    assert has_attribute == (page in {"notebooks", "edit"})


@pytest.mark.parametrize(
    ("path", "target"),
    [
        ("/tree/a%20dir/n%20b.ipynb", "/notebooks/a%20dir/n%20b.ipynb"),
        ("/tree/a%20dir/t.txt", "/files/a%20dir/t.txt"),
        ("/tree/a%20dir/%C3%A9.py", "/files/a%20dir/%C3%A9.py"),
        ("/notebooks/a%20dir", "/tree/a%20dir"),
    ],
)
def test_files_under_tree_and_folders_under_notebooks_redirect(
    client_for, user, path, target
):
    manager.save({"type": "directory"}, "a dir", owner=user)
    manager.save(
        {"type": "notebook", "content": make_notebook()}, "a dir/n b.ipynb", owner=user
    )
    for name in ("t.txt", "é.py"):
        text = {"type": "file", "format": "text", "content": "x"}
        manager.save(text, f"a dir/{name}", owner=user)
    response = client_for(user).get(path)
    assert response.status_code == 302 and response["Location"] == target


@pytest.mark.parametrize("path", ["/tree/missing", "/tree/.hidden", "/tree/mine"])
def test_tree_of_nothing_visible_is_not_found(client_for, user, other_user, path):
    manager.save({"type": "directory"}, "mine", owner=other_user)
    (user_root(user) / ".hidden").mkdir()
    response = client_for(user).get(path)
    assert response.status_code == 404
    assert "jupyter-config-data" not in response.content.decode()


def test_a_notebook_page_opens_for_a_path_not_saved_yet(client_for, user):
    # Notebook 7 shows its own "file not found" in the page, as with jupyter_server.
    response = client_for(user).get("/notebooks/not%20yet.ipynb")
    assert page_config(response)["notebookPage"] == "notebooks"


# ---- hub menu targets -------------------------------------------------------------


@pytest.mark.parametrize("path", ["/home", "/spawn", "/spawn/alice/x"])
def test_hub_menu_targets_lead_to_the_dashboard(client, path):
    response = client.get(path)
    assert response.status_code == 302 and response["Location"] == "/"
