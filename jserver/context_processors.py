"""Template context shared by every page."""

from django.conf import settings
from django.http import HttpRequest


def site(request: HttpRequest) -> dict:
    """Expose the base URL and the server version to templates."""
    from jserver import __version__

    return {"base_url": settings.BASE_URL, "jserver_version": __version__}
