"""Helpers that drive JupyterLab and Notebook 7 pages (Playwright, sync API)."""

import json
import re

from tests.factories import PASSWORD

BOOT_MS = 60_000  # a cold JupyterLab start on a busy 2-core machine


def log_in(page, username: str) -> None:
    """Fill in and send the login form the page shows."""
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()


def page_config(page) -> dict:
    return json.loads(page.locator("#jupyter-config-data").text_content())


def wait_for_lab(page, theme: str = "JupyterLab Light") -> None:
    """Wait until JupyterLab's shell is up, with ``theme`` applied."""
    page.locator("#jp-main-dock-panel").wait_for(state="visible", timeout=BOOT_MS)
    page.wait_for_function(
        "theme => document.body.dataset.jpThemeName === theme"
        " && getComputedStyle(document.body)"
        "      .getPropertyValue('--jp-layout-color1').trim() !== ''",
        arg=theme,
        timeout=BOOT_MS,
    )
    page.locator("#jupyterlab-splash").wait_for(state="detached", timeout=BOOT_MS)


def open_lab(page, action, theme: str = "JupyterLab Light") -> None:
    """Run ``action`` (a navigation), wait for the lab and its first layout save."""
    with page.expect_response(
        lambda r: r.request.method == "PUT"
        and re.search(r"/lab/api/workspaces/[\w-]+(\?|$)", r.url) is not None,
        timeout=BOOT_MS,
    ) as saved:
        action()
        wait_for_lab(page, theme)
    assert saved.value.status == 204


def wait_for_notebook_tree(page) -> None:
    page.locator(".jp-DirListing").wait_for(state="visible", timeout=BOOT_MS)
    page.wait_for_function(
        "document.body.dataset.jpThemeName === 'JupyterLab Light'", timeout=BOOT_MS
    )


def api_me(page) -> str:
    return page.evaluate(
        "async base => (await (await fetch(base + 'api/me')).json()).identity.username",
        page_config(page)["baseUrl"],
    )
