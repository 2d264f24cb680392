"""jupyter_server's iopub rate limits, for one WebSocket (off by default).

With ``IOPUB_LIMIT_RATE`` on, a connection counts the iopub messages (and the
bytes of stream messages) it was sent over a sliding window of
``IOPUB_RATE_WINDOW`` seconds. Past ``IOPUB_MSG_RATE_LIMIT`` messages/s or
``IOPUB_DATA_RATE_LIMIT`` bytes/s it tells the client once, with a stderr
stream message as jupyter_server does, and drops output until the rate falls
below 80 % of the limit. ``status``, ``comm_open`` and ``execute_input`` are
never counted nor dropped; an ``idle`` status resets the window.
"""

import collections
import json
import time

from django.conf import settings

from kernels import protocol

EXEMPT = frozenset({"status", "comm_open", "execute_input"})


class IopubRateLimit:
    def __init__(self, session_id: str) -> None:
        self.session_id = session_id
        self.window = float(settings.IOPUB_RATE_WINDOW)
        self.msg_limit = settings.IOPUB_MSG_RATE_LIMIT
        self.data_limit = settings.IOPUB_DATA_RATE_LIMIT
        self.events: collections.deque[tuple[float, int]] = collections.deque()
        self.count = 0
        self.bytes = 0
        self.msgs_exceeded = False
        self.data_exceeded = False

    def _reset(self) -> None:
        self.events.clear()
        self.count = self.bytes = 0
        self.msgs_exceeded = self.data_exceeded = False

    def check(self, message) -> tuple[bool, list[bytes] | None]:
        """Return (send it?, parts of a notice to send first, if any)."""
        if message.channel != "iopub":
            return True, None
        if message.msg_type == "status":
            if b'"idle"' in message.parts[3]:
                self._reset()
            return True, None
        if message.msg_type in EXEMPT:
            return True, None
        now = time.monotonic()
        while self.events and self.events[0][0] <= now:
            _, size = self.events.popleft()
            self.count -= 1
            self.bytes -= size
        size = message.size if message.msg_type == "stream" else 0
        self.count += 1
        self.bytes += size
        self.events.append((now + self.window, size))
        msg_rate, data_rate = self.count / self.window, self.bytes / self.window
        notice = None
        if self.msg_limit > 0 and msg_rate > self.msg_limit:
            if not self.msgs_exceeded:
                self.msgs_exceeded = True
                notice = self._notice(message, "message", "msgs/sec", self.msg_limit)
        elif self.msgs_exceeded and msg_rate < 0.8 * self.msg_limit:
            self.msgs_exceeded = False
        if self.data_limit > 0 and data_rate > self.data_limit:
            if not self.data_exceeded:
                self.data_exceeded = True
                notice = notice or self._notice(
                    message, "data", "bytes/sec", self.data_limit
                )
        elif self.data_exceeded and data_rate < 0.8 * self.data_limit:
            self.data_exceeded = False
        return not (self.msgs_exceeded or self.data_exceeded), notice

    def _notice(self, message, kind: str, unit: str, limit: int) -> list[bytes]:
        setting = (
            "JSERVER_IOPUB_MSG_RATE_LIMIT"
            if kind == "message"
            else ("JSERVER_IOPUB_DATA_RATE_LIMIT")
        )
        text = (
            f"IOPub {kind} rate exceeded.\n"
            "The Jupyter server will temporarily stop sending output\n"
            "to the client in order to avoid crashing it.\n"
            f"To change this limit, set {setting}.\n\n"
            "Current values:\n"
            f"{setting}={limit} ({unit})\n"
            f"JSERVER_IOPUB_RATE_WINDOW={self.window:g} (secs)\n"
        )
        try:
            parent = json.loads(message.parts[1])
        except ValueError:
            parent = {}
        notice = protocol.new_message(
            "stream",
            {"name": "stderr", "text": text},
            session=self.session_id,
            parent=parent,
        )
        return protocol.msg_to_parts(notice)
