"""PUT, POST, PATCH and DELETE on /api/contents, as jupyter_server 2.21."""

import errno
import json
import os

import pytest

from contents import storage as storage_module
from contents.models import DeletedItem
from tests.factories import make_notebook

pytestmark = pytest.mark.django_db

FILE = {"type": "file", "format": "text", "content": "one"}


def error(response):
    return response.status_code, response.json()["message"]


# ---- PUT ----------


def test_put_creates_201_then_saves_200(api, root):
    response = api.put("/api/contents/n.txt", FILE)
    assert response.status_code == 201
    assert response["Location"] == "/api/contents/n.txt"
    model = response.json()
    assert (model["content"], model["format"], model["size"]) == (None, None, 3)
    response = api.put("/api/contents/n.txt", {**FILE, "content": "two!"})
    assert response.status_code == 200 and response.json()["size"] == 4
    assert (root / "n.txt").read_text() == "two!"


def test_saved_last_modified_is_what_the_next_get_reports(api):
    for _ in range(3):
        saved = api.put("/api/contents/n.txt", FILE).json()
        got = api.get("/api/contents/n.txt", content="0").json()
        assert saved["last_modified"] == got["last_modified"]
        assert saved["created"] == got["created"]


def test_base64_files(api, root):
    api.put(
        "/api/contents/b.bin", {"type": "file", "format": "base64", "content": "//4A\n"}
    )
    assert (root / "b.bin").read_bytes() == b"\xff\xfe\x00"
    # Like jupyter_server (decodebytes), characters outside the alphabet are skipped.
    api.put("/api/contents/b.bin", {"type": "file", "format": "base64", "content": "!"})
    assert (root / "b.bin").read_bytes() == b""


@pytest.mark.parametrize(
    ("body", "status", "message"),
    [
        (
            {"type": "file", "content": "x"},
            400,
            "Must specify format of file contents as 'text' or 'base64'",
        ),
        (
            {"type": "file", "format": "bogus", "content": "x"},
            400,
            "Must specify format of file contents as 'text' or 'base64'",
        ),
        (
            {"type": "file", "format": "base64", "content": "aGVsbG8"},
            400,
            "Encoding error saving /n.txt: Incorrect padding",
        ),
        (
            {"type": "file", "format": "text", "content": 5},
            400,
            "Encoding error saving /n.txt: 'int' object has no attribute 'encode'",
        ),
        ({"type": "file", "format": "text"}, 400, "No file content provided"),
        ({"format": "text", "content": "x"}, 400, "No file type provided"),
        ({"copy_from": "t.txt"}, 400, "Cannot copy with PUT, only POST"),
        ({"type": "", "content": "x"}, 400, "Unhandled contents type: "),
        (["not", "an", "object"], 400, "The body must be a JSON object"),
    ],
)
def test_put_errors_leave_the_file(api, root, body, status, message):
    (root / "n.txt").write_text("previous")
    assert error(api.put("/api/contents/n.txt", body)) == (status, message)
    assert (root / "n.txt").read_text() == "previous"


def test_put_invalid_json(api):
    response = api.put("/api/contents/n.txt", raw=b"{bad")
    assert response.status_code == 400
    assert response.json() == {
        "message": "Invalid JSON in body of request",
        "reason": None,
    }


def test_unknown_type_saves_a_file(api, root):
    response = api.put("/api/contents/n.txt", {**FILE, "type": "bogus"})
    assert response.status_code == 201 and response.json()["type"] == "file"


def test_put_into_a_missing_directory(api):
    assert error(api.put("/api/contents/nodir/n.txt", FILE)) == (
        500,
        "Unexpected error while saving file: nodir/n.txt "
        "[Errno 2] No such file or directory: '/nodir/n.txt'",
    )


def test_put_hidden(api):
    assert error(api.put("/api/contents/.hidden.txt", FILE)) == (
        400,
        "Cannot create file or directory '/.hidden.txt'",
    )
    assert error(api.put("/api/contents/sub/.h/x", FILE))[0] == 400


def test_put_directories(api, root):
    for _ in range(2):  # an existing directory is "new" again, as jupyter_server says
        response = api.put("/api/contents/newdir", {"type": "directory"})
        assert response.status_code == 201 and response.json()["type"] == "directory"
    (root / "n.txt").write_text("x")
    assert error(api.put("/api/contents/n.txt", {"type": "directory"})) == (
        400,
        "Not a directory: /n.txt",
    )
    assert error(api.put("/api/contents/newdir", FILE)) == (
        500,
        "Unexpected error while saving file: newdir "
        "[Errno 21] Is a directory: '/newdir'",
    )


def test_put_without_body_creates_untitled_in_the_directory(api, root):
    (root / "sub").mkdir()
    response = api.put("/api/contents/sub")
    assert response.status_code == 201
    assert response.json()["path"] == "sub/untitled"
    assert response["Location"] == "/api/contents/sub/untitled"


def test_full_disk_answers_500_and_keeps_the_file(api, root, monkeypatch):
    api.save_text("n.txt", "previous")
    real_write = os.write

    def full(fd, data):
        if len(data) > 1000:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_write(fd, data)

    monkeypatch.setattr(storage_module.os, "write", full)
    assert error(api.put("/api/contents/n.txt", {**FILE, "content": "x" * 5000})) == (
        500,
        "Unexpected error while saving file: n.txt "
        "[Errno 28] No space left on device: '/n.txt'",
    )
    assert (root / "n.txt").read_text() == "previous"
    assert not [name for name in os.listdir(root) if name.startswith(".~")]


# ---- notebooks ----------


def test_notebook_save_and_trust(api, root):
    response = api.put(
        "/api/contents/nb.ipynb",
        {
            "type": "notebook",
            "format": "json",
            "content": make_notebook(2, trusted=True),
        },
    )
    assert response.status_code == 201
    model = response.json()
    assert (model["type"], model["mimetype"], model["content"]) == (
        "notebook",
        None,
        None,
    )
    saved = json.loads((root / "nb.ipynb").read_text())
    assert "trusted" not in json.dumps(saved)
    cells = api.get("/api/contents/nb.ipynb").json()["content"]["cells"]
    assert cells[0]["metadata"]["trusted"] is True
    # Saved with an untrusted cell: no longer trusted.
    api.save_notebook("nb.ipynb", make_notebook(2, trusted=False))
    cells = api.get("/api/contents/nb.ipynb").json()["content"]["cells"]
    assert cells[0]["metadata"]["trusted"] is False


def test_invalid_notebook_is_saved_with_a_message(api, root):
    nb = json.loads(json.dumps(make_notebook(1)))
    nb["cells"][0]["bogus"] = 1
    response = api.put("/api/contents/nb.ipynb", {"type": "notebook", "content": nb})
    assert response.status_code == 201
    assert response.json()["message"].startswith(
        "Notebook validation failed: Additional properties are not allowed"
    )
    assert json.loads((root / "nb.ipynb").read_text())["cells"][0]["bogus"] == 1


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("string", "Unexpected error while saving file: nb.ipynb 'str' object"),
        ({"foo": 1}, "Unexpected error while saving file: nb.ipynb nbformat"),
        (
            {"cells": "nope", "metadata": {}, "nbformat": 4, "nbformat_minor": 5},
            "Unexpected error while saving file: nb.ipynb",
        ),
    ],
)
def test_unsaveable_notebook_answers_500_and_loses_nothing(api, root, content, message):
    api.save_notebook("nb.ipynb", make_notebook(1))
    before = (root / "nb.ipynb").read_bytes()
    response = api.put(
        "/api/contents/nb.ipynb", {"type": "notebook", "content": content}
    )
    assert response.status_code == 500
    assert response.json()["message"].startswith(message)
    assert (root / "nb.ipynb").read_bytes() == before
    response = api.put(
        "/api/contents/new.ipynb", {"type": "notebook", "content": content}
    )
    assert response.status_code == 500 and not (root / "new.ipynb").exists()


def test_notebook_saved_under_another_extension_is_a_file(api, root):
    model = api.save_notebook("n.txt", make_notebook(0))
    assert model["type"] == "file"
    assert json.loads((root / "n.txt").read_text())["nbformat"] == 4


def test_text_saved_as_ipynb_is_a_notebook_model(api):
    model = api.save_text("x.ipynb", "not json")
    assert model["type"] == "notebook"


# ---- POST: untitled and copies ----------


def test_untitled_names(api, root):
    def created(body=None, path=""):
        response = api.post(f"/api/contents{path}", body)
        assert response.status_code == 201, response.content
        assert response["Location"] == "/api/contents/" + response.json()[
            "path"
        ].replace(" ", "%20")
        return response.json()["path"]

    assert created({"type": "notebook"}) == "Untitled.ipynb"
    assert created({"type": "notebook"}) == "Untitled1.ipynb"
    assert created({"ext": ".ipynb"}) == "Untitled2.ipynb"
    assert created({"type": "file"}) == "untitled"
    assert created({"type": "file", "ext": ".txt"}) == "untitled.txt"
    assert created({"type": "file", "ext": ".txt"}) == "untitled1.txt"
    assert created({"type": "bogus"}) == "untitled1"
    assert created() == "untitled2"
    assert created({"type": "directory"}) == "Untitled Folder"
    assert created({"type": "directory"}) == "Untitled Folder 1"
    assert created({"type": "notebook"}, "/Untitled Folder") == (
        "Untitled Folder/Untitled.ipynb"
    )
    assert (root / "Untitled.ipynb").stat().st_size == 72
    assert json.loads((root / "Untitled.ipynb").read_text()) == {
        "cells": [],
        "metadata": {},
        "nbformat": 4,
        "nbformat_minor": 5,
    }


def test_post_errors(api, root):
    (root / "t.txt").write_text("x")
    assert error(api.post("/api/contents/t.txt", {"type": "file"})) == (
        400,
        "Cannot POST to files, use PUT instead.",
    )
    assert error(api.post("/api/contents/nodir", {"type": "file"})) == (
        404,
        "No such directory: nodir",
    )
    assert error(api.post("/api/contents", raw=b"{bad")) == (
        400,
        "Invalid JSON in body of request",
    )


def test_copy_names(api, root):
    (root / "a.tar.gz").write_text("x")
    (root / "Untitled.ipynb").write_text(json.dumps(make_notebook(0)))
    (root / "dir").mkdir()

    def copied(source, target=""):
        response = api.post(f"/api/contents{target}", {"copy_from": source})
        assert response.status_code == 201, response.content
        return response.json()["path"]

    assert copied("a.tar.gz") == "a-Copy1.tar.gz"
    assert copied("a.tar.gz") == "a-Copy2.tar.gz"
    assert copied("a-Copy1.tar.gz") == "a-Copy3.tar.gz"
    assert copied("Untitled.ipynb") == "Untitled-Copy1.ipynb"
    assert copied("Untitled.ipynb", "/dir") == "dir/Untitled.ipynb"
    assert copied("Untitled.ipynb", "/dir") == "dir/Untitled-Copy1.ipynb"
    assert copied("Untitled.ipynb", "/dir/new.ipynb") == "dir/new.ipynb"
    assert (root / "a-Copy3.tar.gz").read_text() == "x"


def test_copy_errors(api, root):
    (root / "t.txt").write_text("x")
    (root / ".secret").write_text("x")
    assert error(api.post("/api/contents", {"copy_from": "missing.txt"})) == (
        404,
        "No such file or directory: missing.txt",
    )
    assert error(api.post("/api/contents/nodir/x/n.txt", {"copy_from": "t.txt"})) == (
        404,
        "No such parent directory: nodir/x to copy file in",
    )
    assert error(api.post("/api/contents", {"copy_from": ".secret"})) == (
        400,
        "Cannot copy file or directory ''",
    )
    assert error(api.post("/api/contents/t.txt2", {"copy_from": ".secret"})) == (
        400,
        "Cannot copy file or directory '/t.txt2'",
    )
    assert error(api.post("/api/contents", {"copy_from": "../x"})) == (
        404,
        "../x is outside root contents directory",
    )


def test_copy_directories(api, root):
    (root / "d" / "inner").mkdir(parents=True)
    (root / "d" / "inner" / "f.txt").write_text("x")
    response = api.post("/api/contents", {"copy_from": "d"})
    assert response.status_code == 201
    assert (
        response.json()["path"] == "d-Copy1" and response.json()["type"] == "directory"
    )
    assert (root / "d-Copy1" / "inner" / "f.txt").read_text() == "x"


def test_copy_events(api, root, emitted):
    (root / "t.txt").write_text("x")
    api.post("/api/contents", {"copy_from": "t.txt"})
    assert emitted[-1] == (
        api.user.pk,
        {"action": "copy", "path": "t-Copy1.txt", "source_path": "t.txt"},
    )


def test_location_escapes_non_ascii(api):
    response = api.put("/api/contents/été notes.txt", FILE)
    assert response["Location"] == "/api/contents/%C3%A9t%C3%A9%20notes.txt"


# ---- PATCH ----------


def test_rename(api, root, emitted):
    (root / "t.txt").write_text("x")
    (root / "sub").mkdir()
    response = api.patch("/api/contents/t.txt", {"path": "sub/t2.txt"})
    assert response.status_code == 200
    assert response["Location"] == "/api/contents/sub/t2.txt"
    assert response.json()["path"] == "sub/t2.txt"
    assert (root / "sub" / "t2.txt").read_text() == "x" and not (
        root / "t.txt"
    ).exists()
    assert emitted[-1] == (
        api.user.pk,
        {"action": "rename", "path": "sub/t2.txt", "source_path": "t.txt"},
    )
    assert api.patch("/api/contents/sub/t2.txt", {"path": "/t.txt"}).status_code == 200


def test_rename_noops(api, root):
    (root / "t.txt").write_text("x")
    for body in ({}, {"path": "t.txt"}):
        response = api.patch("/api/contents/t.txt", body)
        assert response.status_code == 200 and response.json()["path"] == "t.txt"


def test_rename_errors(api, root):
    (root / "t.txt").write_text("x")
    (root / "n.txt").write_text("y")
    (root / ".dot").write_text("z")
    (root / "sub").mkdir()
    assert error(api.patch("/api/contents/t.txt")) == (400, "JSON body missing")
    assert error(api.patch("/api/contents/t.txt", {"path": "n.txt"})) == (
        409,
        "File already exists: n.txt",
    )
    assert error(api.patch("/api/contents/missing", {"path": "m2"})) == (
        404,
        "File or directory does not exist: missing",
    )
    assert error(api.patch("/api/contents/t.txt", {"path": "nodir/t.txt"})) == (
        404,
        "File or directory does not exist: t.txt",
    )
    assert error(api.patch("/api/contents/t.txt", {"path": ".t"})) == (
        400,
        "Cannot rename file or directory '/t.txt'",
    )
    assert error(api.patch("/api/contents/.dot", {"path": "t3"})) == (
        400,
        "Cannot rename file or directory '/.dot'",
    )
    assert error(api.patch("/api/contents/t.txt", {"path": "../t.txt"})) == (
        404,
        "../t.txt is outside root contents directory",
    )
    assert error(api.patch("/api/contents/t.txt", {"path": 5})) == (
        400,
        "'path' must be a string",
    )
    assert error(api.patch("/api/contents/sub", {"path": "sub/inner"})) == (
        500,
        "Unknown error renaming file: sub "
        "Cannot move a directory '/sub' into itself '/sub/inner'.",
    )
    assert (root / "t.txt").read_text() == "x" and (root / "n.txt").read_text() == "y"


# ---- DELETE ----------


def test_delete_files_and_directories(api, root, emitted):
    (root / "t.txt").write_text("x")
    (root / "full" / "deeper").mkdir(parents=True)
    (root / "full" / "deeper" / "f").write_text("y")
    (root / "empty").mkdir()
    for path in ("t.txt", "full", "empty"):
        response = api.delete(f"/api/contents/{path}")
        assert response.status_code == 204 and response.content == b""
        assert not (root / path).exists()
    assert emitted[-1] == (api.user.pk, {"action": "delete", "path": "empty"})
    items = {item.path: item for item in DeletedItem.objects.filter(owner=api.user)}
    assert items["full"].type == "directory" and items["full"].size == 1
    assert items["t.txt"].type == "file"


def test_delete_errors(api, root):
    (root / ".dot.txt").write_text("x")
    assert error(api.delete("/api/contents/missing.txt")) == (
        404,
        "File or directory does not exist: /missing.txt",
    )
    assert error(api.delete("/api/contents/.dot.txt")) == (
        400,
        "Cannot delete file or directory '/.dot.txt'",
    )
    assert error(api.delete("/api/contents")) == (400, "Can't delete root")
    assert error(api.delete("/api/contents/%2E%2E/x")) == (
        404,
        "../x is outside root contents directory",
    )
    assert (root / ".dot.txt").exists()


def test_delete_a_link_removes_the_link_only(api, root, other_root):
    (other_root / "keep").write_text("theirs")
    os.symlink(other_root, root / "theirs")
    assert api.delete("/api/contents/theirs").status_code == 204
    assert (other_root / "keep").read_text() == "theirs"


def test_save_events(api, emitted):
    api.put("/api/contents/n.txt", FILE)
    assert emitted == [(api.user.pk, {"action": "save", "path": "n.txt"})]


def test_an_empty_rename_of_a_hidden_file_reveals_nothing(api, root):
    (root / ".dot").write_text("z")
    assert error(api.patch("/api/contents/.dot", {})) == (
        404,
        "No such file or directory: .dot",
    )


def test_renaming_the_root_into_itself(api, root):
    assert error(api.patch("/api/contents", {"path": "x"})) == (
        500,
        "Unknown error renaming file:  Cannot move a directory '/' into itself '/x'.",
    )
