"""Users' files: the only module that turns API paths into filesystem paths.

Every user has a private root, ``<data dir>/users/<user id>/`` (the id, never a
name the user could change). Nothing resolves outside it.
"""

import os
from pathlib import Path

from django.conf import settings
from django.contrib.auth.models import User

from jserver.errors import NotFound


def user_root(user: User) -> Path:
    """Return ``user``'s root directory, creating it (mode 0700) if needed."""
    root = settings.DATA_DIR / "users" / str(int(user.pk))
    root.mkdir(mode=0o700, parents=True, exist_ok=True)
    return root


def split_api_path(api_path: str) -> list[str]:
    """Return the components of an API path, or raise ``NotFound`` for an escape.

    API paths are relative and ``/``-separated; ``..``, ``.``, NUL bytes and
    backslashes are refused rather than normalised (jupyter_server answers 404).
    """
    if "\x00" in api_path or "\\" in api_path:
        raise NotFound(f"{api_path!r} is not a valid path")
    parts = [part for part in api_path.strip("/").split("/") if part]
    if any(part in {".", ".."} for part in parts):
        raise NotFound(f"{api_path!r} is outside root contents directory")
    return parts


def kernel_cwd(user: User, api_path: str | None) -> Path:
    """Return the directory a kernel for ``api_path`` starts in.

    As jupyter_server's ``cwd_for_path``: the path itself if it is a directory,
    else its nearest existing parent, never above ``user``'s root. A path that
    resolves (through links) outside the root is ``NotFound``.
    """
    root = user_root(user)
    candidate = root.joinpath(*split_api_path(api_path or ""))
    while candidate != root and not candidate.is_dir():
        candidate = candidate.parent
    resolved = Path(os.path.realpath(candidate))
    if not resolved.is_relative_to(os.path.realpath(root)):
        raise NotFound(f"{api_path!r} is outside root contents directory")
    return resolved
