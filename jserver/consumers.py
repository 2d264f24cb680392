"""WebSocket consumers of the project itself."""

import json

from channels.generic.websocket import AsyncWebsocketConsumer

from jserver import events


class EventsConsumer(AsyncWebsocketConsumer):
    """``/api/events/subscribe``: push the user's server events to the browser."""

    group: str | None = None

    async def connect(self) -> None:
        user = self.scope["user"]
        if not user.is_authenticated:
            await self.close()  # before accept(): the handshake answers 403
            return
        self.group = events.user_group(user.pk)
        await self.channel_layer.group_add(self.group, self.channel_name)
        await self.accept()

    async def receive(
        self, text_data: str | None = None, bytes_data: bytes | None = None
    ) -> None:
        """Ignore what the client sends: this socket only pushes."""

    async def disconnect(self, code: int) -> None:
        if self.group is not None:
            await self.channel_layer.group_discard(self.group, self.channel_name)

    async def event_message(self, message: dict) -> None:
        await self.send(text_data=json.dumps(message["event"]))
