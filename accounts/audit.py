"""The audit trail: domain modules record what happened, never the views."""

import logging
from typing import Any

from asgiref.sync import sync_to_async
from django.contrib.auth.models import AbstractBaseUser, AnonymousUser

from accounts.models import AuditEvent

log = logging.getLogger(__name__)


def record(
    action: str,
    *,
    actor: AbstractBaseUser | AnonymousUser | None = None,
    actor_name: str = "",
    target: str = "",
    address: str | None = None,
    **detail: Any,
) -> AuditEvent:
    """Append one event to the audit trail and log it at INFO."""
    if actor is not None and not actor.is_authenticated:
        actor = None
    name = actor_name or (actor.get_username() if actor is not None else "")
    event = AuditEvent.objects.create(
        actor=actor,
        actor_name=name[:150],
        action=action,
        target=target[:255],
        address=address,
        detail=detail,
    )
    log.info(
        "audit: %s by %s on %r from %s", action, name or "-", target, address or "-"
    )
    return event


arecord = sync_to_async(record)
