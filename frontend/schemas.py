"""JupyterLab's settings schemas: the installed plugins' and their defaults.

Schemas come from the built app (``<LAB_APP_DIR>/schemas/<package>/<plugin>.json``)
and from prebuilt labextensions (``<ext>/schemas/<package>/<plugin>.json``, which
win over the app's, first directory first). A plugin id is
``<package>:<plugin>``, e.g. ``@jupyterlab/apputils-extension:themes``. An
installation may change defaults in ``<LAB_APP_DIR>/settings/overrides.json``
(or ``.json5``, and ``overrides.d/*``), as with jupyterlab. Loaded and checked
once per process and configuration.
"""

import copy
import functools
import json
import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import json5
from django.conf import settings
from jsonschema import Draft7Validator
from jsonschema.exceptions import SchemaError

from frontend import assets
from jserver.errors import NotFound

log = logging.getLogger(__name__)

# <package>:<plugin>, the package at most two levels deep (@scope/name).
_PLUGIN_ID = re.compile(r"^(@[\w.-]+/)?[\w.-]+:[\w.-]+$")
PLUGIN_ID_MAX_LENGTH = 255


@dataclass(frozen=True)
class PluginSchema:
    """One plugin's schema (installation overrides applied) and its validator."""

    id: str
    schema: dict[str, Any]
    version: str  # the package's version, "N/A" if unknown (as jupyterlab_server)
    validator: Draft7Validator


def _version(schema_path: Path) -> str:
    try:
        package = json.loads(
            (schema_path.parent / "package.json.orig").read_text(encoding="utf-8")
        )
        return str(package["version"])
    except (OSError, ValueError, KeyError, TypeError):
        return "N/A"


def _merge(target: dict[str, Any], update: dict[str, Any]) -> None:
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(target.get(key), dict):
            _merge(target[key], value)
        else:
            target[key] = copy.deepcopy(value)


def _apply_overrides(schema: dict[str, Any], defaults: dict[str, Any]) -> None:
    """Set the schema's defaults from an installation's overrides (as jupyterlab)."""
    properties = schema.setdefault("properties", {})
    for key, value in defaults.items():
        current = properties.get(key)
        if not isinstance(current, dict):
            properties[key] = {"default": copy.deepcopy(value)}
        elif isinstance(current.get("default"), dict) and isinstance(value, dict):
            _merge(current["default"], value)
        else:
            current["default"] = copy.deepcopy(value)


def _load_overrides(app_dir: Path) -> dict[str, dict[str, Any]]:
    settings_dir = app_dir / "settings"
    paths = sorted(
        [
            *settings_dir.glob("overrides.d/*.json"),
            *settings_dir.glob("overrides.d/*.json5"),
        ]
    )
    paths += [settings_dir / "overrides.json", settings_dir / "overrides.json5"]
    overrides: dict[str, dict[str, Any]] = {}
    for path in paths:
        if not path.is_file():
            continue
        try:
            text = path.read_text(encoding="utf-8")
            data = json5.loads(text) if path.suffix == ".json5" else json.loads(text)
            for plugin_id, values in data.items():
                if isinstance(values, dict):
                    _merge(overrides.setdefault(plugin_id, {}), values)
        except (OSError, ValueError, AttributeError) as error:
            log.warning("ignoring settings overrides %s: %s", path, error)
    return overrides


def _schema_files(root: Path) -> dict[str, Path]:
    """Return ``{plugin id: schema file}`` below a ``schemas`` directory."""
    found = {}
    for path in sorted([*root.glob("[!@]*/*.json"), *root.glob("@*/*/*.json")]):
        package = path.parent.relative_to(root).as_posix()
        found[f"{package}:{path.stem}"] = path
    return found


def _load(plugin_id: str, path: Path, overrides: dict) -> PluginSchema | None:
    try:
        schema = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(schema, dict):
            raise ValueError("not a JSON object")
        if plugin_id in overrides:
            _apply_overrides(schema, overrides[plugin_id])
        Draft7Validator.check_schema(schema)
    except (OSError, ValueError, SchemaError) as error:
        log.warning("ignoring settings schema %s (%s): %s", plugin_id, path, error)
        return None
    return PluginSchema(plugin_id, schema, _version(path), Draft7Validator(schema))


@functools.cache
def _index(app_dir: Path, extension_paths: tuple[Path, ...]) -> dict[str, PluginSchema]:
    files = _schema_files(app_dir / "schemas")
    for extension in assets.labextensions().values():
        files.update(_schema_files(extension.path / "schemas"))
    overrides = _load_overrides(app_dir)
    index = {}
    # Sorted in reverse, the order jupyterlab_server lists them in.
    for plugin_id in sorted(files, reverse=True):
        if (schema := _load(plugin_id, files[plugin_id], overrides)) is not None:
            index[plugin_id] = schema
    log.info("loaded %d settings schemas", len(index))
    return index


def all_schemas() -> list[PluginSchema]:
    """Return every plugin's schema, in jupyterlab_server's order."""
    return list(
        _index(settings.LAB_APP_DIR, tuple(settings.LABEXTENSIONS_PATH)).values()
    )


def get_schema(plugin_id: str) -> PluginSchema:
    """Return the schema of ``plugin_id``, or raise ``NotFound``."""
    index = _index(settings.LAB_APP_DIR, tuple(settings.LABEXTENSIONS_PATH))
    if plugin_id in index:
        return index[plugin_id]
    if len(plugin_id) > PLUGIN_ID_MAX_LENGTH or not _PLUGIN_ID.match(plugin_id):
        raise NotFound(f"Settings not found ({plugin_id})")
    raise NotFound(f"Schema not found: {plugin_id}")
