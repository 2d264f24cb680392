"""API tokens: create, list, revoke and authenticate. Tokens are stored hashed.

A token is 48 hex characters (192 bits from ``secrets``), shown once at
creation. The database keeps its SHA-256 digest (a high-entropy secret needs no
slow hash) and its first four characters, which is all that is ever logged.

Each process remembers the tokens that authenticated lately (``_Cache``), for
at most ``TOKEN_CACHE_SECONDS``. Saving or deleting a token or a user through
the models forgets them: in this process at once, and in every process that
shares the data directory at its next lookup, through a file there
(``tokens-changed``) that the change appends to once committed and each
lookup checks with one ``stat``. Other changes (a queryset ``update()``, a
process with another data directory) are seen once the entry expires.
"""

import datetime
import hashlib
import logging
import os
import secrets
import threading
import time

from asgiref.sync import sync_to_async
from django.conf import settings
from django.contrib.auth.models import User
from django.db import transaction
from django.db.models.signals import post_delete, post_save
from django.dispatch import receiver
from django.utils import timezone

from accounts import audit
from accounts.models import ApiToken
from jserver.errors import BadRequest, NotFound
from jserver.sql import PreparedSelect

log = logging.getLogger(__name__)

TOKEN_BYTES = 24
NAME_MAX_LENGTH = 100


def digest(raw: str) -> str:
    """Return the stored digest of the raw token ``raw``."""
    return hashlib.sha256(raw.encode("utf-8", "surrogatepass")).hexdigest()


def create_token(
    user: User,
    name: str,
    *,
    expires_at: datetime.datetime | None = None,
    address: str | None = None,
) -> tuple[ApiToken, str]:
    """Create a token for ``user``; return it and the raw value (shown once)."""
    name = name.strip()
    if not name:
        raise BadRequest("A token needs a name")
    if len(name) > NAME_MAX_LENGTH:
        raise BadRequest(f"A token name has at most {NAME_MAX_LENGTH} characters")
    if expires_at is not None and expires_at <= timezone.now():
        raise BadRequest("A token's expiry must be in the future")
    raw = secrets.token_hex(TOKEN_BYTES)
    token = ApiToken.objects.create(
        user=user, name=name, prefix=raw[:4], digest=digest(raw), expires_at=expires_at
    )
    audit.record(
        "token_created", actor=user, target=f"token {token.prefix}", address=address
    )
    log.info("token %s… created for user %s", token.prefix, user.pk)
    return token, raw


def list_tokens(user: User) -> list[ApiToken]:
    """Return ``user``'s tokens, newest first."""
    return list(ApiToken.objects.filter(user=user))


def revoke_token(user: User, token_id: int, *, address: str | None = None) -> None:
    """Delete ``user``'s token ``token_id``; another user's token is ``NotFound``."""
    deleted, _ = ApiToken.objects.filter(user=user, pk=token_id).delete()
    if not deleted:
        raise NotFound(f"Token not found: {token_id}")
    audit.record(
        "token_revoked", actor=user, target=f"token {token_id}", address=address
    )


# Every token-authenticated request runs this lookup (see jserver.sql).
_BY_DIGEST = PreparedSelect(ApiToken, related="user", where=["digest"])
# At most this many tokens are remembered (TOKEN_CACHE_SECONDS > 0).
CACHE_MAX_TOKENS = 10_000
# The file in the data directory that announces changes to every process; it
# grows a byte per change (so two changes within the clock's resolution still
# differ) and starts afresh past this size.
CHANGES_FILE = "tokens-changed"
CHANGES_FILE_MAX_BYTES = 4096


def _changes_path() -> str:
    return os.path.join(settings.DATA_DIR, CHANGES_FILE)


def _changes_marker() -> tuple[int, int, int] | None:
    """Return what identifies the changes file's state now (``None``: none yet)."""
    try:
        st = os.stat(_changes_path())
    except OSError:
        return None
    return (st.st_ino, st.st_size, st.st_mtime_ns)


def _announce_change() -> None:
    """Tell every process sharing the data directory to forget its tokens."""
    path = _changes_path()
    try:
        flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC
        fd = os.open(path, flags, 0o600)
        try:
            os.write(fd, b".")
            grown = os.fstat(fd).st_size
        finally:
            os.close(fd)
        if grown >= CHANGES_FILE_MAX_BYTES:
            fresh = f"{path}.{os.getpid()}.{threading.get_ident()}"
            with open(fresh, "wb") as handle:
                handle.write(b".")
            os.chmod(fresh, 0o600)
            os.replace(fresh, path)  # a new file: a new inode, a new marker
    except OSError:
        log.warning("could not announce a token change to other processes")


class _Cache:
    """Rows of live tokens looked up lately, by digest (``TOKEN_CACHE_SECONDS``).

    Keyed by the token's SHA-256 digest; the raw token is never kept. Only
    tokens that authenticated are kept, each for at most the configured
    seconds (5 by default); every use rebuilds fresh instances from the row.
    Saving or deleting a token or a user in this process forgets its entries
    at once (signals below), and, once committed, every entry of every
    process sharing the data directory (the changes file); a change made by a
    queryset ``update()`` is seen once the entry expires.
    """

    def __init__(self) -> None:
        # digest -> (monotonic deadline, the user's id, the row)
        self._rows: dict[str, tuple[float, int, tuple]] = {}
        self._lock = threading.Lock()
        self._marker: tuple[int, int, int] | None = None

    def check(self) -> tuple[int, int, int] | None:
        """Forget everything if a change was announced since; return the marker.

        A row read from the database after this is ``put`` only while no
        newer change was seen meanwhile.
        """
        marker = _changes_marker()
        if marker != self._marker:
            with self._lock:
                self._rows.clear()
                self._marker = marker
        return marker

    def get(self, key: str) -> tuple | None:
        found = self._rows.get(key)
        if found is None:
            return None
        if found[0] <= time.monotonic():
            self._rows.pop(key, None)
            return None
        return found[2]

    def put(self, key: str, row: tuple, seconds: float, marker: tuple | None) -> None:
        user_id = _BY_DIGEST.build(row).user_id
        with self._lock:
            if marker != self._marker:
                return  # read before a change this process has seen since
            while len(self._rows) >= CACHE_MAX_TOKENS:
                self._rows.pop(next(iter(self._rows)))
            self._rows[key] = (time.monotonic() + seconds, user_id, row)

    def forget(self, key: str) -> None:
        self._rows.pop(key, None)

    def forget_user(self, user_id: int) -> None:
        with self._lock:
            for key, (_, owner_id, _) in list(self._rows.items()):
                if owner_id == user_id:
                    self._rows.pop(key, None)

    def clear(self) -> None:
        self._rows.clear()


_cache = _Cache()


@receiver([post_save, post_delete], sender=ApiToken)
def _token_changed(sender, instance: ApiToken, created: bool = False, **kwargs) -> None:
    _cache.forget(instance.digest)
    if not created:  # a new token is in no cache
        transaction.on_commit(_announce_change)


@receiver([post_save, post_delete], sender=User)
def _user_changed(sender, instance: User, created: bool = False, **kwargs) -> None:
    _cache.forget_user(instance.pk)
    if not created:
        transaction.on_commit(_announce_change)


def authenticate_token(raw: str) -> ApiToken | None:
    """Return the live token whose value is ``raw`` (with its user), else ``None``.

    Expired tokens and tokens of deactivated users do not authenticate. A
    token that authenticated is remembered ``TOKEN_CACHE_SECONDS`` (5 by
    default) by this process (see ``_Cache``): revoking it, changing its
    expiry or deactivating its user through the models takes effect at the
    next request here and on every process sharing the data directory, and
    within those seconds on any other. At 0 each call reads the database.
    """
    if not raw or len(raw) > 256:
        return None
    key = digest(raw)
    seconds = settings.TOKEN_CACHE_SECONDS
    row = marker = None
    if seconds > 0:
        marker = _cache.check()
        row = _cache.get(key)
    if row is None:
        row = _BY_DIGEST.fetch(digest=key)
        if row is not None and seconds > 0:
            _cache.put(key, row, seconds, marker)
    token = None if row is None else _BY_DIGEST.build(row)
    now = timezone.now()
    if token is None or token.is_expired(now) or not token.user.is_active:
        log.warning("rejected API token %s…", raw[:4])
        return None
    resolution = datetime.timedelta(seconds=settings.TOKEN_LAST_USED_RESOLUTION_SECONDS)
    if token.last_used is None or now - token.last_used >= resolution:
        token.last_used = now
        ApiToken.objects.filter(pk=token.pk).update(last_used=now)
        _cache.forget(key)  # its row holds the old last_used
    return token


aauthenticate_token = sync_to_async(authenticate_token)
