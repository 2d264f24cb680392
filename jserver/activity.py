"""Per-user API activity of this server process, for ``/api/status``.

jupyter_server reports when the server started and when it last saw API
activity; here both are per process, the activity per user (a tenant must not
learn about others' activity).
"""

import datetime

from django.contrib.auth.models import User

STARTED = datetime.datetime.now(datetime.UTC)
_last_activity: dict[int, datetime.datetime] = {}


def touch(user: User) -> None:
    """Record API activity of ``user`` now."""
    _last_activity[user.pk] = datetime.datetime.now(datetime.UTC)


def last_activity(user: User) -> datetime.datetime:
    """Return when ``user`` was last active on this process (its start if never)."""
    return _last_activity.get(user.pk, STARTED)
