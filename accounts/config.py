"""Per-user front-end configuration sections (``/api/config/<section>``).

Semantics as jupyter_server's ConfigManager: GET answers ``{}`` for an unknown
section, PUT replaces, PATCH merges recursively and a ``null`` value deletes
its key.
"""

import json
from typing import Any

from django.contrib.auth.models import User
from django.db import transaction

from accounts.models import ConfigSection
from jserver.errors import BadRequest

SECTION_MAX_BYTES = 1024 * 1024
SECTION_NAME_MAX_LENGTH = 100


def _check_name(section: str) -> str:
    if len(section) > SECTION_NAME_MAX_LENGTH:
        raise BadRequest(
            f"A config section name has at most {SECTION_NAME_MAX_LENGTH} characters"
        )
    return section


def merge(target: dict[str, Any], update: dict[str, Any]) -> dict[str, Any]:
    """Merge ``update`` into ``target`` recursively; ``None`` deletes a key."""
    for key, value in update.items():
        if value is None:
            target.pop(key, None)
        elif isinstance(value, dict) and isinstance(target.get(key), dict):
            merge(target[key], value)
        elif isinstance(value, dict):
            target[key] = merge({}, value)
        else:
            target[key] = value
    return target


def _require_object(data: Any) -> dict[str, Any]:
    if not isinstance(data, dict):
        raise BadRequest("A config section must be a JSON object")
    if len(json.dumps(data)) > SECTION_MAX_BYTES:
        raise BadRequest("A config section is limited to 1 MiB")
    return data


def get_section(user: User, section: str) -> dict[str, Any]:
    """Return ``user``'s section ``section`` (``{}`` if never written)."""
    row = ConfigSection.objects.filter(user=user, section=_check_name(section)).first()
    return row.data if row is not None else {}


def set_section(user: User, section: str, data: Any) -> None:
    """Replace ``user``'s section ``section`` with ``data``."""
    data = _require_object(data)
    ConfigSection.objects.update_or_create(
        user=user, section=_check_name(section), defaults={"data": data}
    )


def update_section(user: User, section: str, update: Any) -> dict[str, Any]:
    """Merge ``update`` into ``user``'s section ``section``; return the result."""
    update = _require_object(update)
    with transaction.atomic():
        row, _ = ConfigSection.objects.select_for_update().get_or_create(
            user=user, section=_check_name(section)
        )
        row.data = _require_object(merge(row.data, update))
        row.save(update_fields=["data", "updated"])
    return row.data
