"""Per-user JupyterLab workspaces (``/lab/api/workspaces``): saved layouts.

As jupyterlab_server's workspaces API, with each user's workspaces in the
database instead of ``~/.jupyter/lab/workspaces``. A workspace is the document
``{"data": {...}, "metadata": {"id": "/<name>"}}`` JupyterLab PUTs on every
layout change and GETs on start; reading one never written answers an empty
one. ``created`` and ``last_modified`` come from the database.
"""

import json
import urllib.parse
from typing import Any

from django.contrib.auth.models import User
from django.utils import timezone

from accounts.labsettings import has_nul, timestamp
from accounts.models import Workspace
from jserver.errors import BadRequest, NotFound, PayloadTooLarge

NAME_MAX_LENGTH = 255
# A layout is kilobytes; this bounds what one user can park in the database.
DOCUMENT_MAX_BYTES = 8 * 1024 * 1024


def _check_name(name: str) -> str:
    if not name:
        raise BadRequest("Workspace name is required")
    if len(name) > NAME_MAX_LENGTH or "\x00" in name:
        raise NotFound(f"Workspace {name!r} not found")
    return name


def workspace_model(row: Workspace) -> dict[str, Any]:
    """Return the stored document with its times in ``metadata``."""
    document = dict(row.document)
    document["metadata"] = {
        **document.get("metadata", {}),
        "last_modified": timestamp(row.last_modified),
        "created": timestamp(row.created),
    }
    return document


def list_workspaces(user: User) -> dict[str, dict[str, list]]:
    """Return ``user``'s workspaces as ``{"workspaces": {"ids", "values"}}``."""
    values = [workspace_model(row) for row in Workspace.objects.filter(user=user)]
    ids = [value["metadata"].get("id") for value in values]
    return {"workspaces": {"ids": ids, "values": values}}


def get_workspace(user: User, name: str) -> dict[str, Any]:
    """Return ``user``'s workspace ``name``, empty if never saved."""
    _check_name(name)
    row = Workspace.objects.filter(user=user, name=name).first()
    if row is not None:
        return workspace_model(row)
    return {
        "data": {},
        "metadata": {"id": name if name.startswith("/") else "/" + name},
    }


def _parse(body: bytes) -> dict[str, Any]:
    if len(body) > DOCUMENT_MAX_BYTES:
        raise PayloadTooLarge("A workspace is limited to 8 MiB")
    try:
        document = json.loads(body)
        nul = has_nul(document)  # PostgreSQL's jsonb cannot store U+0000
    except (ValueError, RecursionError) as error:
        raise BadRequest(str(error) or "Too deeply nested") from None
    if (
        not isinstance(document, dict)
        or not isinstance(document.get("data"), dict)
        or not isinstance(document.get("metadata"), dict)
        or not isinstance(document["metadata"].get("id"), str)
    ):
        raise BadRequest(
            'A workspace must be {"data": {...}, "metadata": {"id": "/<name>"}}'
        )
    if nul:
        raise BadRequest("A workspace cannot contain NUL characters")
    return document


def save_workspace(user: User, name: str, body: bytes) -> None:
    """Store the JSON document ``body`` as ``user``'s workspace ``name``.

    Its ``metadata.id`` must be ``/<name>`` (the leading slash optional,
    percent-escapes decoded), as jupyterlab_server requires.
    """
    _check_name(name)
    document = _parse(body)
    metadata_id = document["metadata"]["id"]
    metadata_id = urllib.parse.unquote(
        metadata_id if metadata_id.startswith("/") else "/" + metadata_id
    )
    if metadata_id != "/" + name:
        raise BadRequest(
            f"Workspace metadata ID mismatch: expected {name!r} got {metadata_id!r}"
        )
    now = timezone.now()
    Workspace.objects.update_or_create(
        user=user,
        name=name,
        defaults={"document": document, "last_modified": now},
        create_defaults={"document": document, "created": now, "last_modified": now},
    )


def delete_workspace(user: User, name: str) -> None:
    """Delete ``user``'s workspace ``name`` (``NotFound`` if there is none)."""
    _check_name(name)
    deleted, _ = Workspace.objects.filter(user=user, name=name).delete()
    if not deleted:
        raise NotFound(f"Workspace {name!r} not found")
