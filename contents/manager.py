"""The Contents API's semantics, as jupyter_server 2.x's contents manager.

Views, admin actions and other apps call these functions. Each takes
``*, owner``: every path is below that user's root (``storage.py`` resolves
it), so another user's files cannot even be named. Errors carry
jupyter_server's texts and statuses, with two differences on purpose:
filesystem paths in messages are shown as ``/<API path>`` (the server's data
directory is nobody's business), and where jupyter_server answers a bare
500 "Unhandled error" for a client's mistake (checkpointing or trusting what
is not there, an unknown checkpoint, a non-string path) the answer is a 4xx
that says what is wrong.

Events (``/api/events/subscribe``) are emitted where jupyter_server emits
them, with its contents schema: ``get``, ``save`` (also for each upload
chunk), ``rename``, ``copy`` and ``delete``; ``create`` when staff restore a
deleted item.

Database bookkeeping no answer depends on (index rows, automatic
checkpoints, trust signatures, and the hashes only they need) is deferred
until the response is sent (``contents.backlog``); functions that read or
change a user's rows settle that user's deferred work first.
"""

import base64
import binascii
import datetime
import errno
import fnmatch
import hashlib
import logging
import mimetypes
import os
import re
import stat
from collections.abc import Callable, Sequence
from typing import Any, BinaryIO, Literal, TypedDict

from django.conf import settings
from django.contrib.auth.models import User
from django.db import IntegrityError, transaction
from django.utils import timezone
from nbformat.v4 import new_notebook

from contents import backlog, history, index, notebooks
from contents.models import DeletedItem, Upload, path_digest
from contents.storage import (
    PartialFile,
    Storage,
    UploadLost,
    adjust_usage,
    forget_usage,
    quota_bytes,
    split_api_path,
    usage,
)
from jserver import events
from jserver.errors import (
    BadRequest,
    Conflict,
    Forbidden,
    JupyterError,
    NotFound,
    PayloadTooLarge,
)
from jserver.sql import PreparedSelect, PreparedUpdate

log = logging.getLogger(__name__)

SCHEMA_ID = "https://events.jupyter.org/jupyter_server/contents_service/v1"
# ContentsManager.hide_globs: never listed (still reachable by path).
HIDE_GLOBS = ("__pycache__", "*.pyc", "*.pyo", ".DS_Store", "*~")
_hidden_by_glob = re.compile("|".join(fnmatch.translate(g) for g in HIDE_GLOBS)).match
UNTITLED_NOTEBOOK = "Untitled"
UNTITLED_FILE = "untitled"
UNTITLED_DIRECTORY = "Untitled Folder"
# An existing "-Copy<n>." is dropped before numbering a copy (manager.copy_pat).
COPY_PATTERN = re.compile(r"\-Copy\d*\.")
# FileContentsManager.max_copy_folder_size_mb.
MAX_COPY_FOLDER_BYTES = 500 * 1024 * 1024
# A chunked upload not continued for this long is abandoned and removed.
UPLOAD_EXPIRY_SECONDS = 24 * 3600
HASH_ALGORITHM = "sha256"
ContentsType = Literal["directory", "file", "notebook"]


class ContentsModel(TypedDict, total=False):
    """A model as ``/api/contents`` sends it (``message`` only when invalid)."""

    name: str
    path: str
    last_modified: str
    created: str
    content: Any
    format: str | None
    mimetype: str | None
    size: int | None
    writable: bool
    hash: str | None
    hash_algorithm: str | None
    type: ContentsType
    message: str


class CheckpointModel(TypedDict):
    id: str
    last_modified: str


class Missing(NotFound):
    """Nothing visible at a path: ``GET /api/contents`` answers its text body."""

    def __init__(self, path: str) -> None:
        super().__init__(f"No such file or directory: {path}")


# ---- models ----------

_EUID = os.geteuid()
_GROUPS = frozenset(os.getgroups()) | {os.getegid()}


def _writable(st: os.stat_result) -> bool:
    """Return whether the server may write the file, from its mode bits alone."""
    if _EUID == 0:
        return True
    if st.st_uid == _EUID:
        return bool(st.st_mode & stat.S_IWUSR)
    if st.st_gid in _GROUPS:
        return bool(st.st_mode & stat.S_IWGRP)
    return bool(st.st_mode & stat.S_IWOTH)


def timestamp(seconds: float) -> str:
    """Return a file time as jupyter_server writes it (``...123456Z``)."""
    moment = datetime.datetime.fromtimestamp(seconds, datetime.UTC)
    return moment.isoformat().replace("+00:00", "Z")


def _kind(path: str, st: os.stat_result, requested: str | None = None) -> ContentsType:
    if stat.S_ISDIR(st.st_mode):
        return "directory"
    if requested == "notebook" or (requested is None and path.endswith(".ipynb")):
        return "notebook"
    return "file"


def _model(path: str, kind: ContentsType, st: os.stat_result) -> ContentsModel:
    return {
        "name": path.rsplit("/", 1)[-1],
        "path": path,
        "last_modified": timestamp(st.st_mtime),
        "created": timestamp(st.st_ctime),
        "content": None,
        "format": None,
        "mimetype": mimetypes.guess_type(path)[0] if kind == "file" else None,
        "size": None if kind == "directory" else st.st_size,
        "writable": _writable(st),
        "hash": None,
        "hash_algorithm": None,
        "type": kind,
    }


def _is_hidden(parts: Sequence[str]) -> bool:
    return any(part.startswith(".") for part in parts)


def _listable(name: str) -> bool:
    if name.startswith(".") or _hidden_by_glob(name):
        return False
    try:
        name.encode("utf-8")  # undecodable names cannot be named in a URL
    except UnicodeEncodeError:
        return False
    return True


def _join(parts: Sequence[str]) -> str:
    return "/".join(parts)


def _shown(path: str) -> str:
    """Return a path as jupyter_server's handlers quote it (``'/a/b'``, ``''``)."""
    return repr("/" + path if path else "")


def _emit(owner: User, data: dict[str, str]) -> None:
    events.emit_soon(owner, SCHEMA_ID, data)


def _os_error(error: OSError, path: str) -> str:
    return f"[Errno {error.errno}] {error.strerror}: {'/' + path!r}"


def _human(size: float) -> str:
    for unit in ("bytes", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "bytes" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} GiB"


# ---- reading ----------


def get(
    path: str,
    *,
    owner: User,
    type: str | None = None,
    format: str | None = None,
    content: bool = True,
    require_hash: bool = False,
) -> ContentsModel:
    """Return the model of a file, notebook or directory (with its listing).

    ``type`` asks for a kind (400 "bad type" if it is another), ``format``
    ``text`` or ``base64`` for files (400 "bad format" if not UTF-8).
    Raises ``Missing`` when nothing visible is at ``path``.
    """
    parts = split_api_path(path)
    path = _join(parts)
    if _is_hidden(parts):
        raise Missing(path)
    storage = Storage(owner)
    try:
        model = _get(storage, parts, path, type, format, content, require_hash)
    except (FileNotFoundError, NotADirectoryError):
        raise Missing(path) from None
    except PermissionError:
        raise Forbidden(f"Permission denied: {path}") from None
    except OSError as error:
        if error.errno == errno.ENAMETOOLONG:
            raise Missing(path) from None
        raise
    _emit(owner, {"action": "get", "path": path})
    return model


def _get(
    storage: Storage,
    parts: list[str],
    path: str,
    type: str | None,
    format: str | None,
    content: bool,
    require_hash: bool,
) -> ContentsModel:
    st = storage.lookup(parts)
    if stat.S_ISDIR(st.st_mode):
        if type not in (None, "directory"):
            raise BadRequest(f"{path} is a directory, not a {type}", reason="bad type")
        if not content:
            return _model(path, "directory", st)
        return _directory_model(storage, parts, path)
    if type == "directory":
        raise BadRequest(f"{path} is not a directory", reason="bad type")
    kind = _kind(path, st, type)
    if not content and not require_hash:
        return _model(path, kind, st)
    try:
        data, st = storage.read(parts)
    except IsADirectoryError:
        raise Missing(path) from None
    owner = storage.owner
    digest = None
    if require_hash or (content and kind == "notebook"):
        digest = hashlib.sha256(data).hexdigest()
    model = _model(path, kind, st)
    if content and kind == "notebook":
        nb, message = notebooks.parse(data, path)
        backlog.settle(owner.pk)  # a signature of a save just answered
        notebooks.mark_trusted(nb, notebooks.is_trusted(owner, digest))
        model.update(content=nb, format="json")
        if message:
            model["message"] = message
    elif content:
        model.update(_file_content(data, format, path))
        if model["mimetype"] is None:
            model["mimetype"] = (
                "text/plain"
                if model["format"] == "text"
                else "application/octet-stream"
            )
    if require_hash:
        model.update(hash=digest, hash_algorithm=HASH_ALGORITHM)
    if not index.is_known(owner.pk, path, kind, st):
        _defer_seen(storage, path, kind, st, data, digest)
    return model


def _defer_seen(
    storage: Storage,
    path: str,
    kind: Literal["notebook", "file"],
    st: os.stat_result,
    data: bytes,
    digest: str | None,
) -> None:
    owner = storage.owner

    def work() -> None:
        if _still_there(storage, path, st):
            found = digest or hashlib.sha256(data).hexdigest()
            index.seen(owner, path, type=kind, stat=st, digest=found)

    backlog.defer(owner.pk, work)


def _still_there(storage: Storage, path: str, st: os.stat_result) -> bool:
    """Return whether the file at ``path`` is still the one ``st`` describes.

    Deferred bookkeeping records a file only then: one renamed, deleted or
    written again meanwhile (by another process) is recorded by whoever did
    that, or healed by ``index.recent_files``.
    """
    try:
        now = storage.lookup(split_api_path(path))
    except (OSError, NotFound):
        return False
    return (now.st_dev, now.st_ino, now.st_mtime_ns, now.st_size) == (
        st.st_dev,
        st.st_ino,
        st.st_mtime_ns,
        st.st_size,
    )


def _file_content(data: bytes, format: str | None, path: str) -> dict[str, str]:
    if format in (None, "text"):
        try:
            return {"content": data.decode("utf-8"), "format": "text"}
        except UnicodeDecodeError:
            if format == "text":
                raise BadRequest(
                    f"/{path} is not UTF-8 encoded", reason="bad format"
                ) from None
    return {"content": base64.encodebytes(data).decode("ascii"), "format": "base64"}


def _directory_model(storage: Storage, parts: list[str], path: str) -> ContentsModel:
    dir_stat, entries = storage.listdir(parts, keep=_listable)
    model = _model(path, "directory", dir_stat)
    prefix = path + "/" if path else ""
    guess = mimetypes.guess_type
    children = []
    append = children.append
    for entry in entries:
        st = entry.stat
        name = entry.name
        if stat.S_ISDIR(st.st_mode):
            kind, mimetype, size = "directory", None, None
        elif name.endswith(".ipynb"):
            kind, mimetype, size = "notebook", None, st.st_size
        else:
            kind, mimetype, size = "file", guess(name)[0], st.st_size
        append(
            {
                "name": name,
                "path": prefix + name,
                "last_modified": timestamp(st.st_mtime),
                "created": timestamp(st.st_ctime),
                "content": None,
                "format": None,
                "mimetype": mimetype,
                "size": size,
                "writable": _writable(st),
                "hash": None,
                "hash_algorithm": None,
                "type": kind,
            }
        )
    model.update(content=children, format="json")
    return model


def open_file(path: str, *, owner: User) -> tuple[BinaryIO, os.stat_result, str]:
    """Open a file for ``/files``; return it (the caller closes), its status and
    its API path. Hidden and missing files are ``Missing``; a directory is
    ``IsADirectoryError``.
    """
    parts = split_api_path(path)
    path = _join(parts)
    if not parts or _is_hidden(parts):
        raise Missing(path)
    try:
        handle, st = Storage(owner).open_file(parts)
    except (FileNotFoundError, NotADirectoryError):
        raise Missing(path) from None
    return handle, st, path


# ---- saving ----------


class _Guard:
    """The ``before`` hook of a write: notes the old size, enforces the quota."""

    def __init__(self, owner: User, path: str, new_size: int) -> None:
        self.owner, self.path, self.new_size = owner, path, new_size
        self.old_size = 0

    def __call__(self, st: os.stat_result | None) -> None:
        if st is not None and stat.S_ISREG(st.st_mode):
            self.old_size = st.st_size
        self.check(self.new_size - self.old_size)

    def check(self, growth: int) -> None:
        """Refuse ``growth`` more bytes if they would exceed the quota."""
        if growth <= 0:
            return
        quota = quota_bytes(self.owner)
        if quota is None:
            return
        used, _ = usage(self.owner)
        if used + growth > quota:
            raise PayloadTooLarge(
                f"Storage quota exceeded: saving {self.path} needs "
                f"{_human(growth)} more, and {_human(used)} of your "
                f"{_human(quota)} quota are in use. Delete files to free "
                "space; nothing was changed."
            )

    def done(self) -> None:
        adjust_usage(self.owner, self.new_size - self.old_size)


def _write(
    storage: Storage, parts: list[str], path: str, data: bytes
) -> os.stat_result:
    """Write ``data`` atomically, mapping failures to jupyter_server's errors."""
    guard = _Guard(storage.owner, path, len(data))
    try:
        st = storage.write(parts, data, before=guard)
    except JupyterError:
        raise
    except PermissionError:
        raise Forbidden(f"Permission denied: {path}") from None
    except OSError as error:
        log.error("Error while saving file: %s %s", path, error)
        raise JupyterError(
            f"Unexpected error while saving file: {path} {_os_error(error, path)}"
        ) from None
    guard.done()
    return st


def _after_write(
    storage: Storage,
    path: str,
    data: bytes,
    st: os.stat_result,
    *,
    kind: Literal["notebook", "file"],
    checkpoint: bool,
    sign: bool = False,
) -> None:
    """Index a file just written, take its automatic checkpoint and, with
    ``sign``, record that its owner trusts it: after the response
    (``backlog``). The file is saved: a database failure here is logged, not
    raised.
    """
    owner = storage.owner

    def work() -> None:
        digest = hashlib.sha256(data).hexdigest()
        try:
            if sign:
                notebooks.sign(owner, digest)
            if _still_there(storage, path, st):
                index.record(owner, path, type=kind, stat=st, digest=digest)
                if checkpoint:
                    history.take_on_save(owner, path, data, st, digest)
        except Exception:
            log.exception("could not record the save of %s in the database", path)

    backlog.defer(owner.pk, work)


def _decode(model: dict[str, Any], path: str) -> bytes:
    format = model.get("format")
    if format not in {"text", "base64"}:
        raise BadRequest("Must specify format of file contents as 'text' or 'base64'")
    content = model["content"]
    if format == "base64" and isinstance(content, str):
        try:  # straight from the string, without an ASCII copy of it first
            return binascii.a2b_base64(content)
        except ValueError:
            pass  # the error below names the problem as jupyter_server does
    try:
        if format == "text":
            return content.encode("utf8")
        return base64.decodebytes(content.encode("ascii"))
    except (AttributeError, UnicodeError, binascii.Error, TypeError) as error:
        raise BadRequest(f"Encoding error saving /{path}: {error}") from None


def save(model: dict[str, Any], path: str, *, owner: User) -> ContentsModel:
    """Save a file, notebook or directory model at ``path``; return its model.

    The write is atomic and checked against the owner's quota; with a
    ``chunk`` field it is one part of a chunked upload.
    """
    return _save(model, path, Storage(owner))


def _save(model: dict[str, Any], path: str, storage: Storage) -> ContentsModel:
    owner = storage.owner
    parts = split_api_path(path)
    path = _join(parts)
    if model.get("chunk") is not None:
        return _save_chunk(model, parts, path, owner)
    if "type" not in model:
        raise BadRequest("No file type provided")
    kind = model["type"]
    if "content" not in model and kind != "directory":
        raise BadRequest("No file content provided")
    if _is_hidden(parts):
        raise BadRequest(f"Cannot create file or directory {_shown(path)}")
    if kind == "directory":
        return _save_directory(storage, parts, path)
    if kind == "notebook":
        try:
            data, trusted, message = notebooks.serialise(model["content"])
        except Exception as error:
            log.info("Error while saving notebook: %s %r", path, error)
            raise JupyterError(
                f"Unexpected error while saving file: {path} {error}"
            ) from None
        st = _write(storage, parts, path, data)
        _after_write(
            storage, path, data, st, kind="notebook", checkpoint=True, sign=trusted
        )
    elif kind == "file":
        data = _decode(model, path)
        message = None
        st = _write(storage, parts, path, data)
        _after_write(
            storage,
            path,
            data,
            st,
            kind="notebook" if path.endswith(".ipynb") else "file",
            checkpoint=model.get("format") == "text",
        )
    else:
        raise BadRequest(f"Unhandled contents type: {kind}")
    result = _model(path, _kind(path, st), st)
    if message:
        result["message"] = message
    _emit(owner, {"action": "save", "path": path})
    return result


def _save_directory(storage: Storage, parts: list[str], path: str) -> ContentsModel:
    try:
        st, _ = storage.mkdir(parts)
    except FileExistsError:
        raise BadRequest(f"Not a directory: /{path}") from None
    except PermissionError:
        raise Forbidden(f"Permission denied: {path}") from None
    except OSError as error:
        raise JupyterError(
            f"Unexpected error while saving file: {path} {_os_error(error, path)}"
        ) from None
    _emit(storage.owner, {"action": "save", "path": path})
    return _model(path, "directory", st)


def put(path: str, body: Any, *, owner: User) -> tuple[ContentsModel, bool]:
    """Handle ``PUT /api/contents/<path>``; return the model and whether it is new.

    An empty body creates an untitled file in the directory ``path``.
    """
    if not body:
        return new_untitled(path, owner=owner), True
    if not isinstance(body, dict):
        raise BadRequest("The body must be a JSON object")
    if body.get("copy_from"):
        raise BadRequest("Cannot copy with PUT, only POST")
    parts = split_api_path(path)
    other = body.get("path")
    if _is_hidden(parts) or (
        isinstance(other, str) and other and _is_hidden(other.split("/"))
    ):
        raise BadRequest(f"Cannot create file or directory {_shown(_join(parts))}")
    storage = Storage(owner)
    exists = _is_file(storage, parts)
    if body.get("type", "") not in {None, "", "directory", "file", "notebook"}:
        body["type"] = "file"
    return _save(body, path, storage), not exists


def _is_file(storage: Storage, parts: list[str]) -> bool:
    try:
        return stat.S_ISREG(storage.lookup(parts).st_mode)
    except (FileNotFoundError, NotADirectoryError, NotFound):
        return False


def _is_dir(storage: Storage, parts: list[str]) -> bool:
    try:
        return stat.S_ISDIR(storage.lookup(parts).st_mode)
    except (FileNotFoundError, NotADirectoryError):
        return False


def post(path: str, body: Any, *, owner: User) -> ContentsModel:
    """Handle ``POST /api/contents/<dir>``: a copy, or a new untitled entry."""
    parts = split_api_path(path)
    if _is_file(Storage(owner), parts):
        raise BadRequest("Cannot POST to files, use PUT instead.")
    if not body:
        return new_untitled(path, owner=owner)
    if not isinstance(body, dict):
        raise BadRequest("The body must be a JSON object")
    copy_from = body.get("copy_from")
    if copy_from:
        if not isinstance(copy_from, str):
            raise BadRequest("copy_from must be a path")
        if _is_hidden(parts) or _is_hidden(split_api_path(copy_from)):
            raise BadRequest(f"Cannot copy file or directory {_shown(_join(parts))}")
        return copy(copy_from, path, owner=owner)
    kind = body.get("type", "")
    if kind not in {None, "", "directory", "file", "notebook"}:
        kind = "file"
    ext = body.get("ext", "")
    if not isinstance(ext, str):
        raise BadRequest("ext must be a string")
    return new_untitled(path, type=kind or "", ext=ext, owner=owner)


def increment_filename(
    storage: Storage, filename: str, directory: Sequence[str], insert: str = ""
) -> str:
    """Return the first free name of ``filename``, ``<base><insert>1<ext>``...

    The extension starts at the last dot for ``.ipynb``, else at the first
    (``a.tar.gz`` gives ``a-Copy1.tar.gz``), as jupyter_server numbers names.
    """
    basename, dot, ext = filename.rpartition(".")
    if ext != "ipynb":
        basename, dot, ext = filename.partition(".")
    suffix = dot + ext
    number = 0
    while True:
        name = f"{basename}{insert}{number}{suffix}" if number else filename
        if not storage.exists([*directory, name]):
            return name
        number += 1


def new_untitled(
    path: str = "", *, owner: User, type: str = "", ext: str = ""
) -> ContentsModel:
    """Create ``Untitled.ipynb``, ``untitled<ext>`` or ``Untitled Folder`` (the
    first free of their numbered names) in the directory ``path``.
    """
    parts = split_api_path(path)
    path = _join(parts)
    storage = Storage(owner)
    if not _is_dir(storage, parts):
        raise NotFound(f"No such directory: {path}")
    model: dict[str, Any] = {}
    if type:
        model["type"] = type
    model.setdefault("type", "notebook" if ext == ".ipynb" else "file")
    insert = ""
    if model["type"] == "directory":
        untitled, insert = UNTITLED_DIRECTORY, " "
    elif model["type"] == "notebook":
        untitled, ext = UNTITLED_NOTEBOOK, ".ipynb"
    elif model["type"] == "file":
        untitled = UNTITLED_FILE
    else:
        raise BadRequest(f"Unexpected model type: {model['type']!r}")
    name = increment_filename(storage, untitled + ext, parts, insert=insert)
    return new(model, _join([*parts, name]), owner=owner)


def new(model: dict[str, Any] | None, path: str, *, owner: User) -> ContentsModel:
    """Create a file, notebook or directory at ``path`` (empty if no content)."""
    model = dict(model or {})
    model.setdefault("type", "notebook" if path.endswith(".ipynb") else "file")
    if "content" not in model and model["type"] != "directory":
        if model["type"] == "notebook":
            model["content"], model["format"] = new_notebook(), "json"
        else:
            model.update(content="", type="file", format="text")
    return save(model, path, owner=owner)


# ---- chunked uploads ----------


# Every chunk runs these two: prepared once (see jserver.sql).
_UPLOAD = PreparedSelect(Upload, where=["owner", "path_digest"])
_UPLOAD_PROGRESS = PreparedUpdate(
    Upload, fields=["received", "chunks", "updated"], where=["id"], durable=False
)


def _partial(row: Upload) -> PartialFile:
    return PartialFile(
        directory=tuple(part for part in row.directory.split("/") if part),
        target_name=row.path.rsplit("/", 1)[-1],
        name=row.partial_name,
        device=row.device,
        inode=row.inode,
        size=row.received,
    )


def _abandon(storage: Storage, row: Upload) -> None:
    storage.discard_partial(_partial(row))
    row.delete()


def purge_uploads(owner: User | None = None) -> int:
    """Remove chunked uploads not continued for ``UPLOAD_EXPIRY_SECONDS``."""
    cutoff = timezone.now() - datetime.timedelta(seconds=UPLOAD_EXPIRY_SECONDS)
    rows = Upload.objects.filter(updated__lt=cutoff).select_related("owner")
    if owner is not None:
        rows = rows.filter(owner=owner)
    count = 0
    for row in rows:
        _abandon(Storage(row.owner), row)
        count += 1
    return count


def _save_chunk(
    model: dict[str, Any], parts: list[str], path: str, owner: User
) -> ContentsModel:
    """One part of a chunked upload (LargeFileManager's ``chunk``).

    ``1`` starts a new partial file beside the target, ``2``... append to it,
    ``-1`` appends the last part and renames the partial file over the target.
    Until then the target is untouched; a failed or abandoned upload never
    leaves a truncated file under its name.
    """
    chunk = model["chunk"]
    if "type" not in model:
        raise BadRequest("No file type provided")
    if model["type"] != "file":
        raise BadRequest(
            f'File type "{model["type"]}" is not supported for large file transfer'
        )
    if "content" not in model:
        raise BadRequest("No file content provided")
    if _is_hidden(parts):
        raise BadRequest(f"Cannot create file or directory {_shown(path)}")
    if isinstance(chunk, bool) or not isinstance(chunk, int) or chunk < -1 or not chunk:
        raise BadRequest(f"Invalid chunk {chunk!r}: 1 starts, -1 ends an upload")
    data = _decode(model, path)
    storage = Storage(owner)
    guard = _Guard(owner, path, len(data))
    row = _UPLOAD.get(owner=owner.pk, path_digest=path_digest(path))
    if chunk == 1 or (chunk == -1 and row is None):
        if row is not None:
            _abandon(storage, row)
        purge_uploads(owner)
        row = _start_upload(storage, parts, path, data, guard)
        if chunk == 1:
            _emit(owner, {"action": "save", "path": path})
            return _upload_model(path, storage, row)
        return _append_chunk(storage, row, path, b"", -1)
    if row is None:
        raise BadRequest(
            f"No upload of {path} in progress: its first chunk is missing "
            "or the upload expired"
        )
    if chunk != -1 and chunk != row.chunks + 1:
        _abandon(storage, row)
        raise BadRequest(
            f"Chunk {chunk} of {path} is out of order (chunk {row.chunks + 1} "
            "was expected); upload the file again"
        )
    try:
        guard.check(len(data))
    except JupyterError:
        _abandon(storage, row)
        raise
    return _append_chunk(storage, row, path, data, chunk)


def _start_upload(
    storage: Storage, parts: list[str], path: str, data: bytes, guard: _Guard
) -> Upload:
    owner = storage.owner
    try:
        partial = storage.start_partial(
            parts, data, before=lambda st: guard.check(len(data))
        )
    except JupyterError:
        raise
    except PermissionError:
        raise Forbidden(f"Permission denied: {path}") from None
    except OSError as error:
        raise JupyterError(
            f"Unexpected error while saving file: {path} {_os_error(error, path)}"
        ) from None
    adjust_usage(owner, len(data))
    try:
        with transaction.atomic():
            return Upload.objects.create(
                owner=owner,
                path=path,
                path_digest=path_digest(path),
                directory="/".join(partial.directory),
                partial_name=partial.name,
                device=partial.device,
                inode=partial.inode,
                received=partial.size,
            )
    except IntegrityError:
        storage.discard_partial(partial)
        raise Conflict(f"Another upload of {path} is in progress") from None


def _append_chunk(
    storage: Storage, row: Upload, path: str, data: bytes, chunk: int
) -> ContentsModel:
    owner = storage.owner
    finish = chunk == -1
    try:
        st = storage.append_partial(_partial(row), data, finish=finish)
    except UploadLost:
        row.delete()
        raise BadRequest(
            f"Upload of {path} failed: its partial file was removed or replaced; "
            "upload the file again"
        ) from None
    except OSError as error:
        _abandon(storage, row)
        raise JupyterError(
            f"Unexpected error while saving file: {path} {_os_error(error, path)}"
        ) from None
    adjust_usage(owner, len(data))
    if not finish:
        row.received, row.chunks, row.updated = st.st_size, chunk, timezone.now()
        _UPLOAD_PROGRESS.run(
            {"received": row.received, "chunks": row.chunks, "updated": row.updated},
            id=row.pk,
        )
        partial = _partial(row)
        # Between chunks, on the worker: the last chunk's fsync then has
        # little left to write (outside daphne, that fsync does it all).
        backlog.in_spare_time(lambda: storage.sync_partial(partial))
        _emit(owner, {"action": "save", "path": path})
        return _upload_model(path, storage, row, st)
    row.delete()
    forget_usage(owner)
    _index_file(storage, path)
    _emit(owner, {"action": "save", "path": path})
    return _model(path, _kind(path, st), st)


def _upload_model(
    path: str, storage: Storage, row: Upload, st: os.stat_result | None = None
) -> ContentsModel:
    """The model answered for a chunk before the last: the upload so far."""
    if st is None:
        with storage.open_directory(_partial(row).directory) as (dir_fd, _):
            st = os.stat(row.partial_name, dir_fd=dir_fd, follow_symlinks=False)
    return _model(path, "file", st)


def _index_file(storage: Storage, path: str) -> None:
    """Index a file written in pieces, hashing it from the disk, after the
    response (``backlog``)."""

    def work() -> None:
        try:
            handle, st = storage.open_file(split_api_path(path))
        except (FileNotFoundError, NotADirectoryError, NotFound):
            return  # gone meanwhile: nothing to index
        try:
            with handle:
                hasher = hashlib.sha256()
                while block := handle.read(1024 * 1024):
                    hasher.update(block)
            kind = "notebook" if path.endswith(".ipynb") else "file"
            digest = hasher.hexdigest()
            index.record(storage.owner, path, type=kind, stat=st, digest=digest)
        except Exception:
            log.exception("could not index %s", path)

    backlog.defer(storage.owner.pk, work)


# ---- copies, renames, deletes ----------


def copy(from_path: str, to_path: str, *, owner: User) -> ContentsModel:
    """Copy a file or directory into the directory ``to_path`` (numbered
    ``-Copy1``... if the name is taken), or to the new name ``to_path``.
    """
    source = split_api_path(from_path)
    target = split_api_path(to_path)
    from_path, to_path = _join(source), _join(target)
    if _is_hidden(source) or _is_hidden(target):
        raise BadRequest(f"Cannot copy file or directory {_shown(to_path)}")
    storage = Storage(owner)
    try:
        source_stat = storage.lookup(source)
    except (FileNotFoundError, NotADirectoryError):
        raise NotFound(f"No such file or directory: {from_path}") from None
    from_name = source[-1] if source else ""
    if stat.S_ISDIR(source_stat.st_mode):
        return _copy_directory(storage, source, target, from_name)
    if _is_dir(storage, target):
        name = COPY_PATTERN.sub(".", from_name)
        target = [*target, increment_filename(storage, name, target, insert="-Copy")]
    elif len(target) > 1 and not _is_dir(storage, target[:-1]):
        raise NotFound(
            f"No such parent directory: {_join(target[:-1])} to copy file in"
        )
    elif not target:
        raise NotFound(f"No such directory: {to_path}")
    to_path = _join(target)
    if _is_hidden(target):
        raise BadRequest(f"Cannot create file or directory {_shown(to_path)}")
    guard = _Guard(owner, to_path, source_stat.st_size)
    hasher = hashlib.sha256()
    try:
        handle, _ = storage.open_file(source)
        with handle:
            st = storage.write(
                target, _hashing_copy(handle.fileno(), hasher), before=guard
            )
    except JupyterError:
        raise
    except (FileNotFoundError, NotADirectoryError):
        raise NotFound(f"No such file or directory: {from_path}") from None
    except PermissionError:
        raise Forbidden(f"Permission denied: {to_path}") from None
    except OSError as error:
        raise JupyterError(
            f"Unexpected error while saving file: {to_path} {_os_error(error, to_path)}"
        ) from None
    guard.done()
    kind = _kind(to_path, st)
    _after_copy(storage, target, to_path, kind, st, hasher.hexdigest())
    _emit(owner, {"action": "save", "path": to_path})
    _emit(owner, {"action": "copy", "path": to_path, "source_path": from_path})
    return _model(to_path, kind, st)


def _after_copy(
    storage: Storage,
    target: list[str],
    path: str,
    kind: ContentsType,
    st: os.stat_result,
    digest: str,
) -> None:
    """Index a copy and take a copied notebook's checkpoint, after the response."""
    owner = storage.owner

    def work() -> None:
        try:
            if not _still_there(storage, path, st):
                return
            index.record(owner, path, type=kind, stat=st, digest=digest)
            if kind == "notebook" and st.st_size <= settings.CHECKPOINT_MAX_BYTES:
                data, now = storage.read(target)
                history.take_on_save(owner, path, data, now, digest)
        except Exception:
            log.exception("could not record the copy %s in the database", path)

    backlog.defer(owner.pk, work)


def _hashing_copy(source: int, hasher: Any) -> Callable[[int], None]:
    def fill(target: int) -> None:
        while block := os.read(source, 1024 * 1024):
            hasher.update(block)
            view = memoryview(block)
            while view:
                view = view[os.write(target, view) :]

    return fill


def _copy_directory(
    storage: Storage, source: list[str], target: list[str], from_name: str
) -> ContentsModel:
    owner = storage.owner
    from_path = _join(source)
    if not source:
        raise BadRequest("Can't copy the root directory")
    if not _is_dir(storage, target):
        raise NotFound(f"No such directory: {_join(target)}")
    size = storage.tree_size(source)
    if size > MAX_COPY_FOLDER_BYTES:
        raise BadRequest(
            f"Can't copy folders larger than {MAX_COPY_FOLDER_BYTES // 2**20}MB, "
            f'"{from_path}" is {_human(size)}'
        )
    name = COPY_PATTERN.sub(".", from_name)
    target = [*target, increment_filename(storage, name, target, insert="-Copy")]
    to_path = _join(target)
    if _is_hidden(target):
        raise BadRequest(f"Cannot create file or directory {_shown(to_path)}")
    guard = _Guard(owner, to_path, size)
    guard(None)
    try:
        st = storage.copy_tree(source, target)
    except PermissionError:
        raise Forbidden(f"Permission denied: {to_path}") from None
    except OSError as error:
        log.error("Error copying %s to %s: %s", from_path, to_path, error)
        raise BadRequest(f"Can't copy '{from_path}' into Folder '{to_path}'") from None
    guard.done()
    _emit(owner, {"action": "copy", "path": to_path, "source_path": from_path})
    return _model(to_path, "directory", st)


def update(model: dict[str, Any], path: str, *, owner: User) -> ContentsModel:
    """Handle ``PATCH``: rename or move ``path`` to ``model["path"]``."""
    new_path = model.get("path", path)
    if not isinstance(new_path, str):
        raise BadRequest("'path' must be a string")
    parts, new_parts = split_api_path(path), split_api_path(new_path)
    if model.get("path") and (_is_hidden(parts) or _is_hidden(new_parts)):
        raise BadRequest(f"Cannot rename file or directory {_shown(_join(parts))}")
    if parts != new_parts:
        rename(_join(parts), _join(new_parts), owner=owner)
    storage = Storage(owner)
    target = _join(new_parts)
    try:
        if _is_hidden(new_parts):
            raise FileNotFoundError(errno.ENOENT, "hidden")
        st = storage.lookup(new_parts)
    except (FileNotFoundError, NotADirectoryError):
        raise NotFound(f"No such file or directory: {target}") from None
    return _model(target, _kind(target, st), st)


def rename(old_path: str, new_path: str, *, owner: User) -> None:
    """Rename or move a file or directory, with its checkpoints and index rows."""
    old, new = split_api_path(old_path), split_api_path(new_path)
    old_path, new_path = _join(old), _join(new)
    if old == new:
        return
    if _is_hidden(old) or _is_hidden(new):
        raise BadRequest(f"Cannot rename file or directory {_shown(old_path)}")
    backlog.settle(owner.pk)  # rows of saves just answered move along
    storage = Storage(owner)
    try:
        storage.rename(old, new)
    except FileExistsError:
        raise Conflict(f"File already exists: {new_path}") from None
    except (FileNotFoundError, NotADirectoryError):
        raise NotFound(f"File or directory does not exist: {old_path}") from None
    except PermissionError:
        raise Forbidden(f"Permission denied: {old_path}") from None
    except OSError as error:
        detail = (
            f"Cannot move a directory {'/' + old_path!r} into itself "
            f"{'/' + new_path!r}."
            if error.errno in {errno.EINVAL, errno.EBUSY}
            else _os_error(error, old_path)
        )
        raise JupyterError(
            f"Unknown error renaming file: {old_path} {detail}"
        ) from None
    try:
        index.move(owner, old_path, new_path)
        history.move(owner, old_path, new_path)
    except Exception:
        log.exception("could not record the move of %s in the database", old_path)
    _emit(owner, {"action": "rename", "path": new_path, "source_path": old_path})


def delete(path: str, *, owner: User) -> DeletedItem:
    """Delete a file or directory (empty or not): move it to the owner's trash,
    restorable by staff for ``DELETED_RETENTION_DAYS`` with its checkpoints.
    """
    parts = split_api_path(path)
    path = _join(parts)
    if _is_hidden(parts):
        raise BadRequest(f"Cannot delete file or directory {_shown(path)}")
    if not parts:
        raise BadRequest("Can't delete root")
    backlog.settle(owner.pk)  # rows of saves just answered go with the file
    storage = Storage(owner)
    try:
        trash_name, st, size = storage.trash(parts)
    except (FileNotFoundError, NotADirectoryError):
        raise NotFound(f"File or directory does not exist: /{path}") from None
    except PermissionError:
        raise Forbidden(f"Permission denied: {path}") from None
    kind = "directory" if stat.S_ISDIR(st.st_mode) else _kind(path, st)
    item = history.record_deletion(
        owner, path, type=kind, size=size, trash_name=trash_name
    )
    Upload.objects.filter(owner=owner, path_digest=path_digest(path)).delete()
    adjust_usage(owner, -size)
    _emit(owner, {"action": "delete", "path": path})
    try:
        purge_deleted(owner)
    except Exception:
        log.exception("could not purge expired deleted files")
    return item


def restore_deleted(item: DeletedItem) -> str:
    """Put a deleted file or directory back; return the path it got.

    Its old path if free, else a ``-Restored<n>`` name beside it; missing
    parent directories are created. Its checkpoints and index rows return.
    """
    if item.restored_at is not None:
        raise Conflict(f"{item.path} was already restored to {item.restored_path}")
    owner = item.owner
    backlog.settle(owner.pk)
    storage = Storage(owner)
    parts = split_api_path(item.path)
    directory, name = parts[:-1], parts[-1]
    for depth in range(1, len(directory) + 1):
        storage.mkdir(directory[:depth])
    if storage.exists(parts):
        name = increment_filename(storage, name, directory, insert="-Restored")
    target = [*directory, name]
    storage.untrash(item.trash_name, target)
    path = _join(target)
    history.mark_restored(item, path)
    forget_usage(owner)
    _emit(owner, {"action": "create", "path": path})
    return path


def purge_deleted(owner: User | None = None) -> int:
    """Delete for good the items deleted before the retention period."""
    items = DeletedItem.objects.filter(deleted_at__lt=history.retention_cutoff())
    if owner is not None:
        items = items.filter(owner=owner)
    count = 0
    for item in items.select_related("owner"):
        if item.restored_at is None:
            try:
                Storage(item.owner).purge_trash(item.trash_name)
            except FileNotFoundError:
                pass
        item.delete()
        count += 1
    return count


# ---- checkpoints and trust ----------


def _checkpoint_model(checkpoint: Any) -> CheckpointModel:
    moment = checkpoint.last_modified.astimezone(datetime.UTC)
    return {
        "id": checkpoint.checkpoint_id,
        "last_modified": moment.isoformat().replace("+00:00", "Z"),
    }


def list_checkpoints(path: str, *, owner: User) -> list[CheckpointModel]:
    """Return the checkpoints of a file, oldest first (``[]`` if none)."""
    parts = split_api_path(path)
    if _is_hidden(parts):
        return []
    backlog.settle(owner.pk)
    return [_checkpoint_model(c) for c in history.checkpoints(owner, _join(parts))]


def _read_for_checkpoint(
    storage: Storage, parts: list[str], path: str
) -> tuple[bytes, os.stat_result]:
    if _is_hidden(parts) or not parts:
        raise NotFound(f"No such file or directory: {path}")
    try:
        st = storage.lookup(parts)
        if stat.S_ISDIR(st.st_mode):
            raise BadRequest(f"{path} is a directory: only files have checkpoints")
        if st.st_size > settings.CHECKPOINT_MAX_BYTES:
            raise PayloadTooLarge(
                f"{path} is too large to checkpoint ({_human(st.st_size)}; "
                f"the limit is {_human(settings.CHECKPOINT_MAX_BYTES)})"
            )
        return storage.read(parts)
    except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
        raise NotFound(f"No such file or directory: {path}") from None


def create_checkpoint(path: str, *, owner: User) -> CheckpointModel:
    """Take a checkpoint of a file's current content."""
    parts = split_api_path(path)
    path = _join(parts)
    backlog.settle(owner.pk)
    data, st = _read_for_checkpoint(Storage(owner), parts, path)
    return _checkpoint_model(history.take(owner, path, data, st, reason="manual"))


def restore_checkpoint(checkpoint_id: str, path: str, *, owner: User) -> None:
    """Write a checkpoint's content back, after checkpointing the current one
    (so that the restore can be undone).
    """
    parts = split_api_path(path)
    path = _join(parts)
    backlog.settle(owner.pk)
    checkpoint = None if _is_hidden(parts) else history.find(owner, path, checkpoint_id)
    if checkpoint is None:
        raise NotFound(f"Checkpoint does not exist: {path}@{checkpoint_id}")
    data = history.content(checkpoint)
    storage = Storage(owner)
    try:
        current, current_stat = _read_for_checkpoint(storage, parts, path)
    except (NotFound, PayloadTooLarge):
        current = None
    if current is not None:
        history.take(owner, path, current, current_stat, reason="restore")
    st = _write(storage, parts, path, data)
    kind = _kind(path, st)
    _after_write(storage, path, data, st, kind=kind, checkpoint=False)
    _emit(owner, {"action": "save", "path": path})


def delete_checkpoint(checkpoint_id: str, path: str, *, owner: User) -> None:
    """Delete one checkpoint of a file."""
    parts = split_api_path(path)
    path = _join(parts)
    backlog.settle(owner.pk)
    if _is_hidden(parts) or not history.delete(owner, path, checkpoint_id):
        raise NotFound(f"Checkpoint does not exist: {path}@{checkpoint_id}")


def trust_notebook(path: str, *, owner: User) -> None:
    """Trust a notebook as it is now (``POST .../trust``)."""
    parts = split_api_path(path)
    path = _join(parts)
    if _is_hidden(parts) or not parts:
        raise NotFound(f"No such file or directory: {path}")
    try:
        data, _ = Storage(owner).read(parts)
    except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
        raise NotFound(f"No such file or directory: {path}") from None
    if not path.endswith(".ipynb"):
        raise BadRequest(f"{path} is not a notebook", reason="bad type")
    notebooks.parse(data, path)
    log.warning("Trusting notebook %s", path)
    backlog.settle(owner.pk)
    notebooks.sign(owner, hashlib.sha256(data).hexdigest())
