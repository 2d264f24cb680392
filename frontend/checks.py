"""System check: the front ends jserver serves are installed and complete."""

from django.core import checks
from django.core.exceptions import ImproperlyConfigured

from frontend import assets


@checks.register()
def front_ends_installed(app_configs, **kwargs) -> list[checks.CheckMessage]:
    """Report a missing or broken JupyterLab or Notebook 7 installation."""
    problems = []
    for name in ("lab", "notebook"):
        try:
            assets.front_end(name)
        except (ImproperlyConfigured, OSError, ValueError) as error:
            problems.append(
                checks.Error(
                    f"The {name} front end cannot be served: {error}",
                    hint="Install requirements.txt (jupyterlab, notebook), or set "
                    "JSERVER_LAB_APP_DIR to a built JupyterLab.",
                    id="frontend.E001",
                )
            )
    return problems
