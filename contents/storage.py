"""Users' files: the only module that turns API paths into filesystem paths.

Every user has a private root, ``<data dir>/users/<user id>/`` (the id, never a
name the user could change). The user's kernels write there too, so anything in
it may be a symbolic link, a hard link or a FIFO, and may be swapped for
another between two system calls. The server has more rights than those
kernels (T1 of the threat model), so it never opens a path string below a
root: a path is resolved one component at a time beneath a file descriptor of
the root, every directory opened with ``O_NOFOLLOW | O_DIRECTORY`` relative to
its parent, and every operation then works on the (directory descriptor, name)
it found with the ``*at`` system calls (``dir_fd=``, ``follow_symlinks=False``).
A link swapped in after a check is therefore refused by the kernel, never
followed.

Symbolic links are followed only here, and only while they stay inside the
root: a relative target is resolved from the link's directory (``..`` may not
climb above the root), an absolute target must name a path inside the root.
Anything else, like a link into another user's root or the server's data, is
``NotFound``. A listing shows a link only when it resolves inside the root to a
regular file or a directory; links leaving the root, dangling links, FIFOs,
sockets and devices are not listed.

Hard links: a hard link is indistinguishable from the file it names, so writes
never go into an existing file: a save writes a new file beside it and renames
it over the name (also what makes saves atomic), an upload appends only to the
partial file it created (checked by device and inode), and deletes, renames and
copies work on names. A regular file with more than one link that belongs to
neither the server's user nor the owner of the root is refused for reading, as
if it lay outside the root: only a link made to a file from outside can look
like that.
"""

import errno
import logging
import os
import secrets
import shutil
import stat
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from django.conf import settings
from django.contrib.auth.models import User
from django.core.cache import cache

from jserver.errors import NotFound

log = logging.getLogger(__name__)

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
# O_NONBLOCK: opening a FIFO someone put under a file's name must not block.
_READ_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK | os.O_NOCTTY
_CREATE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
# Linux gives up after 40 links in one path resolution (path_resolution(7)).
MAX_SYMLINKS = 40
# Deeper trees are not walked further when copying or measuring usage.
MAX_DEPTH = 128
# Temporary files of atomic saves and uploads start with ".~", so they are
# hidden from the API (jupyter_server names its intermediate files the same way).
PARTIAL_PREFIX = ".~jserver-"
UPLOAD_PREFIX = ".~jserver-upload-"
COPY_BLOCK_BYTES = 1024 * 1024
# Usage is measured by walking the user's root; a measurement is reused this
# long (writes through the API adjust it meanwhile; kernel writes show up late).
USAGE_CACHE_SECONDS = 60


def _current_umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


_UMASK = _current_umask()


def user_root(user: User) -> Path:
    """Return ``user``'s root directory, creating it (mode 0700) if needed."""
    root = settings.DATA_DIR / "users" / str(int(user.pk))
    try:
        there = stat.S_ISDIR(os.stat(root).st_mode)  # one call, on every request
    except FileNotFoundError:
        there = False
    if not there:
        root.mkdir(mode=0o700, parents=True, exist_ok=True)
    return root


def trash_root(user: User) -> Path:
    """Return ``user``'s trash directory (outside their root), creating it."""
    trash = settings.DATA_DIR / "trash" / str(int(user.pk))
    trash.mkdir(mode=0o700, parents=True, exist_ok=True)
    return trash


def split_api_path(api_path: str) -> list[str]:
    """Return the components of an API path, or raise ``NotFound`` for an escape.

    API paths are relative and ``/``-separated; ``..``, ``.``, NUL bytes and
    backslashes are refused rather than normalised (jupyter_server answers 404
    with these messages).
    """
    path = api_path.strip("/")
    if "\x00" in api_path or "\\" in api_path:
        raise NotFound(f"{path} is not a valid path")
    parts = [part for part in path.split("/") if part]
    if any(part in {".", ".."} for part in parts):
        raise NotFound(f"{path} is outside root contents directory")
    return parts


def outside(parts: Sequence[str]) -> NotFound:
    """Return the error for a path that resolves outside the root."""
    return NotFound(f"{'/'.join(parts)} is outside root contents directory")


@dataclass(frozen=True)
class Entry:
    """A directory entry beneath a root: its name and status.

    ``stat`` is the entry's own (``lstat``), or its target's when the entry is
    a link that resolves inside the root (``is_link``).
    """

    name: str
    stat: os.stat_result
    is_link: bool = False

    @property
    def is_dir(self) -> bool:
        return stat.S_ISDIR(self.stat.st_mode)


@dataclass(frozen=True)
class Location:
    """Where an API path leads: the directory holding it and its name there.

    ``name`` is ``None`` for the root itself (``dir_fd`` is then the root).
    ``stat`` is the entry's ``lstat``, ``None`` when nothing has the name.
    ``parts`` are the components of the entry below the root once links are
    followed. The descriptors live as long as the ``locate`` block.
    """

    dir_fd: int
    name: str | None
    stat: os.stat_result | None
    parts: tuple[str, ...]


@dataclass(frozen=True)
class PartialFile:
    """A chunked upload's partial file, beside the file it will become."""

    directory: tuple[str, ...]
    target_name: str
    name: str
    device: int
    inode: int
    size: int


class UploadLost(Exception):
    """The partial file of an upload is gone or is no longer the one written."""


def _write_all(fd: int, data: bytes | memoryview) -> None:
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


def _copy_fd(source: int, target: int) -> None:
    """Copy the rest of ``source`` to ``target`` (in the kernel when it can)."""
    try:
        while os.copy_file_range(source, target, COPY_BLOCK_BYTES):
            pass
        return
    except OSError as error:
        if error.errno not in {
            errno.EXDEV,
            errno.ENOSYS,
            errno.EINVAL,
            errno.EOPNOTSUPP,
        }:
            raise
    while block := os.read(source, COPY_BLOCK_BYTES):
        _write_all(target, block)


def _new_name(prefix: str) -> str:
    return prefix + secrets.token_hex(8)


def is_regular_or_dir(mode: int) -> bool:
    """Return whether ``mode`` is a regular file's or a directory's."""
    return stat.S_ISREG(mode) or stat.S_ISDIR(mode)


class Storage:
    """One user's files, resolved beneath their root without leaving it.

    Paths are lists of components (``split_api_path``). Methods raise
    ``NotFound`` for what lies outside the root and the usual ``OSError``
    subclasses (``FileNotFoundError``, ``IsADirectoryError``...) otherwise.
    """

    def __init__(self, owner: User) -> None:
        self.owner = owner
        self.root = user_root(owner)
        self._root_components = [part for part in str(self.root).split("/") if part]
        self._trusted_uids: set[int] | None = None

    # ---- resolution ---------------------------------------------------------

    @contextmanager
    def locate(
        self, parts: Sequence[str], *, follow: bool = True
    ) -> Iterator[Location]:
        """Resolve ``parts`` beneath the root; yield where they lead.

        Links in directories of the path are followed (inside the root only);
        the last component's link is followed only with ``follow``. A missing
        last component yields a ``Location`` whose ``stat`` is ``None``; a
        missing directory raises ``FileNotFoundError``.
        """
        fds: list[int] = []
        try:
            root_fd = os.open(self.root, _DIR_FLAGS)
            fds.append(root_fd)
            stack: list[tuple[int, str]] = [(root_fd, "")]
            pending = list(parts)
            hops = 0
            while pending:
                name = pending.pop(0)
                if name in {"", "."}:
                    continue
                if name == "..":
                    if len(stack) == 1:
                        raise outside(parts)
                    stack.pop()
                    continue
                dir_fd = stack[-1][0]
                last = not pending
                try:
                    st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
                except FileNotFoundError:
                    if not last:
                        raise
                    st = None
                if st is not None and stat.S_ISLNK(st.st_mode) and (follow or not last):
                    hops += 1
                    if hops > MAX_SYMLINKS:
                        raise outside(parts)
                    target = os.readlink(name, dir_fd=dir_fd)
                    pending[:0] = self._link_components(target, stack, parts)
                    continue
                if last:
                    canonical = tuple(entry for _, entry in stack[1:]) + (name,)
                    yield Location(dir_fd, name, st, canonical)
                    return
                if st is None or not stat.S_ISDIR(st.st_mode):
                    raise NotADirectoryError(errno.ENOTDIR, "Not a directory", name)
                try:
                    fd = os.open(name, _DIR_FLAGS, dir_fd=dir_fd)
                except OSError as error:
                    # Swapped for a link (or a file) since the stat: look again.
                    if error.errno not in {errno.ELOOP, errno.ENOTDIR}:
                        raise
                    hops += 1
                    if hops > MAX_SYMLINKS:
                        raise outside(parts) from None
                    pending.insert(0, name)
                    continue
                fds.append(fd)
                stack.append((fd, name))
            dir_fd = stack[-1][0]
            canonical = tuple(entry for _, entry in stack[1:])
            if len(stack) == 1:
                yield Location(dir_fd, None, os.fstat(dir_fd), ())
            else:
                # Reached a directory through a link's target: describe it by
                # its own name in its parent, as every other location.
                parent_fd, name = stack[-2][0], stack[-1][1]
                st = os.stat(name, dir_fd=parent_fd, follow_symlinks=False)
                yield Location(parent_fd, name, st, canonical)
        finally:
            for fd in fds:
                os.close(fd)

    def _link_components(
        self, target: str, stack: list[tuple[int, str]], parts: Sequence[str]
    ) -> list[str]:
        if not target.startswith("/"):
            return target.split("/")
        components = [part for part in target.split("/") if part]
        prefix = len(self._root_components)
        if components[:prefix] != self._root_components:
            raise outside(parts)
        del stack[1:]  # resolve the rest from the root
        return components[prefix:]

    def _open_final(
        self, parts: Sequence[str], flags: int, *, directory: bool
    ) -> tuple[int, tuple[str, ...]]:
        """Open what ``parts`` name with ``flags``; return the descriptor and the
        canonical components. If the entry was swapped for a link between the
        resolution and the open (``O_NOFOLLOW`` refuses it), resolve again.
        """
        for _ in range(MAX_SYMLINKS):
            with self.locate(parts) as location:
                st = location.stat
                if st is None:
                    raise FileNotFoundError(errno.ENOENT, "No such file or directory")
                if directory and location.name is None:
                    return os.dup(location.dir_fd), ()
                if directory and not stat.S_ISDIR(st.st_mode):
                    raise NotADirectoryError(errno.ENOTDIR, "Not a directory")
                if not directory and (
                    location.name is None or stat.S_ISDIR(st.st_mode)
                ):
                    raise IsADirectoryError(errno.EISDIR, "Is a directory")
                try:
                    fd = os.open(location.name, flags, dir_fd=location.dir_fd)
                except OSError as error:
                    if error.errno in {errno.ELOOP, errno.ENOTDIR}:
                        continue
                    raise
                return fd, location.parts
        raise outside(parts)

    @contextmanager
    def open_directory(
        self, parts: Sequence[str]
    ) -> Iterator[tuple[int, tuple[str, ...]]]:
        """Yield a descriptor of the directory at ``parts`` (links followed) and
        its canonical components."""
        fd, canonical = self._open_final(parts, _DIR_FLAGS, directory=True)
        try:
            yield fd, canonical
        finally:
            os.close(fd)

    def lookup(self, parts: Sequence[str]) -> os.stat_result:
        """Return the status of what ``parts`` name (links followed).

        Raises ``FileNotFoundError`` when nothing is there, or only something
        that is neither a regular file nor a directory.
        """
        with self.locate(parts) as location:
            st = location.stat
            if st is None or not is_regular_or_dir(st.st_mode):
                raise FileNotFoundError(errno.ENOENT, "No such file or directory")
            return st

    def exists(self, parts: Sequence[str]) -> bool:
        """Return whether anything (even a dangling link) has this name."""
        try:
            with self.locate(parts, follow=False) as location:
                return location.stat is not None
        except (FileNotFoundError, NotADirectoryError):
            return False

    # ---- reading ------------------------------------------------------------

    def listdir(
        self, parts: Sequence[str], keep: Callable[[str], bool] = lambda name: True
    ) -> tuple[os.stat_result, list[Entry]]:
        """Return a directory's status and its entries that ``keep`` accepts.

        One ``scandir`` pass and one ``lstat`` per entry; links are resolved
        (inside the root) only for entries that are links.
        """
        with self.open_directory(parts) as (fd, directory):
            dir_stat = os.fstat(fd)
            entries: list[Entry] = []
            links: list[str] = []
            with os.scandir(fd) as scan:
                for item in scan:
                    name = item.name
                    if not keep(name):
                        continue
                    try:
                        st = item.stat(follow_symlinks=False)
                    except OSError:
                        continue  # removed meanwhile
                    mode = st.st_mode
                    if stat.S_ISREG(mode) or stat.S_ISDIR(mode):
                        entries.append(Entry(name, st))
                    elif stat.S_ISLNK(mode):
                        links.append(name)
        for name in links:
            target = self._link_target(directory + (name,))
            if target is not None:
                entries.append(Entry(name, target, is_link=True))
        return dir_stat, entries

    def _link_target(self, parts: tuple[str, ...]) -> os.stat_result | None:
        try:
            with self.locate(parts) as location:
                st = location.stat
        except (NotFound, OSError):
            return None
        if st is None or not is_regular_or_dir(st.st_mode):
            return None
        return st

    def open_file(self, parts: Sequence[str]) -> tuple[BinaryIO, os.stat_result]:
        """Open the regular file at ``parts`` for reading; the caller closes it."""
        fd, _ = self._open_final(parts, _READ_FLAGS, directory=False)
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):
                raise FileNotFoundError(errno.ENOENT, "Not a regular file")
            self._check_hard_link(st, parts)
            os.set_blocking(fd, True)
            return os.fdopen(fd, "rb"), st
        except BaseException:
            os.close(fd)
            raise

    def read(self, parts: Sequence[str]) -> tuple[bytes, os.stat_result]:
        """Return the bytes of the regular file at ``parts`` and its status."""
        handle, st = self.open_file(parts)
        with handle:
            return handle.read(), st

    def _check_hard_link(self, st: os.stat_result, parts: Sequence[str]) -> None:
        if st.st_nlink <= 1:
            return
        if self._trusted_uids is None:
            self._trusted_uids = {os.geteuid(), os.stat(self.root).st_uid}
        if st.st_uid not in self._trusted_uids:
            log.warning(
                "refusing a hard link to a foreign file in %s's root", self.owner.pk
            )
            raise outside(parts)

    # ---- writing ------------------------------------------------------------

    def write(
        self,
        parts: Sequence[str],
        data: bytes | Callable[[int], None],
        *,
        before: Callable[[os.stat_result | None], None] | None = None,
    ) -> os.stat_result:
        """Replace (or create) the file at ``parts`` atomically; return its status.

        ``data`` is the new content, or a function writing it to a descriptor.
        The bytes go to a new file in the same directory, are synced and then
        renamed over the name, so a failure at any point leaves the previous
        content. ``before`` sees the current status first and may refuse.
        A link inside the root is written through to its target.
        """
        with self.locate(parts) as location:
            st = location.stat
            if location.name is None or (st is not None and stat.S_ISDIR(st.st_mode)):
                raise IsADirectoryError(errno.EISDIR, "Is a directory")
            if st is not None and not stat.S_ISREG(st.st_mode):
                raise FileExistsError(errno.EEXIST, "Not a regular file")
            if before is not None:
                before(st)
            mode = stat.S_IMODE(st.st_mode) if st is not None else None
            return self._replace(location.dir_fd, location.name, data, mode)

    def _replace(
        self,
        dir_fd: int,
        name: str,
        data: bytes | Callable[[int], None],
        mode: int | None,
    ) -> os.stat_result:
        partial = _new_name(PARTIAL_PREFIX)
        fd = os.open(
            partial, _CREATE_FLAGS, 0o666 if mode is None else 0o600, dir_fd=dir_fd
        )
        try:
            try:
                if mode is not None:
                    os.fchmod(fd, mode)
                if callable(data):
                    data(fd)
                else:
                    _write_all(fd, data)
                os.fsync(fd)
            finally:
                os.close(fd)
            os.rename(partial, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
        except BaseException:
            with suppress(OSError):
                os.unlink(partial, dir_fd=dir_fd)
            raise
        return os.stat(name, dir_fd=dir_fd, follow_symlinks=False)

    def mkdir(self, parts: Sequence[str]) -> tuple[os.stat_result, bool]:
        """Create the directory at ``parts``; return its status and if it is new.

        An existing directory is fine; anything else there is
        ``FileExistsError``.
        """
        with self.locate(parts, follow=False) as location:
            if location.name is None:
                return location.stat, False
            st = location.stat
            if st is not None:
                if stat.S_ISLNK(st.st_mode):
                    target = self._link_target(location.parts)
                    if target is not None and stat.S_ISDIR(target.st_mode):
                        return target, False
                if not stat.S_ISDIR(st.st_mode):
                    raise FileExistsError(errno.EEXIST, "Not a directory")
                return st, False
            os.mkdir(location.name, 0o777, dir_fd=location.dir_fd)
            return os.stat(
                location.name, dir_fd=location.dir_fd, follow_symlinks=False
            ), True

    def rename(self, old: Sequence[str], new: Sequence[str]) -> None:
        """Move the entry at ``old`` (a link itself, not its target) to ``new``.

        ``FileExistsError`` if something else already has the new name.
        """
        with self.locate(old, follow=False) as source:
            if source.name is None:
                raise OSError(errno.EBUSY, "Cannot move the root")
            if source.stat is None:
                raise FileNotFoundError(errno.ENOENT, "No such file or directory")
            with self.locate(new, follow=False) as target:
                if target.name is None:
                    raise FileExistsError(errno.EEXIST, "File exists")
                if target.stat is not None and not os.path.samestat(
                    target.stat, source.stat
                ):
                    raise FileExistsError(errno.EEXIST, "File exists")
                if stat.S_ISDIR(source.stat.st_mode) and _inside(source, target):
                    raise OSError(errno.EINVAL, "Cannot move a directory into itself")
                os.rename(
                    source.name,
                    target.name,
                    src_dir_fd=source.dir_fd,
                    dst_dir_fd=target.dir_fd,
                )

    # ---- copies ---------------------------------------------------------------

    def tree_size(self, parts: Sequence[str]) -> int:
        """Return the bytes of regular files at or below ``parts`` (no links)."""
        with self.locate(parts) as location:
            st = location.stat
            if st is None:
                raise FileNotFoundError(errno.ENOENT, "No such file or directory")
            if not stat.S_ISDIR(st.st_mode):
                return st.st_size
        with self.open_directory(parts) as (fd, _):
            return _walk_size(fd, set(), 0)

    def copy_file(
        self,
        source: Sequence[str],
        target: Sequence[str],
        *,
        before: Callable[[os.stat_result | None], None] | None = None,
    ) -> os.stat_result:
        """Copy the regular file at ``source`` over (or to) ``target`` atomically."""
        handle, _ = self.open_file(source)
        with handle:
            fd = handle.fileno()
            return self.write(target, lambda out: _copy_fd(fd, out), before=before)

    def copy_tree(self, source: Sequence[str], target: Sequence[str]) -> os.stat_result:
        """Copy the directory at ``source`` to the new name ``target``.

        Links are copied as links (never followed), FIFOs and devices skipped.
        """
        with self.open_directory(source) as (source_fd, _):
            with self.locate(target, follow=False) as location:
                if location.name is None or location.stat is not None:
                    raise FileExistsError(errno.EEXIST, "File exists")
                _copy_directory(source_fd, location.dir_fd, location.name, 0)
                return os.stat(
                    location.name, dir_fd=location.dir_fd, follow_symlinks=False
                )

    # ---- deleting (to the trash) ------------------------------------------------

    @contextmanager
    def _trash_fd(self) -> Iterator[int]:
        fd = os.open(trash_root(self.owner), _DIR_FLAGS)
        try:
            yield fd
        finally:
            os.close(fd)

    def trash(self, parts: Sequence[str]) -> tuple[str, os.stat_result, int]:
        """Move the entry at ``parts`` to the user's trash.

        Return its name in the trash, its ``lstat`` and its size in bytes.
        """
        with self.locate(parts, follow=False) as location:
            st = location.stat
            if location.name is None:
                raise OSError(errno.EBUSY, "Cannot delete the root")
            if st is None:
                raise FileNotFoundError(errno.ENOENT, "No such file or directory")
            size = st.st_size if stat.S_ISREG(st.st_mode) else 0
            if stat.S_ISDIR(st.st_mode):
                fd = os.open(location.name, _DIR_FLAGS, dir_fd=location.dir_fd)
                try:
                    size = _walk_size(fd, set(), 0)
                finally:
                    os.close(fd)
            name = f"{int(time.time())}-{secrets.token_hex(6)}"
            with self._trash_fd() as trash_fd:
                _move(location.dir_fd, location.name, trash_fd, name, st)
            return name, st, size

    def untrash(self, trash_name: str, parts: Sequence[str]) -> os.stat_result:
        """Move ``trash_name`` from the trash back to ``parts`` (which must be free)."""
        with self.locate(parts, follow=False) as location:
            if location.name is None or location.stat is not None:
                raise FileExistsError(errno.EEXIST, "File exists")
            with self._trash_fd() as trash_fd:
                st = os.stat(trash_name, dir_fd=trash_fd, follow_symlinks=False)
                _move(trash_fd, trash_name, location.dir_fd, location.name, st)
            return os.stat(location.name, dir_fd=location.dir_fd, follow_symlinks=False)

    def purge_trash(self, trash_name: str) -> None:
        """Delete ``trash_name`` from the trash for good."""
        with self._trash_fd() as trash_fd:
            _remove(trash_fd, trash_name)

    # ---- chunked uploads ---------------------------------------------------------

    def start_partial(
        self,
        parts: Sequence[str],
        data: bytes,
        *,
        before: Callable[[os.stat_result | None], None] | None = None,
    ) -> PartialFile:
        """Start an upload to ``parts``: a new hidden file beside the target."""
        with self.locate(parts) as location:
            st = location.stat
            if location.name is None or (st is not None and stat.S_ISDIR(st.st_mode)):
                raise IsADirectoryError(errno.EISDIR, "Is a directory")
            if st is not None and not stat.S_ISREG(st.st_mode):
                raise FileExistsError(errno.EEXIST, "Not a regular file")
            if before is not None:
                before(st)
            name = _new_name(UPLOAD_PREFIX)
            fd = os.open(name, _CREATE_FLAGS, 0o600, dir_fd=location.dir_fd)
            try:
                try:
                    _write_all(fd, data)
                    written = os.fstat(fd)
                finally:
                    os.close(fd)
            except BaseException:
                with suppress(OSError):
                    os.unlink(name, dir_fd=location.dir_fd)
                raise
            return PartialFile(
                directory=location.parts[:-1],
                target_name=location.name,
                name=name,
                device=written.st_dev,
                inode=written.st_ino,
                size=written.st_size,
            )

    def append_partial(
        self, partial: PartialFile, data: bytes, *, finish: bool = False
    ) -> os.stat_result:
        """Append ``data`` to an upload's partial file; with ``finish`` move it
        over its target atomically.

        Return the partial file's status, or the target's once finished.
        Raise ``UploadLost`` if the partial file is not the one written so far.
        """
        try:
            with self.open_directory(partial.directory) as (dir_fd, _):
                return _append(dir_fd, partial, data, finish)
        except (FileNotFoundError, NotADirectoryError, NotFound) as error:
            raise UploadLost(str(error)) from error

    def sync_partial(self, partial: PartialFile) -> None:
        """Write an upload's partial file through to the disk, if still there.

        Done between chunks, so that the ``fsync`` before the last chunk's
        rename has little left to write. Failures are left to that one.
        """
        try:
            with self.open_directory(partial.directory) as (dir_fd, _):
                fd = os.open(
                    partial.name,
                    os.O_WRONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK,
                    dir_fd=dir_fd,
                )
                try:
                    st = os.fstat(fd)
                    if (st.st_dev, st.st_ino) == (partial.device, partial.inode):
                        os.fdatasync(fd)
                finally:
                    os.close(fd)
        except (OSError, NotFound):
            pass

    def discard_partial(self, partial: PartialFile) -> None:
        """Remove an upload's partial file, if it is still there."""
        with suppress(OSError, NotFound):
            with self.open_directory(partial.directory) as (dir_fd, _):
                os.unlink(partial.name, dir_fd=dir_fd)

    # ---- usage ----------------------------------------------------------------

    def usage_bytes(self) -> int:
        """Return the bytes of regular files under the root (hard links once)."""
        fd = os.open(self.root, _DIR_FLAGS)
        try:
            return _walk_size(fd, set(), 0)
        finally:
            os.close(fd)


def _append(
    dir_fd: int, partial: PartialFile, data: bytes, finish: bool
) -> os.stat_result:
    try:
        fd = os.open(
            partial.name,
            os.O_WRONLY | os.O_APPEND | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK,
            dir_fd=dir_fd,
        )
    except OSError as error:
        if error.errno in {errno.ELOOP, errno.ENOENT, errno.EISDIR, errno.ENXIO}:
            raise UploadLost(str(error)) from None
        raise
    try:
        st = os.fstat(fd)
        if (
            not stat.S_ISREG(st.st_mode)
            or st.st_nlink != 1
            or (st.st_dev, st.st_ino) != (partial.device, partial.inode)
            or st.st_size != partial.size
        ):
            raise UploadLost("the partial file was replaced")
        _write_all(fd, data)
        if finish:
            try:
                target = os.stat(
                    partial.target_name, dir_fd=dir_fd, follow_symlinks=False
                )
                mode = stat.S_IMODE(target.st_mode)
            except FileNotFoundError:
                mode = 0o666 & ~_UMASK
            os.fchmod(fd, mode)
            os.fsync(fd)
        st = os.fstat(fd)
    finally:
        os.close(fd)
    if not finish:
        return st
    os.rename(partial.name, partial.target_name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
    return os.stat(partial.target_name, dir_fd=dir_fd, follow_symlinks=False)


def _inside(source: Location, target: Location) -> bool:
    prefix = source.parts
    return target.parts[: len(prefix)] == prefix


def _walk_size(dir_fd: int, seen: set[tuple[int, int]], depth: int) -> int:
    total = 0
    subdirectories = []
    with os.scandir(dir_fd) as scan:
        for item in scan:
            try:
                st = item.stat(follow_symlinks=False)
            except OSError:
                continue
            if stat.S_ISREG(st.st_mode):
                if st.st_nlink > 1:
                    key = (st.st_dev, st.st_ino)
                    if key in seen:
                        continue
                    seen.add(key)
                total += st.st_size
            elif stat.S_ISDIR(st.st_mode):
                subdirectories.append(item.name)
    if depth >= MAX_DEPTH:
        return total
    for name in subdirectories:
        try:
            fd = os.open(name, _DIR_FLAGS, dir_fd=dir_fd)
        except OSError:
            continue
        try:
            total += _walk_size(fd, seen, depth + 1)
        finally:
            os.close(fd)
    return total


def _copy_regular(
    source_dir: int, name: str, target_dir: int, target_name: str
) -> None:
    source = os.open(name, _READ_FLAGS, dir_fd=source_dir)
    try:
        st = os.fstat(source)
        if not stat.S_ISREG(st.st_mode):
            return
        os.set_blocking(source, True)
        target = os.open(target_name, _CREATE_FLAGS, 0o600, dir_fd=target_dir)
        try:
            os.fchmod(target, stat.S_IMODE(st.st_mode))
            _copy_fd(source, target)
        finally:
            os.close(target)
    finally:
        os.close(source)


def _copy_directory(
    source_fd: int, target_dir: int, target_name: str, depth: int
) -> None:
    if depth > MAX_DEPTH:
        raise OSError(errno.ELOOP, "Directory tree too deep to copy")
    os.mkdir(target_name, 0o700, dir_fd=target_dir)
    target_fd = os.open(target_name, _DIR_FLAGS, dir_fd=target_dir)
    try:
        with os.scandir(source_fd) as scan:
            items = [(item.name, item.stat(follow_symlinks=False)) for item in scan]
        for name, st in items:
            mode = st.st_mode
            if stat.S_ISREG(mode):
                _copy_regular(source_fd, name, target_fd, name)
            elif stat.S_ISDIR(mode):
                child = os.open(name, _DIR_FLAGS, dir_fd=source_fd)
                try:
                    _copy_directory(child, target_fd, name, depth + 1)
                finally:
                    os.close(child)
            elif stat.S_ISLNK(mode):
                os.symlink(os.readlink(name, dir_fd=source_fd), name, dir_fd=target_fd)
        os.fchmod(target_fd, stat.S_IMODE(os.fstat(source_fd).st_mode))
    finally:
        os.close(target_fd)


def _remove(dir_fd: int, name: str) -> None:
    st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    if stat.S_ISDIR(st.st_mode):
        # rmtree with dir_fd walks by descriptors and never follows links.
        shutil.rmtree(name, dir_fd=dir_fd)
    else:
        os.unlink(name, dir_fd=dir_fd)


def _move(
    source_dir: int, name: str, target_dir: int, target_name: str, st: os.stat_result
) -> None:
    """Rename across directories; copy and remove if they are on other devices."""
    try:
        os.rename(name, target_name, src_dir_fd=source_dir, dst_dir_fd=target_dir)
        return
    except OSError as error:
        if error.errno != errno.EXDEV:
            raise
    mode = st.st_mode
    if stat.S_ISDIR(mode):
        fd = os.open(name, _DIR_FLAGS, dir_fd=source_dir)
        try:
            _copy_directory(fd, target_dir, target_name, 0)
        finally:
            os.close(fd)
    elif stat.S_ISLNK(mode):
        os.symlink(os.readlink(name, dir_fd=source_dir), target_name, dir_fd=target_dir)
    else:
        _copy_regular(source_dir, name, target_dir, target_name)
    _remove(source_dir, name)


def kernel_cwd(user: User, api_path: str | None) -> Path:
    """Return the directory a kernel for ``api_path`` starts in.

    As jupyter_server's ``cwd_for_path``: the path itself if it is a directory,
    else its nearest existing parent, never above ``user``'s root. Links are
    followed only inside the root; a path leading outside is ``NotFound``.
    """
    storage = Storage(user)
    parts = split_api_path(api_path or "")
    while parts:
        try:
            with storage.locate(parts) as location:
                if location.stat is not None and stat.S_ISDIR(location.stat.st_mode):
                    return storage.root.joinpath(*location.parts)
        except (FileNotFoundError, NotADirectoryError):
            pass
        parts = parts[:-1]
    return storage.root


def _quota_key(owner: User) -> str:
    return f"contents:quota:{int(owner.pk)}"


def quota_bytes(owner: User) -> int | None:
    """Return ``owner``'s storage quota in bytes, ``None`` when unlimited.

    Cached briefly; changing a ``StorageQuota`` forgets the cached value.
    """
    cached = cache.get(_quota_key(owner))
    if cached is not None:
        return cached if cached >= 0 else None
    from contents.models import StorageQuota

    row = StorageQuota.objects.filter(owner=owner).first()
    quota = row.quota_bytes if row is not None else settings.STORAGE_QUOTA_BYTES or None
    cache.set(_quota_key(owner), -1 if quota is None else quota, USAGE_CACHE_SECONDS)
    return quota


def forget_quota(owner_id: int) -> None:
    """Drop the cached quota of the user ``owner_id`` (it was changed)."""
    cache.delete(f"contents:quota:{int(owner_id)}")


def _usage_key(owner: User) -> str:
    return f"contents:usage:{int(owner.pk)}"


def usage(owner: User) -> tuple[int, int | None]:
    """Return the bytes ``owner`` stores and their quota (``None``: unlimited).

    The usage is measured by walking the user's root at most once a minute
    (``USAGE_CACHE_SECONDS``); saves through the API adjust it in between.
    """
    used = cache.get(_usage_key(owner))
    if used is None:
        used = Storage(owner).usage_bytes()
        cache.set(_usage_key(owner), used, USAGE_CACHE_SECONDS)
    return used, quota_bytes(owner)


def adjust_usage(owner: User, delta: int) -> None:
    """Account for ``delta`` bytes written (or freed) through the API."""
    if not delta:
        return
    try:
        cache.incr(_usage_key(owner), delta)
    except ValueError:
        pass  # not measured recently: the next measurement sees it


def forget_usage(owner: User) -> None:
    """Drop ``owner``'s measured usage (it changed by an unknown amount)."""
    cache.delete(_usage_key(owner))
