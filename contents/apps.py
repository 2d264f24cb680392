from django.apps import AppConfig


class ContentsConfig(AppConfig):
    """Users' files and notebooks: the Contents API and /files."""

    name = "contents"
    verbose_name = "Contents"
