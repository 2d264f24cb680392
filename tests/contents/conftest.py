"""Fixtures of the contents suites.

- ``api``: an ``Api`` for ``user`` (token-authenticated Django test client
  with JSON helpers); ``other_api``: the same for ``other_user``.
- ``root``: ``user``'s root directory; ``other_root``: ``other_user``'s.
- ``emitted``: the contents events emitted during the test, as
  ``(user_id, data)`` pairs.
Each test gets a fresh data directory (users' roots and trash) and a cleared
cache (quotas, usage, checkpoint intervals).
"""

import json
from typing import Any

import pytest
from django.test import Client

from contents import manager
from contents.storage import user_root
from tests.factories import make_token


class Api:
    """A JSON client of ``/api/contents`` for one user."""

    def __init__(self, user) -> None:
        self.user = user
        self.client = Client(headers={"Authorization": f"token {make_token(user)}"})

    def request(
        self, method: str, path: str, body: Any = None, raw: bytes | None = None
    ):
        data = (
            raw if raw is not None else (json.dumps(body) if body is not None else "")
        )
        return self.client.generic(method, path, data, content_type="application/json")

    def get(self, path: str, **params: str):
        return self.client.get(path, params)

    def put(self, path: str, body: Any = None, **kwargs):
        return self.request("PUT", path, body, **kwargs)

    def post(self, path: str, body: Any = None, **kwargs):
        return self.request("POST", path, body, **kwargs)

    def patch(self, path: str, body: Any = None, **kwargs):
        return self.request("PATCH", path, body, **kwargs)

    def delete(self, path: str):
        return self.request("DELETE", path)

    def save_text(self, path: str, text: str):
        response = self.put(
            f"/api/contents/{path}", {"type": "file", "format": "text", "content": text}
        )
        assert response.status_code in (200, 201), response.content
        return response.json()

    def save_notebook(self, path: str, notebook: Any):
        response = self.put(
            f"/api/contents/{path}",
            {"type": "notebook", "format": "json", "content": notebook},
        )
        assert response.status_code in (200, 201), response.content
        return response.json()


@pytest.fixture(autouse=True)
def _fresh_data(fresh_data):
    return fresh_data


@pytest.fixture
def api(user):
    return Api(user)


@pytest.fixture
def other_api(other_user):
    return Api(other_user)


@pytest.fixture
def root(user):
    return user_root(user)


@pytest.fixture
def other_root(other_user):
    return user_root(other_user)


@pytest.fixture
def emitted(monkeypatch):
    events: list[tuple[int, dict]] = []

    async def record(owner, schema_id, data):
        assert schema_id == manager.SCHEMA_ID
        events.append((owner.pk, data))

    monkeypatch.setattr(manager.events, "emit", record)
    return events
