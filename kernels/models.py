"""Kernels and sessions in the database.

A ``Kernel`` row exists while its kernel runs: the kernel host
(``kernels/manager.py``) creates it on start, keeps its state current (in
batches, not per message) and deletes it when the kernel is gone, which
deletes the kernel's sessions with it. The live state of a kernel this process
runs is the host's; the row is what the admin, the sessions and other processes
see. ``connection_info`` holds the kernel's HMAC key: no API ever returns it.
"""

import uuid

from django.conf import settings
from django.db import models
from django.utils import timezone

STATES = [
    (state, state)
    for state in ("starting", "idle", "busy", "restarting", "dead", "unknown")
]


class Kernel(models.Model):
    """A running kernel of one user."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="kernels"
    )
    name = models.CharField("kernelspec", max_length=255)
    execution_state = models.CharField(
        max_length=16, choices=STATES, default="starting"
    )
    reason = models.TextField(blank=True)
    started = models.DateTimeField(default=timezone.now)
    last_activity = models.DateTimeField(default=timezone.now)
    connections = models.PositiveIntegerField(default=0)
    # The process that runs the kernel: which server process owns it, and the
    # kernel's own pid (for memory and for cleaning up after a crash).
    host = models.CharField(max_length=255)
    pid = models.IntegerField(null=True, blank=True)
    cwd = models.TextField(blank=True)
    sandboxed = models.BooleanField(default=False)
    connection_info = models.JSONField(default=dict, blank=True, editable=False)

    class Meta:
        ordering = ["-started"]
        indexes = [models.Index(fields=["owner", "started"])]

    def __str__(self) -> str:
        return f"{self.name} {self.id}"


class Session(models.Model):
    """A notebook, console or file bound to a kernel (jupyter_server's session)."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+"
    )
    path = models.TextField()
    name = models.TextField(null=True, blank=True)
    type = models.CharField(max_length=64, blank=True)
    kernel = models.ForeignKey(
        Kernel, on_delete=models.CASCADE, related_name="sessions"
    )
    created = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["created"]
        indexes = [models.Index(fields=["owner", "path"])]

    def __str__(self) -> str:
        return self.path


class KernelLimits(models.Model):
    """A user's kernel limits, overriding the settings' defaults field by field.

    An empty field keeps the default (``JSERVER_SANDBOX_*``,
    ``JSERVER_KERNELS_PER_USER``). Applied to kernels started (or restarted)
    after the change.
    """

    owner = models.OneToOneField(
        settings.AUTH_USER_MODEL,
        on_delete=models.CASCADE,
        related_name="kernel_limits",
        verbose_name="user",
    )
    memory_bytes = models.PositiveBigIntegerField(
        null=True, blank=True, help_text="Memory per kernel, in bytes."
    )
    max_processes = models.PositiveIntegerField(
        null=True, blank=True, help_text="Processes and threads per kernel."
    )
    max_open_files = models.PositiveIntegerField(
        null=True, blank=True, help_text="Open files per kernel process."
    )
    max_file_bytes = models.PositiveBigIntegerField(
        null=True, blank=True, help_text="Largest file a kernel can write, in bytes."
    )
    max_kernels = models.PositiveIntegerField(
        null=True, blank=True, help_text="Running kernels at once."
    )
    updated = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name_plural = "kernel limits"

    def __str__(self) -> str:
        return f"kernel limits of {self.owner}"
