"""HTTP under daphne: Django's ASGI handler on a bounded pool of long-lived threads.

Django's own ``ASGIHandler`` wraps every request in a fresh
``ThreadSensitiveContext``: each request gets a new thread for its synchronous
parts, so its thread-local database connection is opened and closed per
request, and every synchronous step (the request signals, the middleware
chain, a sync view, closing the response) is a separate hop between the event
loop and a thread. This handler keeps Django's request handling as it is and
changes where it runs:

- The request body is received on the event loop, before any thread is taken.
- The request then borrows a ``Worker`` (one long-lived thread) from a bounded
  ``WorkerPool``: every thread-sensitive ``sync_to_async`` of the request (the
  async ORM and ``database_sync_to_async`` of async views included, through
  the ``async_to_sync`` that runs the view; a sync streaming response's
  iteration through ``ThreadSensitiveContext``) runs on the worker's thread,
  whose database connection persists across requests where the settings allow
  it (``CONN_MAX_AGE``; PostgreSQL returns it to psycopg's pool at the end of
  each request instead).
- The request signals, the (synchronous) middleware chain, a sync view and
  closing a non-streaming response run in one call on that thread: one round
  trip between the loop and the thread per request. An ``async def`` view
  still runs on daphne's event loop (``async_to_sync`` from the worker), as
  under Django's handler, so the kernels' ``zmq.asyncio`` sockets stay on
  their loop; a client that disconnects cancels it, as under Django's.
- Work that need not delay the response is queued: server events with
  ``after_response``, which runs them on the loop once the response is sent;
  synchronous bookkeeping (the contents index) with
  ``after_response_on_worker``, which runs it on the request's worker once the
  response is sent, before that worker is lent again. The request's database
  connection serves that work too: a response whose request queued some is
  closed (``request_finished``) after it, not before the bytes go out.
- At most ``HTTP_THREADS`` requests are in Django at once; a request finding
  every worker busy waits for one at most ``HTTP_QUEUE_SECONDS``, then gets a
  503 with ``Retry-After``. A worker is held for the whole request, async views
  included: a slow request (an async view awaiting a kernel, a large copy)
  holds one worker and no other, and requests queue only when every worker
  is held.

The round trip to a worker is this module's own (a queue and
``call_soon_threadsafe``), not ``sync_to_async``: it costs about half as much
CPU. It sets up the worker thread as ``sync_to_async`` does (asgiref's
``SyncToAsync.threadlocal``: the loop that ``async_to_sync`` runs async views
on, and the task list through which a cancellation reaches them); the tests
check that async views run on the server's loop and are cancelled with their
request.
"""

import asyncio
import atexit
import collections
import contextvars
import io
import logging
import os
import queue
import tempfile
import threading
import time
from collections.abc import Callable
from concurrent.futures import Executor, Future
from typing import Any

from asgiref.sync import SyncToAsync, ThreadSensitiveContext
from django.conf import settings
from django.core import signals
from django.core.exceptions import RequestAborted
from django.core.handlers.asgi import ASGIHandler as DjangoASGIHandler
from django.core.handlers.asgi import get_script_prefix
from django.db import close_old_connections
from django.http import FileResponse, HttpResponse
from django.urls import set_script_prefix

log = logging.getLogger(__name__)

# The answer when every worker stays busy for HTTP_QUEUE_SECONDS.
BUSY_MESSAGE = "The server is busy; try again shortly"
BUSY_RETRY_AFTER_SECONDS = 1
# At exit, the workers get this long in all to finish the requests they serve
# (as long as daphne gives applications to close: serve's application_close_timeout).
WORKER_EXIT_SECONDS = 10


class _Callbacks:
    """What to run once a request's response is sent: on the loop, on the worker."""

    def __init__(self) -> None:
        self.pending: list[Callable[[], None]] = []
        self.closed = False
        self.on_worker: list[Callable[[], None]] = []
        self.worker_closed = False
        # A non-streaming response left open for the work on the worker.
        self.unclosed: HttpResponse | None = None

    def run(self) -> None:
        """Run the pending callbacks in order; later ones are refused."""
        self.closed = True
        _run_all(self.pending)

    def run_on_worker(self) -> None:
        """Run the worker's callbacks in order, then close the request.

        On the request's worker thread, after everything else the request
        ran there; later callbacks are refused. Closing the response sends
        ``request_finished``, which releases the database connection; without
        a response left open, the connections the callbacks used are released
        as ``request_finished`` would.
        """
        self.worker_closed = True
        ran = bool(self.on_worker)
        _run_all(self.on_worker)
        response, self.unclosed = self.unclosed, None
        if response is not None:
            response.close()
        elif ran:
            close_old_connections()


def _run_all(callbacks: list[Callable[[], None]]) -> None:
    for callback in callbacks:
        try:
            callback()
        except Exception:
            log.exception("a callback after a response failed")
    callbacks.clear()


_after_response: contextvars.ContextVar[_Callbacks] = contextvars.ContextVar(
    "jserver_after_response"
)


def after_response(callback: Callable[[], None]) -> bool:
    """Run ``callback`` on the event loop once the current response is sent.

    For work a request causes but its client need not wait for. Callbacks run
    in the order they were added, also when the client went away. Callable
    from the request's worker thread and from its async view. Return ``False``
    (and do nothing) outside a request served by this handler, or once its
    callbacks have run (from a task that outlived its request).
    """
    callbacks = _after_response.get(None)
    if callbacks is None or callbacks.closed:
        return False
    callbacks.pending.append(callback)
    return True


def after_response_on_worker(callback: Callable[[], None]) -> bool:
    """Run ``callback`` on the request's worker thread once its response is sent.

    For synchronous work (database bookkeeping) the client's answer does not
    depend on. Callbacks run in the order they were added, also when the
    client went away, before the worker serves another request, on the
    request's database connection. Return ``False`` (and do nothing) outside a
    request served by this handler (Django's test client, a management
    command), or once its callbacks have run: the caller then does the work
    itself, at once.
    """
    callbacks = _after_response.get(None)
    if callbacks is None or callbacks.worker_closed:
        return False
    callbacks.on_worker.append(callback)
    return True


class ServerBusy(Exception):
    """No worker became free within ``HTTP_QUEUE_SECONDS``."""


_SUBMITTED, _CALLED = object(), object()  # the two kinds of work a Worker runs


class Worker(Executor):
    """One long-lived thread running one call at a time.

    ``call`` runs a request's synchronous part from the event loop; ``submit``
    (the ``Executor`` interface) is what ``ThreadSensitiveContext`` uses for
    the request's other thread-sensitive calls. The thread is a daemon: the
    pool stops it at exit, after its current call.
    """

    def __init__(self, name: str) -> None:
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def submit(self, fn: Callable, /, *args: Any, **kwargs: Any) -> Future:
        future: Future = Future()
        self._queue.put((_SUBMITTED, future, fn, args, kwargs))
        return future

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        self._queue.put(None)
        if wait:
            self._thread.join(WORKER_EXIT_SECONDS)

    def join(self, timeout: float) -> None:
        """Wait at most ``timeout`` seconds for the thread to end."""
        self._thread.join(timeout)

    async def call(self, fn: Callable, *args: Any) -> Any:
        """Run ``fn(*args)`` on the thread, in a copy of the current context.

        Cancelled while an async view called from ``fn`` runs, the view's task
        is cancelled too (as ``sync_to_async`` does); the thread may still be
        busy when this returns.
        """
        loop = asyncio.get_running_loop()
        result = loop.create_future()
        tasks: list[asyncio.Task] = []  # async_to_sync adds the view's task here
        context = contextvars.copy_context()
        self._queue.put((_CALLED, loop, result, tasks, context, fn, args))
        try:
            return await result
        except asyncio.CancelledError:
            for task in tasks:
                task.cancel()
            raise

    def _run(self) -> None:
        threadlocal = SyncToAsync.threadlocal  # read by async_to_sync
        threadlocal.main_event_loop_pid = os.getpid()
        while (item := self._queue.get()) is not None:
            if item[0] is _SUBMITTED:
                _, future, fn, args, kwargs = item
                if future.set_running_or_notify_cancel():
                    try:
                        future.set_result(fn(*args, **kwargs))
                    except BaseException as error:
                        future.set_exception(error)
                continue
            _, loop, result, tasks, context, fn, args = item
            threadlocal.main_event_loop = loop
            threadlocal.task_context = tasks
            try:
                value = context.run(fn, *args)
            except BaseException as error:
                _settle(loop, result, error, failed=True)
            else:
                _settle(loop, result, value, failed=False)
            finally:
                threadlocal.main_event_loop = threadlocal.task_context = None


def _settle(loop, result: asyncio.Future, value: Any, *, failed: bool) -> None:
    def settle() -> None:
        if result.done():  # cancelled meanwhile
            return
        if failed:
            result.set_exception(value)
        else:
            result.set_result(value)

    try:
        loop.call_soon_threadsafe(settle)
    except RuntimeError:  # the loop is closed: nobody waits any more
        pass


class WorkerPool:
    """Long-lived workers, each lent to one request at a time.

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
        self._workers: list[Worker] = []
        self._idle: list[Worker] = []
        self._waiters: collections.deque[asyncio.Future] = collections.deque()
        atexit.register(self.close)

    @property
    def busy(self) -> int:
        """Return how many workers are lent out now."""
        return self.created - len(self._idle)

    async def acquire(self) -> Worker:
        """Return a free worker, waiting at most ``wait_seconds`` for one."""
        if self._idle:
            return self._idle.pop()
        if self.created < self.size:
            self.created += 1
            worker = Worker(f"jserver-http-{self.created}")
            self._workers.append(worker)
            return worker
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

    def release(self, worker: Worker) -> None:
        """Give ``worker`` to the longest waiter, or back to the idle ones."""
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(worker)
                return
        self._idle.append(worker)

    def release_when_idle(
        self,
        worker: Worker,
        then: Callable[[], None] | None = None,
        *,
        last: Callable[[], None] | None = None,
    ) -> None:
        """Release ``worker`` (and call ``then``) once its current call returned.

        Used when a request is cancelled while its synchronous part runs: a
        thread cannot be interrupted, and the next borrower must not queue
        behind it unknowingly. ``last`` runs on the worker before it is
        released (the request's work after its response).
        """

        loop = asyncio.get_running_loop()

        def done() -> None:  # on the loop
            self.release(worker)
            if then is not None:
                then()

        def run() -> None:  # on the worker, once its current call returned
            try:
                if last is not None:
                    last()
            except Exception:
                log.exception("closing a request after its response failed")
            finally:
                try:
                    loop.call_soon_threadsafe(done)
                except RuntimeError:  # the loop is closed: nobody waits
                    pass

        worker.submit(run)

    def close(self) -> None:
        """Stop every worker after its current call (at exit, within a bound)."""
        deadline = time.monotonic() + WORKER_EXIT_SECONDS
        for worker in self._workers:
            worker.shutdown(wait=False)
        for worker in self._workers:
            worker.join(max(0.0, deadline - time.monotonic()))


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
        callbacks = _Callbacks()
        _after_response.set(callbacks)
        try:
            answered = await self._serve(worker, scope, body_file, receive, send)
        except BaseException:
            # The worker may still be running the request: it is lent again,
            # and the request's callbacks run, once it has returned.
            self.workers.release_when_idle(
                worker, then=callbacks.run, last=callbacks.run_on_worker
            )
            raise
        if not answered:
            self.workers.release_when_idle(
                worker, then=callbacks.run, last=callbacks.run_on_worker
            )
        elif callbacks.on_worker or callbacks.unclosed is not None:
            # The response is out: the request's remaining work runs on its
            # worker while the loop goes on; the worker is lent again after.
            callbacks.run()
            self.workers.release_when_idle(worker, last=callbacks.run_on_worker)
        else:
            self.workers.release(worker)
            callbacks.run()

    async def _serve(self, worker: Worker, scope, body_file, receive, send) -> bool:
        """Answer on ``worker``; return ``False`` if the client left first."""

        async def process_request() -> HttpResponse:
            response = await worker.call(self._respond, scope, body_file)
            try:
                if response.streaming and not response.is_async:
                    # Django iterates it with a thread-sensitive sync_to_async.
                    async with ThreadSensitiveContext(executor=worker):
                        await self.send_response(response, send)
                else:
                    await self.send_response(response, send)
            except asyncio.CancelledError:
                pass  # the client went away while the response was sent
            return response

        # As Django's handler: a client disconnecting cancels the request.
        tasks = [
            asyncio.create_task(self.listen_for_disconnect(receive)),
            asyncio.create_task(process_request()),
        ]
        try:
            await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            for task in tasks:
                if task.done():
                    try:
                        task.result()
                    except RequestAborted:
                        pass
                else:
                    task.cancel()
                    try:
                        await task
                    except asyncio.CancelledError:
                        pass
            try:
                response = tasks[1].result()
            except asyncio.CancelledError:
                # The client left: _respond sends request_finished once it
                # returns (an async view it runs is cancelled).
                return False
            if response.streaming:
                await worker.call(response.close)
            return True
        finally:
            for task in tasks:
                task.cancel()
            body_file.close()

    def _respond(self, scope, body_file) -> HttpResponse:
        """Answer the request synchronously, on the borrowed worker's thread.

        A non-streaming response is closed here (which sends
        ``request_finished``) before the loop sends its bytes, saving a hop,
        unless the request queued work for its worker
        (``after_response_on_worker``): it is closed after that work. A
        streaming one is closed after it has been sent.
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
            callbacks = _after_response.get(None)
            if callbacks is not None and callbacks.on_worker:
                callbacks.unclosed = response
            else:
                response.close()
        return response

    async def read_body(self, receive):
        """Receive the body into memory, or a temporary file past the threshold.

        In memory, the parts are joined once into the buffer Django reads
        (whole, without another copy); past ``HTTP_BODY_MEMORY_BYTES`` what
        came so far and the rest go to a temporary file.
        """
        parts: list[bytes] = []
        size = 0
        spool = None
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                if spool is not None:
                    spool.close()
                raise RequestAborted()
            body = message.get("body", b"")
            if body:
                if spool is not None:
                    spool.write(body)
                else:
                    parts.append(body)
                    size += len(body)
                    if size > settings.HTTP_BODY_MEMORY_BYTES:
                        spool = tempfile.TemporaryFile(mode="w+b")
                        spool.writelines(parts)
                        parts.clear()
            if not message.get("more_body", False):
                break
        if spool is not None:
            spool.seek(0)
            return spool
        return io.BytesIO(b"".join(parts))


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
