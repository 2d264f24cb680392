"""Third-party licence reports of the front ends (``/lab/api/licenses``).

Each bundle (JupyterLab's build, Notebook 7's, each prebuilt labextension)
ships a ``third-party-licenses.json``; the report is JSON (as the Help >
Licenses panel reads it), CSV or Markdown, as jupyterlab_server writes them.
"""

import csv
import functools
import io
import json
import logging
from pathlib import Path
from typing import Any, Literal

from frontend import assets
from jserver.errors import BadRequest

log = logging.getLogger(__name__)

ReportFormat = Literal["json", "csv", "markdown"]
CONTENT_TYPES = {
    "json": "application/json",
    "csv": "text/csv",
    "markdown": "text/markdown",
}
EXTENSIONS = {"json": ".json", "csv": ".csv", "markdown": ".md"}
_FIELDS = ["name", "versionInfo", "licenseId", "extractedText"]


@functools.cache
def _read(path: str) -> list[dict[str, Any]]:
    try:
        packages = json.loads(Path(path).read_text(encoding="utf-8"))["packages"]
    except (OSError, ValueError, KeyError, TypeError) as error:
        log.warning("cannot read licences from %s: %s", path, error)
        return []
    return [package for package in packages if isinstance(package, dict)]


def _selected(name: str, selection: str) -> bool:
    """Return whether bundle ``name`` is in ``selection``.

    jupyterlab_server takes a regular expression; to keep user input out of the
    regex engine, the forms that matter are supported literally: ``.*`` (all),
    and ``|``-separated names, each optionally ending in ``.*`` (a prefix).
    """
    for item in selection.split("|"):
        if item == ".*" or item == name:
            return True
        if item.endswith(".*") and name.startswith(item[:-2]):
            return True
    return False


def bundles(selection: str = ".*") -> dict[str, dict[str, list]]:
    """Return ``{bundle name: {"packages": [...]}}`` of the selected bundles."""
    return {
        name: {"packages": _read(str(path))}
        for name, path in assets.licenses_files()
        if _selected(name, selection)
    }


def _csv(report: dict[str, dict[str, list]]) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=["bundle", *_FIELDS])
    writer.writeheader()
    for bundle, data in report.items():
        for package in data["packages"]:
            writer.writerow(
                {"bundle": bundle, **{key: package.get(key, "") for key in _FIELDS}}
            )
    return out.getvalue()


def _markdown(report: dict[str, dict[str, list]], full_text: bool) -> str:
    lines: list[str] = []
    for bundle, data in report.items():
        lines += [f"# {bundle}", ""]
        if not data["packages"]:
            lines += ["> No licenses found", ""]
        for package in data["packages"]:
            name = str(package.get("name", "UNKNOWN")).strip()
            version = str(package.get("versionInfo", "UNKNOWN")).strip()
            license_id = str(package.get("licenseId", "UNKNOWN")).strip()
            lines.append(f"## **{name}**\t`{version}`\t{license_id}")
            if full_text:
                text = package.get("extractedText") or ""
                if text:
                    lines += ["", "<pre>", text, "</pre>", ""]
                else:
                    lines += ["", "> No license text available", ""]
    return "\n".join(lines)


def report(
    report_format: str, *, full_text: bool = True, selection: str = ".*"
) -> tuple[str, str]:
    """Return the licence report and its content type (``BadRequest``: bad format)."""
    if report_format not in CONTENT_TYPES:
        raise BadRequest(f"Unsupported report format {report_format}.")
    selected = bundles(selection)
    if report_format == "json":
        body = json.dumps({"bundles": selected}, indent=2, sort_keys=True)
    elif report_format == "csv":
        body = _csv(selected)
    else:
        body = _markdown(selected, full_text)
    return body, CONTENT_TYPES[report_format]
