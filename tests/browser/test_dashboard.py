"""The home dashboard in a real browser without JavaScript, with a real kernel.

The user's notebook is listed, its running kernel too; the kernel's Shut down
button (a plain form) stops the kernel process; another user can neither see
that kernel nor shut it down with a forged form.
"""

import pytest
from playwright.sync_api import expect

from tests.browser.lab import log_in
from tests.factories import make_notebook, make_token, make_user
from tests.kernels.conftest import Api, kernel_processes, wait_no_kernel_processes

pytestmark = [
    pytest.mark.browser,
    pytest.mark.kernel,
    pytest.mark.django_db(transaction=True),
    pytest.mark.timeout(240),
]


def running_section(page):
    return page.get_by_role("region", name="Running kernels")


def test_dashboard_lists_and_shuts_down_a_real_kernel(
    daphne_server, open_context, shots, kernel_users
):
    alice = make_user("alice", first_name="Alice")
    bob = make_user("bob")
    kernel_users += [alice, bob]
    base = daphne_server.url
    api = Api(base, make_token(alice))
    status, _, _ = api.call_sync(
        "PUT",
        "api/contents/dash.ipynb",
        {"type": "notebook", "content": make_notebook(1)},
    )
    assert status == 201
    status, _, session = api.call_sync(
        "POST",
        "api/sessions",
        {"path": "dash.ipynb", "type": "notebook", "kernel": {"name": "python3"}},
    )
    assert status == 201
    kernel_id = session["kernel"]["id"]
    assert kernel_processes()  # the kernel (and its sandbox) run

    # Alice, without JavaScript: her notebook, her kernel, her storage.
    context, traffic = open_context(base, java_script_enabled=False)
    page = context.new_page()
    page.goto(base)
    log_in(page, "alice")
    page.wait_for_url(base)
    recent = page.get_by_role("region", name="Recent notebooks")
    link = recent.get_by_role("link", name="dash.ipynb", exact=True)
    expect(link).to_have_attribute("href", "/lab/tree/dash.ipynb")
    running = running_section(page)
    expect(running).to_contain_text("Python 3 (ipykernel)")
    expect(running.get_by_role("link", name="dash.ipynb", exact=True)).to_be_visible()
    expect(page.get_by_role("region", name="Storage")).to_contain_text("You use ")
    shots(page, "home-with-kernel")
    page.set_viewport_size({"width": 390, "height": 844})  # a phone
    shots(page, "home-on-a-phone")
    page.set_viewport_size({"width": 1280, "height": 800})

    # Bob sees no kernel, and a forged form for alice's kernel does nothing.
    other, other_traffic = open_context(base, java_script_enabled=False)
    bob_page = other.new_page()
    bob_page.goto(base)
    log_in(bob_page, "bob")
    bob_page.wait_for_url(base)
    expect(running_section(bob_page)).to_contain_text("No kernels are running.")
    expect(bob_page.get_by_role("region", name="Recent notebooks")).to_contain_text(
        "No notebooks yet."
    )
    shots(bob_page, "other-user-home")
    csrf = bob_page.locator("input[name=csrfmiddlewaretoken]").first.input_value()
    forged = bob_page.request.post(
        base, form={"csrfmiddlewaretoken": csrf, "shutdown": kernel_id}
    )
    assert forged.ok and "That kernel is not running (any more)." in forged.text()
    status, _, kernels = api.call_sync("GET", "api/kernels")
    assert [k["id"] for k in kernels] == [kernel_id]

    # Alice shuts it down from the keyboard: the process is gone.
    name = "Shut down the Python 3 (ipykernel) kernel of dash.ipynb"
    second_tab = context.new_page()
    second_tab.goto(base)
    button = running.get_by_role("button", name=name)
    button.focus()
    with page.expect_navigation():
        page.keyboard.press("Enter")
    expect(page.get_by_role("status")).to_have_text("Kernel shut down.")
    expect(running_section(page)).to_contain_text("No kernels are running.")
    shots(page, "kernel-shut-down")
    assert api.call_sync("GET", "api/kernels")[2] == []
    assert api.call_sync("GET", "api/sessions")[2] == []
    assert not wait_no_kernel_processes()

    # The button of a tab opened before is now a clear message.
    with second_tab.expect_navigation():
        running_section(second_tab).get_by_role("button", name=name).click()
    expect(second_tab.get_by_role("status")).to_have_text(
        "That kernel is not running (any more)."
    )
    shots(second_tab, "shut-down-again")
    traffic.assert_clean()
    other_traffic.assert_clean()
