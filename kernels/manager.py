"""The kernel host: the one owner of kernel processes.

Kernel lifecycle is not built yet (see the kernels issue); until it is, no
kernel can be running, which is what ``status_counts`` reports.
"""

from django.contrib.auth.models import User


async def status_counts(*, owner: User) -> tuple[int, int]:
    """Return ``(running kernels, open kernel WebSockets)`` of ``owner``."""
    return 0, 0
