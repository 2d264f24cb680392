"""Storage quotas (default and per user) and the database index of files."""

import base64
import os

import pytest

from contents import index, storage
from contents.models import ContentsEntry, StorageQuota
from tests.factories import make_notebook

pytestmark = pytest.mark.django_db


def set_quota(user, quota_bytes):
    StorageQuota.objects.update_or_create(
        owner=user, defaults={"quota_bytes": quota_bytes}
    )


# ---- quotas ------------------------------------------------------------------


def test_unlimited_by_default(api, user):
    api.save_text("big.txt", "x" * 100_000)
    assert storage.usage(user) == (100_000, None)


def test_a_save_over_the_default_quota_is_refused(api, root, settings):
    settings.STORAGE_QUOTA_BYTES = 1000
    api.save_text("a.txt", "x" * 600)
    response = api.put(
        "/api/contents/a.txt", {"type": "file", "format": "text", "content": "y" * 1200}
    )
    assert response.status_code == 413
    message = response.json()["message"]
    assert message.startswith("Storage quota exceeded: saving a.txt needs 600 bytes")
    assert "nothing was changed" in message
    assert (root / "a.txt").read_text() == "x" * 600
    response = api.put(
        "/api/contents/b.txt", {"type": "file", "format": "text", "content": "y" * 500}
    )
    assert response.status_code == 413 and not (root / "b.txt").exists()
    api.save_text("a.txt", "x" * 1000)  # exactly at the quota: fine


def test_a_per_user_quota_overrides_the_default(api, user, other_api, settings):
    settings.STORAGE_QUOTA_BYTES = 100
    set_quota(user, None)  # unlimited for this user
    api.save_text("a.txt", "x" * 1000)
    assert (
        other_api.put(
            "/api/contents/a.txt",
            {"type": "file", "format": "text", "content": "x" * 200},
        ).status_code
        == 413
    )
    set_quota(user, 1500)
    assert storage.usage(user) == (1000, 1500)
    assert (
        api.put(
            "/api/contents/b.txt",
            {"type": "file", "format": "text", "content": "x" * 600},
        ).status_code
        == 413
    )


def test_shrinking_is_allowed_over_the_quota(api, user, root):
    (root / "big.txt").write_text("x" * 5000)  # written by a kernel
    set_quota(user, 1000)
    api.save_text("big.txt", "x" * 10)
    assert (root / "big.txt").read_text() == "x" * 10


def test_notebooks_copies_and_uploads_count(api, user, root):
    set_quota(user, 2000)
    response = api.put(
        "/api/contents/nb.ipynb",
        {"type": "notebook", "content": make_notebook(100)},
    )
    assert response.status_code == 413 and not (root / "nb.ipynb").exists()
    api.save_text("a.txt", "x" * 1200)
    response = api.post("/api/contents", {"copy_from": "a.txt"})
    assert response.status_code == 413 and not (root / "a-Copy1.txt").exists()
    chunk = {"type": "file", "format": "base64", "chunk": 1}
    data = base64.b64encode(b"x" * 500).decode()
    assert api.put("/api/contents/u.bin", {**chunk, "content": data}).status_code == 201
    response = api.put("/api/contents/u.bin", {**chunk, "chunk": -1, "content": data})
    assert response.status_code == 413
    assert not (root / "u.bin").exists()
    assert not [name for name in os.listdir(root) if name.startswith(".~")]


def test_deleting_frees_space(api, user):
    set_quota(user, 1000)
    api.save_text("a.txt", "x" * 900)
    api.delete("/api/contents/a.txt")
    api.save_text("b.txt", "x" * 900)


# ---- index -------------------------------------------------------------------


def test_saves_reads_and_copies_are_indexed(api, user, root):
    api.save_text("a.txt", "hello")
    api.save_notebook("n.ipynb", make_notebook(1))
    (root / "kernel.txt").write_text("from a kernel")
    api.get("/api/contents/kernel.txt")
    api.post("/api/contents", {"copy_from": "a.txt"})
    rows = {row.path: row for row in ContentsEntry.objects.filter(owner=user)}
    assert set(rows) == {"a.txt", "n.ipynb", "kernel.txt", "a-Copy1.txt"}
    assert rows["n.ipynb"].type == "notebook" and rows["a.txt"].size == 5
    assert rows["a.txt"].hash == rows["a-Copy1.txt"].hash != ""
    api.get("/api/contents")  # listings do not touch the index
    assert ContentsEntry.objects.filter(owner=user).count() == 4


def test_recent_files_newest_first_checked_against_the_disk(api, user, root):
    for name in ("old.txt", "mid.ipynb", "new.txt"):
        api.save_text(name, name)
    os.utime(root / "old.txt", (1_000_000, 1_000_000))
    os.utime(root / "mid.ipynb", (2_000_000, 2_000_000))
    recent = index.recent_files(user)
    assert [row.path for row in recent] == ["new.txt", "mid.ipynb", "old.txt"]
    assert {"path", "type", "size", "last_modified"} <= set(vars(recent[0]))
    assert [row.path for row in index.recent_files(user, type="notebook")] == [
        "mid.ipynb"
    ]
    assert [row.path for row in index.recent_files(user, limit=1)] == ["new.txt"]
    (root / "new.txt").unlink()  # removed by a kernel
    assert [row.path for row in index.recent_files(user)] == ["mid.ipynb", "old.txt"]
    assert not ContentsEntry.objects.filter(path="new.txt").exists()


def test_index_follows_renames_and_deletes(api, user, root):
    (root / "d").mkdir()
    api.save_text("d/a.txt", "x")
    api.patch("/api/contents/d", {"path": "e"})
    assert [row.path for row in index.recent_files(user)] == ["e/a.txt"]
    api.delete("/api/contents/e")
    assert index.recent_files(user) == []
    assert ContentsEntry.objects.get(path="e/a.txt").deleted is not None


def test_other_users_rows_are_never_returned(api, other_api, user, other_user):
    api.save_text("mine.txt", "x")
    other_api.save_text("theirs.txt", "y")
    assert [row.path for row in index.recent_files(user)] == ["mine.txt"]
    assert [row.path for row in index.recent_files(other_user)] == ["theirs.txt"]
