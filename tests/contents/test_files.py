"""``/files/<path>``: raw downloads with jupyter_server's headers, sandboxed."""

import os

import pytest
from django.utils.http import http_date

pytestmark = pytest.mark.django_db

CSP = "frame-ancestors 'self'; sandbox allow-scripts"
XSRF = "x" * 32  # the format of Django's CSRF secrets


@pytest.fixture
def files(root):
    (root / "x.html").write_text("<script>alert(1)</script>")
    (root / "t.txt").write_text("hello\n")
    (root / "nb.ipynb").write_text('{"cells": []}')
    (root / "a.tar.gz").write_bytes(b"\x1f\x8b")
    (root / "blob").write_bytes(b"\xff\x00")
    (root / "été.txt").write_text("accents")
    (root / ".secret").write_text("hidden")
    (root / "sub").mkdir()
    return root


@pytest.mark.parametrize(
    ("name", "content_type"),
    [
        ("x.html", "text/html"),
        ("t.txt", "text/plain; charset=UTF-8"),
        ("nb.ipynb", "application/x-ipynb+json"),
        ("a.tar.gz", "application/gzip"),
        ("blob", "application/octet-stream"),
    ],
)
def test_content_types_and_sandbox(api, files, name, content_type):
    response = api.client.get(f"/files/{name}")
    assert response.status_code == 200
    assert response.content == (files / name).read_bytes()
    assert response["Content-Type"] == content_type
    assert response["Content-Security-Policy"] == CSP
    assert response["X-Content-Type-Options"] == "nosniff"
    assert response["Cache-Control"] == "no-cache"
    assert response["Last-Modified"] == http_date(os.stat(files / name).st_mtime)
    assert response["X-Frame-Options"] == "SAMEORIGIN"
    assert "allow-same-origin" not in response["Content-Security-Policy"]


def test_downloads_are_attachments(api, files):
    assert "Content-Disposition" not in api.client.get("/files/x.html")
    response = api.client.get("/files/x.html", {"download": "1"})
    assert response["Content-Disposition"] == "attachment; filename*=utf-8''x.html"
    response = api.client.get("/files/été.txt", {"download": "1"})
    assert response["Content-Disposition"] == (
        "attachment; filename*=utf-8''%C3%A9t%C3%A9.txt"
    )
    response = api.client.get("/files/nb.ipynb")  # notebooks always
    assert response["Content-Disposition"] == "attachment; filename*=utf-8''nb.ipynb"


def test_unauthenticated_browsers_go_to_the_login_page(client, files):
    response = client.get("/files/x.html")
    assert response.status_code == 302
    assert response["Location"] == "/login?next=/files/x.html"
    response = client.get("/files/x.html", HTTP_AUTHORIZATION="token wrong")
    assert response.status_code == 302


def test_cookie_requests_need_the_xsrf_cookie_or_a_same_site_referer(
    client_for, user, files
):
    browser = client_for(user)
    browser.cookies["_xsrf"] = XSRF
    response = browser.get("/files/t.txt")
    assert response.status_code == 403
    assert response.content == b"Blocking request from unknown origin"
    response = browser.get("/files/t.txt", HTTP_REFERER="https://evil.example/page")
    assert response.status_code == 403
    assert response.content == (
        b"Blocking Cross Origin request from https://evil.example/page."
    )
    assert browser.get("/files/t.txt", {"_xsrf": "other"}).status_code == 403
    assert browser.get("/files/t.txt", {"_xsrf": XSRF}).status_code == 200
    response = browser.get("/files/t.txt", HTTP_REFERER="http://testserver/lab")
    assert response.status_code == 200 and response.content == b"hello\n"


@pytest.mark.parametrize(
    ("path", "status"),
    [
        ("missing", 404),
        (".secret", 404),
        ("sub", 403),
        ("../x", 404),
        ("%2E%2E/x", 404),
        ("", 404),
    ],
)
def test_what_is_not_served(api, files, path, status):
    response = api.client.get(f"/files/{path}")
    assert response.status_code == status
    assert response["Content-Security-Policy"] == CSP


def test_links_leaving_the_root_are_not_served(api, root, other_root):
    (other_root / "secret").write_text("theirs")
    os.symlink(other_root / "secret", root / "link")
    os.symlink("/etc/passwd", root / "passwd")
    assert api.client.get("/files/link").status_code == 404
    assert api.client.get("/files/passwd").status_code == 404


def test_ranges_conditional_requests_and_head(api, files):
    response = api.client.get("/files/t.txt", HTTP_RANGE="bytes=1-3")
    assert response.status_code == 206 and response.content == b"ell"
    assert response["Content-Range"] == "bytes 1-3/6"
    assert api.client.get("/files/t.txt", HTTP_RANGE="bytes=-2").content == b"o\n"
    response = api.client.get("/files/t.txt", HTTP_RANGE="bytes=10-")
    assert response.status_code == 416 and response["Content-Range"] == "bytes */6"
    modified = http_date(os.stat(files / "t.txt").st_mtime)
    assert (
        api.client.get("/files/t.txt", HTTP_IF_MODIFIED_SINCE=modified).status_code
        == 304
    )
    response = api.client.head("/files/t.txt")
    assert response.status_code == 200 and response.content == b""
    assert response["Content-Length"] == "6"
    assert api.client.post("/files/t.txt").status_code == 405
