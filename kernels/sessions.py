"""Sessions: a path (notebook, console, file) bound to one of its owner's kernels.

As jupyter_server's ``SessionManager``, with rows in the database: one session
per path, a session's kernel started by name or attached by id, a changed
kernel shuts the old one down, and a session whose kernel is gone disappears
(its row is deleted with the kernel's).
"""

import uuid

from django.contrib.auth.models import User

from jserver.errors import BadRequest, JupyterError, NotFound, NotImplementedByServer
from kernels import manager
from kernels.models import Kernel, Session


class SessionNotFound(NotFound):
    def __init__(self, session_id: str) -> None:
        super().__init__(f"Session not found: session_id={session_id!r}")


async def _live_kernels(owner: User) -> dict[str, manager.LiveKernel]:
    return {kernel.id: kernel for kernel in manager.host().owned(owner)}


def _kernel_model(kernel_id: str, live: dict, row: Kernel | None) -> dict | None:
    kernel = live.get(kernel_id)
    if kernel is not None:
        return kernel.model()
    if row is not None and row.host != manager.HOST_ID:  # another server process's
        return {
            "id": kernel_id,
            "name": row.name,
            "last_activity": row.last_activity,
            "execution_state": row.execution_state,
            "connections": row.connections,
        }
    return None


def session_model(session: Session, kernel: dict) -> dict:
    model = {
        "id": str(session.id),
        "path": session.path,
        "name": session.name,
        "type": session.type,
        "kernel": kernel,
    }
    if session.type == "notebook":  # jupyter_server's deprecated mirror
        model["notebook"] = {"path": session.path, "name": session.name}
    return model


async def _models(owner: User, sessions: list[Session]) -> list[dict]:
    live = await _live_kernels(owner)
    models, stale = [], []
    for session in sessions:
        kernel = _kernel_model(str(session.kernel_id), live, session.kernel)
        if kernel is None:
            stale.append(session.kernel_id)
        else:
            models.append(session_model(session, kernel))
    if stale:  # kernels of this process that are gone: their sessions go too
        await Kernel.objects.filter(pk__in=stale, host=manager.HOST_ID).adelete()
    return models


async def list_sessions(owner: User) -> list[dict]:
    sessions = [
        s async for s in Session.objects.filter(owner=owner).select_related("kernel")
    ]
    return await _models(owner, sessions)


async def _get(owner: User, session_id: str) -> Session:
    try:
        key = uuid.UUID(str(session_id))
    except ValueError:
        raise SessionNotFound(session_id) from None
    session = (
        await Session.objects.filter(owner=owner, pk=key)
        .select_related("kernel")
        .afirst()
    )
    if session is None:
        raise SessionNotFound(session_id)
    return session


async def get_session(owner: User, session_id: str) -> dict:
    session = await _get(owner, session_id)
    models = await _models(owner, [session])
    if not models:
        raise SessionNotFound(session_id)
    return models[0]


async def _start_kernel(
    owner: User, *, path: str, kernel_name: str | None, kernel_id: str | None
) -> manager.LiveKernel:
    host = manager.host()
    if kernel_id is not None:
        try:
            return host.get(owner, kernel_id)
        except NotFound:
            pass  # jupyter_server starts a new kernel with that id
    return await host.start(
        owner,
        name=kernel_name,
        path=path,
        kernel_id=kernel_id,
        env={"JPY_SESSION_NAME": path},
    )


async def create_session(
    owner: User,
    *,
    path: str,
    type: str,
    name: str | None,
    kernel_name: str | None,
    kernel_id: str | None,
) -> dict:
    """Return the session of ``path``, creating it (and its kernel) if needed."""
    existing = (
        await Session.objects.filter(owner=owner, path=path)
        .select_related("kernel")
        .afirst()
    )
    if existing is not None:
        models = await _models(owner, [existing])
        if models:
            return models[0]
    kernel = await _start_kernel(
        owner, path=path, kernel_name=kernel_name, kernel_id=kernel_id
    )
    session = await Session.objects.acreate(
        owner=owner, path=path, name=name, type=type, kernel_id=kernel.id
    )
    return session_model(session, kernel.model())


async def update_session(owner: User, session_id: str, changes: dict) -> dict:
    """Apply a PATCH: path, name, type, or another kernel (by id or by name)."""
    session = await _get(owner, session_id)
    before = session.kernel_id
    host = manager.host()
    fields = []
    for key in ("path", "name", "type"):
        if key in changes:
            setattr(session, key, changes[key])
            fields.append(key)
    kernel_change = changes.get("kernel")
    new_kernel = None
    if isinstance(kernel_change, dict):
        if kernel_change.get("id") is not None:
            try:
                new_kernel = host.get(owner, kernel_change["id"])
            except NotFound:
                raise BadRequest(f"No such kernel: {kernel_change['id']}") from None
        elif kernel_change.get("name") is not None:
            kernel_name = kernel_change["name"]
            try:
                new_kernel = await host.start(
                    owner,
                    name=kernel_name,
                    path=session.path,
                    env={"JPY_SESSION_NAME": session.path},
                )
            except JupyterError as exc:
                raise NotImplementedByServer(
                    f"The '{kernel_name}' kernel could not be started: {exc.message!r}",
                    short_message=f"Error starting kernel {kernel_name}",
                ) from None
    if new_kernel is not None:
        session.kernel_id = new_kernel.id
        fields.append("kernel")
    if fields:
        await session.asave(update_fields=fields)
    if new_kernel is not None and str(before) != new_kernel.id:
        try:
            await host.shutdown(host.get(owner, before), actor=owner)
        except NotFound:
            pass
    return await get_session(owner, session_id)


async def delete_session(owner: User, session_id: str) -> None:
    """Delete a session and shut its kernel down (with the kernel's other sessions)."""
    session = await _get(owner, session_id)
    host = manager.host()
    try:
        kernel = host.get(owner, session.kernel_id)
    except NotFound:
        await session.adelete()
        return
    await host.shutdown(kernel, actor=owner)
    await Session.objects.filter(pk=session.pk).adelete()
