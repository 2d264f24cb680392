"""Plain factory functions for test objects."""

import itertools

from django.contrib.auth.models import User

from accounts import tokens

PASSWORD = "correct horse battery staple"
_numbers = itertools.count(1)


def make_user(username: str | None = None, *, staff: bool = False, **fields) -> User:
    """Create an active user whose password is ``PASSWORD``.

    ``staff=True`` makes an administrator (staff with every permission).
    """
    username = username or f"user{next(_numbers)}"
    return User.objects.create_user(
        username=username,
        password=PASSWORD,
        is_staff=staff,
        is_superuser=staff,
        **fields,
    )


def make_token(user: User, name: str = "test", **kwargs) -> str:
    """Create an API token for ``user`` and return its raw value."""
    _token, raw = tokens.create_token(user, name, **kwargs)
    return raw
