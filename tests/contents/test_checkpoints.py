"""Checkpoints in the database: automatic and requested, several per file,
restores that can be undone, deletes and renames, limits."""

import datetime

import pytest
from django.core.cache import cache
from django.utils import timezone

from contents.models import Checkpoint
from tests.factories import make_notebook

pytestmark = pytest.mark.django_db


def listed(api, path):
    response = api.get(f"/api/contents/{path}/checkpoints")
    assert response.status_code == 200
    return response.json()


def create(api, path):
    response = api.post(f"/api/contents/{path}/checkpoints")
    assert response.status_code == 201, response.content
    return response


@pytest.fixture
def interval(settings):
    settings.CHECKPOINT_INTERVAL_SECONDS = 300
    return settings


def test_first_save_of_a_notebook_takes_a_checkpoint(api, root, interval):
    assert listed(api, "nb.ipynb") == []
    saved = api.save_notebook("nb.ipynb", make_notebook(1))
    checkpoints = listed(api, "nb.ipynb")
    assert len(checkpoints) == 1
    assert set(checkpoints[0]) == {"id", "last_modified"}
    assert checkpoints[0]["last_modified"] == saved["last_modified"]
    api.save_notebook("nb.ipynb", make_notebook(2))  # within the interval: none
    assert len(listed(api, "nb.ipynb")) == 1


def test_a_save_after_the_interval_takes_another(api, interval):
    api.save_text("t.txt", "one")
    Checkpoint.objects.update(created=timezone.now() - datetime.timedelta(hours=1))
    cache.clear()  # forget that the file was checkpointed lately
    api.save_text("t.txt", "two")
    assert len(listed(api, "t.txt")) == 2


def test_base64_uploads_take_no_automatic_checkpoint(api):
    api.put(
        "/api/contents/b.bin", {"type": "file", "format": "base64", "content": "AA=="}
    )
    assert listed(api, "b.bin") == []


def test_requested_checkpoints_are_kept_oldest_first(api, root, interval):
    api.save_text("t.txt", "one")
    first = listed(api, "t.txt")[0]
    response = create(api, "t.txt")  # same content: the newest is answered
    assert response.json() == first
    assert response["Location"] == f"/api/contents/t.txt/checkpoints/{first['id']}"
    api.save_text("t.txt", "two")
    second = create(api, "t.txt").json()
    api.save_text("t.txt", "three")
    third = create(api, "t.txt").json()
    assert [c["id"] for c in listed(api, "t.txt")] == [
        first["id"],
        second["id"],
        third["id"],
    ]


def test_restore_is_undoable(api, root, interval):
    api.save_text("t.txt", "original")
    original = listed(api, "t.txt")[0]["id"]
    api.save_text("t.txt", "edited")
    response = api.post(f"/api/contents/t.txt/checkpoints/{original}")
    assert response.status_code == 204 and response.content == b""
    assert (root / "t.txt").read_text() == "original"
    checkpoints = listed(api, "t.txt")
    assert len(checkpoints) == 2
    undo = checkpoints[-1]["id"]  # what the file held before the restore
    api.post(f"/api/contents/t.txt/checkpoints/{undo}")
    assert (root / "t.txt").read_text() == "edited"


def test_restoring_a_notebook_keeps_its_trust(api, root, interval):
    api.save_notebook("nb.ipynb", make_notebook(1, trusted=True))
    checkpoint = listed(api, "nb.ipynb")[0]["id"]
    api.save_notebook("nb.ipynb", make_notebook(2, trusted=False))
    api.post(f"/api/contents/nb.ipynb/checkpoints/{checkpoint}")
    cells = api.get("/api/contents/nb.ipynb").json()["content"]["cells"]
    assert cells[0]["metadata"]["trusted"] is True


def test_restore_recreates_a_file_removed_by_a_kernel(api, root, interval):
    api.save_text("t.txt", "keep me")
    checkpoint = listed(api, "t.txt")[0]["id"]
    (root / "t.txt").unlink()
    assert api.post(f"/api/contents/t.txt/checkpoints/{checkpoint}").status_code == 204
    assert (root / "t.txt").read_text() == "keep me"


def test_delete_a_checkpoint(api, interval):
    api.save_text("t.txt", "x")
    checkpoint = listed(api, "t.txt")[0]["id"]
    response = api.delete(f"/api/contents/t.txt/checkpoints/{checkpoint}")
    assert response.status_code == 204
    assert listed(api, "t.txt") == []


@pytest.mark.parametrize("method", ["POST", "DELETE"])
@pytest.mark.parametrize(
    "checkpoint_id", ["nope", "checkpoint", "0123456789abcdef0123456789abcdef"]
)
def test_unknown_checkpoints_are_not_found(api, method, checkpoint_id):
    api.save_text("t.txt", "x")
    response = api.request(method, f"/api/contents/t.txt/checkpoints/{checkpoint_id}")
    assert response.status_code == 404
    assert response.json() == {
        "message": f"Checkpoint does not exist: t.txt@{checkpoint_id}",
        "reason": None,
    }


def test_checkpoint_errors(api, root, settings):
    (root / "sub").mkdir()
    (root / ".hidden").write_text("x")
    for path, status, message in [
        ("missing.txt", 404, "No such file or directory: missing.txt"),
        (".hidden", 404, "No such file or directory: .hidden"),
        ("sub", 400, "sub is a directory: only files have checkpoints"),
    ]:
        response = api.post(f"/api/contents/{path}/checkpoints")
        assert (response.status_code, response.json()["message"]) == (status, message)
    assert listed(api, ".hidden") == []
    settings.CHECKPOINT_MAX_BYTES = 10
    api.save_text("big.txt", "x" * 11)
    response = api.post("/api/contents/big.txt/checkpoints")
    assert response.status_code == 413
    assert response.json()["message"] == (
        "big.txt is too large to checkpoint (11 bytes; the limit is 10 bytes)"
    )
    assert listed(api, "big.txt") == []  # nor automatically


def test_only_the_newest_are_kept(api, settings):
    settings.CHECKPOINTS_KEPT = 3
    ids = []
    for number in range(5):
        api.save_text("t.txt", f"version {number}")
        ids.append(create(api, "t.txt").json()["id"])
    assert [c["id"] for c in listed(api, "t.txt")] == ids[-3:]


def test_checkpoints_follow_renames(api, root, interval):
    (root / "d").mkdir()
    api.save_text("d/t.txt", "x")
    checkpoint = listed(api, "d/t.txt")
    api.patch("/api/contents/d", {"path": "e"})
    assert listed(api, "e/t.txt") == checkpoint
    assert listed(api, "d/t.txt") == []
    api.patch("/api/contents/e/t.txt", {"path": "u.txt"})
    assert listed(api, "u.txt") == checkpoint


def test_deleting_a_file_hides_its_checkpoints(api, interval):
    api.save_text("t.txt", "x")
    api.delete("/api/contents/t.txt")
    assert listed(api, "t.txt") == []
    api.save_text("t.txt", "a new file")
    assert len(listed(api, "t.txt")) == 1
    assert Checkpoint.objects.filter(deleted__isnull=False).count() == 1


def test_copies_of_notebooks_get_a_checkpoint(api, root, interval):
    api.save_notebook("nb.ipynb", make_notebook(1))
    api.post("/api/contents", {"copy_from": "nb.ipynb"})
    assert len(listed(api, "nb-Copy1.ipynb")) == 1
