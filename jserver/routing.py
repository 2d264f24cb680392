"""WebSocket routes, all under ``JSERVER_BASE_URL``."""

from django.conf import settings
from django.urls import re_path

from jserver.consumers import EventsConsumer
from kernels.consumers import KernelChannelsConsumer
from kernels.urls import KERNEL_ID


def websocket_urlpatterns() -> list:
    """Return the WebSocket URL patterns of every app, under the base URL."""
    prefix = "^" + settings.URL_PREFIX
    return [
        re_path(prefix + r"api/events/subscribe$", EventsConsumer.as_asgi()),
        re_path(
            prefix + rf"api/kernels/{KERNEL_ID}/channels$",
            KernelChannelsConsumer.as_asgi(),
        ),
    ]
