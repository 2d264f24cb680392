from django.apps import AppConfig


class JserverConfig(AppConfig):
    """The project package itself: management commands, static files, events."""

    name = "jserver"
    verbose_name = "jserver"
