"""A user's database bookkeeping, done after the response that caused it.

Saving or reading a file through the API also updates rows its answer does
not depend on: the file's index row, its automatic checkpoint, a notebook's
trust signature. Under daphne (``jserver.handler``) that work is queued with
``defer`` and runs on the request's worker thread once the response is sent;
elsewhere (Django's test client, management commands) ``defer`` runs it at
once.

Order per user, in this process: each user's deferred work is one queue, run
in order by whoever gets to it first: the worker of the request that queued
it, or a later request of the same user that calls ``settle`` before it
reads or changes that user's rows (a rename, a delete, the checkpoints, the
trust check, the home page's recent files). A save followed at once by a
rename therefore has its row recorded before the rename moves it. Across
daphne processes there is no shared queue: deferred work checks the disk
first (``manager`` passes a check), so a file renamed or deleted meanwhile
is not recorded again, and ``index.recent_files`` heals what remains.
"""

import collections
import logging
import threading
from collections.abc import Callable

from jserver.handler import after_response_on_worker

log = logging.getLogger(__name__)


class _Queue:
    """One user's deferred work; ``lock`` is held while an item runs."""

    __slots__ = ("items", "lock")

    def __init__(self) -> None:
        self.items: collections.deque[Callable[[], None]] = collections.deque()
        self.lock = threading.Lock()


_queues: dict[int, _Queue] = {}
_queues_lock = threading.Lock()
# Set on a thread while it runs deferred work: that work does not settle.
_running = threading.local()


def _queue(owner_id: int) -> _Queue:
    queue = _queues.get(owner_id)
    if queue is None:
        with _queues_lock:
            queue = _queues.setdefault(owner_id, _Queue())
    return queue


def defer(owner_id: int, work: Callable[[], None]) -> None:
    """Run ``work`` (bookkeeping of ``owner_id``) after the current response.

    Serving a request under daphne, ``work`` is queued behind the user's
    earlier deferred work and run once the response is sent; otherwise (or
    while deferred work runs) it runs now, after that earlier work. Failures
    are logged, never raised: the file itself is already saved.
    """
    if getattr(_running, "active", False):
        _run(work)  # already in order: this thread runs the queue
        return
    queue = _queue(owner_id)
    queue.items.append(work)
    if not after_response_on_worker(lambda: _drain(queue)):
        _drain(queue)


def in_spare_time(work: Callable[[], None]) -> None:
    """Run ``work`` after the current response, outside any user's order.

    For work that only saves later requests time (writing data through to
    the disk early): outside a request served under daphne it is skipped.
    """
    after_response_on_worker(work)


def settle(owner_id: int) -> None:
    """Finish ``owner_id``'s deferred work before reading or changing their rows.

    Waits for an item another thread is running, and runs the queued ones on
    this thread, in order. Does nothing on a thread running deferred work.
    """
    queue = _queues.get(owner_id)
    if queue is None or getattr(_running, "active", False):
        return
    if queue.items or queue.lock.locked():
        _drain(queue)


def _drain(queue: _Queue) -> None:
    _running.active = True
    try:
        with queue.lock:
            while queue.items:
                _run(queue.items.popleft())
    finally:
        _running.active = False


def _run(work: Callable[[], None]) -> None:
    try:
        work()
    except Exception:
        log.exception("deferred bookkeeping failed")
