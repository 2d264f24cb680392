"""The database index of users' files and notebooks, for the home page,
the admin and search.

A row per file or notebook touched through the API: created, saved, uploaded,
copied, renamed, restored, or read with its content. The filesystem stays the
source of truth: listings never use the index, and ``recent_files`` checks its
rows against the disk before answering (files a kernel removed disappear).
"""

import datetime
import os
import time
from collections.abc import Iterable
from stat import S_ISREG
from typing import Literal

from django.contrib.auth.models import User
from django.db import IntegrityError, transaction
from django.db.models import Model, Q, QuerySet
from django.db.models.signals import post_delete, post_save
from django.dispatch import receiver
from django.utils import timezone

from contents import backlog
from contents.models import ContentsEntry, DeletedItem, path_digest
from contents.storage import Storage, split_api_path
from jserver.errors import NotFound
from jserver.sql import PreparedSelect, PreparedUpdate

EntryType = Literal["notebook", "file"]


def moment(seconds: float) -> datetime.datetime:
    """Return a file time (``st_mtime``) as an aware UTC datetime."""
    return datetime.datetime.fromtimestamp(seconds, datetime.UTC)


def rows_under(queryset: QuerySet, path: str) -> list[Model]:
    """Return the rows of ``queryset`` at ``path`` or below it.

    The prefix is compared in Python too: SQLite's LIKE ignores case.
    """
    prefix = path + "/"
    candidates = queryset.filter(
        Q(path_digest=path_digest(path)) | Q(path__startswith=prefix)
    )
    return [
        row for row in candidates if row.path == path or row.path.startswith(prefix)
    ]


def moved_path(path: str, old: str, new: str) -> str:
    """Return ``path`` (``old`` or below) as it is once ``old`` moved to ``new``."""
    return new + path[len(old) :]


def _live(owner: User) -> QuerySet:
    return ContentsEntry.objects.filter(owner=owner, deleted__isnull=True)


# Every save runs it: prepared once (see jserver.sql); as _live(owner).update().
_UPDATE_LIVE = PreparedUpdate(
    ContentsEntry,
    fields=["path", "type", "size", "last_modified", "hash", "updated"],
    where=["owner", "path_digest"],
    where_null=["deleted"],
    durable=False,  # the index is checked against the disk (recent_files)
)


# Every read with content runs it: as _live(owner).only(...) (see jserver.sql).
_SEEN = PreparedSelect(
    ContentsEntry,
    where=["owner", "path_digest"],
    where_null=["deleted"],
    fields=["type", "size", "last_modified", "hash"],
)


# Files whose row this process wrote, or found current, lately: a read of a
# file still the same (inode, size, modification time) needs no database.
# Per owner: path -> (type, inode, size, st_mtime_ns, monotonic deadline).
# Forgotten when this process changes the owner's rows otherwise; a change
# made elsewhere is seen within KNOWN_SECONDS.
KNOWN_SECONDS = 60
KNOWN_PER_OWNER = 1000
_known: dict[int, dict[str, tuple]] = {}


def is_known(owner_id: int, path: str, type: EntryType, stat: os.stat_result) -> bool:
    """Return whether ``path``'s row is current for the file ``stat`` describes."""
    found = _known.get(owner_id, {}).get(path)
    return (
        found is not None
        and found[:4] == (type, stat.st_ino, stat.st_size, stat.st_mtime_ns)
        and found[4] > time.monotonic()
    )


def _remember(owner_id: int, path: str, type: EntryType, stat: os.stat_result) -> None:
    paths = _known.get(owner_id)
    if paths is None or len(paths) >= KNOWN_PER_OWNER:
        paths = _known[owner_id] = {}
    deadline = time.monotonic() + KNOWN_SECONDS
    paths[path] = (type, stat.st_ino, stat.st_size, stat.st_mtime_ns, deadline)


def _forget_known(owner_id: int) -> None:
    _known.pop(owner_id, None)


def record(
    owner: User, path: str, *, type: EntryType, stat: os.stat_result, digest: str
) -> None:
    """Create or update the row of ``owner``'s file at ``path``."""
    values = {
        "path": path,
        "type": type,
        "size": stat.st_size,
        "last_modified": moment(stat.st_mtime),
        "hash": digest,
        "updated": timezone.now(),
    }
    key = path_digest(path)
    _forget_known(owner.pk)  # until written
    if not _UPDATE_LIVE.run(values, owner=owner.pk, path_digest=key):
        try:
            with transaction.atomic():
                ContentsEntry.objects.create(owner=owner, path_digest=key, **values)
        except IntegrityError:  # created meanwhile by another request
            _live(owner).filter(path_digest=key).update(**values)
    _remember(owner.pk, path, type, stat)


def seen(
    owner: User, path: str, *, type: EntryType, stat: os.stat_result, digest: str
) -> None:
    """Record a file read through the API, writing only if the row is stale."""
    row = _SEEN.get(owner=owner.pk, path_digest=path_digest(path))
    if (
        row is not None
        and row.type == type
        and row.size == stat.st_size
        and row.last_modified == moment(stat.st_mtime)
        and row.hash == digest
    ):
        _remember(owner.pk, path, type, stat)
        return
    record(owner, path, type=type, stat=stat, digest=digest)


def forget(owner: User, path: str) -> None:
    """Drop the rows of ``path`` and below (gone from the disk)."""
    _forget_known(owner.pk)
    for row in rows_under(_live(owner), path):
        row.delete()


def move(owner: User, old: str, new: str) -> None:
    """Follow a rename of ``old`` (a file or a directory) to ``new``."""
    _forget_known(owner.pk)
    rows = rows_under(_live(owner), old)
    if not rows:
        return
    with transaction.atomic():
        targets = [moved_path(row.path, old, new) for row in rows]
        _drop_live(owner, targets)
        for row, target in zip(rows, targets, strict=True):
            row.path, row.path_digest = target, path_digest(target)
        ContentsEntry.objects.bulk_update(rows, ["path", "path_digest"])


def _drop_live(owner: User, paths: Iterable[str]) -> None:
    digests = [path_digest(path) for path in paths]
    for start in range(0, len(digests), 500):
        _live(owner).filter(path_digest__in=digests[start : start + 500]).delete()


def mark_deleted(owner: User, path: str, item: DeletedItem) -> None:
    """Attach the rows of ``path`` and below to a deleted item."""
    _forget_known(owner.pk)
    rows = rows_under(_live(owner), path)
    ContentsEntry.objects.filter(pk__in=[row.pk for row in rows]).update(deleted=item)


def mark_restored(item: DeletedItem, path: str) -> None:
    """Make a deleted item's rows live again, at ``path`` (its new place)."""
    _forget_known(item.owner_id)
    rows = list(item.entries.all())
    if not rows:
        return
    with transaction.atomic():
        targets = [moved_path(row.path, item.path, path) for row in rows]
        _drop_live(item.owner, targets)
        for row, target in zip(rows, targets, strict=True):
            row.path, row.path_digest, row.deleted = target, path_digest(target), None
        ContentsEntry.objects.bulk_update(rows, ["path", "path_digest", "deleted"])


def recent_files(
    owner: User, *, limit: int = 10, type: EntryType | None = None
) -> list[ContentsEntry]:
    """Return ``owner``'s most recently modified indexed files, newest first.

    Rows are checked against the disk: files gone are dropped from the index,
    sizes and times refreshed. Each row has ``path``, ``type``, ``size``,
    ``last_modified`` (aware UTC) and ``hash`` (empty when the file changed
    outside the API since it was indexed).
    """
    backlog.settle(owner.pk)
    _forget_known(owner.pk)  # rows of files gone or changed are fixed below
    queryset = _live(owner).order_by("-last_modified")
    if type is not None:
        queryset = queryset.filter(type=type)
    storage = Storage(owner)
    found: list[ContentsEntry] = []
    # Rows for deleted files are dropped as they are met, so ask for more.
    for row in queryset[: limit * 2 + 8]:
        try:
            st = storage.lookup(split_api_path(row.path))
        except (OSError, NotFound):
            row.delete()
            continue
        if not S_ISREG(st.st_mode):
            row.delete()
            continue
        modified = moment(st.st_mtime)
        if (row.size, row.last_modified) != (st.st_size, modified):
            row.size, row.last_modified, row.hash = st.st_size, modified, ""
            row.save(update_fields=["size", "last_modified", "hash"])
        found.append(row)
    found.sort(key=lambda row: row.last_modified, reverse=True)
    return found[:limit]


@receiver([post_save, post_delete], sender=ContentsEntry)
def _entry_changed(sender, instance: ContentsEntry, **kwargs) -> None:
    _forget_known(instance.owner_id)  # staff edited rows in the admin, say
