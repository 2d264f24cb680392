"""Views for tests/jserver/test_handler.py: where and when a request runs."""

import asyncio
import threading

from asgiref.sync import sync_to_async
from django.db import connection
from django.http import HttpRequest, JsonResponse
from django.urls import path

from jserver import handler

# What the views saw, for the tests to inspect (reset by the tests).
seen: list[str] = []
# Set by a test to let the slow views finish.
release = threading.Event()
# Set by a test once it has the response of /after-worker.
answered = threading.Event()
async_release: asyncio.Event | None = None


def _connection_id() -> int:
    connection.ensure_connection()
    return id(connection.connection)


def sync_where(request: HttpRequest) -> JsonResponse:
    return JsonResponse(
        {"thread": threading.current_thread().name, "connection": _connection_id()}
    )


async def async_where(request: HttpRequest) -> JsonResponse:
    sync_thread = await sync_to_async(lambda: threading.current_thread().name)()
    return JsonResponse(
        {
            "loop": id(asyncio.get_running_loop()),
            "thread": threading.current_thread().name,
            "sync_thread": sync_thread,
        }
    )


async def async_slow(request: HttpRequest) -> JsonResponse:
    seen.append("async started")
    try:
        await async_release.wait()
    except asyncio.CancelledError:
        seen.append("async cancelled")
        raise
    return JsonResponse({"done": True})


def sync_slow(request: HttpRequest) -> JsonResponse:
    seen.append("sync started")
    release.wait(10)
    seen.append("sync finished")
    handler.after_response(lambda: seen.append("after sync_slow"))
    return JsonResponse({"done": True})


def after(request: HttpRequest) -> JsonResponse:
    for number in (1, 2, 3):
        handler.after_response(lambda number=number: seen.append(f"after {number}"))
    return JsonResponse({"done": True})


def after_worker(request: HttpRequest) -> JsonResponse:
    view_thread = threading.current_thread().name

    def first() -> None:
        answered.wait(10)  # never set if this ran before the response went out
        same = threading.current_thread().name == view_thread
        seen.append(f"worker 1 on the view's thread: {same}")

    handler.after_response_on_worker(first)
    handler.after_response_on_worker(lambda: seen.append("worker 2"))
    seen.append("view")
    return JsonResponse({"done": True})


urlpatterns = [
    path("after-worker", after_worker),
    path("sync", sync_where),
    path("async", async_where),
    path("async-slow", async_slow),
    path("sync-slow", sync_slow),
    path("after", after),
]
