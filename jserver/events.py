"""The event bus of ``/api/events/subscribe``: per-user, over the channel layer.

Domain modules emit events (jupyter_server's schema ids and data) for one
owner; every events WebSocket of that owner, on any daphne process, gets
``{"schema_id": ..., **data}`` as jupyter_server sends it. Nobody else does.
"""

import asyncio
import contextvars
import functools
import logging
import weakref
from typing import Any

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.conf import settings
from django.contrib.auth.models import User

from jserver.handler import after_response

log = logging.getLogger(__name__)

# The newest queued send of each event loop: the next one waits for it.
_tails: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Task] = (
    weakref.WeakKeyDictionary()
)


def user_group(user_id: int) -> str:
    """Return the channel-layer group of ``user_id``'s event sockets."""
    return f"events.user.{int(user_id)}"


async def emit(owner: User, schema_id: str, data: dict[str, Any]) -> None:
    """Send one event to every events WebSocket of ``owner``."""
    await emit_to(owner.pk, schema_id, data)


async def emit_to(user_id: int, schema_id: str, data: dict[str, Any]) -> None:
    """Send one event to every events WebSocket of the user ``user_id``."""
    layer = get_channel_layer()
    event = {"schema_id": schema_id, **data}
    await layer.group_send(
        user_group(user_id), {"type": "event.message", "event": event}
    )
    log.debug("event %s for user %s", schema_id, user_id)


def emit_soon(owner: User, schema_id: str, data: dict[str, Any]) -> None:
    """Send one event from synchronous code, without waiting for it to go out.

    Serving an HTTP request (``jserver.handler``), the event is sent once the
    response has gone out, after the events queued before it, in order: the
    request does not wait for it (that would cost a round trip between its
    thread and the event loop). Elsewhere it is sent before this returns.
    Failures are logged, never raised.
    """
    if after_response(functools.partial(_queue, owner, schema_id, data)):
        return
    try:
        async_to_sync(emit)(owner, schema_id, data)
    except Exception:
        log.warning("could not emit an event", exc_info=True)


def _queue(owner: User, schema_id: str, data: dict[str, Any]) -> None:
    loop = asyncio.get_running_loop()
    previous = _tails.get(loop)
    # A fresh context: the send outlives the request that queued it.
    task = loop.create_task(
        _send_after(previous, owner, schema_id, data),
        name="jserver-event",
        context=contextvars.Context(),
    )
    _tails[loop] = task
    task.add_done_callback(_forget)


async def _send_after(
    previous: asyncio.Task | None,
    owner: User,
    schema_id: str,
    data: dict[str, Any],
) -> None:
    if previous is not None and not previous.done():
        await asyncio.wait([previous])
    async with asyncio.timeout(settings.EVENTS_SEND_TIMEOUT_SECONDS):
        await emit(owner, schema_id, data)


def _forget(task: asyncio.Task) -> None:
    loop = task.get_loop()
    if _tails.get(loop) is task:
        del _tails[loop]
    if not task.cancelled() and (error := task.exception()) is not None:
        log.warning("could not emit an event", exc_info=error)
