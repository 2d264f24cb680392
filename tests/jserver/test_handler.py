"""The HTTP handler: where requests run, the worker pool's bounds, cancellation,
work after the response. Driven in process through the ASGI interface, so the
test's event loop is the server's."""

import asyncio
import gc
import json

import pytest
from asgiref.testing import ApplicationCommunicator
from django.core import signals
from django.db import connection
from django.test import override_settings

from jserver import events, handler
from jserver.handler import ASGIHandler, ServerBusy, WorkerPool
from tests.jserver import handler_urls

pytestmark = pytest.mark.django_db(transaction=True)

TIMEOUT = 10  # seconds: a bound on every wait, never a timing assertion


@pytest.fixture
def urls(settings):
    settings.ROOT_URLCONF = "tests.jserver.handler_urls"
    handler_urls.seen.clear()
    handler_urls.release.clear()
    handler_urls.async_release = asyncio.Event()
    yield handler_urls
    handler_urls.release.set()  # never leave a worker waiting


def make_handler(threads: int = 2, queue_seconds: float = 5) -> ASGIHandler:
    with override_settings(HTTP_THREADS=threads, HTTP_QUEUE_SECONDS=queue_seconds):
        return ASGIHandler()


def scope(path: str, method: str = "GET") -> dict:
    return {
        "type": "http",
        "http_version": "1.1",
        "method": method,
        "path": path,
        "raw_path": path.encode(),
        "root_path": "",
        "scheme": "http",
        "query_string": b"",
        "headers": [(b"host", b"testserver")],
        "client": ("127.0.0.1", 40000),
        "server": ("testserver", 80),
    }


async def start(app: ASGIHandler, path: str) -> ApplicationCommunicator:
    comm = ApplicationCommunicator(app, scope(path))
    await comm.send_input({"type": "http.request", "body": b""})
    return comm


async def answer(comm: ApplicationCommunicator):
    """Return the status, headers and body the request was answered with."""
    start = await comm.receive_output(TIMEOUT)
    body = b""
    while True:
        message = await comm.receive_output(TIMEOUT)
        body += message.get("body", b"")
        if not message.get("more_body"):
            break
    await comm.wait(TIMEOUT)
    return start["status"], dict(start["headers"]), body


async def get(app: ASGIHandler, path: str):
    return await answer(await start(app, path))


async def ended_quietly(comm: ApplicationCommunicator) -> None:
    """Wait for the application to return, as Django's does when a client left."""
    await comm.wait(TIMEOUT)
    assert comm.future.done() and not comm.future.cancelled()
    assert comm.future.exception() is None


async def wait_for(condition) -> None:
    """Wait until ``condition()`` holds (polled), at most ``TIMEOUT``."""
    for _ in range(int(TIMEOUT / 0.01)):
        if condition():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("the condition never held")


async def test_sync_views_reuse_a_worker_thread_and_its_connection(urls):
    app = make_handler()
    answers = [json.loads((await get(app, "/sync"))[2]) for _ in range(3)]
    assert {a["thread"] for a in answers} == {"jserver-http-1"}
    if connection.vendor == "sqlite":  # PostgreSQL returns it to the pool instead
        assert len({a["connection"] for a in answers}) == 1
    assert app.workers.created == 1 and app.workers.busy == 0


async def test_async_views_run_on_the_servers_loop_with_sync_work_on_the_worker(
    urls,
):
    app = make_handler()
    status, _, body = await get(app, "/async")
    assert status == 200
    seen = json.loads(body)
    assert seen["loop"] == id(asyncio.get_running_loop())
    assert seen["thread"] == "MainThread"
    assert seen["sync_thread"] == "jserver-http-1"


async def test_a_busy_pool_answers_503_after_the_bounded_wait(urls):
    app = make_handler(threads=1, queue_seconds=0.2)
    slow = await start(app, "/async-slow")
    await wait_for(lambda: urls.seen == ["async started"])
    status, headers, body = await get(app, "/api/anything")
    assert status == 503
    assert headers[b"Retry-After"] == b"1"
    assert json.loads(body) == {"message": handler.BUSY_MESSAGE, "reason": None}
    status, headers, _ = await get(app, "/page")
    assert status == 503 and headers[b"Content-Type"].startswith(b"text/plain")
    urls.async_release.set()
    assert (await answer(slow))[0] == 200
    assert (await get(app, "/sync"))[0] == 200


async def test_a_waiting_request_gets_the_next_free_worker(urls):
    app = make_handler(threads=1, queue_seconds=10)
    slow = await start(app, "/async-slow")
    await wait_for(lambda: urls.seen == ["async started"])
    waiting = asyncio.create_task(get(app, "/sync"))
    await asyncio.sleep(0.1)
    assert not waiting.done()
    urls.async_release.set()
    assert (await answer(slow))[0] == 200
    assert (await waiting)[0] == 200


async def test_a_disconnect_cancels_an_async_view_and_frees_its_worker(urls):
    app = make_handler(threads=1)
    slow = await start(app, "/async-slow")
    await wait_for(lambda: urls.seen == ["async started"])
    await slow.send_input({"type": "http.disconnect"})
    await wait_for(lambda: "async cancelled" in urls.seen)
    await ended_quietly(slow)
    assert (await get(app, "/sync"))[0] == 200


async def test_a_sync_view_whose_client_left_keeps_its_worker_until_it_returns(
    urls,
):
    app = make_handler(threads=1, queue_seconds=10)
    slow = await start(app, "/sync-slow")
    await wait_for(lambda: urls.seen == ["sync started"])
    await slow.send_input({"type": "http.disconnect"})
    await ended_quietly(slow)
    assert app.workers.busy == 1  # not lent again while the view runs
    waiting = asyncio.create_task(get(app, "/sync"))
    await asyncio.sleep(0.1)
    assert not waiting.done()  # the only worker still runs the view
    urls.release.set()
    assert (await waiting)[0] == 200
    # Its work after the response still ran, once the view had returned.
    assert urls.seen == ["sync started", "sync finished", "after sync_slow"]


async def test_callbacks_run_in_order_after_the_response(urls):
    app = make_handler()
    comm = await start(app, "/after")
    await comm.receive_output(TIMEOUT)  # the response's start
    urls.seen.append("sent")
    await answer_rest(comm)
    await wait_for(lambda: len(urls.seen) == 4)
    assert urls.seen == ["sent", "after 1", "after 2", "after 3"]


async def answer_rest(comm: ApplicationCommunicator) -> None:
    while (await comm.receive_output(TIMEOUT)).get("more_body"):
        pass
    await comm.wait(TIMEOUT)


def test_after_response_outside_a_request_does_nothing():
    assert handler.after_response(lambda: None) is False
    assert handler.after_response_on_worker(lambda: None) is False


async def test_worker_callbacks_run_on_its_worker_after_the_response(urls):
    def finished(**kwargs) -> None:
        urls.seen.append("request_finished")

    signals.request_finished.connect(finished)
    try:
        app = make_handler(threads=1, queue_seconds=10)
        status, _, _ = await get(app, "/after-worker")  # its callback waits for this
        assert status == 200 and urls.seen == ["view"]
        urls.answered.set()
        # The only worker serves the next request once the callbacks are done.
        assert (await get(app, "/sync"))[0] == 200
    finally:
        signals.request_finished.disconnect(finished)
        urls.answered.clear()
    assert urls.seen[:4] == [
        "view",
        "worker 1 on the view's thread: True",
        "worker 2",
        "request_finished",  # the request's connection served its callbacks
    ]


async def test_worker_callbacks_run_when_the_client_left(urls):
    app = make_handler(threads=1, queue_seconds=10)
    comm = await start(app, "/after-worker")
    await comm.receive_output(TIMEOUT)
    await comm.send_input({"type": "http.disconnect"})
    urls.answered.set()
    try:
        assert (await get(app, "/sync"))[0] == 200
    finally:
        urls.answered.clear()
    assert urls.seen == ["view", "worker 1 on the view's thread: True", "worker 2"]


async def test_events_of_a_request_go_out_in_order_after_it(urls, monkeypatch):
    sent = []

    async def record(owner, schema_id, data):
        await asyncio.sleep(0.01 * (3 - data["n"]))  # the first is the slowest
        sent.append(data["n"])

    monkeypatch.setattr(events, "emit", record)
    for number in (1, 2, 3):
        events._queue(None, "schema", {"n": number})
    await wait_for(lambda: len(sent) == 3)
    assert sent == [1, 2, 3]


async def test_the_pool_lends_the_last_returned_worker_first():
    pool = WorkerPool(3, wait_seconds=1)
    first, second = await pool.acquire(), await pool.acquire()
    assert pool.busy == 2
    pool.release(first)
    pool.release(second)
    assert await pool.acquire() is second
    assert pool.created == 2
    pool.close()


async def test_a_pool_wait_is_bounded_and_loses_no_worker():
    pool = WorkerPool(1, wait_seconds=0.05)
    worker = await pool.acquire()
    with pytest.raises(ServerBusy):
        await pool.acquire()
    waiter = asyncio.create_task(pool.acquire())
    await asyncio.sleep(0)
    waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter
    pool.release(worker)
    assert await pool.acquire() is worker
    pool.close()


async def test_a_worker_runs_calls_in_a_copy_of_the_callers_context():
    pool = WorkerPool(1, wait_seconds=1)
    worker = await pool.acquire()
    handler._after_response.set(handler._Callbacks())
    assert await worker.call(handler.after_response, lambda: None) is True
    with pytest.raises(ZeroDivisionError):
        await worker.call(lambda: 1 / 0)
    pool.close()


def test_what_the_application_built_is_left_out_of_garbage_collection():
    import jserver.asgi  # noqa: F401 (builds the application)

    assert gc.get_freeze_count() > 10_000
