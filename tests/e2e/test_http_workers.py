"""A live daphne's HTTP workers: long-lived threads and connections serve many
requests, concurrently, and never answer from stale credentials."""

import http.client
import json
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import urlsplit

import pytest

from accounts import tokens
from accounts.models import ApiToken
from tests.factories import make_token, make_user

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


def get(server, path: str, token: str) -> int:
    connection = http.client.HTTPConnection(server.host, server.port, timeout=10)
    try:
        connection.request("GET", path, headers={"Authorization": f"token {token}"})
        response = connection.getresponse()
        response.read()
        return response.status
    finally:
        connection.close()


def test_a_revoked_token_fails_at_the_next_request(daphne_server):
    user = make_user("workers-revoke")
    raw = make_token(user)
    # Enough requests to pass through every worker the server has made.
    assert {get(daphne_server, "/api/me", raw) for _ in range(20)} == {200}
    token = ApiToken.objects.get(user=user)
    tokens.revoke_token(user, token.pk)
    assert get(daphne_server, "/api/me", raw) == 403


def test_a_deactivated_user_fails_at_the_next_request(daphne_server):
    user = make_user("workers-inactive")
    raw = make_token(user)
    assert get(daphne_server, "/api/me", raw) == 200
    user.is_active = False
    user.save()
    assert get(daphne_server, "/api/me", raw) == 403


def test_concurrent_saves_and_reads_all_succeed(daphne_server):
    user = make_user("workers-many")
    raw = make_token(user)
    url = urlsplit(daphne_server.url)

    def client(number: int) -> list[int]:
        connection = http.client.HTTPConnection(url.hostname, url.port, timeout=30)
        headers = {"Authorization": f"token {raw}"}
        statuses = []
        try:
            for round_ in range(10):
                body = {"type": "file", "format": "text", "content": f"{round_}\n"}
                connection.request(
                    "PUT", f"/api/contents/c{number}.txt", json.dumps(body), headers
                )
                response = connection.getresponse()
                response.read()
                statuses.append(response.status)
                connection.request("GET", f"/api/contents/c{number}.txt", None, headers)
                response = connection.getresponse()
                model = json.loads(response.read())
                statuses.append(response.status)
                assert model["content"] == f"{round_}\n"
        finally:
            connection.close()
        return statuses

    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(client, range(8)))
    assert {status for statuses in results for status in statuses} <= {200, 201}
    assert sum(len(statuses) for statuses in results) == 160
