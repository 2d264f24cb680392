"""The identity model of ``/api/me``, as jupyter_server's IdentityProvider builds it."""

import json
from typing import TypedDict

from django.contrib.auth.models import User

from jserver.errors import BadRequest


class IdentityModel(TypedDict):
    username: str
    name: str
    display_name: str
    initials: str | None
    avatar_url: str | None
    color: str | None


def identity_model(user: User) -> IdentityModel:
    """Return ``user``'s identity: names from the account, no avatar or colour."""
    name = user.get_full_name() or user.get_username()
    display_name = user.first_name or name
    words = [word for word in name.replace(".", " ").replace("_", " ").split() if word]
    initials = "".join(word[0] for word in words[:2]).upper() or None
    return {
        "username": user.get_username(),
        "name": name,
        "display_name": display_name,
        "initials": initials,
        "avatar_url": None,
        "color": None,
    }


def permissions_model(requested: str) -> dict[str, list[str]]:
    """Answer ``?permissions=<json>`` as jupyter_server does.

    Every user may do everything to their own objects, so every requested
    action is granted; ``updatable_fields`` is empty (identities come from the
    accounts, which staff manage).
    """
    bad = (
        'permissions should be a JSON dict of {"resource": ["action",]}, '
        f"got {requested!r}"
    )
    asked: object = {}
    if requested:
        try:
            asked = json.loads(requested)
        except ValueError:
            raise BadRequest(bad) from None
        if not isinstance(asked, dict):
            raise BadRequest(bad)
    granted: dict[str, list[str]] = {}
    for resource, actions in asked.items():
        if not isinstance(actions, list) or not all(
            isinstance(a, str) for a in actions
        ):
            raise BadRequest(bad)
        granted[resource] = list(actions)
    granted["updatable_fields"] = []
    return granted
