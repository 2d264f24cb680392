"""Contents in the database: the index, history (checkpoints, deleted items),
uploads in progress, trusted notebooks and storage quotas.

The files themselves live on disk under each user's root (the source of
truth); these tables describe them. Paths are API paths (``a/b.ipynb``), so
rows are keyed by ``(owner, path_digest)``: a digest keeps the unique index
small whatever the length of the path.
"""

import hashlib
import uuid

from django.conf import settings
from django.db import models
from django.db.models.signals import post_delete, post_save
from django.dispatch import receiver
from django.utils import timezone

TYPES = [("notebook", "notebook"), ("file", "file"), ("directory", "directory")]


def path_digest(path: str) -> str:
    """Return the key of an API path in the tables below (sha256 of its UTF-8)."""
    return hashlib.sha256(path.encode("utf-8", "surrogateescape")).hexdigest()


class DeletedItem(models.Model):
    """A file or directory deleted through the API, kept for the retention period.

    Its bytes sit in the owner's trash directory (outside their root, so their
    kernels cannot see it) under ``trash_name``; its checkpoints and index rows
    point here until it is restored or purged.
    """

    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+"
    )
    path = models.TextField()
    type = models.CharField(max_length=16, choices=TYPES)
    size = models.BigIntegerField(default=0)
    deleted_at = models.DateTimeField(default=timezone.now, db_index=True)
    trash_name = models.CharField(max_length=64)
    restored_at = models.DateTimeField(null=True, blank=True)
    restored_path = models.TextField(blank=True)

    class Meta:
        ordering = ["-deleted_at"]
        verbose_name = "deleted file"

    def __str__(self) -> str:
        return self.path


class ContentsEntry(models.Model):
    """One of a user's files or notebooks, as last seen through the API."""

    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+"
    )
    path = models.TextField()
    path_digest = models.CharField(max_length=64)
    type = models.CharField(max_length=16, choices=TYPES)
    size = models.BigIntegerField()
    last_modified = models.DateTimeField()
    # sha256 of the file's bytes (jupyter_server's `hash` with `hash=1`).
    hash = models.CharField(max_length=64)
    first_seen = models.DateTimeField(default=timezone.now)
    updated = models.DateTimeField(auto_now=True)
    # Set while the file is deleted (restorable); such rows are not listed.
    deleted = models.ForeignKey(
        DeletedItem,
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        related_name="entries",
    )

    class Meta:
        verbose_name = "file"
        verbose_name_plural = "files (index)"
        ordering = ["-last_modified"]
        constraints = [
            models.UniqueConstraint(
                fields=["owner", "path_digest"],
                condition=models.Q(deleted__isnull=True),
                name="one_live_entry_per_path",
            )
        ]
        indexes = [models.Index(fields=["owner", "-last_modified"])]

    def __str__(self) -> str:
        return self.path


class Checkpoint(models.Model):
    """A saved state of one file: what ``/checkpoints`` lists and restores."""

    REASONS = [
        ("save", "automatic, on save"),
        ("manual", "requested"),
        ("restore", "before a restore"),
    ]

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+"
    )
    path = models.TextField()
    path_digest = models.CharField(max_length=64)
    # The file's bytes, zlib-compressed.
    content = models.BinaryField()
    size = models.BigIntegerField()
    hash = models.CharField(max_length=64)
    # The file's modification time when the checkpoint was taken (what
    # jupyter_server reports, as its checkpoint copies keep the file's mtime).
    last_modified = models.DateTimeField()
    created = models.DateTimeField(default=timezone.now)
    reason = models.CharField(max_length=16, choices=REASONS)
    deleted = models.ForeignKey(
        DeletedItem,
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        related_name="checkpoints",
    )

    class Meta:
        ordering = ["created"]
        indexes = [models.Index(fields=["owner", "path_digest", "created"])]

    def __str__(self) -> str:
        return f"{self.path} @ {self.last_modified:%Y-%m-%d %H:%M:%S}"

    @property
    def checkpoint_id(self) -> str:
        """Return the id the API uses (jupyter_server's ``[\\w-]+``)."""
        return self.id.hex


class Upload(models.Model):
    """A chunked upload in progress: the partial file beside its target.

    The partial file is identified by device and inode, so that a link or
    another file swapped in under its name is never appended to.
    """

    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+"
    )
    path = models.TextField()
    path_digest = models.CharField(max_length=64)
    # Where the partial file is: the target's directory (resolved) and name.
    directory = models.TextField()
    partial_name = models.CharField(max_length=64)
    device = models.BigIntegerField()
    inode = models.BigIntegerField()
    received = models.BigIntegerField(default=0)
    # The number of the last chunk appended (chunks arrive in order).
    chunks = models.PositiveIntegerField(default=1)
    started = models.DateTimeField(default=timezone.now)
    updated = models.DateTimeField(default=timezone.now, db_index=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["owner", "path_digest"], name="one_upload_per_path"
            )
        ]

    def __str__(self) -> str:
        return self.path


class TrustedNotebook(models.Model):
    """A notebook state its owner trusts (jupyter_server's signature store).

    ``digest`` is the sha256 of the notebook file's bytes as saved when all of
    its code cells were trusted, or when the owner trusted it explicitly.
    """

    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+"
    )
    digest = models.CharField(max_length=64)
    created = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["owner", "digest"], name="one_signature_per_digest"
            )
        ]


class StorageQuota(models.Model):
    """A user's storage quota, overriding ``JSERVER_STORAGE_QUOTA_BYTES``."""

    owner = models.OneToOneField(
        settings.AUTH_USER_MODEL,
        on_delete=models.CASCADE,
        related_name="storage_quota",
        verbose_name="user",
    )
    quota_bytes = models.PositiveBigIntegerField(
        null=True,
        blank=True,
        help_text="Bytes this user may store; empty means unlimited.",
    )
    updated = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name = "storage quota"

    def __str__(self) -> str:
        return f"quota of {self.owner}"


@receiver([post_save, post_delete], sender=StorageQuota)
def _quota_changed(sender, instance: StorageQuota, **kwargs) -> None:
    from contents.storage import forget_quota

    forget_quota(instance.owner_id)
