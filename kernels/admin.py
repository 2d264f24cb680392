"""Running kernels in the Django admin: every user's, with their sessions.

Staff see each kernel's owner, kernelspec, state, start, last activity,
connections, the notebook it serves and its processes' memory, filter by user
and state, and interrupt, restart or shut down one or many. Actions go through
the kernel host on the server's event loop; each is recorded in the audit trail
with the staff member who did it.
"""

import asyncio
import logging

from django.conf import settings
from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest
from django.template.defaultfilters import filesizeformat

from accounts import audit
from accounts.middleware import client_address
from jserver.errors import JupyterError
from kernels import launcher, manager, sandbox
from kernels.models import Kernel, KernelLimits, Session

log = logging.getLogger(__name__)

ACTION_TIMEOUT = 120


class SessionInline(admin.TabularInline):
    model = Session
    fields = ("path", "type", "name", "created")
    readonly_fields = fields
    extra = 0
    can_delete = False
    show_change_link = False

    def has_add_permission(self, request, obj=None) -> bool:
        return False


@admin.register(Kernel)
class KernelAdmin(admin.ModelAdmin):
    list_display = (
        "id",
        "owner",
        "name",
        "execution_state",
        "started",
        "last_activity",
        "connections",
        "notebook",
        "memory",
        "sandboxed",
    )
    list_filter = ("owner", "execution_state", "name")
    search_fields = ("id", "owner__username", "sessions__path")
    list_select_related = ("owner",)
    ordering = ("-started",)
    fields = (
        "id",
        "owner",
        "name",
        "execution_state",
        "reason",
        "started",
        "last_activity",
        "connections",
        "memory",
        "cwd",
        "sandboxed",
        "host",
        "pid",
    )
    readonly_fields = fields
    inlines = [SessionInline]
    actions = ["interrupt_kernels", "restart_kernels", "shutdown_kernels"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj=None) -> bool:
        return False

    def changelist_view(self, request: HttpRequest, extra_context=None):
        facts = sandbox.status()
        if not facts.available:
            self.message_user(
                request,
                f"Kernels run WITHOUT a sandbox on this server ({facts.reason}): "
                "every user's code can read every other user's files and the "
                "server's secrets.",
                messages.WARNING,
            )
        return super().changelist_view(request, extra_context)

    def has_delete_permission(self, request: HttpRequest, obj=None) -> bool:
        return False  # "shut down" does it, through the kernel host

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        return super().get_queryset(request).prefetch_related("sessions")

    @admin.display(description="notebook")
    def notebook(self, kernel: Kernel) -> str:
        return ", ".join(session.path for session in kernel.sessions.all()) or "-"

    @admin.display(description="memory")
    def memory(self, kernel: Kernel) -> str:
        if not kernel.pid or not kernel.host.startswith(manager.HOST_ID.split(":")[0]):
            return "-"
        rss = launcher.process_tree_rss(kernel.pid)
        return filesizeformat(rss) if rss is not None else "-"

    # ---- actions

    def _act(self, request: HttpRequest, queryset: QuerySet, verb: str) -> None:
        done, failed = 0, []
        for row in queryset:
            try:
                manager.run_on_host(
                    lambda host, kernel_id=str(row.pk): _apply(host, kernel_id, verb),
                    ACTION_TIMEOUT,
                )
            except (JupyterError, TimeoutError) as exc:
                failed.append(f"{row.pk}: {getattr(exc, 'message', None) or exc}")
                continue
            done += 1
            audit.record(
                f"admin.kernel.{verb}",
                actor=request.user,
                target=str(row.pk),
                address=client_address(request),
                owner=row.owner.get_username(),
            )
        if done:
            self.message_user(request, f"{verb}: {done} kernel(s).", messages.SUCCESS)
        for failure in failed:
            self.message_user(request, f"{verb} failed: {failure}", messages.ERROR)

    @admin.action(description="Interrupt the selected kernels")
    def interrupt_kernels(self, request: HttpRequest, queryset: QuerySet) -> None:
        self._act(request, queryset, "interrupt")

    @admin.action(description="Restart the selected kernels")
    def restart_kernels(self, request: HttpRequest, queryset: QuerySet) -> None:
        self._act(request, queryset, "restart")

    @admin.action(description="Shut down the selected kernels")
    def shutdown_kernels(self, request: HttpRequest, queryset: QuerySet) -> None:
        self._act(request, queryset, "shutdown")


async def _apply(host: manager.KernelHost, kernel_id: str, verb: str) -> None:
    kernel = host.kernels.get(kernel_id)
    if kernel is None or kernel.gone:
        raise JupyterError("this kernel is not running in this server process")
    if verb == "interrupt":
        await kernel.interrupt()
    elif verb == "restart":
        await kernel.restart()
    else:
        await host.remove(kernel, action=None)
    await asyncio.sleep(0)


@admin.register(KernelLimits)
class KernelLimitsAdmin(admin.ModelAdmin):
    """Per-user kernel limits; an empty field keeps the server's default."""

    list_display = [
        "owner",
        "memory",
        "max_processes",
        "max_open_files",
        "file_size",
        "max_kernels",
        "updated",
    ]
    search_fields = ["owner__username"]
    raw_id_fields = ["owner"]
    list_select_related = ["owner"]
    readonly_fields = ["defaults"]

    @admin.display(description="memory per kernel")
    def memory(self, row: KernelLimits) -> str:
        return filesizeformat(row.memory_bytes) if row.memory_bytes else "default"

    @admin.display(description="largest file")
    def file_size(self, row: KernelLimits) -> str:
        return filesizeformat(row.max_file_bytes) if row.max_file_bytes else "default"

    @admin.display(description="server defaults")
    def defaults(self, row: KernelLimits) -> str:
        limits = sandbox.default_limits()
        facts = sandbox.status()
        how = "cgroup v2" if facts.cgroup_root is not None else "rlimits"
        return (
            f"memory {filesizeformat(limits.memory_bytes)}, "
            f"{limits.max_processes} processes, {limits.max_open_files} open files, "
            f"files up to {filesizeformat(limits.max_file_bytes)}, "
            f"{settings.KERNELS_PER_USER} kernels; enforced by {how}"
            + ("" if facts.available else f" (NO SANDBOX: {facts.reason})")
        )

    def save_model(self, request: HttpRequest, obj: KernelLimits, form, change) -> None:
        super().save_model(request, obj, form, change)
        audit.record(
            "kernel_limits_set",
            actor=request.user,
            target=obj.owner.get_username(),
            address=client_address(request),
            memory_bytes=obj.memory_bytes,
            max_processes=obj.max_processes,
            max_open_files=obj.max_open_files,
            max_file_bytes=obj.max_file_bytes,
            max_kernels=obj.max_kernels,
        )

    def delete_model(self, request: HttpRequest, obj: KernelLimits) -> None:
        audit.record(
            "kernel_limits_removed",
            actor=request.user,
            target=obj.owner.get_username(),
            address=client_address(request),
        )
        super().delete_model(request, obj)

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet) -> None:
        for row in queryset.select_related("owner"):
            self.delete_model(request, row)
