"""Kernelspecs: which kernels this server offers, read from its own installation only.

A kernelspec is a directory ``<search dir>/<name>/`` holding ``kernel.json`` and
optional resources (``kernel.js``, ``kernel.css``, ``logo-*``), as jupyter_client
installs them. Unlike jupyter_client, jserver never looks in a home directory,
``JUPYTER_PATH`` or the data directory: a kernelspec's ``argv`` is a command the
server runs, so only directories the server's administrators control are
searched (``settings.KERNELSPEC_DIRS``, first hit of a name wins), and any
kernelspec that a user, a kernel or another account could have written is
refused with a warning:

- its real location is inside ``settings.DATA_DIR`` (users' roots live there);
- it, its ``kernel.json`` or a directory above them is writable by group or
  others (a sticky directory such as ``/tmp`` is allowed above the search
  directory), or is owned by an account other than root, the server's and the
  owner of the server's Python environment (``sys.prefix``).

When no usable ``python3`` kernelspec is installed but ipykernel is importable,
the native one is offered, as jupyter_client does: ``sys.executable -m
ipykernel_launcher`` with ipykernel's bundled logos.

Scans are synchronous file I/O, cached for ``CACHE_SECONDS``; async callers use
``asyncio.to_thread``. The ``KernelSpec`` objects returned are shared: treat them,
and their ``env`` and ``metadata``, as read-only.
"""

import copy
import json
import logging
import os
import re
import stat
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, NotRequired, TypedDict
from urllib.parse import quote

from django.conf import settings

log = logging.getLogger(__name__)

# jupyter_client's NATIVE_KERNEL_NAME and jupyter_server's default_kernel_name.
NATIVE_KERNEL_NAME = "python3"
# A scan is reused this long: listing stays cheap, and a kernelspec installed
# or removed is seen within seconds without a restart.
CACHE_SECONDS = 5.0
# kernel.json files are a few hundred bytes; anything this large is not one.
MAX_KERNEL_JSON_BYTES = 1024 * 1024
# jupyter_client's valid kernel names (directory names, compared lowercased).
_VALID_NAME = re.compile(r"^[a-z0-9._-]+$")
# Resources jupyter_server lists under their own name (besides ``logo-*``).
_NAMED_RESOURCES = ("kernel.js", "kernel.css")
# argv[0] values jupyter_client replaces with the server's own interpreter.
_PYTHON_NAMES = frozenset(
    {
        "python",
        f"python{sys.version_info.major}",
        f"python{sys.version_info.major}.{sys.version_info.minor}",
    }
)
# jupyter_client's placeholders: ``{name}`` of letters, digits and underscores.
_PLACEHOLDER = re.compile(r"\{([A-Za-z0-9_]+)\}")

InterruptMode = Literal["signal", "message"]


@dataclass(frozen=True)
class KernelSpec:
    """One installed kernel: its ``kernel.json`` and where its resources are."""

    name: str
    resource_dir: Path
    argv: tuple[str, ...]
    display_name: str
    language: str
    interrupt_mode: InterruptMode = "signal"
    env: dict[str, str] = field(default_factory=dict)
    metadata: dict[str, Any] = field(default_factory=dict)
    kernel_protocol_version: str = ""


class KernelSpecDict(TypedDict):
    """The ``spec`` of a kernelspec model (jupyter_client's ``KernelSpec.to_dict``)."""

    argv: list[str]
    env: dict[str, str]
    display_name: str
    language: str
    interrupt_mode: InterruptMode
    metadata: dict[str, Any]
    kernel_protocol_version: str


KernelSpecResources = TypedDict(
    "KernelSpecResources",
    {
        "kernel.js": NotRequired[str],
        "kernel.css": NotRequired[str],
        # and "logo-<size>" (for instance "logo-64x64", "logo-svg"): URL
    },
)


class KernelSpecModel(TypedDict):
    """One kernelspec as ``/api/kernelspecs`` answers it."""

    name: str
    spec: KernelSpecDict
    resources: KernelSpecResources


class NoSuchKernel(Exception):
    """Raised when no usable kernelspec has the name asked for."""

    def __init__(self, name: str) -> None:
        super().__init__(f"No such kernel named {name}")
        self.name = name


# ---- scanning ----------------------------------------------------------------


class _Trust:
    """Decide, once per path within one scan, whether a path may be trusted."""

    def __init__(self) -> None:
        self.data_dir = Path(os.path.realpath(settings.DATA_DIR))
        owners = {0, os.geteuid()}
        try:
            owners.add(os.stat(os.path.realpath(sys.prefix)).st_uid)
        except OSError:
            pass
        self.owners = frozenset(owners)
        self._seen: dict[tuple[Path, bool], str | None] = {}

    def refusal(self, path: Path) -> str | None:
        """Return why ``path`` (a real path) is not trusted, or None if it is."""
        if path.is_relative_to(self.data_dir):
            return "it is inside the data directory"
        reason = self._check(path, ancestor=False)
        for parent in path.parents:
            reason = reason or self._check(parent, ancestor=True)
        return reason

    def _check(self, path: Path, *, ancestor: bool) -> str | None:
        key = (path, ancestor)
        if key not in self._seen:
            self._seen[key] = self._why_not(path, ancestor=ancestor)
        return self._seen[key]

    def _why_not(self, path: Path, *, ancestor: bool) -> str | None:
        try:
            st = os.stat(path)
        except OSError as error:
            return f"{path} cannot be read ({error.strerror})"
        if st.st_uid not in self.owners:
            return f"{path} is owned by uid {st.st_uid}"
        # Others may add entries to a sticky directory but not replace ours.
        sticky = ancestor and stat.S_ISDIR(st.st_mode) and st.st_mode & stat.S_ISVTX
        if st.st_mode & 0o022 and not sticky:
            return f"{path} is writable by group or others"
        return None


def _spec_from_dict(name: str, resource_dir: Path, data: Any) -> KernelSpec:
    """Return the kernelspec ``data`` (a parsed kernel.json) describes.

    Types are jupyter_client's; unlike it, an empty ``argv`` is refused (no
    kernel could start). Keys it does not know are dropped, as there.
    """
    if not isinstance(data, dict):
        raise ValueError("kernel.json is not a JSON object")
    argv = data.get("argv")
    if not isinstance(argv, list) or not argv:
        raise ValueError("argv must be a non-empty list")
    if not all(isinstance(arg, str) for arg in argv):
        raise ValueError("argv must be a list of strings")
    texts = {}
    for key in ("display_name", "language", "kernel_protocol_version"):
        value = data.get(key, "")
        if not isinstance(value, str):
            raise ValueError(f"{key} must be a string")
        texts[key] = value
    env = data.get("env", {})
    if not isinstance(env, dict) or not all(
        isinstance(key, str) and isinstance(value, str) for key, value in env.items()
    ):
        raise ValueError("env must map strings to strings")
    metadata = data.get("metadata", {})
    if not isinstance(metadata, dict):
        raise ValueError("metadata must be an object")
    mode = data.get("interrupt_mode", "signal")
    mode = mode.lower() if isinstance(mode, str) else mode
    if mode not in ("signal", "message"):
        raise ValueError("interrupt_mode must be 'signal' or 'message'")
    return KernelSpec(
        name=name,
        resource_dir=resource_dir,
        argv=tuple(argv),
        interrupt_mode=mode,
        env=dict(env),
        metadata=metadata,
        **texts,
    )


def _load(entry: Path, name: str, trust: _Trust) -> KernelSpec | None:
    """Return the kernelspec in directory ``entry``, or None (logged) if unusable."""
    real = Path(os.path.realpath(entry))
    kernel_json = Path(os.path.realpath(real / "kernel.json"))
    if not real.is_dir() or not kernel_json.is_file():
        return None  # not a kernelspec, as jupyter_client's _is_kernel_dir
    if not _VALID_NAME.match(name):
        log.warning("Ignoring kernelspec %s: its name %r is not valid", entry, name)
        return None
    if reason := trust.refusal(real) or trust.refusal(kernel_json):
        log.warning("Ignoring kernelspec %s: %s", entry, reason)
        return None
    try:
        with open(kernel_json, "rb") as handle:
            raw = handle.read(MAX_KERNEL_JSON_BYTES + 1)
        if len(raw) > MAX_KERNEL_JSON_BYTES:
            raise ValueError("kernel.json is too large")
        return _spec_from_dict(name, real, json.loads(raw))
    except (OSError, ValueError, RecursionError) as error:
        log.warning("Ignoring kernelspec %s: %s", entry, error)
        return None


def _native_spec(trust: _Trust) -> KernelSpec | None:
    """Return ipykernel's own python3 kernelspec, if ipykernel is importable."""
    try:
        from ipykernel.kernelspec import RESOURCES, get_kernel_dict
    except ImportError:
        log.debug("No %s kernelspec and no ipykernel", NATIVE_KERNEL_NAME)
        return None
    resource_dir = Path(os.path.realpath(RESOURCES))
    if reason := trust.refusal(resource_dir):
        log.warning("Ignoring ipykernel's kernelspec %s: %s", resource_dir, reason)
        return None
    return _spec_from_dict(NATIVE_KERNEL_NAME, resource_dir, get_kernel_dict())


def _scan() -> dict[str, KernelSpec]:
    trust = _Trust()
    found: dict[str, KernelSpec] = {}
    for configured in settings.KERNELSPEC_DIRS:
        base = Path(os.path.realpath(configured))
        if not base.is_dir():
            continue
        if reason := trust.refusal(base):
            log.warning("Ignoring kernelspec directory %s: %s", configured, reason)
            continue
        try:
            entries = sorted(os.listdir(base))
        except OSError as error:
            log.warning("Cannot list kernelspec directory %s: %s", configured, error)
            continue
        for entry in entries:
            name = entry.lower()
            if name not in found and (spec := _load(base / entry, name, trust)):
                found[name] = spec
    if NATIVE_KERNEL_NAME not in found and (spec := _native_spec(trust)):
        found[NATIVE_KERNEL_NAME] = spec
    return found


_cache_lock = threading.Lock()
_cache: tuple[tuple[Any, ...], float, dict[str, KernelSpec]] | None = None


def _cache_key() -> tuple[Any, ...]:
    return tuple(map(str, settings.KERNELSPEC_DIRS)), str(settings.DATA_DIR)


def clear_cache() -> None:
    """Forget the last scan: the next call reads the directories again."""
    global _cache
    with _cache_lock:
        _cache = None


def find_specs() -> dict[str, KernelSpec]:
    """Return every usable kernelspec by name (a new dict; the specs are shared)."""
    global _cache
    key = _cache_key()
    with _cache_lock:
        cached = _cache
        if (
            cached is None
            or cached[0] != key
            or time.monotonic() - cached[1] >= CACHE_SECONDS
        ):
            cached = _cache = (key, time.monotonic(), _scan())
    return dict(cached[2])


def get_spec(name: str) -> KernelSpec:
    """Return the kernelspec called ``name`` (any case), or raise ``NoSuchKernel``."""
    try:
        return find_specs()[name.lower()]
    except KeyError:
        raise NoSuchKernel(name) from None


def default_name() -> str:
    """Return the name of the kernel started when none is asked for."""
    return getattr(settings, "DEFAULT_KERNEL_NAME", NATIVE_KERNEL_NAME)


def command(spec: KernelSpec, connection_file: str) -> list[str]:
    """Return the kernel's command line, placeholders filled as jupyter_client does.

    ``{connection_file}``, ``{resource_dir}`` and ``{prefix}`` (``sys.prefix``)
    are replaced, other ``{names}`` left as they are, and an ``argv[0]`` of
    ``python``/``python3``/``python3.X`` becomes this server's interpreter.
    """
    values = {
        "connection_file": connection_file,
        "resource_dir": str(spec.resource_dir),
        "prefix": sys.prefix,
    }

    def fill(match: re.Match[str]) -> str:
        return values.get(match.group(1), match.group(0))

    argv = list(spec.argv)
    if argv[0] in _PYTHON_NAMES:
        argv[0] = sys.executable
    return [_PLACEHOLDER.sub(fill, arg) for arg in argv]


# ---- models and resources -------------------------------------------------------


def spec_dict(spec: KernelSpec) -> KernelSpecDict:
    """Return ``spec`` as ``kernel.json``-like data (a copy the caller may change)."""
    return {
        "argv": list(spec.argv),
        "env": dict(spec.env),
        "display_name": spec.display_name,
        "language": spec.language,
        "interrupt_mode": spec.interrupt_mode,
        "metadata": copy.deepcopy(spec.metadata),
        "kernel_protocol_version": spec.kernel_protocol_version,
    }


def resource_url(spec: KernelSpec, filename: str) -> str:
    """Return the URL (under the base URL) a resource of ``spec`` is served at."""
    return f"{settings.BASE_URL}kernelspecs/{quote(spec.name)}/{quote(filename)}"


def spec_model(spec: KernelSpec) -> KernelSpecModel:
    """Return jupyter_server's model of ``spec``, resource URLs under the base URL.

    ``resources`` has ``kernel.js`` and ``kernel.css`` under their own names and
    each ``logo-*`` file under its name without extension (``logo-64x64``),
    each only if it can be served (``resource_path``).
    """
    resources: dict[str, str] = {}
    for filename in _NAMED_RESOURCES:
        if resource_path(spec, filename) is not None:
            resources[filename] = resource_url(spec, filename)
    try:
        names = sorted(os.listdir(spec.resource_dir))
    except OSError:
        names = []
    for filename in names:
        if filename.startswith("logo-") and resource_path(spec, filename):
            resources[os.path.splitext(filename)[0]] = resource_url(spec, filename)
    return {"name": spec.name, "spec": spec_dict(spec), "resources": resources}


def resource_path(spec: KernelSpec, resource: str) -> Path | None:
    """Return the file ``resource`` (a relative path) of ``spec``, or None.

    None unless it is a regular file that is really inside the resource
    directory (no ``..``, absolute path or symlink out) and is not writable by
    group or others.
    """
    parts = resource.split("/")
    if "\x00" in resource or "\\" in resource:
        return None
    if any(part in ("", ".", "..") for part in parts):
        return None
    root = Path(os.path.realpath(spec.resource_dir))
    target = Path(os.path.realpath(root.joinpath(*parts)))
    if target == root or not target.is_relative_to(root):
        return None
    try:
        st = os.stat(target)
    except OSError:
        return None
    if not stat.S_ISREG(st.st_mode) or st.st_mode & 0o022:
        return None
    return target
