"""``manage.py serve``: run jserver under daphne, with its limits and a scrubbed log."""

import ipaddress
import logging

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from jserver.logging import scrub

access_log = logging.getLogger("jserver.access")


def is_loopback(host: str) -> bool:
    """Return whether ``host`` only accepts connections from this machine."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


class AccessLog:
    """daphne's action logger, writing through logging with secrets scrubbed."""

    def __call__(self, protocol: str, action: str, details: dict) -> None:
        path = scrub(details.get("path", ""))
        client = details.get("client") or "-"
        if protocol == "http" and action == "complete":
            access_log.info(
                '%s "%s %s" %s %s',
                client,
                details.get("method"),
                path,
                details.get("status"),
                details.get("size"),
            )
        elif protocol == "websocket" and action in {
            "connected",
            "rejected",
            "disconnected",
        }:
            access_log.info('%s "WS%s %s"', client, action.upper(), path)


class Command(BaseCommand):
    help = "Serve jserver (HTTP and WebSockets) with daphne."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--bind", default=None, help="address (JSERVER_BIND)")
        parser.add_argument(
            "--port", type=int, default=None, help="port (JSERVER_PORT)"
        )
        parser.add_argument("--fd", type=int, default=None, help="serve a bound socket")

    def handle(
        self, *args, bind: str | None, port: int | None, fd: int | None, **options
    ) -> None:
        # daphne.server installs Twisted's asyncio reactor: import it first, here.
        from daphne.endpoints import build_endpoint_description_strings
        from daphne.server import Server

        from jserver.asgi import application

        host = bind or settings.BIND
        port = settings.PORT if port is None else port
        if fd is None and not is_loopback(host) and not settings.SECRET_KEY_FROM_ENV:
            raise CommandError(
                f"Refusing to serve on {host}, which is reachable from other machines, "
                "with a generated secret key: set JSERVER_SECRET_KEY (and "
                "JSERVER_ALLOWED_HOSTS), or bind 127.0.0.1."
            )
        if fd is not None:
            endpoints = build_endpoint_description_strings(file_descriptor=fd)
            where = f"file descriptor {fd}"
        else:
            endpoints = build_endpoint_description_strings(host=host, port=port)
            shown = f"[{host}]" if ":" in host else host
            where = f"http://{shown}:{port}{settings.BASE_URL}"
        proxy = settings.BEHIND_PROXY
        server = Server(
            application=application,
            endpoints=endpoints,
            action_logger=AccessLog(),
            websocket_max_message_size=settings.WEBSOCKET_MAX_MESSAGE_SIZE,
            websocket_max_frame_size=settings.WEBSOCKET_MAX_MESSAGE_SIZE,
            ping_interval=settings.WEBSOCKET_PING_SECONDS,
            ping_timeout=settings.WEBSOCKET_PING_SECONDS,
            # A kernel WebSocket's handshake waits for its kernel to answer
            # (as jupyter_server's does); daphne's default cuts it after 5 s.
            websocket_handshake_timeout=settings.KERNEL_INFO_TIMEOUT + 5,
            # Kernel sockets and uploads are long-lived; daphne's default cuts
            # HTTP requests after 120 s without a response.
            http_timeout=None,
            # daphne hands a request body to the application in messages of
            # this size (its default, 8 KiB, makes a 1 MiB upload chunk ~180
            # messages); the whole body is already buffered by then.
            request_buffer_size=settings.HTTP_BODY_MESSAGE_BYTES,
            application_close_timeout=10,
            proxy_forwarded_address_header="X-Forwarded-For" if proxy else None,
            proxy_forwarded_port_header="X-Forwarded-Port" if proxy else None,
            proxy_forwarded_proto_header="X-Forwarded-Proto" if proxy else None,
            server_name="jserver",
        )
        _stop_kernels_with(server)
        self.stdout.write(f"jserver serving on {where}", ending="\n")
        self.stdout.flush()
        server.run()


def _stop_kernels_with(server) -> None:
    """Shut every kernel down when the server stops; kill leftovers at exit.

    daphne has no lifespan event: the reactor's shutdown trigger runs while the
    event loop still turns, and waits for the kernels' graceful shutdown.
    """
    import asyncio
    import atexit

    from twisted.internet import defer, reactor

    from kernels import manager

    orphans = manager.reap_orphans()
    if orphans:
        access_log.warning(
            "cleaned up %d kernels of a previous server process", orphans
        )

    def shutdown():
        return defer.Deferred.fromFuture(
            asyncio.ensure_future(manager.shutdown_all_hosts())
        )

    reactor.addSystemEventTrigger("before", "shutdown", shutdown)
    atexit.register(manager.kill_all_now)
