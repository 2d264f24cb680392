"""The notebook export formats offered (``/api/nbconvert``), through nbconvert.

Only the formats in ``NBCONVERT_FORMATS`` that the installed nbconvert has are
offered (its other exporters need pandoc, LaTeX or a browser on the server);
without nbconvert none are. A format name is only ever looked up among those:
nbconvert's own lookup would import any dotted name it is given.
"""

import functools
import logging
from typing import TypedDict

from django.conf import settings

from jserver.errors import NotFound

log = logging.getLogger(__name__)


class FormatModel(TypedDict):
    output_mimetype: str


@functools.cache
def _exporter_classes(formats: tuple[str, ...]) -> dict[str, type]:
    try:
        from nbconvert.exporters.base import ExporterNameError, get_exporter
    except ImportError as error:
        log.warning("nbconvert is not installed, no export formats: %s", error)
        return {}
    found = {}
    for name in formats:
        if "." in name:  # a dotted name would be imported as a class path
            log.warning("ignoring export format %r: not an exporter name", name)
            continue
        try:
            found[name] = get_exporter(name)
        except (ExporterNameError, ValueError, ImportError) as error:
            log.warning("export format %r is not available: %s", name, error)
    return found


def export_formats() -> dict[str, FormatModel]:
    """Return ``{format: {"output_mimetype": ...}}`` for every offered format."""
    classes = _exporter_classes(tuple(settings.NBCONVERT_FORMATS))
    return {
        name: {"output_mimetype": cls.output_mimetype}
        for name, cls in sorted(classes.items())
    }


def exporter_class(name: str) -> type:
    """Return the nbconvert exporter class of an offered format, else ``NotFound``."""
    classes = _exporter_classes(tuple(settings.NBCONVERT_FORMATS))
    if name not in classes:
        raise NotFound(f"No exporter for format: {name}")
    return classes[name]
