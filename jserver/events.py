"""The event bus of ``/api/events/subscribe``: per-user, over the channel layer.

Domain modules emit events (jupyter_server's schema ids and data) for one
owner; every events WebSocket of that owner, on any daphne process, gets
``{"schema_id": ..., **data}`` as jupyter_server sends it. Nobody else does.
"""

import logging
from typing import Any

from channels.layers import get_channel_layer
from django.contrib.auth.models import User

log = logging.getLogger(__name__)


def user_group(user_id: int) -> str:
    """Return the channel-layer group of ``user_id``'s event sockets."""
    return f"events.user.{int(user_id)}"


async def emit(owner: User, schema_id: str, data: dict[str, Any]) -> None:
    """Send one event to every events WebSocket of ``owner``."""
    layer = get_channel_layer()
    event = {"schema_id": schema_id, **data}
    await layer.group_send(
        user_group(owner.pk), {"type": "event.message", "event": event}
    )
    log.debug("event %s for user %s", schema_id, owner.pk)
