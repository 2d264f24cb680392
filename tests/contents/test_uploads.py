"""Chunked uploads (JupyterLab's ``chunk`` field): atomic, never truncated."""

import base64
import datetime
import os

import pytest
from django.utils import timezone

from contents import manager
from contents.models import Upload
from contents.storage import UPLOAD_PREFIX

pytestmark = pytest.mark.django_db

CHUNK = 1024


def body(data: bytes, chunk: int, **extra) -> dict:
    return {
        "type": "file",
        "format": "base64",
        "chunk": chunk,
        "content": base64.b64encode(data).decode(),
        **extra,
    }


def upload(api, path: str, payload: bytes, *, stop_before_last: bool = False):
    """Send ``payload`` as JupyterLab does; return the responses."""
    responses = []
    for offset in range(0, len(payload), CHUNK):
        last = offset + CHUNK >= len(payload)
        if last and stop_before_last:
            break
        chunk = -1 if last else offset // CHUNK + 1
        responses.append(
            api.put(
                f"/api/contents/{path}", body(payload[offset : offset + CHUNK], chunk)
            )
        )
    return responses


def partials(directory) -> list[str]:
    return [name for name in os.listdir(directory) if name.startswith(UPLOAD_PREFIX)]


def test_a_chunked_upload_lands_whole(api, root, emitted):
    payload = os.urandom(5 * CHUNK + 100)
    responses = upload(api, "data.bin", payload)
    assert [r.status_code for r in responses] == [201] * 6
    assert (root / "data.bin").read_bytes() == payload
    assert partials(root) == [] and not Upload.objects.exists()
    last = responses[-1].json()
    assert (last["path"], last["type"], last["size"]) == (
        "data.bin",
        "file",
        len(payload),
    )
    assert responses[1].json()["size"] == 2 * CHUNK  # progress so far
    assert emitted.count((api.user.pk, {"action": "save", "path": "data.bin"})) == 6


def test_the_target_is_untouched_until_the_last_chunk(api, root):
    (root / "data.bin").write_bytes(b"previous")
    upload(api, "data.bin", os.urandom(4 * CHUNK), stop_before_last=True)
    assert (root / "data.bin").read_bytes() == b"previous"
    assert len(partials(root)) == 1
    assert api.get("/api/contents/data.bin", format="base64").json()["size"] == 8
    assert partials(root)[0] not in {
        child["name"] for child in api.get("/api/contents").json()["content"]
    }


def test_a_refused_chunk_can_be_sent_again(api, root):
    (root / "data.bin").write_bytes(b"previous")
    api.put("/api/contents/data.bin", body(b"a" * CHUNK, 1))
    response = api.put(
        "/api/contents/data.bin",
        {"type": "file", "format": "base64", "chunk": 2, "content": "aGVsbG8"},
    )
    assert response.status_code == 400
    assert response.json()["message"] == (
        "Encoding error saving /data.bin: Incorrect padding"
    )
    assert (root / "data.bin").read_bytes() == b"previous"
    assert api.put("/api/contents/data.bin", body(b"b" * CHUNK, 2)).status_code == 200
    assert api.put("/api/contents/data.bin", body(b"c", -1)).status_code == 200
    assert (root / "data.bin").read_bytes() == b"a" * CHUNK + b"b" * CHUNK + b"c"


def test_a_chunk_out_of_order_abandons_the_upload(api, root):
    (root / "data.bin").write_bytes(b"previous")
    api.put("/api/contents/data.bin", body(b"a" * CHUNK, 1))
    response = api.put("/api/contents/data.bin", body(b"c" * CHUNK, 3))
    assert response.status_code == 400
    assert response.json()["message"] == (
        "Chunk 3 of data.bin is out of order (chunk 2 was expected); "
        "upload the file again"
    )
    assert partials(root) == [] and (root / "data.bin").read_bytes() == b"previous"
    assert api.put("/api/contents/data.bin", body(b"b", -1)).status_code == 200
    assert (root / "data.bin").read_bytes() == b"b"


def test_a_chunk_without_a_started_upload(api, root):
    response = api.put("/api/contents/data.bin", body(b"x", 2))
    assert response.status_code == 400
    assert response.json()["message"] == (
        "No upload of data.bin in progress: its first chunk is missing "
        "or the upload expired"
    )
    assert not (root / "data.bin").exists()


def test_a_single_last_chunk_is_a_whole_file(api, root):
    assert api.put("/api/contents/one.bin", body(b"whole", -1)).status_code == 201
    assert (root / "one.bin").read_bytes() == b"whole"


def test_restarting_an_upload_discards_the_first_try(api, root):
    upload(api, "data.bin", b"a" * 3 * CHUNK, stop_before_last=True)
    upload(api, "data.bin", b"b" * 2 * CHUNK + b"c")
    assert (root / "data.bin").read_bytes() == b"b" * 2 * CHUNK + b"c"
    assert partials(root) == []


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (
            {"type": "notebook"},
            'File type "notebook" is not supported for large file transfer',
        ),
        ({"chunk": 0}, "Invalid chunk 0: 1 starts, -1 ends an upload"),
        ({"chunk": "2"}, "Invalid chunk '2': 1 starts, -1 ends an upload"),
        ({"chunk": -2}, "Invalid chunk -2: 1 starts, -1 ends an upload"),
        (
            {"format": None},
            "Must specify format of file contents as 'text' or 'base64'",
        ),
    ],
)
def test_chunk_errors(api, root, extra, message):
    response = api.put("/api/contents/x.bin", {**body(b"x", 1), **extra})
    assert response.status_code == 400 and response.json()["message"] == message
    assert not (root / "x.bin").exists() and partials(root) == []


def test_the_partial_file_replaced_by_a_link_is_never_appended(api, root, tmp_path):
    target = tmp_path / "outside.txt"
    target.write_bytes(b"outside")
    api.put("/api/contents/data.bin", body(b"a" * CHUNK, 1))
    name = partials(root)[0]
    os.unlink(root / name)
    os.symlink(target, root / name)
    response = api.put("/api/contents/data.bin", body(b"b", -1))
    assert response.status_code == 400
    assert "partial file was removed or replaced" in response.json()["message"]
    assert target.read_bytes() == b"outside" and not (root / "data.bin").exists()


def test_abandoned_uploads_are_purged(api, root):
    upload(api, "data.bin", b"a" * 3 * CHUNK, stop_before_last=True)
    assert manager.purge_uploads() == 0
    Upload.objects.update(updated=timezone.now() - datetime.timedelta(days=2))
    assert manager.purge_uploads() == 1
    assert partials(root) == [] and not (root / "data.bin").exists()


def test_uploads_into_hidden_or_missing_directories(api, root):
    response = api.put("/api/contents/.hidden/x.bin", body(b"x", 1))
    assert response.status_code == 400
    response = api.put("/api/contents/nodir/x.bin", body(b"x", 1))
    assert response.status_code == 500
    assert "No such file or directory: '/nodir/x.bin'" in response.json()["message"]
