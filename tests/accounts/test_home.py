"""The home dashboard: plain HTML, a way into both front ends, the user's recent
notebooks, running kernels (with shut-down buttons), storage, tokens, the admin.

Shutting a real kernel down from the page is tests/browser/test_dashboard.py's.
"""

import datetime
import re
import uuid

import pytest
from django.test import Client, override_settings
from django.utils import timezone

from contents import manager
from contents.models import StorageQuota
from kernels.models import Kernel, Session
from tests.factories import make_notebook, make_token

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("fresh_data")]


def save_notebook(user, path: str) -> None:
    model = {"type": "notebook", "content": make_notebook(1)}
    manager.save(model, path, owner=user)


def make_kernel(user, *paths: str, state: str = "idle") -> Kernel:
    kernel = Kernel.objects.create(
        owner=user, name="python3", execution_state=state, host="elsewhere:1"
    )
    for path in paths:
        Session.objects.create(owner=user, path=path, type="notebook", kernel=kernel)
    return kernel


def section(html: str, heading: str) -> str:
    """Return the HTML of the ``<section>`` whose ``<h2>`` is ``heading``."""
    match = re.search(
        rf"<section[^>]*>\s*<h2[^>]*>{re.escape(heading)}</h2>(.*?)</section>",
        html,
        re.S,
    )
    assert match, heading
    return match.group(1)


def test_home_needs_a_login(client):
    response = client.get("/")
    assert response.status_code == 302 and response["Location"] == "/login?next=/"
    response = client.post("/", {"shutdown": str(uuid.uuid4())})
    assert response.status_code == 302 and response["Location"] == "/login?next=/"


def test_home_opens_both_front_ends_and_the_tokens(client_for, user):
    make_token(user)
    html = client_for(user).get("/").content.decode()
    assert '<a class="button primary" href="/lab">Open JupyterLab</a>' in html
    assert '<a class="button primary" href="/tree">Open Notebook 7</a>' in html
    assert 'href="/tokens"' in html and "You have 1 token." in html
    assert "Welcome, Alice" in html
    assert "/admin/" not in html
    assert "<script" not in html  # usable without JavaScript
    assert '<meta name="viewport"' in html


def test_a_new_user_sees_empty_sections_that_say_what_to_do(client_for, user):
    html = client_for(user).get("/").content.decode()
    assert "No notebooks yet." in section(html, "Recent notebooks")
    assert "No kernels are running." in section(html, "Running kernels")
    storage = section(html, "Storage")
    assert "You use 0\xa0bytes. There is no limit on your storage." in storage


def test_recent_notebooks_newest_first_with_links_that_open_them(
    client_for, user, other_user
):
    save_notebook(user, "old.ipynb")
    manager.save({"type": "directory"}, "a dir", owner=user)
    save_notebook(user, "a dir/new é.ipynb")
    manager.save(
        {"type": "file", "format": "text", "content": "x"}, "t.txt", owner=user
    )
    save_notebook(other_user, "secret.ipynb")
    recent = section(client_for(user).get("/").content.decode(), "Recent notebooks")
    assert recent.index("a dir/new é.ipynb") < recent.index("old.ipynb")
    assert 'href="/lab/tree/a%20dir/new%20%C3%A9.ipynb"' in recent
    assert 'href="/notebooks/a%20dir/new%20%C3%A9.ipynb"' in recent
    assert 'aria-label="Open a dir/new é.ipynb in Notebook 7"' in recent
    assert "t.txt" not in recent  # notebooks only
    assert "secret" not in recent  # another user's


def test_a_deleted_notebook_leaves_the_list(client_for, user):
    save_notebook(user, "gone.ipynb")
    save_notebook(user, "kept.ipynb")
    manager.delete("gone.ipynb", owner=user)
    recent = section(client_for(user).get("/").content.decode(), "Recent notebooks")
    assert "kept.ipynb" in recent and "gone.ipynb" not in recent


def test_paths_are_escaped(client_for, user):
    save_notebook(user, "<img src=x onerror=alert(1)>.ipynb")
    make_kernel(user, "<i>k</i>.ipynb")
    html = client_for(user).get("/").content.decode()
    assert "<img" not in html and "<i>k</i>" not in html
    assert "&lt;img src=x onerror=alert(1)&gt;.ipynb" in html


def test_running_kernels_with_their_notebooks_and_a_shutdown_form(
    client_for, user, other_user
):
    kernel = make_kernel(user, "dir/nb.ipynb", state="busy")
    Kernel.objects.filter(pk=kernel.pk).update(connections=2)
    foreign = make_kernel(other_user, "theirs.ipynb")
    running = section(client_for(user).get("/").content.decode(), "Running kernels")
    assert "Python 3 (ipykernel)" in running
    assert '<a href="/lab/tree/dir/nb.ipynb">dir/nb.ipynb</a>' in running
    assert "busy, 2 connections" in running
    form = re.search(r'<form method="post" action="/">(.*?)</form>', running, re.S)
    assert 'name="csrfmiddlewaretoken"' in form.group(1)
    assert f'name="shutdown" value="{kernel.pk}"' in form.group(1)
    assert 'aria-label="Shut down the Python 3 (ipykernel) kernel of dir/nb.ipynb"' in (
        form.group(1)
    )
    assert str(foreign.pk) not in running and "theirs" not in running


def test_shutting_down_a_kernel_not_running_here_says_so(client_for, user):
    # No kernel host runs in the test process: the row is another host's.
    kernel = make_kernel(user, "nb.ipynb")
    client = client_for(user)
    response = client.post("/", {"shutdown": str(kernel.pk)}, follow=True)
    assert response.redirect_chain == [("/", 302)]
    assert "That kernel is not running (any more)." in response.content.decode()
    assert Kernel.objects.filter(pk=kernel.pk).exists()


@pytest.mark.parametrize("value", ["", "not-a-kernel", str(uuid.uuid4()), "x" * 5000])
def test_bad_shutdown_requests_change_nothing(client_for, user, value):
    kernel = make_kernel(user)
    response = client_for(user).post("/", {"shutdown": value}, follow=True)
    assert response.status_code == 200
    assert "That kernel is not running (any more)." in response.content.decode()
    assert Kernel.objects.filter(pk=kernel.pk).exists()


def test_a_shutdown_needs_the_csrf_token(user):
    kernel = make_kernel(user)
    client = Client(enforce_csrf_checks=True)
    client.force_login(user)
    response = client.post("/", {"shutdown": str(kernel.pk)})
    assert response.status_code == 403
    assert Kernel.objects.filter(pk=kernel.pk).exists()


def test_other_methods_are_refused(client_for, user):
    assert client_for(user).put("/").status_code == 405


def test_storage_against_the_quota(client_for, user):
    save_notebook(user, "n.ipynb")
    StorageQuota.objects.create(owner=user, quota_bytes=10 * 1024 * 1024)
    storage = section(client_for(user).get("/").content.decode(), "Storage")
    used = re.search(r"You use ([\d.]+)\xa0(bytes|KB) of your 10\.0\xa0MB", storage)
    assert used, storage
    assert '<meter id="storage-meter" min="0" max="10485760" value="' in storage
    assert '<label for="storage-meter">' in storage
    assert "almost full" not in storage


def test_a_nearly_full_storage_warns(client_for, user):
    save_notebook(user, "n.ipynb")
    StorageQuota.objects.create(owner=user, quota_bytes=500)  # less than used
    storage = section(client_for(user).get("/").content.decode(), "Storage")
    assert "(100%)" in storage and "Your storage is almost full" in storage


@override_settings(STORAGE_QUOTA_BYTES=2 * 1024**3)
def test_the_server_wide_quota_applies(client_for, user):
    storage = section(client_for(user).get("/").content.decode(), "Storage")
    assert "of your 2.0\xa0GB (0%)" in storage


def test_staff_see_the_admin_link(client_for, staff_user):
    html = client_for(staff_user).get("/").content.decode()
    assert 'href="/admin/"' in html


@override_settings(BASE_URL="/jupyter/")
def test_home_links_follow_the_base_url(rf, user):
    from accounts.views import home

    save_notebook(user, "n.ipynb")
    make_kernel(user, "n.ipynb")
    request = rf.get("/jupyter/")
    request.user = user
    request._messages = []
    html = home(request).content.decode()
    assert 'href="/jupyter/lab"' in html and 'href="/jupyter/tree"' in html
    assert 'href="/jupyter/lab/tree/n.ipynb"' in html
    assert 'href="/jupyter/notebooks/n.ipynb"' in html
    assert '<form method="post" action="/jupyter/">' in html


def test_times_read_as_just_now_or_how_long_ago(client_for, user):
    save_notebook(user, "n.ipynb")
    kernel = make_kernel(user, "n.ipynb")
    two_hours_ago = timezone.now() - datetime.timedelta(hours=2, minutes=5)
    Kernel.objects.filter(pk=kernel.pk).update(last_activity=two_hours_ago)
    html = client_for(user).get("/").content.decode()
    assert ">just now</time>" in section(html, "Recent notebooks")
    assert ">2\xa0hours, 5\xa0minutes ago</time>" in section(html, "Running kernels")


def test_home_warns_when_kernels_run_unsandboxed(client_for, user, settings):
    from kernels import sandbox

    client = client_for(user)
    if sandbox.status().available:
        assert "without a sandbox" not in client.get("/").content.decode()
    settings.SANDBOX_BWRAP = "/nonexistent/bwrap"
    try:
        assert not sandbox.status(refresh=True).available
        page = client.get("/").content.decode()
        assert "Kernels on this server run without a sandbox" in page
    finally:
        settings.SANDBOX_BWRAP = None
        sandbox.status(refresh=True)
