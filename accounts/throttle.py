"""Login throttling per account and per client address.

Failures are rows in the database, so every daphne process of a deployment
sees the same counts. After too many failures within the window, further
attempts for that account (or from that address) are refused until the oldest
counted failure leaves the window.
"""

import datetime
import math

from django.conf import settings
from django.db.models import QuerySet
from django.utils import timezone

from accounts.models import LoginFailure


def _window_start(now: datetime.datetime) -> datetime.datetime:
    return now - datetime.timedelta(seconds=settings.LOGIN_FAILURE_WINDOW_SECONDS)


def _wait(failures: QuerySet, limit: int, now: datetime.datetime) -> int:
    """Seconds until ``failures`` drop below ``limit``, 0 if they already are."""
    if failures.count() < limit:
        return 0
    # The failure that must expire is the limit-th newest.
    oldest = failures.order_by("-at").values_list("at", flat=True)[limit - 1]
    window = datetime.timedelta(seconds=settings.LOGIN_FAILURE_WINDOW_SECONDS)
    return max(1, math.ceil((oldest + window - now).total_seconds()))


def seconds_blocked(username: str, address: str | None) -> int:
    """Return how long login attempts for ``username`` from ``address`` are refused."""
    now = timezone.now()
    recent = LoginFailure.objects.filter(at__gt=_window_start(now))
    waits = [
        _wait(
            recent.filter(username=username.casefold()),
            settings.LOGIN_FAILURES_PER_ACCOUNT,
            now,
        )
    ]
    if address:
        waits.append(
            _wait(
                recent.filter(address=address),
                settings.LOGIN_FAILURES_PER_ADDRESS,
                now,
            )
        )
    return max(waits)


def record_failure(username: str, address: str | None) -> None:
    """Count one failed login, and forget failures older than the window."""
    now = timezone.now()
    LoginFailure.objects.create(username=username.casefold()[:150], address=address)
    LoginFailure.objects.filter(at__lte=_window_start(now)).delete()


def clear_failures(username: str) -> None:
    """Forget an account's failures after a successful login."""
    LoginFailure.objects.filter(username=username.casefold()).delete()
