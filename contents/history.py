"""History in the database: checkpoints of files, and deleted files kept a while.

Checkpoints: jupyter_server keeps one per file, a copy beside it. Here a file
has up to ``CHECKPOINTS_KEPT``, compressed in the database, the oldest dropped
first:

- one is taken automatically when a notebook or a text file is saved through
  the API and it has none yet, or its newest is older than
  ``CHECKPOINT_INTERVAL_SECONDS``;
- ``POST .../checkpoints`` takes one of the current content (answering the
  newest instead when the content is the same);
- restoring a checkpoint first takes one of the current content, so that a
  restore is itself undone by restoring that one;
- files larger than ``CHECKPOINT_MAX_BYTES`` are not checkpointed.

Lists are oldest first: JupyterLab and Notebook 7 take the last as the latest.

Deleted items: deleting moves a file or directory to its owner's trash
(outside their root) and attaches its checkpoints and index rows to a
``DeletedItem``, which staff can restore from the admin for
``DELETED_RETENTION_DAYS``; then it is purged for good.
"""

import datetime
import hashlib
import os
import uuid
import zlib

from django.conf import settings
from django.contrib.auth.models import User
from django.core.cache import cache
from django.db import transaction
from django.db.models import QuerySet
from django.utils import timezone

from contents import index
from contents.models import Checkpoint, DeletedItem, path_digest

# zlib's fastest level: checkpoints are taken while a save waits.
COMPRESSION_LEVEL = 1


def _live(owner: User, path: str) -> QuerySet:
    return Checkpoint.objects.filter(
        owner=owner, path_digest=path_digest(path), deleted__isnull=True
    )


def checkpoints(owner: User, path: str) -> list[Checkpoint]:
    """Return the checkpoints of ``owner``'s file at ``path``, oldest first."""
    return list(_live(owner, path).defer("content").order_by("created"))


def find(owner: User, path: str, checkpoint_id: str) -> Checkpoint | None:
    """Return the checkpoint ``checkpoint_id`` of ``path``, if ``owner`` has it."""
    try:
        key = uuid.UUID(hex=checkpoint_id)
    except ValueError:
        return None
    return _live(owner, path).filter(id=key).first()


def content(checkpoint: Checkpoint) -> bytes:
    """Return the file content a checkpoint holds."""
    return zlib.decompress(bytes(checkpoint.content))


def take(
    owner: User,
    path: str,
    data: bytes,
    stat: os.stat_result,
    *,
    reason: str,
    digest: str | None = None,
) -> Checkpoint:
    """Take a checkpoint of ``data`` (``path``'s content, status ``stat``).

    If the newest checkpoint holds the same bytes, return it instead. The
    caller checks the size limit.
    """
    digest = digest or hashlib.sha256(data).hexdigest()
    newest = _live(owner, path).defer("content").order_by("-created").first()
    if newest is not None and newest.hash == digest:
        return newest
    with transaction.atomic():
        checkpoint = Checkpoint.objects.create(
            owner=owner,
            path=path,
            path_digest=path_digest(path),
            content=zlib.compress(data, COMPRESSION_LEVEL),
            size=len(data),
            hash=digest,
            last_modified=index.moment(stat.st_mtime),
            reason=reason,
        )
        _prune(owner, path)
    return checkpoint


def _recent_key(owner: User, path: str) -> str:
    return f"contents:checkpointed:{int(owner.pk)}:{path_digest(path)}"


def take_on_save(
    owner: User, path: str, data: bytes, stat: os.stat_result, digest: str
) -> Checkpoint | None:
    """Take the automatic checkpoint of a save, if one is due.

    Whether one was taken within the interval is remembered in the cache, so
    that most saves do not ask the database.
    """
    if len(data) > settings.CHECKPOINT_MAX_BYTES:
        return None
    interval = settings.CHECKPOINT_INTERVAL_SECONDS
    key = _recent_key(owner, path)
    if cache.get(key):
        return None
    newest = _live(owner, path).order_by("-created").values_list("created", flat=True)
    last = newest.first()
    now = timezone.now()
    if last is not None and now - last < datetime.timedelta(seconds=interval):
        remaining = interval - (now - last).total_seconds()
        cache.set(key, True, max(1, int(remaining)))
        return None
    checkpoint = take(owner, path, data, stat, reason="save", digest=digest)
    cache.set(key, True, interval)
    return checkpoint


def _prune(owner: User, path: str) -> None:
    kept = max(settings.CHECKPOINTS_KEPT, 1)
    stale = list(
        _live(owner, path).order_by("-created").values_list("id", flat=True)[kept:]
    )
    if stale:
        Checkpoint.objects.filter(id__in=stale).delete()


def delete(owner: User, path: str, checkpoint_id: str) -> bool:
    """Delete a checkpoint; return whether ``owner`` had it."""
    checkpoint = find(owner, path, checkpoint_id)
    if checkpoint is None:
        return False
    checkpoint.delete()
    return True


def forget_recent(owner: User, path: str) -> None:
    """Forget that ``path`` was checkpointed lately (it was moved or deleted)."""
    cache.delete(_recent_key(owner, path))


def move(owner: User, old: str, new: str) -> None:
    """Follow a rename of ``old`` (a file or a directory) to ``new``."""
    forget_recent(owner, old)
    live = Checkpoint.objects.filter(owner=owner, deleted__isnull=True).defer("content")
    rows = index.rows_under(live, old)
    for row in rows:
        row.path = index.moved_path(row.path, old, new)
        row.path_digest = path_digest(row.path)
    Checkpoint.objects.bulk_update(rows, ["path", "path_digest"])


def record_deletion(
    owner: User, path: str, *, type: str, size: int, trash_name: str
) -> DeletedItem:
    """Remember a deleted file or directory and attach its history to it."""
    forget_recent(owner, path)
    with transaction.atomic():
        item = DeletedItem.objects.create(
            owner=owner, path=path, type=type, size=size, trash_name=trash_name
        )
        live = Checkpoint.objects.filter(owner=owner, deleted__isnull=True)
        rows = index.rows_under(live.defer("content"), path)
        Checkpoint.objects.filter(id__in=[row.id for row in rows]).update(deleted=item)
        index.mark_deleted(owner, path, item)
    return item


def mark_restored(item: DeletedItem, path: str) -> None:
    """Make a deleted item's history live again at ``path``."""
    with transaction.atomic():
        rows = list(item.checkpoints.defer("content"))
        for row in rows:
            row.path = index.moved_path(row.path, item.path, path)
            row.path_digest = path_digest(row.path)
            row.deleted = None
        Checkpoint.objects.bulk_update(rows, ["path", "path_digest", "deleted"])
        index.mark_restored(item, path)
        item.restored_at = timezone.now()
        item.restored_path = path
        item.save(update_fields=["restored_at", "restored_path"])


def retention_cutoff() -> datetime.datetime:
    """Return the time before which deleted items are purged."""
    return timezone.now() - datetime.timedelta(days=settings.DELETED_RETENTION_DAYS)


def expires_at(item: DeletedItem) -> datetime.datetime:
    """Return when a deleted item will be purged."""
    return item.deleted_at + datetime.timedelta(days=settings.DELETED_RETENTION_DAYS)
