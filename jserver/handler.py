"""HTTP under daphne: Django's ASGI handler on a bounded pool of long-lived threads.

Django's own ``ASGIHandler`` wraps every request in a fresh
``ThreadSensitiveContext``: each request gets a new thread for its synchronous
parts, so its thread-local database connection is opened and closed per
request, and every synchronous step (the request signals, the middleware
chain, a sync view, closing the response) is a separate hop between the event
loop and a thread. This handler keeps Django's request handling as it is and
changes only where it runs:

- The request body is received on the event loop, before any thread is taken.
- The request then borrows one worker (a single-thread executor) from a
  bounded pool of long-lived ones and runs in ``ThreadSensitiveContext`` with
  that executor: every thread-sensitive ``sync_to_async`` of the request (the
  async ORM and ``database_sync_to_async`` of async views included) runs on
  the worker's thread, whose database connection persists across requests
  where the settings allow it (``CONN_MAX_AGE``; PostgreSQL returns it to
  psycopg's pool at the end of each request instead).
- The request signals, the (synchronous) middleware chain, a sync view and
  closing a non-streaming response run in one call on that thread: one round
  trip between the loop and the thread per request. An ``async def`` view
  still runs on daphne's event loop (``async_to_sync`` from the worker), as
  under Django's handler, so the kernels' ``zmq.asyncio`` sockets stay on
  their loop.
- At most ``HTTP_THREADS`` requests are in Django at once; a request finding
  every worker busy waits for one at most ``HTTP_QUEUE_SECONDS``, then gets a
  503 with ``Retry-After``. A worker is held for the whole request: a slow
  request (an async view awaiting a kernel, a large copy) holds one worker and
  no other, and requests queue only when every worker is held.
"""

import asyncio
import collections
import contextvars
import logging
import tempfile
from concurrent.futures import ThreadPoolExecutor

from asgiref.sync import ThreadSensitiveContext, sync_to_async
from django.conf import settings
from django.core import signals
from django.core.exceptions import RequestAborted
from django.core.handlers.asgi import ASGIHandler as DjangoASGIHandler
from django.core.handlers.asgi import get_script_prefix
from django.http import FileResponse, HttpResponse
from django.urls import set_script_prefix

log = logging.getLogger(__name__)

# The answer when every worker stays busy for HTTP_QUEUE_SECONDS.
BUSY_MESSAGE = "The server is busy; try again shortly"
BUSY_RETRY_AFTER_SECONDS = 1

_request_loop: contextvars.ContextVar[asyncio.AbstractEventLoop] = (
    contextvars.ContextVar("jserver_request_loop")
)


def request_loop() -> asyncio.AbstractEventLoop | None:
    """Return the event loop of the HTTP request being served, if any.

    Synchronous code running for a request on a worker uses it to hand work
    to the loop without waiting (``jserver.events.emit_soon``); elsewhere
    (management commands, Django's test client) it is ``None``.
    """
    return _request_loop.get(None)


class ServerBusy(Exception):
    """No worker became free within ``HTTP_QUEUE_SECONDS``."""


class WorkerPool:
    """Long-lived single-thread executors, each lent to one request at a time.

    Workers are created on demand up to ``size`` and then kept: the most
    recently returned one is lent first, so under light load a few threads
    (and their database connections) serve everything. Waiters are served
    first come, first served. Not thread-safe: used from the event loop only.
    """

    def __init__(self, size: int, wait_seconds: float) -> None:
        if size < 1:
            raise ValueError("a worker pool needs at least one worker")
        self.size, self.wait_seconds = size, wait_seconds
        self.created = 0
        self._idle: list[ThreadPoolExecutor] = []
        self._waiters: collections.deque[asyncio.Future] = collections.deque()

    @property
    def busy(self) -> int:
        """Return how many workers are lent out now."""
        return self.created - len(self._idle)

    async def acquire(self) -> ThreadPoolExecutor:
        """Return a free worker, waiting at most ``wait_seconds`` for one."""
        if self._idle:
            return self._idle.pop()
        if self.created < self.size:
            self.created += 1
            return ThreadPoolExecutor(
                max_workers=1, thread_name_prefix=f"jserver-http-{self.created}"
            )
        waiter = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            async with asyncio.timeout(self.wait_seconds):
                return await waiter
        except BaseException as error:
            if waiter.done() and not waiter.cancelled():
                self.release(waiter.result())  # lent just as the wait ended
            else:
                waiter.cancel()
            if isinstance(error, TimeoutError):
                raise ServerBusy from None
            raise

    def release(self, worker: ThreadPoolExecutor) -> None:
        """Give ``worker`` to the longest waiter, or back to the idle ones."""
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(worker)
                return
        self._idle.append(worker)

    def release_when_idle(self, worker: ThreadPoolExecutor) -> None:
        """Release ``worker`` once the call still running on it has returned.

        Used when a request is cancelled while its synchronous part runs: a
        thread cannot be interrupted, and the next borrower must not queue
        behind it unknowingly.
        """
        loop = asyncio.get_running_loop()
        done = loop.run_in_executor(worker, _nothing)
        done.add_done_callback(lambda _: self.release(worker))


def _nothing() -> None:
    return None


class ASGIHandler(DjangoASGIHandler):
    """Django's ASGI handler, run on a ``WorkerPool`` (see the module docstring)."""

    def __init__(self) -> None:
        # Django's base handler, with the middleware chain built synchronous:
        # it runs in one call on a worker, not one hop per middleware.
        super(DjangoASGIHandler, self).__init__()
        self.load_middleware(is_async=False)
        self.workers = WorkerPool(settings.HTTP_THREADS, settings.HTTP_QUEUE_SECONDS)

    async def handle(self, scope, receive, send) -> None:
        """Receive the body on the loop, then answer on a borrowed worker."""
        try:
            body_file = await self.read_body(receive)
        except RequestAborted:
            return
        try:
            worker = await self.workers.acquire()
        except ServerBusy:
            body_file.close()
            log.warning(
                "every HTTP worker stayed busy for %ss: answered 503 to %s %s",
                self.workers.wait_seconds,
                scope.get("method"),
                scope.get("path"),
            )
            await self.send_response(busy_response(scope), send)
            return
        except BaseException:
            body_file.close()
            raise
        _request_loop.set(asyncio.get_running_loop())
        try:
            async with ThreadSensitiveContext(executor=worker):
                await self._serve(scope, body_file, receive, send)
        except BaseException:
            self.workers.release_when_idle(worker)
            raise
        self.workers.release(worker)

    async def _serve(self, scope, body_file, receive, send) -> None:
        respond = sync_to_async(self._respond, thread_sensitive=True)

        async def process_request() -> HttpResponse:
            response = await respond(scope, body_file)
            try:
                await self.send_response(response, send)
            except asyncio.CancelledError:
                pass  # the client went away while the response was sent
            return response

        # As Django's handler: a client disconnecting cancels the request.
        tasks = [
            asyncio.create_task(self.listen_for_disconnect(receive)),
            asyncio.create_task(process_request()),
        ]
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        for task in tasks:
            if task.done():
                try:
                    task.result()
                except RequestAborted:
                    pass
                except AssertionError:
                    body_file.close()
                    raise
            else:
                task.cancel()
                try:
                    await task
                except asyncio.CancelledError:
                    pass
        try:
            response = tasks[1].result()
        except asyncio.CancelledError:
            pass  # _respond sent request_finished, or will when it returns
        else:
            if response.streaming:
                await sync_to_async(response.close, thread_sensitive=True)()
        body_file.close()

    def _respond(self, scope, body_file) -> HttpResponse:
        """Answer the request synchronously, on the borrowed worker's thread.

        A non-streaming response is closed here (which sends
        ``request_finished``) before the loop sends its bytes, saving a hop;
        a streaming one is closed after it has been sent.
        """
        set_script_prefix(get_script_prefix(scope))
        signals.request_started.send(sender=self.__class__, scope=scope)
        try:
            request, response = self.create_request(scope, body_file)
            if request is None:
                body_file.close()
            else:
                response = self.get_response(request)
        except BaseException:
            signals.request_finished.send(sender=self.__class__)
            raise
        response._handler_class = self.__class__
        if isinstance(response, FileResponse):
            response.block_size = self.chunk_size
        if not response.streaming:
            response.close()
        return response

    async def read_body(self, receive):
        """Receive the body into memory, or a temporary file past the threshold."""
        body_file = tempfile.SpooledTemporaryFile(
            max_size=settings.HTTP_BODY_MEMORY_BYTES, mode="w+b"
        )
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                body_file.close()
                raise RequestAborted()
            if "body" in message:
                body_file.write(message["body"])
            if not message.get("more_body", False):
                break
        body_file.seek(0)
        return body_file


def busy_response(scope) -> HttpResponse:
    """Return the 503 sent when no worker became free (JSON under ``/api``)."""
    from jserver.api import json_response

    api = settings.BASE_URL + "api"
    path = scope.get("path", "")
    if path == api or path.startswith(api + "/"):
        response = json_response({"message": BUSY_MESSAGE, "reason": None}, status=503)
    else:
        response = HttpResponse(BUSY_MESSAGE, status=503, content_type="text/plain")
    response["Retry-After"] = str(BUSY_RETRY_AFTER_SECONDS)
    return response


def get_asgi_application() -> ASGIHandler:
    """Set Django up and return the pooled handler (``django.core.asgi``'s twin)."""
    import django

    django.setup(set_prefix=False)
    return ASGIHandler()
