"""JupyterLab and Notebook 7, served by a live daphne, in a real Chromium.

Logging in, the home page, both shells with their theme, ``?token=`` logins,
File > Log Out, two users side by side, a base URL. Every request the front
ends make is recorded (``<test>-requests-<n>.txt`` beside the screenshots) and
must succeed. The notebook flow (kernels, saving, renaming) is test_flow.py's.
"""

import re

import pytest

from tests.browser.lab import (
    api_me,
    log_in,
    open_lab,
    page_config,
    wait_for_notebook_tree,
)
from tests.conftest import start_daphne, stop_daphne
from tests.factories import make_token, make_user

pytestmark = [
    pytest.mark.browser,
    pytest.mark.django_db(transaction=True),
    pytest.mark.timeout(240),
]


def test_login_home_jupyterlab_and_notebook(daphne_server, open_context, shots):
    make_user("alice", first_name="Alice")
    base = daphne_server.url
    context, traffic = open_context(base)
    page = context.new_page()

    page.goto(base)
    assert page.url == base + "login?next=/"
    shots(page, "login")
    log_in(page, "alice")
    page.wait_for_url(base)
    assert page.get_by_role("heading", level=1).text_content() == "Welcome, Alice"
    shots(page, "home")

    open_lab(page, page.get_by_role("link", name="Open JupyterLab").click)
    assert page.url == base + "lab"
    config = page_config(page)
    assert config["token"] == "" and config["hubUser"] == "alice"
    assert api_me(page) == "alice"  # the session cookie authenticates
    shots(page, "jupyterlab")

    page.goto(base)
    page.get_by_role("link", name="Open Notebook 7").click()
    wait_for_notebook_tree(page)
    assert page.url == base + "tree" and page.title() == "Home"
    shots(page, "notebook-tree")

    traffic.assert_clean()
    assert base.replace("http", "ws") + "api/events/subscribe" in traffic.websockets
    for path in (
        "api/contents",
        "api/kernelspecs",
        "api/kernels",
        "api/sessions",
        "lab/api/settings",
        "lab/api/translations",
        "lab/api/workspaces/default",
        "lab/api/themes/@jupyterlab/theme-light-extension/index.css",
        "api/me",
        "lsp/status",
    ):
        assert path in traffic.paths(), path


def test_a_token_in_the_url_logs_the_browser_in(daphne_server, open_context, shots):
    user = make_user("tina")
    token = make_token(user)
    base = daphne_server.url
    context, traffic = open_context(base)
    page = context.new_page()
    open_lab(page, lambda: page.goto(f"{base}lab?token={token}"))
    assert page.url == base + "lab"  # the token left the address bar
    assert token not in page.content()
    assert api_me(page) == "tina"
    names = {cookie["name"] for cookie in context.cookies()}
    assert {"jserver-session", "_xsrf"} <= names
    shots(page, "jupyterlab")
    traffic.assert_clean()


def test_a_visit_before_login_comes_back_after_it(daphne_server, open_context, shots):
    make_user("uma")
    base = daphne_server.url
    context, traffic = open_context(base)
    page = context.new_page()
    page.goto(base + "lab/workspaces/w1")
    assert page.url == base + "login?next=/lab/workspaces/w1"
    shots(page, "login")
    open_lab(page, lambda: log_in(page, "uma"))
    assert page.url == base + "lab/workspaces/w1"
    assert page_config(page)["workspace"] == "w1"
    assert "lab/api/workspaces/w1" in traffic.paths()
    shots(page, "jupyterlab-workspace")
    traffic.assert_clean()


def test_file_log_out_ends_the_session(daphne_server, open_context, chromium, shots):
    make_user("lou")
    base = daphne_server.url
    context, traffic = open_context(base)
    page = context.new_page()
    page.goto(base + "login")
    log_in(page, "lou")
    page.wait_for_url(base)
    open_lab(page, lambda: page.goto(base + "lab"))
    session = next(c for c in context.cookies() if c["name"] == "jserver-session")

    page.get_by_role("menuitem", name="File").click()
    shots(page, "file-menu")
    page.get_by_role("menuitem", name="Log Out").click()
    page.wait_for_url(base + "logout")
    assert page.get_by_role("heading", level=1).text_content() == "Logged out"
    shots(page, "logged-out")
    page.goto(base + "lab")
    assert page.url == base + "login?next=/lab"

    # The old cookie, replayed by another browser, is worth nothing.
    thief, _ = open_context(base)
    thief.add_cookies([session])
    stolen = thief.new_page()
    stolen.goto(base + "lab")
    assert stolen.url == base + "login?next=/lab"
    status = stolen.evaluate(f"async () => (await fetch('{base}api/me')).status")
    assert status == 403
    traffic.assert_clean()


def choose_theme(page, theme: str) -> None:
    page.get_by_role("menuitem", name="Settings").click()
    page.locator("#jp-mainmenu-settings li[data-type=submenu]").filter(
        has_text=re.compile(r"^Theme$")
    ).hover()
    with page.expect_response(
        lambda r: r.request.method == "PUT" and "apputils-extension:themes" in r.url
    ) as saved:
        menu = page.locator("#jp-mainmenu-settings-apputilstheme")
        menu.get_by_text(theme, exact=True).click()
    assert saved.value.status == 204
    page.wait_for_function(
        "theme => document.body.dataset.jpThemeName === theme", arg=theme
    )
    page.locator("#jupyterlab-splash").wait_for(state="detached")


def test_two_users_side_by_side(daphne_server, open_context, shots):
    make_user("alice")
    make_user("bob")
    base = daphne_server.url
    alice_context, alice_traffic = open_context(base)
    bob_context, bob_traffic = open_context(base)
    alice = alice_context.new_page()
    bob = bob_context.new_page()
    for page, name in ((alice, "alice"), (bob, "bob")):
        page.goto(base + "login?next=/lab")
        open_lab(page, lambda page=page, name=name: log_in(page, name))
        assert api_me(page) == name

    choose_theme(alice, "JupyterLab Dark")
    shots(alice, "alice-dark")
    open_lab(alice, alice.reload, theme="JupyterLab Dark")  # stored for alice
    shots(alice, "alice-reloaded")
    open_lab(bob, bob.reload)  # bob's settings are his own
    assert api_me(bob) == "bob"
    shots(bob, "bob-light")
    alice_traffic.assert_clean()
    bob_traffic.assert_clean()


def test_under_a_base_url(daphne_server, open_context, shots, tmp_path):
    server = start_daphne(tmp_path, JSERVER_BASE_URL="/jupyter/")
    try:
        make_user("vera")
        base = server.url
        assert base.endswith("/jupyter/")
        context, traffic = open_context(base)
        page = context.new_page()
        page.goto(base + "lab")
        assert page.url == base + "login?next=/jupyter/lab"
        open_lab(page, lambda: log_in(page, "vera"))
        assert page.url == base + "lab"
        assert page_config(page)["fullStaticUrl"] == "/jupyter/static/lab"
        shots(page, "jupyterlab")
        page.goto(base + "tree")
        wait_for_notebook_tree(page)
        shots(page, "notebook-tree")
        traffic.assert_clean()
        outside = [r for r in traffic.requests if not r.url.startswith(base)]
        assert not outside, "\n".join(map(str, outside))
    finally:
        stop_daphne(server)
