"""Staff in the admin: files, checkpoints and deleted files of users, restore
actions, quotas; and the retention purge."""

import datetime
import io

import pytest
from django.core.management import call_command
from django.utils import timezone

from accounts.models import AuditEvent
from contents.models import Checkpoint, ContentsEntry, DeletedItem, StorageQuota
from contents.storage import trash_root

pytestmark = pytest.mark.django_db


@pytest.fixture
def staff(client_for, staff_user):
    return client_for(staff_user)


def run_action(staff, model, action, objects):
    return staff.post(
        f"/admin/contents/{model}/",
        {"action": action, "_selected_action": [str(obj.pk) for obj in objects]},
        follow=True,
    )


def test_pages_render(staff, api):
    api.save_text("t.txt", "x")
    api.delete("/api/contents/t.txt")
    for model in ("contentsentry", "checkpoint", "deleteditem", "storagequota"):
        response = staff.get(f"/admin/contents/{model}/")
        assert response.status_code == 200, model
        assert b"t.txt" in response.content or model == "storagequota"
    assert staff.get("/admin/contents/storagequota/add/").status_code == 200


def test_ordinary_users_cannot_open_the_admin(client_for, user):
    response = client_for(user).get("/admin/contents/checkpoint/")
    assert response.status_code in (302, 403)


def test_staff_restore_a_checkpoint(staff, api, root, staff_user):
    api.save_text("t.txt", "good")
    checkpoint = Checkpoint.objects.get(path="t.txt")
    api.save_text("t.txt", "broken")
    response = run_action(staff, "checkpoint", "restore", [checkpoint])
    assert response.status_code == 200 and b"Restored alice:t.txt" in response.content
    assert (root / "t.txt").read_text() == "good"
    assert Checkpoint.objects.filter(path="t.txt", reason="restore").exists()
    event = AuditEvent.objects.get(action="contents_checkpoint_restored")
    assert (event.actor, event.target) == (staff_user, "alice:t.txt")


def test_staff_restore_a_deleted_directory(staff, api, root, staff_user):
    (root / "project").mkdir()
    api.save_text("project/nb.txt", "work")
    api.delete("/api/contents/project")
    assert api.get("/api/contents/project/nb.txt/checkpoints").json() == []
    item = DeletedItem.objects.get(path="project")
    run_action(staff, "deleteditem", "restore", [item])
    assert (root / "project" / "nb.txt").read_text() == "work"
    assert len(api.get("/api/contents/project/nb.txt/checkpoints").json()) == 1
    assert ContentsEntry.objects.get(path="project/nb.txt").deleted is None
    item.refresh_from_db()
    assert item.restored_at is not None and item.restored_path == "project"
    assert AuditEvent.objects.filter(
        action="contents_deleted_restored", actor=staff_user
    ).exists()
    response = run_action(staff, "deleteditem", "restore", [item])
    assert b"was already restored" in response.content


def test_restoring_over_a_new_file_picks_another_name(staff, api, root):
    api.save_text("t.txt", "deleted one")
    api.delete("/api/contents/t.txt")
    api.save_text("t.txt", "new one")
    run_action(staff, "deleteditem", "restore", [DeletedItem.objects.get()])
    assert (root / "t.txt").read_text() == "new one"
    assert (root / "t-Restored1.txt").read_text() == "deleted one"
    assert len(api.get("/api/contents/t-Restored1.txt/checkpoints").json()) == 1


def test_restoring_recreates_missing_parents(staff, api, root):
    (root / "a" / "b").mkdir(parents=True)
    api.save_text("a/b/t.txt", "x")
    api.delete("/api/contents/a/b/t.txt")
    api.delete("/api/contents/a")
    run_action(
        staff, "deleteditem", "restore", [DeletedItem.objects.get(path="a/b/t.txt")]
    )
    assert (root / "a" / "b" / "t.txt").read_text() == "x"


def test_staff_set_a_quota(staff, api, user, staff_user, root):
    api.save_text("a.txt", "x" * 100)
    response = staff.post(
        "/admin/contents/storagequota/add/",
        {"owner": str(user.pk), "quota_bytes": "150"},
    )
    assert response.status_code == 302, response.content
    assert StorageQuota.objects.get(owner=user).quota_bytes == 150
    event = AuditEvent.objects.get(action="storage_quota_set")
    assert (event.actor, event.target, event.detail) == (
        staff_user,
        "alice",
        {"quota_bytes": 150},
    )
    response = api.put(
        "/api/contents/b.txt", {"type": "file", "format": "text", "content": "y" * 100}
    )
    assert response.status_code == 413
    page = staff.get(
        f"/admin/contents/storagequota/{StorageQuota.objects.get().pk}/change/"
    )
    assert b"100 B" in page.content  # usage shown to staff


def test_purge_after_the_retention_period(api, user, root, settings):
    api.save_text("t.txt", "x")
    api.delete("/api/contents/t.txt")
    item = DeletedItem.objects.get()
    assert (trash_root(user) / item.trash_name).exists()
    out = io.StringIO()
    call_command("purgecontents", stdout=out)
    assert DeletedItem.objects.count() == 1
    DeletedItem.objects.update(
        deleted_at=timezone.now()
        - datetime.timedelta(days=settings.DELETED_RETENTION_DAYS + 1)
    )
    call_command("purgecontents", stdout=out)
    assert "purged 1 deleted item(s)" in out.getvalue()
    assert not DeletedItem.objects.exists() and not Checkpoint.objects.exists()
    assert not (trash_root(user) / item.trash_name).exists()
