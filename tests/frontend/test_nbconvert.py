"""Notebook exports: ``/nbconvert/<format>/<path>`` and ``POST /nbconvert/<format>``."""

import io
import json
import zipfile

import nbformat
import pytest
from django.test import Client
from nbformat import v4

from contents import manager
from contents.storage import user_root
from tests.factories import make_token

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("fresh_data")]

HOST = "testserver"
SAME_SITE = {"HTTP_REFERER": f"http://{HOST}/lab"}  # JupyterLab opens exports


def notebook(html_output: str = "<b>bold</b>", **language_info) -> dict:
    nb = v4.new_notebook()
    if language_info:
        nb.metadata["language_info"] = language_info
    cell = v4.new_code_cell("print('hello')", execution_count=1)
    cell.outputs = [
        v4.new_output("stream", name="stdout", text="hello\n"),
        v4.new_output("display_data", data={"text/html": html_output}),
    ]
    nb.cells.append(cell)
    nb.cells.append(v4.new_markdown_cell("# A title"))
    return nb


def save(user, path: str, nb: dict | None = None) -> None:
    """Save ``nb`` at ``path`` through the contents API's domain, folders first."""
    parts = path.split("/")
    for depth in range(1, len(parts)):
        manager.save({"type": "directory"}, "/".join(parts[:depth]), owner=user)
    manager.save({"type": "notebook", "content": nb or notebook()}, path, owner=user)


@pytest.fixture
def browser(client_for, user):
    """``user``'s browser: the session cookie, requests sent from the lab page."""
    client = client_for(user)
    return lambda url, **extra: client.get(url, **{**SAME_SITE, **extra})


def assert_sandboxed(response) -> None:
    assert response["Content-Security-Policy"] == (
        "frame-ancestors 'self'; sandbox allow-scripts"
    )
    assert response["X-Content-Type-Options"] == "nosniff"


def test_html_is_shown_sandboxed_or_downloaded(browser, user):
    save(user, "dir/my notebook.ipynb")
    response = browser("/nbconvert/html/dir/my%20notebook.ipynb")
    assert response.status_code == 200
    assert response["Content-Type"] == "text/html; charset=utf-8"
    assert "Content-Disposition" not in response
    assert_sandboxed(response)
    assert "no-store" in response["Cache-Control"]
    assert "Last-Modified" in response
    html = response.content.decode()
    assert "<title>my notebook</title>" in html
    assert "print" in html and "hello" in html and "<b>bold</b>" in html

    response = browser("/nbconvert/html/dir/my%20notebook.ipynb?download=true")
    assert response["Content-Disposition"] == 'attachment; filename="my notebook.html"'
    assert_sandboxed(response)


def test_sanitize_html_removes_scripts_from_outputs(browser, user):
    save(user, "n.ipynb", notebook("<script>steal()</script><b>ok</b>"))
    plain = browser("/nbconvert/html/n.ipynb").content.decode()
    assert "<script>steal()</script>" in plain  # harmless: the CSP sandboxes it
    clean = browser("/nbconvert/html/n.ipynb?sanitize_html=true").content.decode()
    assert "<script>steal()</script>" not in clean and "<b>ok</b>" in clean


@pytest.mark.parametrize(
    ("format", "content_type", "filename", "expected"),
    [
        ("python", "text/x-python; charset=utf-8", "n.py", "print('hello')"),
        ("script", "text/plain; charset=utf-8", "n.py", "print('hello')"),
        ("markdown", "text/markdown; charset=utf-8", "n.md", "# A title"),
        ("notebook", "application/json; charset=utf-8", "n.ipynb", '"cells"'),
    ],
)
def test_other_formats_download(
    browser, user, format, content_type, filename, expected
):
    save(user, "n.ipynb", notebook(name="python", nbconvert_exporter="python"))
    response = browser(f"/nbconvert/{format}/n.ipynb?download=true")
    assert response.status_code == 200
    assert response["Content-Type"] == content_type
    assert response["Content-Disposition"] == f'attachment; filename="{filename}"'
    assert expected in response.content.decode()
    assert_sandboxed(response)


def test_the_ipynb_export_is_the_notebook(browser, user):
    save(user, "n.ipynb")
    exported = nbformat.reads(browser("/nbconvert/notebook/n.ipynb").content, 4)
    assert exported.cells[0].source == "print('hello')"
    assert exported.cells[0].outputs[0].text == "hello\n"


def test_output_with_files_of_its_own_is_zipped(browser, user):
    nb = notebook()
    nb.cells[0].outputs.append(
        v4.new_output("display_data", data={"image/png": "iVBORw0KGgo="})
    )
    save(user, "pics.ipynb", nb)
    response = browser("/nbconvert/markdown/pics.ipynb")
    assert response["Content-Type"] == "application/zip"
    assert response["Content-Disposition"] == 'attachment; filename="pics.zip"'
    names = zipfile.ZipFile(io.BytesIO(response.content)).namelist()
    assert names[0] == "pics.md" and names[1].endswith(".png")


def test_a_notebook_cannot_name_the_exporter_to_import(browser, user, monkeypatch):
    import nbconvert.exporters.base

    def refuse(name):
        raise AssertionError(f"imported {name}")

    monkeypatch.setattr(nbconvert.exporters.base, "import_item", refuse)
    save(user, "n.ipynb", notebook(name="python", nbconvert_exporter="os.system"))
    response = browser("/nbconvert/script/n.ipynb")
    assert response.status_code == 200
    assert "print('hello')" in response.content.decode()


def test_another_users_notebook_is_not_found(client_for, user, other_user):
    save(user, "mine.ipynb")
    response = client_for(other_user).get("/nbconvert/html/mine.ipynb", **SAME_SITE)
    assert response.status_code == 404
    assert b"mine" not in response.content and b"hello" not in response.content
    assert_sandboxed(response)


@pytest.mark.parametrize(
    "url",
    [
        "/nbconvert/html/missing.ipynb",
        "/nbconvert/html/.hidden.ipynb",
        "/nbconvert/html/../other/n.ipynb",
        "/nbconvert/pdf/n.ipynb",  # not offered
        "/nbconvert/os.path/n.ipynb",  # not a format name
    ],
)
def test_missing_hidden_and_unoffered_are_not_found(browser, user, url):
    save(user, "n.ipynb")
    (user_root(user) / ".hidden.ipynb").write_text(json.dumps(notebook()))
    assert browser(url).status_code == 404


def test_directories_and_files_are_sent_to_their_pages(browser, user):
    save(user, "a dir/n.ipynb")
    manager.save(
        {"type": "file", "format": "text", "content": "x"}, "t.txt", owner=user
    )
    response = browser("/nbconvert/html/a%20dir")
    assert response.status_code == 302 and response["Location"] == "/tree/a%20dir"
    response = browser("/nbconvert/html/t.txt")
    assert response.status_code == 302 and response["Location"] == "/files/t.txt"


def test_anonymous_visit_goes_to_login(client, user):
    save(user, "n.ipynb")
    response = client.get("/nbconvert/html/n.ipynb")
    assert response.status_code == 302
    assert response["Location"] == "/login?next=/nbconvert/html/n.ipynb"


@pytest.mark.parametrize(
    ("headers", "status"),
    [
        ({}, 403),  # no Referer, no _xsrf: another site's link or a stray fetch
        ({"HTTP_REFERER": "http://evil.example/page"}, 403),
        ({"HTTP_REFERER": f"http://{HOST}/tree"}, 200),
        ({"HTTP_X_XSRFTOKEN": "wrong"}, 403),
    ],
)
def test_cookie_downloads_must_come_from_this_site(client_for, user, headers, status):
    save(user, "n.ipynb")
    response = client_for(user).get("/nbconvert/html/n.ipynb", **headers)
    assert response.status_code == status
    if status == 403:
        assert b"hello" not in response.content
        assert_sandboxed(response)


def test_the_xsrf_cookie_echoed_authorises_a_cookie_download(client_for, user):
    save(user, "n.ipynb")
    client = client_for(user)
    client.get("/lab")  # sets the _xsrf cookie
    xsrf = client.cookies["_xsrf"].value
    response = client.get(f"/nbconvert/html/n.ipynb?_xsrf={xsrf}")
    assert response.status_code == 200


def test_a_token_needs_no_referer(user):
    save(user, "n.ipynb")
    client = Client(headers={"Authorization": f"token {make_token(user)}"})
    assert client.get("/nbconvert/python/n.ipynb").status_code == 200
    bad = Client(headers={"Authorization": "token " + "0" * 48})
    assert bad.get("/nbconvert/python/n.ipynb").status_code == 302  # to the login


def test_only_get_downloads(browser, client_for, user):
    save(user, "n.ipynb")
    response = client_for(user).delete("/nbconvert/html/n.ipynb", **SAME_SITE)
    assert response.status_code == 405


# ---- POST /nbconvert/<format> ------------------------------------------------------


def post(client, format: str, body) -> object:
    return client.post(
        f"/nbconvert/{format}", json.dumps(body), content_type="application/json"
    )


def test_post_converts_the_notebook_sent(user):
    client = Client(headers={"Authorization": f"token {make_token(user)}"})
    response = post(client, "python", {"name": "sent.ipynb", "content": notebook()})
    assert response.status_code == 200
    assert response["Content-Type"] == "text/x-python; charset=utf-8"
    assert "print('hello')" in response.content.decode()
    assert_sandboxed(response)


@pytest.mark.parametrize(
    ("body", "status", "message"),
    [
        ({"content": {"cells": "not a list"}}, 500, "nbconvert failed"),
        ({"name": "x.ipynb"}, 400, "notebook model"),
        (["not", "a", "model"], 400, "notebook model"),
    ],
)
def test_post_refuses_what_is_not_a_notebook(user, body, status, message):
    client = Client(headers={"Authorization": f"token {make_token(user)}"})
    response = post(client, "html", body)
    assert response.status_code == status
    assert message in response.json()["message"]


def test_post_needs_the_xsrf_token_with_a_cookie(client_for, user):
    response = post(client_for(user, enforce_csrf_checks=True), "html", {})
    assert response.status_code == 403
    assert client_for(user).get("/nbconvert/html").status_code == 405
    assert post(Client(), "html", {"content": notebook()}).status_code == 403
