"""The installed JupyterLab 4 and Notebook 7 front ends: what they are, where they are.

Everything comes from installed packages: ``jupyterlab`` (its built app in
``LAB_APP_DIR``), ``notebook`` (its own build inside the package) and the
prebuilt labextensions found in ``LABEXTENSIONS_PATH``. Nothing is read from a
user's home or ``JUPYTER_PATH``. The results are computed once per process and
per configuration: installing an extension takes a restart.
"""

import functools
import importlib.metadata
import importlib.util
import json
import logging
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

log = logging.getLogger(__name__)

AppName = Literal["lab", "notebook"]
_MAIN_BUNDLE = re.compile(r"\bmain\.([0-9a-f]{8,})\.js\b")
# Labextension and package names: npm's rules, two levels at most (@scope/name).
_EXTENSION_NAME = re.compile(r"^(@[a-z0-9][\w.-]*/)?[a-z0-9][\w.-]*$", re.IGNORECASE)


@dataclass(frozen=True)
class FrontEnd:
    """One built front end (its webpack output and page shell facts)."""

    name: AppName
    app_name: str  # page_config appName
    namespace: str  # page_config appNamespace: keys the browser's state database
    version: str
    static_dir: Path
    main_bundle: str  # main.<hash>.js, the entry point the page loads
    license_bundle: str  # its name in /lab/api/licenses


@dataclass(frozen=True)
class LabExtension:
    """A prebuilt (federated) labextension."""

    name: str
    path: Path
    version: str
    build: dict[str, Any]  # package.json jupyterlab._build: load, extension, style...
    disables: list[str] = field(default_factory=list)  # jupyterlab.disabledExtensions

    @property
    def static_dir(self) -> Path:
        return self.path / "static"

    @property
    def themes_dir(self) -> Path:
        return self.path / "themes"

    def page_config_entry(self) -> dict[str, Any]:
        """Return this extension's item of page_config ``federated_extensions``."""
        entry: dict[str, Any] = {"name": self.name, "load": self.build["load"]}
        for key in ("extension", "mimeExtension", "style"):
            if key in self.build:
                entry[key] = self.build[key]
        entry["entrypoints"] = self.build.get("entrypoints")
        return entry


def _main_bundle(template: Path) -> str:
    try:
        text = template.read_text(encoding="utf-8")
    except OSError as error:
        raise ImproperlyConfigured(
            f"The front end's page template is missing ({template}): {error}"
        ) from None
    match = _MAIN_BUNDLE.search(text)
    if match is None:
        raise ImproperlyConfigured(f"No main.<hash>.js in {template}")
    return match.group(0)


def _package_dir(module: str) -> Path:
    spec = importlib.util.find_spec(module)  # locates without importing
    if spec is None or not spec.submodule_search_locations:
        raise ImproperlyConfigured(f"The {module!r} package is not installed")
    return Path(next(iter(spec.submodule_search_locations)))


@functools.cache
def _lab(app_dir: Path) -> FrontEnd:
    static = app_dir / "static"
    package = json.loads((static / "package.json").read_text(encoding="utf-8"))
    return FrontEnd(
        name="lab",
        app_name="JupyterLab",
        namespace="lab",
        version=importlib.metadata.version("jupyterlab"),
        static_dir=static,
        main_bundle=_main_bundle(static / "index.html"),
        license_bundle=package.get("name", "jupyterlab"),
    )


@functools.cache
def _notebook() -> FrontEnd:
    package = _package_dir("notebook")
    return FrontEnd(
        name="notebook",
        app_name="Jupyter Notebook",
        namespace="notebook",
        version=importlib.metadata.version("notebook"),
        static_dir=package / "static",
        main_bundle=_main_bundle(package / "templates" / "tree.html"),
        license_bundle="notebook",
    )


def front_end(name: AppName) -> FrontEnd:
    """Return the installed front end ``name`` (``ImproperlyConfigured`` if absent)."""
    if name == "lab":
        return _lab(settings.LAB_APP_DIR)
    return _notebook()


def lab_app_dir() -> Path:
    """Return the built JupyterLab's directory (schemas, themes, settings)."""
    return settings.LAB_APP_DIR


def notebook_custom_dir() -> Path:
    """Return the directory of Notebook 7's (empty) ``custom.css``."""
    return _package_dir("notebook") / "custom"


def favicons_dir() -> Path:
    """Return the directory of the favicons both front ends link to."""
    return _package_dir("jupyter_server") / "static" / "favicons"


def _read_extension(package_json: Path) -> LabExtension | None:
    try:
        package = json.loads(package_json.read_text(encoding="utf-8"))
        name = package["name"]
        build = package.get("jupyterlab", {}).get("_build")
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as error:
        log.warning("ignoring labextension %s: %s", package_json.parent, error)
        return None
    if not isinstance(name, str) or not _EXTENSION_NAME.match(name):
        log.warning("ignoring labextension %s: bad name", package_json.parent)
        return None
    if not isinstance(build, dict) or not isinstance(build.get("load"), str):
        log.warning("ignoring labextension %s: not a prebuilt extension", name)
        return None
    disables = package["jupyterlab"].get("disabledExtensions") or []
    return LabExtension(
        name=name,
        path=package_json.parent,
        version=str(package.get("version", "")),
        build=build,
        disables=[item for item in disables if isinstance(item, str)],
    )


@functools.cache
def _labextensions(path: tuple[Path, ...]) -> dict[str, LabExtension]:
    found: dict[str, LabExtension] = {}
    for directory in path:
        if not directory.is_dir():
            continue
        # Extensions are top-level directories, or two deep in @scope directories.
        candidates = sorted(
            [
                *directory.glob("[!@]*/package.json"),
                *directory.glob("@*/*/package.json"),
            ]
        )
        for package_json in candidates:
            extension = _read_extension(package_json)
            if extension is not None and extension.name not in found:
                found[extension.name] = extension
    return found


def labextensions() -> dict[str, LabExtension]:
    """Return the prebuilt labextensions by name, first directory winning."""
    return _labextensions(tuple(settings.LABEXTENSIONS_PATH))


def theme_dirs() -> list[Path]:
    """Return the directories served at ``/lab/api/themes/``, highest priority first.

    A labextension's ``themes/`` holds ``<its name>/index.css``; the built app's
    ``themes/`` holds the core ``@jupyterlab/theme-*-extension/`` ones.
    """
    dirs = [
        extension.themes_dir
        for extension in labextensions().values()
        if extension.themes_dir.is_dir()
    ]
    return [*dirs, lab_app_dir() / "themes"]


def licenses_files() -> list[tuple[str, Path]]:
    """Return each bundle's name and third-party licence report file."""
    bundles = []
    for extension in labextensions().values():
        for candidate in (
            extension.path / "third-party-licenses.json",
            extension.static_dir / "third-party-licenses.json",
        ):
            if candidate.is_file():
                bundles.append((extension.name, candidate))
                break
    for name in ("lab", "notebook"):
        app = front_end(name)
        report = app.static_dir / "third-party-licenses.json"
        if report.is_file():
            bundles.append((app.license_bundle, report))
    return bundles
