"""contents.notebooks: reading, saving (byte-exact with nbformat) and trust."""

import copy
import json

import nbformat
import pytest
from nbformat import v3, v4
from nbformat.v4 import nbjson

from contents import notebooks
from jserver.errors import BadRequest
from tests.factories import make_notebook, make_user

pytestmark = pytest.mark.django_db


def nbformat_bytes(nb) -> bytes:
    """What jupyter_server writes for ``nb`` (trust flags removed)."""
    node = nbformat.from_dict(copy.deepcopy(nb))
    for cell in node.cells:
        cell.metadata.pop("trusted", None)
    return (nbjson.writes(node) + "\n").encode()


ODD = {
    "cells": [
        {
            "cell_type": "code",
            "id": "a",
            "execution_count": 1,
            "metadata": {"x": [1, 2.5, float("nan"), None, True, {"é": 'ü\n"q"'}]},
            "source": "print('hé')\nx = 1\n",
            "outputs": [
                {"output_type": "stream", "name": "stdout", "text": "a\nb\r\nc"},
                {
                    "output_type": "display_data",
                    "metadata": {},
                    "data": {
                        "text/plain": "x\ny",
                        "image/svg+xml": "<svg>\n</svg>",
                        "application/json": {"a": [1, 2]},
                        "application/vnd.x+json": {"k": "v\nw"},
                        "image/png": "AAAA\nBBBB\n",
                    },
                },
                {
                    "output_type": "error",
                    "ename": "E",
                    "evalue": "\u2028\x00",
                    "traceback": ["l1", "l2"],
                },
            ],
        },
        {
            "cell_type": "markdown",
            "id": "b",
            "metadata": {},
            "source": "",
            "attachments": {"i.png": {"image/png": "QQ==\n", "text/plain": "a\nb"}},
        },
        {"cell_type": "raw", "id": "c", "metadata": {}, "source": ["a\n", "b"]},
    ],
    "metadata": {"big": 10**30, "neg": -0.0, "inf": float("inf"), "empty": {}},
    "nbformat": 4,
    "nbformat_minor": 5,
}


@pytest.mark.parametrize(
    "nb",
    [ODD, make_notebook(5), make_notebook(0), v4.new_notebook()],
    ids=["odd", "outputs", "empty-cells", "new"],
)
def test_saved_bytes_are_exactly_nbformats(nb):
    data, _, _ = notebooks.serialise(json.loads(json.dumps(nb)))
    assert data == nbformat_bytes(nb)


def test_dumps_matches_the_standard_encoder_on_odd_values():
    value = {"b": [1, [], {}, [1.5, "x", None]], "a": {"z": False, "é": "\t"}}
    expected = json.dumps(
        value, sort_keys=True, indent=1, ensure_ascii=False, separators=(",", ": ")
    )
    assert notebooks.dumps(value) == expected


def test_read_back_equals_nbformats_reading():
    data, _, _ = notebooks.serialise(json.loads(json.dumps(ODD)))
    ours, message = notebooks.parse(data, "x.ipynb")
    assert json.dumps(ours, sort_keys=True) == json.dumps(
        nbformat.reads(data.decode(), as_version=4), sort_keys=True
    )
    assert message is None
    assert ours["cells"][0]["source"] == "print('hé')\nx = 1\n"


def test_older_notebooks_are_upgraded_on_save_with_cell_ids():
    nb = make_notebook(2)
    nb.nbformat_minor = 4
    for cell in nb.cells:
        del cell["id"]
    data, _, message = notebooks.serialise(json.loads(json.dumps(nb)))
    saved = json.loads(data)
    assert (saved["nbformat"], saved["nbformat_minor"]) == (4, 5)
    assert all(cell["id"] for cell in saved["cells"]) and message is None
    assert "orig_nbformat_minor" not in saved["metadata"]


def test_missing_and_duplicate_cell_ids_are_repaired():
    nb = make_notebook(3)
    del nb.cells[0]["id"]
    nb.cells[2]["id"] = nb.cells[1]["id"]
    data, _, message = notebooks.serialise(json.loads(json.dumps(nb)))
    ids = [cell["id"] for cell in json.loads(data)["cells"]]
    assert len(set(ids)) == len(ids) == 4 and message is None


def test_v3_notebooks_are_read_as_v4():
    old = v3.new_notebook(worksheets=[v3.new_worksheet(cells=[v3.new_code_cell("1")])])
    nb, _ = notebooks.parse(v3.writes_json(old).encode(), "old.ipynb")
    assert nb["nbformat"] == 4 and nb["cells"][0]["source"] == "1"


def test_invalid_notebooks_are_saved_with_a_message():
    nb = make_notebook(1)
    nb.cells[0]["bogus"] = 1
    data, _, message = notebooks.serialise(json.loads(json.dumps(nb)))
    assert message.startswith("Notebook validation failed: Additional properties")
    assert json.loads(data)["cells"][0]["bogus"] == 1


@pytest.mark.parametrize(
    ("content", "error"),
    [
        ("string", "'str' object has no attribute 'nbformat'"),
        ({"foo": 1}, "nbformat"),
        ({"nbformat": 4, "nbformat_minor": 5, "cells": "no", "metadata": {}}, ""),
    ],
)
def test_unsaveable_content_raises(content, error):
    with pytest.raises(Exception) as caught:
        notebooks.serialise(content)
    assert error in str(caught.value)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"\xff\xfe", "/x.ipynb is not UTF-8 encoded"),
        (b"not json", "Unreadable Notebook: /x.ipynb NotJSONError("),
        (b'{"nbformat": 9}', "Unreadable Notebook: /x.ipynb"),
        (b"[]", "Unreadable Notebook: /x.ipynb"),
    ],
)
def test_unreadable_notebooks_are_bad_requests(data, message):
    with pytest.raises(BadRequest) as caught:
        notebooks.parse(data, "x.ipynb")
    assert caught.value.message.startswith(message)


def test_trust_follows_the_cells_flags():
    untrusted = make_notebook(2)
    assert notebooks.serialise(json.loads(json.dumps(untrusted)))[1] is False
    trusted = make_notebook(2, trusted=True)
    data, is_trusted, _ = notebooks.serialise(json.loads(json.dumps(trusted)))
    assert is_trusted and b'"trusted"' not in data
    plain = make_notebook(2, outputs=False)  # no rich output: trusted
    assert notebooks.serialise(json.loads(json.dumps(plain)))[1] is True


def test_signatures_are_per_owner_and_culled(monkeypatch):
    alice, bob = make_user("alice"), make_user("bob")
    notebooks.sign(alice, "a" * 64)
    assert notebooks.is_trusted(alice, "a" * 64)
    assert not notebooks.is_trusted(bob, "a" * 64)
    monkeypatch.setattr(notebooks, "SIGNATURES_KEPT", 3)
    monkeypatch.setattr(notebooks, "CULL_EVERY", 1)
    for digest in "bcde":
        notebooks.sign(alice, digest * 64)
    assert not notebooks.is_trusted(alice, "a" * 64)
    assert notebooks.is_trusted(alice, "e" * 64)
    assert notebooks.is_trusted(alice, "c" * 64)


def test_mark_trusted_sets_code_cells_only():
    nb = json.loads(json.dumps(make_notebook(2)))
    notebooks.mark_trusted(nb, True)
    assert [c["metadata"].get("trusted") for c in nb["cells"]] == [True, True, None]
