"""Bookkeeping after the response: in order per user, settled before a user's
rows are read or changed, done at once outside daphne; and through a live
daphne, the index and history a client sees."""

import json
import threading
import urllib.error
import urllib.request

import pytest

from contents import backlog
from contents.models import Checkpoint, ContentsEntry
from tests.factories import make_token, make_user

pytestmark = pytest.mark.django_db


@pytest.fixture
def queued(monkeypatch):
    """Deferred work stays queued, as under daphne before the response is out."""
    drains: list = []

    def after_response_on_worker(callback) -> bool:
        drains.append(callback)
        return True

    monkeypatch.setattr(backlog, "after_response_on_worker", after_response_on_worker)
    yield drains
    backlog._queues.clear()


def test_outside_a_request_work_runs_at_once():
    done = []
    backlog.defer(1, lambda: done.append(1))
    assert done == [1]


def test_queued_work_runs_in_order_once(queued):
    done = []
    backlog.defer(7, lambda: done.append("first"))
    backlog.defer(7, lambda: done.append("second"))
    backlog.defer(8, lambda: done.append("other user"))
    assert done == []
    backlog.settle(7)  # a later request of user 7
    assert done == ["first", "second"]
    for drain in queued:  # then the requests' own drains
        drain()
    assert done == ["first", "second", "other user"]


def test_work_deferred_while_deferred_work_runs_runs_at_once(queued):
    done = []

    def outer() -> None:
        backlog.defer(7, lambda: done.append("inner"))
        backlog.settle(7)  # does not wait for itself
        done.append("outer")

    backlog.defer(7, outer)
    backlog.settle(7)
    assert done == ["inner", "outer"]


def test_a_failure_is_logged_and_the_rest_still_runs(queued, caplog):
    done = []
    backlog.defer(7, lambda: 1 / 0)
    backlog.defer(7, lambda: done.append("after"))
    backlog.settle(7)
    assert done == ["after"]
    assert "deferred bookkeeping failed" in caplog.text


def test_settle_waits_for_work_another_thread_is_running(queued):
    started, release, done = threading.Event(), threading.Event(), []

    def slow() -> None:
        started.set()
        release.wait(10)
        done.append("slow")

    backlog.defer(7, slow)
    runner = threading.Thread(target=queued[0])
    runner.start()
    assert started.wait(10)
    settler = threading.Thread(target=lambda: (backlog.settle(7), done.append("set")))
    settler.start()
    settler.join(0.2)
    assert settler.is_alive()  # waiting for the running item
    release.set()
    runner.join(10)
    settler.join(10)
    assert done == ["slow", "set"]


def test_a_rename_right_after_a_save_moves_its_row(queued, api, user):
    api.save_text("a.txt", "x")
    assert not ContentsEntry.objects.filter(owner=user).exists()  # still queued
    assert api.patch("/api/contents/a.txt", {"path": "b.txt"}).status_code == 200
    assert list(ContentsEntry.objects.filter(owner=user).values_list("path")) == [
        ("b.txt",)
    ]


def test_a_delete_right_after_a_save_leaves_no_live_row(queued, api, user):
    api.save_text("a.txt", "x")
    assert api.delete("/api/contents/a.txt").status_code == 204
    rows = ContentsEntry.objects.filter(owner=user)
    assert [(row.path, row.deleted is not None) for row in rows] == [("a.txt", True)]
    assert not Checkpoint.objects.filter(owner=user, deleted__isnull=True).exists()


def test_work_for_a_file_replaced_meanwhile_records_nothing(queued, api, user, root):
    api.save_text("a.txt", "x")
    (root / "a.txt").unlink()  # as a kernel, or another process, would
    backlog.settle(user.pk)
    assert not ContentsEntry.objects.filter(owner=user).exists()


def test_a_save_checkpoint_is_listed_right_after_it(queued, api):
    api.save_text("a.txt", "x")
    listed = api.get("/api/contents/a.txt/checkpoints").json()
    assert len(listed) == 1


def call(server, method: str, path: str, token: str, body=None):
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(
        server.url + path, data, {"Authorization": f"token {token}"}, method=method
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


@pytest.mark.e2e
@pytest.mark.django_db(transaction=True)
def test_through_daphne_saves_are_indexed_and_checkpointed(daphne_server):
    user = make_user("backlog-daphne")
    token = make_token(user)
    body = {"type": "file", "format": "text", "content": "one\n"}
    for name in ("kept.txt", "moved.txt", "gone.txt"):
        assert call(daphne_server, "PUT", f"api/contents/{name}", token, body)[0] == 201
    # Each right after its save: the server settles the user's work first.
    status, _ = call(
        daphne_server, "PATCH", "api/contents/moved.txt", token, {"path": "new.txt"}
    )
    assert status == 200
    assert call(daphne_server, "DELETE", "api/contents/gone.txt", token)[0] == 204
    status, listed = call(
        daphne_server, "GET", "api/contents/kept.txt/checkpoints", token
    )
    assert status == 200 and len(json.loads(listed)) == 1
    live = ContentsEntry.objects.filter(owner=user, deleted__isnull=True)
    assert sorted(live.values_list("path", flat=True)) == ["kept.txt", "new.txt"]
    kept = live.get(path="kept.txt")
    assert (kept.type, kept.size) == ("file", 4) and len(kept.hash) == 64
    gone = ContentsEntry.objects.get(owner=user, path="gone.txt")
    assert gone.deleted is not None


def test_a_file_read_again_unchanged_needs_no_database(
    api, user, root, django_assert_num_queries
):
    api.save_text("a.txt", "x")
    assert api.get("/api/contents/a.txt").status_code == 200
    with django_assert_num_queries(0):  # the token is remembered too
        assert api.get("/api/contents/a.txt").status_code == 200
    (root / "a.txt").write_text("changed by a kernel")
    assert api.get("/api/contents/a.txt").status_code == 200
    row = ContentsEntry.objects.get(owner=user, path="a.txt")
    assert row.size == len("changed by a kernel")
    assert api.patch("/api/contents/a.txt", {"path": "b.txt"}).status_code == 200
    assert api.patch("/api/contents/b.txt", {"path": "a.txt"}).status_code == 200
    ContentsEntry.objects.filter(owner=user).delete()  # as staff in the admin
    assert api.get("/api/contents/a.txt").status_code == 200
    assert ContentsEntry.objects.filter(owner=user, path="a.txt").exists()
