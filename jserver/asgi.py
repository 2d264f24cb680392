"""ASGI entry point: HTTP to Django, WebSockets to Channels, one authentication."""

import gc
import os

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "jserver.settings")

from jserver.handler import get_asgi_application  # noqa: E402

# Sets Django up before the imports below; HTTP runs on a pool of worker threads.
django_application = get_asgi_application()

from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from django.urls import get_resolver  # noqa: E402

from accounts.middleware import WebsocketAuthMiddleware  # noqa: E402
from jserver.routing import websocket_urlpatterns  # noqa: E402

application = ProtocolTypeRouter(
    {
        "http": django_application,
        "websocket": WebsocketAuthMiddleware(URLRouter(websocket_urlpatterns())),
    }
)

# Everything made by now (settings, apps, URLs and views, the front ends' file
# lists) lives as long as the process. Frozen, it is left out of the cyclic
# garbage collector's full passes, which otherwise walk all of it (some 200,000
# objects, tens of milliseconds) now and then in the middle of a request.
get_resolver().url_patterns  # noqa: B018 (imports every view now)
gc.collect()
gc.freeze()
