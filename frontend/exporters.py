"""Notebook exports through nbconvert: the formats offered (``/api/nbconvert``)
and the conversion of one notebook (``/nbconvert/<format>/<path>``).

Only the formats in ``NBCONVERT_FORMATS`` that the installed nbconvert has are
offered (its other exporters need pandoc, LaTeX or a browser on the server);
without nbconvert none are. A format name is only ever looked up among those:
nbconvert's own lookup would import any dotted name it is given, and its script
exporter looks up the name a notebook's ``language_info.nbconvert_exporter``
holds, so a name that is not offered is dropped from the notebook first.
"""

import copy
import datetime
import functools
import io
import logging
import posixpath
import zipfile
from dataclasses import dataclass
from typing import Any, TypedDict

from django.conf import settings

from jserver.errors import JupyterError, NotFound

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


class ExportFailed(JupyterError):
    """nbconvert could not convert the notebook (jupyter_server's 500)."""


@dataclass(frozen=True)
class Export:
    """A converted notebook: its bytes, type and file name."""

    body: bytes
    content_type: str
    filename: str
    zipped: bool  # the output and the files it refers to (images), zipped


def _title(name: str) -> str:
    return posixpath.splitext(name)[0]


def _offered_exporter_only(nb: dict[str, Any]) -> dict[str, Any]:
    info = nb.get("metadata", {}).get("language_info")
    if isinstance(info, dict) and "nbconvert_exporter" in info:
        offered = _exporter_classes(tuple(settings.NBCONVERT_FORMATS))
        if info["nbconvert_exporter"] not in offered:
            nb = copy.deepcopy(nb)
            del nb["metadata"]["language_info"]["nbconvert_exporter"]
    return nb


def export(
    name: str,
    nb: dict[str, Any],
    *,
    format: str,
    modified: datetime.datetime,
    sanitize_html: bool | None = None,
) -> Export:
    """Convert the notebook ``nb`` (file name ``name``) to an offered ``format``.

    As jupyter_server: output that comes with files of its own (the images a
    Markdown export extracts) is zipped with them; ``sanitize_html`` applies to
    HTML only. Raises ``NotFound`` for a format not offered, ``ExportFailed``
    when nbconvert fails.
    """
    import nbformat

    exporter = exporter_class(format)()
    if sanitize_html is not None and hasattr(exporter, "sanitize_html"):
        exporter.sanitize_html = sanitize_html
    title = _title(name)
    resources = {
        "metadata": {
            "name": title,
            "modified_date": f"{modified:%B} {modified.day}, {modified:%Y}",
        }
    }
    try:
        node = nbformat.from_dict(_offered_exporter_only(nb))
        output, resources = exporter.from_notebook_node(node, resources=resources)
    except Exception as error:
        log.warning("nbconvert failed to export %s as %s: %r", name, format, error)
        raise ExportFailed(f"nbconvert failed: {error}") from None
    filename = title + resources.get("output_extension", "")
    text = output.encode() if isinstance(output, str) else output
    if outputs := resources.get("outputs"):
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as zipped:
            zipped.writestr(filename, text)
            for path, data in outputs.items():
                zipped.writestr(posixpath.basename(path), data)
        return Export(buffer.getvalue(), "application/zip", title + ".zip", True)
    mimetype = exporter.output_mimetype or "text/plain"
    return Export(text, f"{mimetype}; charset=utf-8", filename, False)
