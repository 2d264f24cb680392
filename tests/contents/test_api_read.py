"""GET /api/contents: models, listings, formats, errors, as jupyter_server 2.21."""

import base64
import hashlib
import json
import os

import pytest

from contents import manager
from tests.factories import make_notebook

pytestmark = pytest.mark.django_db

MODEL_KEYS = [
    "name",
    "path",
    "last_modified",
    "created",
    "content",
    "format",
    "mimetype",
    "size",
    "writable",
    "hash",
    "hash_algorithm",
    "type",
]


@pytest.fixture
def tree(root):
    (root / "t.txt").write_text("hello\n")
    (root / "b.bin").write_bytes(b"\xff\xfe\x00bin")
    (root / "sub").mkdir()
    (root / "sub" / "inner.txt").write_text("inner")
    (root / ".hidden").mkdir()
    (root / ".hidden" / "f.txt").write_text("x")
    (root / ".dot.txt").write_text("y")
    (root / "__pycache__").mkdir()
    (root / "m.pyc").write_bytes(b"x")
    (root / "backup~").write_text("x")
    (root / "a.tar.gz").write_bytes(b"x")
    return root


def test_root_listing(api, tree):
    response = api.get("/api/contents")
    assert response.status_code == 200
    model = response.json()
    assert list(model) == MODEL_KEYS
    assert (model["name"], model["path"], model["type"]) == ("", "", "directory")
    assert (model["format"], model["mimetype"], model["size"]) == ("json", None, None)
    children = {child["name"]: child for child in model["content"]}
    assert set(children) == {"t.txt", "b.bin", "sub", "a.tar.gz"}
    assert children["t.txt"] == {
        "name": "t.txt",
        "path": "t.txt",
        "last_modified": manager.timestamp(os.stat(tree / "t.txt").st_mtime),
        "created": manager.timestamp(os.stat(tree / "t.txt").st_ctime),
        "content": None,
        "format": None,
        "mimetype": "text/plain",
        "size": 6,
        "writable": True,
        "hash": None,
        "hash_algorithm": None,
        "type": "file",
    }
    assert children["sub"]["size"] is None and children["sub"]["type"] == "directory"
    assert children["a.tar.gz"]["mimetype"] == "application/x-tar"
    assert children["b.bin"]["mimetype"] == "application/octet-stream"
    assert api.get("/api/contents/").json()["content"] == model["content"]


def test_subdirectory_listing_paths(api, tree):
    model = api.get("/api/contents/sub").json()
    assert model["path"] == "sub" and model["name"] == "sub"
    assert [child["path"] for child in model["content"]] == ["sub/inner.txt"]
    assert api.get("/api/contents/sub?content=0").json()["content"] is None


def test_listing_does_not_read_notebooks(api, root, monkeypatch):
    for number in range(20):
        (root / f"n{number}.ipynb").write_text("not even json")

    def refuse(*args, **kwargs):
        raise AssertionError("a listing opened a file")

    monkeypatch.setattr(manager.Storage, "open_file", refuse)
    content = api.get("/api/contents").json()["content"]
    assert {child["type"] for child in content} == {"notebook"}
    assert {child["mimetype"] for child in content} == {None}


def test_text_file(api, tree):
    model = api.get("/api/contents/t.txt").json()
    assert (model["content"], model["format"], model["mimetype"]) == (
        "hello\n",
        "text",
        "text/plain",
    )
    assert model["hash"] is None
    model = api.get("/api/contents/t.txt?content=0").json()
    assert (model["content"], model["format"]) == (None, None)


def test_hash(api, tree):
    digest = hashlib.sha256(b"hello\n").hexdigest()
    for query in ("?hash=1&content=0", "?hash=1"):
        model = api.get(f"/api/contents/t.txt{query}").json()
        assert (model["hash"], model["hash_algorithm"]) == (digest, "sha256")


def test_base64_and_binary(api, tree):
    model = api.get("/api/contents/t.txt?format=base64").json()
    assert (model["content"], model["format"]) == ("aGVsbG8K\n", "base64")
    model = api.get("/api/contents/b.bin").json()
    assert model["format"] == "base64"
    assert base64.b64decode(model["content"]) == b"\xff\xfe\x00bin"
    assert model["mimetype"] == "application/octet-stream"


@pytest.mark.parametrize(
    ("query", "message", "reason"),
    [
        ("t.txt?format=bogus", "Format 'bogus' is invalid", None),
        ("t.txt?content=2", "Content '2' is invalid", None),
        ("t.txt?hash=2", "Hash argument '2' is invalid. It must be '0' or '1'.", None),
        ("t.txt?type=directory", "t.txt is not a directory", "bad type"),
        ("sub?type=file", "sub is a directory, not a file", "bad type"),
        ("sub?type=notebook", "sub is a directory, not a notebook", "bad type"),
        ("b.bin?format=text", "/b.bin is not UTF-8 encoded", "bad format"),
        ("missing.txt?format=bogus", "Format 'bogus' is invalid", None),
    ],
)
def test_bad_requests(api, tree, query, message, reason):
    response = api.get(f"/api/contents/{query}")
    assert response.status_code == 400
    assert response.json() == {"message": message, "reason": reason}


def test_unknown_type_is_file(api, tree):
    assert api.get("/api/contents/t.txt?type=bogus").json()["type"] == "file"


@pytest.mark.parametrize(
    "path",
    [
        "missing.txt",
        "sub/missing.txt",
        ".hidden",
        ".hidden/f.txt",
        ".dot.txt",
        "t.txt/x",
    ],
)
def test_missing_and_hidden_answer_the_text_404(api, tree, path):
    response = api.get(f"/api/contents/{path}")
    assert response.status_code == 404
    assert response["Content-Type"] == "application/json"
    assert response.content.decode() == f"file or directory '/{path}' does not exist"


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("/api/contents/../x", "../x is outside root contents directory"),
        ("/api/contents/%2E%2E/x", "../x is outside root contents directory"),
        ("/api/contents/..%2Fetc", "../etc is outside root contents directory"),
        (
            "/api/contents/sub/%2e%2e/%2e%2e/etc/passwd",
            "sub/../../etc/passwd is outside root contents directory",
        ),
        ("/api/contents/a%00b", "a\x00b is not a valid path"),
        ("/api/contents/..%5Cx", "..\\x is not a valid path"),
    ],
)
def test_escapes_answer_json_404(api, tree, url, message):
    response = api.client.get(url)
    assert response.status_code == 404
    assert response.json() == {"message": message, "reason": None}


def test_empty_segments_match_no_route(api, tree):
    response = api.client.get("/api/contents//etc/passwd")
    assert response.status_code == 404
    assert response.json() == {"message": "Not Found", "reason": None}


def test_trailing_slash_redirects(api, tree):
    response = api.client.get("/api/contents/sub/")
    assert response.status_code == 302 and response["Location"] == "/api/contents/sub"


def test_notebook_model(api, root):
    api.save_notebook("nb.ipynb", make_notebook(2, trusted=True))
    response = api.get("/api/contents/nb.ipynb")
    model = response.json()
    assert response["Last-Modified"]
    assert (model["type"], model["format"], model["mimetype"]) == (
        "notebook",
        "json",
        None,
    )
    content = model["content"]
    assert (content["nbformat"], content["nbformat_minor"]) == (4, 5)
    assert content["cells"][0]["source"] == "x = 0\nprint(x)"
    assert content["cells"][0]["outputs"][0]["text"] == "0\n"
    trusted = [c["metadata"].get("trusted") for c in content["cells"]]
    assert trusted == [True, True, None]
    assert "message" not in model
    model = api.get("/api/contents/nb.ipynb?type=file").json()
    assert model["type"] == "file" and model["format"] == "text"
    assert json.loads(model["content"])["cells"][0]["source"] == ["x = 0\n", "print(x)"]


def test_notebook_changed_outside_the_api_is_untrusted(api, root):
    api.save_notebook("nb.ipynb", make_notebook(1, trusted=True))
    text = (root / "nb.ipynb").read_text().replace('"0\\n"', '"changed\\n"')
    (root / "nb.ipynb").write_text(text)
    cells = api.get("/api/contents/nb.ipynb").json()["content"]["cells"]
    assert cells[0]["metadata"]["trusted"] is False


def test_invalid_notebook_is_read_with_a_message(api, root):
    nb = json.loads(json.dumps(make_notebook(1)))
    nb["cells"][0]["bogus"] = 1
    (root / "bad.ipynb").write_text(json.dumps(nb))
    model = api.get("/api/contents/bad.ipynb").json()
    assert model["message"].startswith("Notebook validation failed:")
    assert model["content"]["cells"][0]["bogus"] == 1


def test_cell_ids_are_added_when_reading_a_45_notebook_without_them(api, root):
    nb = json.loads(json.dumps(make_notebook(2)))
    for cell in nb["cells"]:
        del cell["id"]
    (root / "old.ipynb").write_text(json.dumps(nb))
    cells = api.get("/api/contents/old.ipynb").json()["content"]["cells"]
    assert all(cell["id"] for cell in cells)


def test_unreadable_notebook(api, root):
    (root / "x.ipynb").write_text("not json")
    response = api.get("/api/contents/x.ipynb")
    assert response.status_code == 400
    assert response.json()["message"] == (
        "Unreadable Notebook: /x.ipynb "
        "NotJSONError(\"Notebook does not appear to be JSON: 'not json'\")"
    )
    assert api.get("/api/contents/x.ipynb?type=file").json()["content"] == "not json"
    assert api.get("/api/contents/x.ipynb?content=0").json()["type"] == "notebook"


def test_text_file_read_as_notebook_is_unreadable(api, tree):
    response = api.get("/api/contents/t.txt?type=notebook")
    assert response.status_code == 400
    assert response.json()["message"].startswith("Unreadable Notebook: /t.txt")


def test_links_inside_are_served_outside_refused(api, root, other_root):
    (root / "t.txt").write_text("hello")
    os.symlink("t.txt", root / "alias")
    os.symlink(other_root, root / "theirs")
    (other_root / "secret").write_text("theirs")
    assert api.get("/api/contents/alias").json()["content"] == "hello"
    for path in ("theirs", "theirs/secret"):
        response = api.get(f"/api/contents/{path}")
        assert response.status_code == 404
        assert "outside root contents directory" in response.json()["message"]


def test_get_emits_an_event(api, tree, emitted):
    api.get("/api/contents/sub")
    assert emitted == [(api.user.pk, {"action": "get", "path": "sub"})]


def test_api_notebooks_redirects(client):
    response = client.get("/api/notebooks/a b.ipynb")
    assert response.status_code == 302
    assert response["Location"] == "/api/contents/a%20b.ipynb"


def test_unauthenticated_is_forbidden(client, tree):
    response = client.get("/api/contents")
    assert response.status_code == 403
    assert response.json() == {"message": "Forbidden", "reason": None}


def test_overlong_names_are_missing(api):
    response = api.get("/api/contents/" + "x" * 300)
    assert response.status_code == 404


def test_unreadable_files_are_forbidden(api, root, monkeypatch):
    (root / "t.txt").write_text("x")

    def denied(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(manager.Storage, "read", denied)
    response = api.get("/api/contents/t.txt")
    assert response.status_code == 403
    assert response.json()["message"] == "Permission denied: t.txt"


def test_double_encoding_and_absolute_paths_stay_inside(api, root):
    # One decoding only: "%2e%2e" is then an ordinary (missing) name.
    response = api.client.get("/api/contents/%252e%252e/x")
    assert response.status_code == 404
    assert response.content.decode() == "file or directory '/%2e%2e/x' does not exist"
    # An absolute path in a body is relative to the user's root.
    response = api.post("/api/contents", {"copy_from": "/etc/passwd"})
    assert response.status_code == 404
    assert response.json()["message"] == "No such file or directory: etc/passwd"
