"""Admin: users' files (index), checkpoints and deleted files, with restore
actions for staff, and per-user storage quotas. Staff actions are audited.
"""

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest

from accounts import audit
from contents import history, manager, storage
from contents.models import Checkpoint, ContentsEntry, DeletedItem, StorageQuota
from jserver.errors import JupyterError


def human_size(size: int | None) -> str:
    """Return ``size`` bytes for people (``-`` for unknown or unlimited)."""
    if size is None:
        return "-"
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} GiB"


class ReadOnlyAdmin(admin.ModelAdmin):
    """Rows written by the contents service: staff look, and act through actions."""

    list_select_related = ["owner"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj=None) -> bool:
        return False


@admin.register(ContentsEntry)
class ContentsEntryAdmin(ReadOnlyAdmin):
    list_display = ["path", "owner", "type", "size_display", "last_modified", "deleted"]
    list_filter = ["type", ("deleted", admin.EmptyFieldListFilter)]
    search_fields = ["path", "owner__username"]
    exclude = ["path_digest"]
    date_hierarchy = "last_modified"

    @admin.display(description="size", ordering="size")
    def size_display(self, entry: ContentsEntry) -> str:
        return human_size(entry.size)


@admin.register(Checkpoint)
class CheckpointAdmin(ReadOnlyAdmin):
    list_display = [
        "path",
        "owner",
        "last_modified",
        "created",
        "reason",
        "size_display",
    ]
    list_filter = ["reason", ("deleted", admin.EmptyFieldListFilter)]
    search_fields = ["path", "owner__username"]
    exclude = ["content", "path_digest"]
    actions = ["restore"]

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        return super().get_queryset(request).defer("content")

    @admin.display(description="size", ordering="size")
    def size_display(self, checkpoint: Checkpoint) -> str:
        return human_size(checkpoint.size)

    @admin.action(description="Restore the selected checkpoints to their files")
    def restore(self, request: HttpRequest, queryset: QuerySet) -> None:
        for checkpoint in queryset.select_related("owner"):
            target = f"{checkpoint.owner.get_username()}:{checkpoint.path}"
            if checkpoint.deleted_id is not None:
                self.message_user(
                    request,
                    f"{target} is deleted: restore the deleted file first.",
                    messages.ERROR,
                )
                continue
            try:
                manager.restore_checkpoint(
                    checkpoint.checkpoint_id, checkpoint.path, owner=checkpoint.owner
                )
            except JupyterError as error:
                self.message_user(request, f"{target}: {error.message}", messages.ERROR)
                continue
            audit.record(
                "contents_checkpoint_restored",
                actor=request.user,
                target=target,
                checkpoint=checkpoint.checkpoint_id,
            )
            moment = f"{checkpoint.last_modified:%Y-%m-%d %H:%M:%S} UTC"
            self.message_user(
                request,
                f"Restored {target} to its state of {moment} "
                "(what it held before is a new checkpoint).",
            )


@admin.register(DeletedItem)
class DeletedItemAdmin(ReadOnlyAdmin):
    list_display = [
        "path",
        "owner",
        "type",
        "size_display",
        "deleted_at",
        "expires",
        "restored_at",
        "restored_path",
    ]
    list_filter = ["type", ("restored_at", admin.EmptyFieldListFilter)]
    search_fields = ["path", "owner__username"]
    date_hierarchy = "deleted_at"
    actions = ["restore"]

    @admin.display(description="size", ordering="size")
    def size_display(self, item: DeletedItem) -> str:
        return human_size(item.size)

    @admin.display(description="purged after")
    def expires(self, item: DeletedItem) -> str:
        return f"{history.expires_at(item):%Y-%m-%d %H:%M}"

    @admin.action(description="Restore the selected deleted files")
    def restore(self, request: HttpRequest, queryset: QuerySet) -> None:
        for item in queryset.select_related("owner"):
            target = f"{item.owner.get_username()}:{item.path}"
            try:
                path = manager.restore_deleted(item)
            except (JupyterError, OSError) as error:
                message = getattr(error, "message", None) or str(error)
                self.message_user(request, f"{target}: {message}", messages.ERROR)
                continue
            audit.record(
                "contents_deleted_restored",
                actor=request.user,
                target=target,
                restored_path=path,
            )
            self.message_user(request, f"Restored {target} as {path}.")


@admin.register(StorageQuota)
class StorageQuotaAdmin(admin.ModelAdmin):
    """Per-user quotas; without a row a user has ``JSERVER_STORAGE_QUOTA_BYTES``."""

    list_display = ["owner", "quota_display", "updated"]
    search_fields = ["owner__username"]
    raw_id_fields = ["owner"]
    readonly_fields = ["usage_display"]
    list_select_related = ["owner"]

    @admin.display(description="quota", ordering="quota_bytes")
    def quota_display(self, quota: StorageQuota) -> str:
        return (
            "unlimited" if quota.quota_bytes is None else human_size(quota.quota_bytes)
        )

    @admin.display(description="in use now")
    def usage_display(self, quota: StorageQuota) -> str:
        if quota.pk is None:
            return "-"
        used, _ = storage.usage(quota.owner)
        return human_size(used)

    def save_model(self, request: HttpRequest, obj: StorageQuota, form, change) -> None:
        super().save_model(request, obj, form, change)
        audit.record(
            "storage_quota_set",
            actor=request.user,
            target=obj.owner.get_username(),
            quota_bytes=obj.quota_bytes,
        )

    def delete_model(self, request: HttpRequest, obj: StorageQuota) -> None:
        audit.record(
            "storage_quota_removed", actor=request.user, target=obj.owner.get_username()
        )
        super().delete_model(request, obj)

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet) -> None:
        for quota in queryset.select_related("owner"):
            self.delete_model(request, quota)
