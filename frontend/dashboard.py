"""What the home dashboard shows a user, and the one thing it does: shut a kernel down.

Everything is the user's own: recent notebooks from the contents index, running
kernels and their sessions from the kernels' rows (which the kernel host keeps
current every couple of seconds), storage used against the quota. A shutdown
goes to the kernel host on the server's event loop, for this user only: another
user's kernel is as missing as one that does not exist.
"""

import datetime
from dataclasses import dataclass, field

from django.contrib.auth.models import User

from contents import index, storage
from kernels import manager, specs
from kernels.models import Kernel

RECENT_NOTEBOOKS = 10
# A shutdown asks the kernel to stop, waits KERNEL_SHUTDOWN_WAIT (5 s by
# default), then kills it; this bounds the page's wait on a slow machine.
SHUTDOWN_TIMEOUT_SECONDS = 60


@dataclass(frozen=True)
class RecentNotebook:
    path: str
    name: str
    size: int
    last_modified: datetime.datetime


@dataclass(frozen=True)
class KernelSessionView:
    path: str
    type: str
    is_notebook: bool


@dataclass(frozen=True)
class RunningKernel:
    id: str
    display_name: str
    execution_state: str
    started: datetime.datetime
    last_activity: datetime.datetime
    connections: int
    sessions: list[KernelSessionView] = field(default_factory=list)


@dataclass(frozen=True)
class StorageUse:
    used: int
    quota: int | None  # None: no quota

    @property
    def percent(self) -> int | None:
        """Return the share of the quota used, in whole percent (at most 100)."""
        if not self.quota:
            return None
        return min(100, round(100 * self.used / self.quota))


def recent_notebooks(user: User, limit: int = RECENT_NOTEBOOKS) -> list[RecentNotebook]:
    """Return ``user``'s most recently modified notebooks, newest first."""
    return [
        RecentNotebook(
            path=row.path,
            name=row.path.rsplit("/", 1)[-1],
            size=row.size,
            last_modified=row.last_modified,
        )
        for row in index.recent_files(user, limit=limit, type="notebook")
    ]


def _display_name(name: str) -> str:
    try:
        return specs.get_spec(name).display_name
    except specs.NoSuchKernel:  # removed since the kernel started
        return name


def running_kernels(user: User) -> list[RunningKernel]:
    """Return ``user``'s running kernels with their sessions, newest first."""
    rows = Kernel.objects.filter(owner=user).prefetch_related("sessions")
    return [
        RunningKernel(
            id=str(row.pk),
            display_name=_display_name(row.name),
            execution_state=row.execution_state,
            started=row.started,
            last_activity=row.last_activity,
            connections=row.connections,
            sessions=[
                KernelSessionView(
                    path=session.path,
                    type=session.type,
                    is_notebook=session.type == "notebook",
                )
                for session in row.sessions.all()
            ],
        )
        for row in rows.order_by("-started")
    ]


def storage_use(user: User) -> StorageUse:
    """Return the bytes ``user`` stores and their quota."""
    used, quota = storage.usage(user)
    return StorageUse(used=used, quota=quota)


async def _shutdown(host: manager.KernelHost, user: User, kernel_id: str) -> None:
    await host.shutdown(host.get(user, kernel_id), actor=user)


def shutdown_kernel(user: User, kernel_id: str) -> None:
    """Shut down one of ``user``'s kernels, from a sync view, and wait for it.

    Raises ``NotFound`` (a ``JupyterError``) for a kernel that is not the
    user's or not running in this process, ``TimeoutError`` if the host took
    longer than ``SHUTDOWN_TIMEOUT_SECONDS``.
    """
    manager.run_on_host(
        lambda host: _shutdown(host, user, kernel_id), SHUTDOWN_TIMEOUT_SECONDS
    )
