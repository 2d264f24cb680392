"""API tokens: create, list, revoke and authenticate. Tokens are stored hashed.

A token is 48 hex characters (192 bits from ``secrets``), shown once at
creation. The database keeps its SHA-256 digest (a high-entropy secret needs no
slow hash) and its first four characters, which is all that is ever logged.
"""

import datetime
import hashlib
import logging
import secrets

from asgiref.sync import sync_to_async
from django.conf import settings
from django.contrib.auth.models import User
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


def authenticate_token(raw: str) -> ApiToken | None:
    """Return the live token whose value is ``raw`` (with its user), else ``None``.

    Expired tokens and tokens of deactivated users do not authenticate. Each
    call reads the database: a revoked or expired token, or a deactivated
    user, stops authenticating at the next request.
    """
    if not raw or len(raw) > 256:
        return None
    token = _BY_DIGEST.get(digest=digest(raw))
    now = timezone.now()
    if token is None or token.is_expired(now) or not token.user.is_active:
        log.warning("rejected API token %s…", raw[:4])
        return None
    resolution = datetime.timedelta(seconds=settings.TOKEN_LAST_USED_RESOLUTION_SECONDS)
    if token.last_used is None or now - token.last_used >= resolution:
        token.last_used = now
        ApiToken.objects.filter(pk=token.pk).update(last_used=now)
    return token


aauthenticate_token = sync_to_async(authenticate_token)
