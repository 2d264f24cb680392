"""Accounts: API tokens (stored hashed), login failures, and the audit trail."""

from django.conf import settings
from django.db import models
from django.utils import timezone


class ApiToken(models.Model):
    """An API token of one user. Only its SHA-256 digest is stored."""

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="api_tokens"
    )
    name = models.CharField(max_length=100)
    # The first four characters: enough to tell tokens apart, never enough to use.
    prefix = models.CharField(max_length=4)
    digest = models.CharField(max_length=64, unique=True)
    created = models.DateTimeField(default=timezone.now)
    last_used = models.DateTimeField(null=True, blank=True)
    expires_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created"]
        verbose_name = "API token"

    def __str__(self) -> str:
        return f"{self.name} ({self.prefix}…)"

    def is_expired(self, now=None) -> bool:
        """Return whether the token's expiry has passed."""
        return self.expires_at is not None and self.expires_at <= (
            now or timezone.now()
        )


class LoginFailure(models.Model):
    """One failed login, kept for the throttling window."""

    username = models.CharField(max_length=150, db_index=True)
    address = models.GenericIPAddressField(null=True, blank=True, db_index=True)
    at = models.DateTimeField(default=timezone.now, db_index=True)

    class Meta:
        ordering = ["-at"]


class AuditEvent(models.Model):
    """Something security-relevant that happened: who, what, to what, from where."""

    at = models.DateTimeField(default=timezone.now, db_index=True)
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )
    # Kept when the actor's account is deleted.
    actor_name = models.CharField(max_length=150, blank=True)
    action = models.CharField(max_length=64, db_index=True)
    target = models.CharField(max_length=255, blank=True)
    address = models.GenericIPAddressField(null=True, blank=True)
    detail = models.JSONField(default=dict, blank=True)

    class Meta:
        ordering = ["-at"]

    def __str__(self) -> str:
        return f"{self.at:%Y-%m-%d %H:%M:%S} {self.actor_name or '-'} {self.action}"


class ConfigSection(models.Model):
    """One user's ``/api/config/<section>`` document (front-end configuration)."""

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.CASCADE,
        related_name="config_sections",
    )
    section = models.CharField(max_length=100)
    data = models.JSONField(default=dict)
    updated = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["user", "section"], name="one_section_per_user"
            )
        ]

    def __str__(self) -> str:
        return f"{self.section} of {self.user}"


class LabSetting(models.Model):
    """One user's values for one JupyterLab plugin (``/lab/api/settings/<id>``).

    ``raw`` is the JSON5 text exactly as the front end sent it (comments and all,
    the settings editor shows it back); ``values`` is what it parses to.
    """

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="lab_settings"
    )
    plugin = models.CharField(max_length=255)
    raw = models.TextField()
    values = models.JSONField(default=dict)
    created = models.DateTimeField(default=timezone.now)
    last_modified = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["user", "plugin"], name="one_lab_setting_per_plugin"
            )
        ]

    def __str__(self) -> str:
        return f"{self.plugin} of {self.user}"


class Workspace(models.Model):
    """One user's JupyterLab workspace (``/lab/api/workspaces/<name>``): the layout."""

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="workspaces"
    )
    name = models.CharField(max_length=255)
    document = models.JSONField()  # {"data": {...}, "metadata": {"id": ...}}
    created = models.DateTimeField(default=timezone.now)
    last_modified = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["name"]
        constraints = [
            models.UniqueConstraint(
                fields=["user", "name"], name="one_workspace_per_name"
            )
        ]

    def __str__(self) -> str:
        return f"{self.name} of {self.user}"
