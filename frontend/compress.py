"""Gzipped copies of the front ends' files, made once, for WhiteNoise to serve.

WhiteNoise serves ``<file>.gz`` to browsers that accept gzip when it sits next to
``<file>``. The installed packages ship none, and are not written to; instead
each served directory gets a mirror under ``<data dir>/cache/frontend/``: a
symlink per file, plus a gzipped copy of each compressible one (JupyterLab's
13 MB of JavaScript become 4 MB). A mirror is named after the directory's
contents (paths, sizes, times), so an upgrade builds a new one, and it is built
in a temporary directory and renamed into place, so that several processes
starting together never serve a half-built one.
"""

import gzip
import hashlib
import logging
import os
import shutil
import tempfile
from pathlib import Path

log = logging.getLogger(__name__)

COMPRESSIBLE = frozenset({".js", ".css", ".json", ".svg", ".map", ".txt", ".md"})
COMPRESSIBLE |= {".ttf", ".eot", ".otf", ".html", ".xml"}
MIN_BYTES = 1024  # below this, gzip saves less than its headers cost
_COMPLETE = ".complete"


def _files(directory: Path) -> list[tuple[str, os.stat_result]]:
    found = []
    for root, _dirs, names in os.walk(directory, followlinks=True):
        for name in names:
            path = Path(root, name)
            found.append((path.relative_to(directory).as_posix(), path.stat()))
    return sorted(found)


def _key(directory: Path, files: list[tuple[str, os.stat_result]]) -> str:
    digest = hashlib.sha256(str(directory).encode())
    for name, stat in files:
        digest.update(f"\0{name}\0{stat.st_size}\0{stat.st_mtime_ns}".encode())
    return digest.hexdigest()[:24]


def _build(directory: Path, files: list, target: Path) -> None:
    for name, stat in files:
        link = target / name
        link.parent.mkdir(parents=True, exist_ok=True)
        source = directory / name
        link.symlink_to(source)
        if source.suffix in COMPRESSIBLE and stat.st_size >= MIN_BYTES:
            data = source.read_bytes()
            packed = gzip.compress(data, compresslevel=9, mtime=0)
            if len(packed) < len(data):
                (target / f"{name}.gz").write_bytes(packed)
    (target / _COMPLETE).touch()


def compressed_mirror(directory: Path, cache: Path) -> Path:
    """Return a directory serving ``directory``'s files with gzipped copies.

    Falls back to ``directory`` itself (uncompressed) if the cache is unusable.
    """
    directory = directory.resolve()
    try:
        files = _files(directory)
        mirror = cache / _key(directory, files)
        if (mirror / _COMPLETE).exists():
            return mirror
        cache.mkdir(parents=True, exist_ok=True)
        building = Path(tempfile.mkdtemp(prefix=".building-", dir=cache))
        try:
            _build(directory, files, building)
            try:
                building.rename(mirror)
            except OSError:  # another process finished first: use theirs
                if not (mirror / _COMPLETE).exists():
                    raise
        finally:
            shutil.rmtree(building, ignore_errors=True)
        log.info("compressed %s into %s", directory, mirror)
        return mirror
    except OSError as error:
        log.warning("serving %s uncompressed: %s", directory, error)
        return directory
