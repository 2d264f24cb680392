from django.apps import AppConfig


class FrontendConfig(AppConfig):
    """JupyterLab 4 and Notebook 7: page shells, their assets and the lab APIs."""

    name = "frontend"
    verbose_name = "Front ends"

    def ready(self) -> None:
        from frontend import checks  # noqa: F401  (registers the system check)
