from django.apps import AppConfig


class KernelsConfig(AppConfig):
    """Kernelspecs, kernel lifecycle, sessions and the kernel WebSocket."""

    name = "kernels"
    verbose_name = "Kernels"
