"""The whole flow in a real browser: JupyterLab and Notebook 7 with real kernels.

One user logs in through the login page, creates a notebook from JupyterLab's
launcher, runs cells on a real ipykernel, saves, renames it in the file
browser, reloads and finds it with its outputs, restarts the kernel from the
menu, runs a cell in Notebook 7, and logs out; a second user, in another
browser context, sees none of it. Every request the front ends make must
succeed; each step is screenshotted.
"""

import re
from urllib.parse import urlsplit

import pytest
from playwright.sync_api import expect

from tests.browser.lab import (
    BOOT_MS,
    api_me,
    log_in,
    open_lab,
    wait_for_notebook_tree,
)
from tests.factories import make_user

pytestmark = [
    pytest.mark.browser,
    pytest.mark.kernel,
    pytest.mark.django_db(transaction=True),
    pytest.mark.timeout(420),
]

KERNEL_MS = 90_000  # a kernel's start on a busy machine
RUN_MS = 60_000


def fetch_json(page, base: str, path: str) -> tuple[int, object]:
    """GET ``path`` with the page's cookies, outside its recorded traffic.

    Return the status and the body, parsed if it is JSON.
    """
    response = page.request.get(base + path)
    try:
        return response.status, response.json()
    except ValueError:
        return response.status, response.text()


def notebook_panel(page):
    """The notebook in the current main-area tab (JupyterLab or Notebook 7)."""
    return page.locator(".jp-NotebookPanel:visible")


def wait_for_idle_kernel(page) -> None:
    indicator = notebook_panel(page).locator(".jp-Notebook-ExecutionIndicator")
    expect(indicator).to_have_attribute("data-status", "idle", timeout=KERNEL_MS)


def run_in_last_cell(page, code: str):
    """Type ``code`` into the notebook's last cell, run it; return the cell.

    The cell is located by its index: running the last cell adds another.
    """
    cells = notebook_panel(page).locator(".jp-Notebook .jp-Cell")
    cell = cells.nth(cells.count() - 1)
    cell.locator(".cm-content").click()
    page.keyboard.insert_text(code)  # no auto-closed brackets or quotes
    page.keyboard.press("Shift+Enter")
    return cell


def expect_output(cell, text: str, count: int) -> None:
    """Expect ``cell`` to show ``text`` as its output, run as ``[count]``."""
    expect(cell.locator(".jp-OutputArea-output")).to_have_text(text, timeout=RUN_MS)
    expect(cell.locator(".jp-InputPrompt")).to_have_text(f"[{count}]:")


def api_path(url: str) -> str:
    """Return a URL's path after the server's root (the tests' base URL is ``/``)."""
    return urlsplit(url).path.removeprefix("/")


def saved(page, method: str, path: str):
    """Expect the response to a ``method`` on ``/api/contents/<path>``."""
    return page.expect_response(
        lambda r: r.request.method == method
        and api_path(r.url) == f"api/contents/{path}",
        timeout=RUN_MS,
    )


def test_notebook_flow_in_jupyterlab_and_notebook_7(
    daphne_server, open_context, shots, kernel_users
):
    alice = make_user("alice", first_name="Alice")
    bob = make_user("bob")
    kernel_users += [alice, bob]
    base = daphne_server.url
    context, traffic = open_context(base)
    page = context.new_page()

    # Log in through the login page; the home page; JupyterLab.
    page.goto(base)
    log_in(page, "alice")
    page.wait_for_url(base)
    shots(page, "home")
    open_lab(page, page.get_by_role("link", name="Open JupyterLab").click)
    shots(page, "jupyterlab")

    # A notebook from the launcher, on a real kernel.
    card = page.locator('.jp-LauncherCard[data-category="Notebook"][title*="Python 3"]')
    with page.expect_response(
        lambda r: r.request.method == "POST" and api_path(r.url) == "api/sessions",
        timeout=KERNEL_MS,
    ) as session_created:
        card.click()
    assert session_created.value.status == 201
    expect(notebook_panel(page)).to_be_visible(timeout=BOOT_MS)
    wait_for_idle_kernel(page)
    shots(page, "new-notebook")

    cell = run_in_last_cell(page, "1+1")
    expect_output(cell, "2", 1)
    cell = run_in_last_cell(page, "print('hello')")
    expect_output(cell, "hello", 2)
    shots(page, "outputs")

    # Save (JupyterLab offers a rename on an untitled file's first save: the
    # name is kept), then rename in the file browser.
    with saved(page, "PUT", "Untitled.ipynb") as response:
        page.keyboard.press("Control+s")
        dialog = page.locator(".jp-Dialog")
        expect(dialog).to_contain_text("Rename file")
        expect(dialog.locator("input.jp-mod-styled[type=text]")).to_have_value(
            "Untitled.ipynb"
        )
        shots(page, "first-save")
        dialog.get_by_role("button", name="Rename and Save").click()
    assert response.value.status == 200
    item = page.locator(".jp-DirListing-item", has_text="Untitled.ipynb")
    item.click(button="right")
    page.locator('.lm-Menu-item[data-command="filebrowser:rename"]').click()
    editor = page.locator(".jp-DirListing-editor")
    editor.fill("flow.ipynb")
    with saved(page, "PATCH", "Untitled.ipynb") as response:
        editor.press("Enter")
    assert response.value.status == 200
    expect(page.locator(".jp-DirListing-item", has_text="flow.ipynb")).to_be_visible()
    expect(page.locator(".jp-DirListing-item", has_text="Untitled")).to_have_count(0)
    current_tab = page.locator("#jp-main-dock-panel .lm-TabBar-tab.jp-mod-current")
    expect(current_tab).to_have_text("flow.ipynb")
    shots(page, "renamed")

    # A reload reopens the notebook, with its outputs, on the same kernel.
    # JupyterLab then checks its recent documents, the old name among them: a
    # 404, as from jupyter_server 2.21.1 in the same flow.
    traffic.allow_upstream_failure("GET", "api/contents/Untitled.ipynb", 404)
    status, kernels = fetch_json(page, base, "api/kernels")
    assert status == 200 and len(kernels) == 1
    kernel_id = kernels[0]["id"]
    open_lab(page, page.reload)
    expect(current_tab).to_have_text("flow.ipynb", timeout=BOOT_MS)
    cells = notebook_panel(page).locator(".jp-Notebook .jp-CodeCell")
    expect_output(cells.nth(0), "2", 1)
    expect_output(cells.nth(1), "hello", 2)
    wait_for_idle_kernel(page)
    status, sessions = fetch_json(page, base, "api/sessions")
    assert [(s["path"], s["kernel"]["id"]) for s in sessions] == [
        ("flow.ipynb", kernel_id)
    ]
    shots(page, "reloaded")

    # Kernel > Restart Kernel…, confirmed; the count starts again at 1.
    page.get_by_role("menuitem", name="Kernel", exact=True).click()
    page.locator(
        '#jp-mainmenu-kernel .lm-Menu-item[data-command="kernelmenu:restart"]'
    ).click()
    dialog = page.locator(".jp-Dialog")
    expect(dialog).to_contain_text("Restart Kernel?")
    shots(page, "restart-dialog")
    with page.expect_response(
        lambda r: r.request.method == "POST"
        and api_path(r.url) == f"api/kernels/{kernel_id}/restart",
        timeout=KERNEL_MS,
    ) as restarted:
        accept = dialog.locator(".jp-Dialog-button.jp-mod-accept")
        expect(accept).to_have_text("Restart")
        accept.click()
    assert restarted.value.status == 200
    wait_for_idle_kernel(page)
    cell = run_in_last_cell(page, "1+1")
    expect_output(cell, "2", 1)
    shots(page, "after-restart")
    with saved(page, "PUT", "flow.ipynb") as response:
        page.keyboard.press("Control+s")
    assert response.value.status == 200

    # File > Save and Export Notebook As > HTML: a download, made by nbconvert.
    page.get_by_role("menuitem", name="File", exact=True).click()
    page.locator("#jp-mainmenu-file .lm-Menu-item[data-type=submenu]").filter(
        has_text="Save and Export Notebook As"
    ).hover()
    export = page.locator(
        '.lm-Menu-item[data-command="notebook:export-to-format"]'
    ).filter(has_text=re.compile(r"^HTML$"))
    export.click()
    dialog = page.locator(".jp-Dialog")
    expect(dialog).to_contain_text("Sanitize HTML output")  # checked by default
    # The export opens in a new tab, which turns into a download.
    with context.expect_event(
        "response",
        lambda r: api_path(r.url) == "nbconvert/html/flow.ipynb",
        timeout=RUN_MS,
    ) as exported:
        dialog.locator(".jp-Dialog-button.jp-mod-accept").click()
    response = exported.value
    assert response.url.endswith("?download=true&sanitize_html=true")
    assert response.status == 200
    headers = response.headers
    assert headers["content-disposition"] == 'attachment; filename="flow.html"'
    assert headers["content-security-policy"].endswith("sandbox allow-scripts")
    html = page.request.get(response.url, headers={"Referer": base + "lab"}).text()
    assert "<title>flow</title>" in html and "<pre>hello\n</pre>" in html

    # Notebook 7: the file browser lists it; open it, run a cell.
    page.goto(base + "tree")
    wait_for_notebook_tree(page)
    listed = page.locator(".jp-DirListing-item", has_text="flow.ipynb")
    expect(listed).to_be_visible(timeout=BOOT_MS)
    shots(page, "notebook-tree")
    with context.expect_page(timeout=BOOT_MS) as opened:
        listed.dblclick()
    notebook = opened.value
    notebook.wait_for_url(base + "notebooks/flow.ipynb", timeout=BOOT_MS)
    expect(notebook_panel(notebook)).to_be_visible(timeout=BOOT_MS)
    wait_for_idle_kernel(notebook)
    cell = run_in_last_cell(notebook, "1+1")
    expect_output(cell, "2", 2)
    shots(notebook, "notebook-7")

    # The home page lists the notebook and its running kernel.
    page.goto(base)
    recent = page.get_by_role("region", name="Recent notebooks")
    expect(recent.get_by_role("link", name="flow.ipynb", exact=True)).to_be_visible()
    running = page.get_by_role("region", name="Running kernels")
    expect(running.get_by_role("link", name="flow.ipynb", exact=True)).to_be_visible()
    expect(running.get_by_role("button", name=re.compile("^Shut down"))).to_have_count(
        1
    )
    shots(page, "home-after")

    # Log out from Notebook 7's File menu (the home page's tab closed first, as
    # other pages of the session would go on polling): the session is over.
    page.close()
    notebook.get_by_role("menuitem", name="File", exact=True).click()
    notebook.get_by_role("menuitem", name="Log Out").click()
    notebook.wait_for_url(base + "logout")
    expect(notebook.get_by_role("heading", level=1)).to_have_text("Logged out")
    shots(notebook, "logged-out")
    notebook.goto(base + "lab")
    assert notebook.url == base + "login?next=/lab"

    # In a new browser, after logging in again, the notebook is all there.
    again, again_traffic = open_context(base)
    again_traffic.allow_upstream_failure("GET", "api/contents/Untitled.ipynb", 404)
    back = again.new_page()
    back.goto(base)
    log_in(back, "alice")
    back.wait_for_url(base)
    recent = back.get_by_role("region", name="Recent notebooks")
    open_lab(back, recent.get_by_role("link", name="flow.ipynb", exact=True).click)
    assert back.url == base + "lab/tree/flow.ipynb"
    cells = notebook_panel(back).locator(".jp-Notebook .jp-CodeCell")
    expect_output(cells.nth(0), "2", 1)
    expect_output(cells.nth(1), "hello", 2)
    expect_output(cells.nth(2), "2", 1)
    wait_for_idle_kernel(back)
    shots(back, "back-again")
    again.close()

    # Another user, in another browser, sees none of it.
    other, other_traffic = open_context(base)
    bob_page = other.new_page()
    bob_page.goto(base + "login?next=/lab")
    open_lab(bob_page, lambda: log_in(bob_page, "bob"))
    assert api_me(bob_page) == "bob"
    expect(bob_page.locator(".jp-DirListing-content")).to_be_visible()
    expect(bob_page.locator(".jp-DirListing-item")).to_have_count(0)
    bob_page.locator('.lm-TabBar-tab[data-id="jp-running-sessions"]').click()
    running = bob_page.locator("#jp-running-sessions")
    expect(running).to_be_visible()
    # Only bob's own launcher tab runs: no kernel, no notebook.
    expect(running.locator(".jp-RunningSessions-item")).to_have_text(["Launcher"])
    shots(bob_page, "second-user")
    assert fetch_json(bob_page, base, "api/kernels") == (200, [])
    assert fetch_json(bob_page, base, "api/sessions") == (200, [])
    assert fetch_json(bob_page, base, f"api/kernels/{kernel_id}")[0] == 404
    assert fetch_json(bob_page, base, "api/contents/flow.ipynb")[0] == 404
    assert fetch_json(bob_page, base, "api/contents")[1]["content"] == []

    traffic.assert_clean()
    again_traffic.assert_clean()
    other_traffic.assert_clean()
