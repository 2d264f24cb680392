"""JupyterLab's interface languages (``/lab/api/translations``).

English is built into the front ends; other languages come from installed
language packs (Python packages registering a ``jupyterlab.languagepack`` entry
point, e.g. ``jupyterlab-language-pack-fr-FR``), found without importing them.
A locale without a pack answers no data and a message, and the front end stays
in English: that is jupyterlab_server's behaviour too.
"""

import functools
import importlib.metadata
import importlib.util
import json
import logging
import re
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

LANGUAGE_PACK_GROUP = "jupyterlab.languagepack"
DEFAULT_LOCALE = "en"
ENGLISH = {"displayName": "English", "nativeName": "English"}
# ll, ll_CC, ll-CC, ll_Script_CC...: what a locale name may look like.
_LOCALE = re.compile(r"^[A-Za-z]{2,3}(?:[_-][A-Za-z0-9]{2,8}){0,3}$")


def is_english(locale: str) -> bool:
    """Return whether ``locale`` is English, which needs no language pack."""
    return locale.replace("-", "_").split("_")[0].lower() == "en"


@functools.cache
def language_packs() -> dict[str, Path]:
    """Return the installed language packs: ``{locale: package directory}``."""
    packs = {}
    for entry_point in importlib.metadata.entry_points(group=LANGUAGE_PACK_GROUP):
        try:
            spec = importlib.util.find_spec(entry_point.module)
        except (ImportError, ValueError):
            spec = None
        if spec is None or not spec.origin:
            log.warning("language pack %s cannot be found", entry_point.value)
            continue
        packs[entry_point.name] = Path(spec.origin).parent
    return packs


def _display_name(locale: str, display_locale: str) -> str:
    try:
        from babel import Locale, UnknownLocaleError

        name = Locale.parse(locale).get_display_name(display_locale)
    except (ImportError, ValueError, UnknownLocaleError, TypeError):
        return locale
    return name[0].upper() + name[1:] if name else locale


def languages(display_locale: str) -> dict[str, Any]:
    """Return the languages on offer, named in ``display_locale`` when possible."""
    packs = language_packs()
    shown = display_locale if display_locale in packs else DEFAULT_LOCALE
    data = {DEFAULT_LOCALE: dict(ENGLISH)}
    if shown != DEFAULT_LOCALE:
        data[DEFAULT_LOCALE]["displayName"] = _display_name(DEFAULT_LOCALE, shown)
    for locale in sorted(packs):
        data[locale] = {
            "displayName": _display_name(locale, shown),
            "nativeName": _display_name(locale, locale),
        }
    return {"data": data, "message": ""}


def language_pack(locale: str) -> dict[str, Any]:
    """Return the translations of ``locale`` (``default`` is English).

    The data maps each front-end package to its gettext JSON; English and
    unknown locales have none.
    """
    if locale in {"", "default"} or is_english(locale):
        return {"data": {}, "message": ""}
    if not _LOCALE.match(locale):
        return {"data": {}, "message": f"Language pack '{locale}' not valid!"}
    directory = language_packs().get(locale)
    if directory is None:
        return {"data": {}, "message": f"Language pack '{locale}' not installed!"}
    data, problems = {}, []
    for path in sorted(directory.rglob("*.json")):
        try:
            data[path.stem] = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as error:
            problems.append(f"{path.name}: {error}")
    if problems:
        log.warning("language pack %s: %s", locale, "; ".join(problems))
    return {"data": data, "message": "\n".join(problems)}
