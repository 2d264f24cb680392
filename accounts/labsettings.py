"""Per-user JupyterLab settings (``/lab/api/settings``), checked against the schemas.

As jupyterlab_server's settings API, with each user's values in the database
instead of ``~/.jupyter/lab/user-settings``: a plugin's model carries its schema
(from ``frontend.schemas``), the user's JSON5 text as they wrote it (``raw``),
what it parses to (``settings``) and when it was first and last written. Values
that no longer validate (the schema changed with an upgrade) are reported as a
warning and read as ``{}``, as jupyterlab_server does.
"""

import datetime
import json
import logging
from typing import Any, TypedDict

import json5
from django.contrib.auth.models import User
from django.utils import timezone
from jsonschema.exceptions import best_match

from accounts.models import LabSetting
from frontend import schemas
from jserver.errors import BadRequest, PayloadTooLarge

log = logging.getLogger(__name__)

# The plugin whose "locale" value picks the user's language.
TRANSLATION_PLUGIN = "@jupyterlab/translation-extension:plugin"
# A settings text is a few kilobytes; this bounds the JSON5 parser's work.
RAW_MAX_BYTES = 1024 * 1024


class SettingModel(TypedDict, total=False):
    id: str
    schema: dict[str, Any]
    version: str
    raw: str
    settings: dict[str, Any]
    warning: str | None
    last_modified: str | None
    created: str | None


def timestamp(moment: datetime.datetime | None) -> str | None:
    """Return ``moment`` as jupyterlab_server writes file times (``+00:00``)."""
    if moment is None:
        return None
    return moment.astimezone(datetime.UTC).isoformat()


def has_nul(value: Any) -> bool:
    """Return whether a parsed JSON value holds U+0000 (PostgreSQL cannot store it)."""
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any(has_nul(k) or has_nul(v) for k, v in value.items())
    if isinstance(value, list):
        return any(has_nul(item) for item in value)
    return False


def _model(
    plugin: schemas.PluginSchema, row: LabSetting | None, *, listing: bool
) -> SettingModel:
    raw, values, warning = "{}", {}, None
    if row is not None:
        raw, values = row.raw, row.values
        if values and (error := best_match(plugin.validator.iter_errors(values))):
            warning = f"Failed validating settings ({plugin.id}): {error.message}"
            log.warning("%s of user %s", warning, row.user_id)
            raw, values = "{}", {}
    model: SettingModel = {
        "id": plugin.id,
        "schema": plugin.schema,
        "version": plugin.version,
        "raw": raw,
        "settings": values,
        "last_modified": timestamp(row.last_modified if row else None),
        "created": timestamp(row.created if row else None),
    }
    if listing:  # jupyterlab_server lists the warning, and drops it for one plugin
        model["warning"] = warning
    return model


def list_settings(user: User, *, ids_only: bool = False) -> dict[str, list]:
    """Return every plugin's settings for ``user`` (only the ids if ``ids_only``)."""
    plugins = schemas.all_schemas()
    if ids_only:
        return {"settings": [{"id": plugin.id} for plugin in plugins]}
    rows = {row.plugin: row for row in LabSetting.objects.filter(user=user)}
    return {
        "settings": [
            _model(plugin, rows.get(plugin.id), listing=True) for plugin in plugins
        ]
    }


def get_setting(user: User, plugin_id: str) -> SettingModel:
    """Return ``user``'s settings of one plugin; an unknown plugin is ``NotFound``."""
    plugin = schemas.get_schema(plugin_id)
    row = LabSetting.objects.filter(user=user, plugin=plugin.id).first()
    return _model(plugin, row, listing=False)


def _parse(raw: Any) -> dict[str, Any]:
    if not isinstance(raw, str):
        raise BadRequest(
            "Invalid format for JSON payload. Must be in the form {'raw': ...}"
        )
    if len(raw.encode("utf-8", "surrogatepass")) > RAW_MAX_BYTES:
        raise PayloadTooLarge("Settings are limited to 1 MiB")
    try:
        values = json5.loads(raw)
        json.dumps(values, allow_nan=False)  # JSON can hold it (no NaN, Infinity)
        nul = "\x00" in raw or has_nul(values)
    except (ValueError, RecursionError) as error:
        raise BadRequest(f"Failed parsing settings: {error}") from None
    if nul:
        raise BadRequest("Settings cannot contain NUL characters")
    if not isinstance(values, dict):
        raise BadRequest("Settings must be a JSON5 object")
    return values


def save_setting(user: User, plugin_id: str, raw: Any) -> None:
    """Store ``raw`` (JSON5 text) as ``user``'s settings of one plugin.

    The text is kept as written; it must parse to an object that validates
    against the plugin's schema (``BadRequest`` otherwise).
    """
    plugin = schemas.get_schema(plugin_id)
    values = _parse(raw)
    if error := best_match(plugin.validator.iter_errors(values)):
        where = "/".join(str(part) for part in error.absolute_path)
        detail = f"{error.message} (at {where})" if where else error.message
        raise BadRequest(f"Failed validating input: {detail}")
    now = timezone.now()
    LabSetting.objects.update_or_create(
        user=user,
        plugin=plugin.id,
        defaults={"raw": raw, "values": values, "last_modified": now},
        create_defaults={
            "raw": raw,
            "values": values,
            "created": now,
            "last_modified": now,
        },
    )


def user_locale(user: User) -> str:
    """Return the locale ``user`` chose in the Language menu (``default`` if none)."""
    row = LabSetting.objects.filter(user=user, plugin=TRANSLATION_PLUGIN).first()
    locale = row.values.get("locale") if row is not None else None
    return locale if isinstance(locale, str) and locale else "default"
