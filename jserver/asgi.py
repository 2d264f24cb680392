"""ASGI entry point: HTTP to Django, WebSockets to Channels, one authentication."""

import os

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "jserver.settings")

from jserver.handler import get_asgi_application  # noqa: E402

# Sets Django up before the imports below; HTTP runs on a pool of worker threads.
django_application = get_asgi_application()

from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402

from accounts.middleware import WebsocketAuthMiddleware  # noqa: E402
from jserver.routing import websocket_urlpatterns  # noqa: E402

application = ProtocolTypeRouter(
    {
        "http": django_application,
        "websocket": WebsocketAuthMiddleware(URLRouter(websocket_urlpatterns())),
    }
)
