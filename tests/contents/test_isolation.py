"""Two users: one can never read, list, rename, overwrite, copy from or delete
the other's files, by path, escape or link: always 404 (never 403)."""

import os
from urllib.parse import unquote

import pytest

pytestmark = pytest.mark.django_db


@pytest.fixture
def bobs_files(other_api, other_root):
    other_api.save_text("secret.txt", "bob's secret")
    (other_root / "dir").mkdir()
    other_api.save_text("dir/inner.txt", "bob's inner")
    return other_root


def escapes(other_user) -> list[str]:
    pk = other_user.pk
    return [
        f"../{pk}/secret.txt",
        f"%2E%2E/{pk}/secret.txt",
        f"..%2F{pk}%2Fsecret.txt",
        f"dir/%2e%2e/%2e%2e/{pk}/secret.txt",
    ]


def links(root, other_root) -> list[str]:
    os.symlink(other_root, root / "bob")
    os.symlink(other_root / "secret.txt", root / "bobs-secret.txt")
    os.symlink(f"../{other_root.name}/secret.txt", root / "relative.txt")
    (root / "dir").mkdir()
    return ["bob/secret.txt", "bobs-secret.txt", "relative.txt", "bob/dir/inner.txt"]


def assert_untouched(other_root):
    assert (other_root / "secret.txt").read_text() == "bob's secret"
    assert (other_root / "dir" / "inner.txt").read_text() == "bob's inner"
    assert sorted(os.listdir(other_root)) == ["dir", "secret.txt"]


def test_plain_paths_are_only_ever_in_ones_own_root(api, bobs_files):
    assert api.get("/api/contents/secret.txt").status_code == 404
    assert api.get("/api/contents/dir").status_code == 404
    assert api.delete("/api/contents/secret.txt").status_code == 404
    assert api.patch("/api/contents/secret.txt", {"path": "x"}).status_code == 404
    assert api.post("/api/contents", {"copy_from": "secret.txt"}).status_code == 404
    api.save_text("secret.txt", "alice's own")  # a new file in alice's root
    assert_untouched(bobs_files)


def test_escapes_are_404(api, other_user, bobs_files):
    api.save_text("mine.txt", "alice's")
    for path in escapes(other_user):
        url = f"/api/contents/{path}"
        assert api.client.get(url).status_code == 404, path
        assert api.client.get(url, {"content": "0"}).status_code == 404
        assert api.delete(url).status_code == 404
        assert api.patch(url, {"path": "stolen.txt"}).status_code == 404
        assert (
            api.put(
                url, {"type": "file", "format": "text", "content": "overwritten"}
            ).status_code
            == 404
        )
        # Paths in bodies are not URL-decoded: the decoded escape.
        decoded = unquote(path)
        assert api.post("/api/contents", {"copy_from": decoded}).status_code == 404
        assert api.patch("/api/contents/mine.txt", {"path": decoded}).status_code == 404
        assert api.client.get(f"/files/{path}").status_code == 404
    assert_untouched(bobs_files)


def test_links_into_the_other_root_are_404(api, root, bobs_files):
    api.save_text("mine.txt", "alice's")
    for path in links(root, bobs_files):
        url = f"/api/contents/{path}"
        assert api.get(url).status_code == 404, path
        assert api.get(url, content="0").status_code == 404
        assert api.get(url, type="file", format="base64").status_code == 404
        assert (
            api.put(
                url, {"type": "file", "format": "text", "content": "overwritten"}
            ).status_code
            == 404
        ), path
        assert api.post("/api/contents", {"copy_from": path}).status_code == 404
        assert api.post(f"{url}/checkpoints").status_code == 404
        assert api.post(f"{url}/trust").status_code == 404
        assert api.client.get(f"/files/{path}").status_code == 404
    # Through a linked directory: listing, rename and delete of what is inside.
    assert api.get("/api/contents/bob").status_code == 404
    assert api.patch("/api/contents/bob/secret.txt", {"path": "x"}).status_code == 404
    assert (
        api.patch("/api/contents/mine.txt", {"path": "bob/dropped"}).status_code == 404
    )
    assert api.delete("/api/contents/bob/secret.txt").status_code == 404
    assert api.delete("/api/contents/bob/dir").status_code == 404
    names = {child["name"] for child in api.get("/api/contents").json()["content"]}
    assert names == {"mine.txt", "dir"}  # links leaving the root are not listed
    assert_untouched(bobs_files)


def test_checkpoints_of_the_other_user_are_not_found(api, other_api, bobs_files):
    checkpoint = other_api.post("/api/contents/secret.txt/checkpoints").json()["id"]
    api.save_text("secret.txt", "alice's")
    assert api.get("/api/contents/secret.txt/checkpoints").json()[0]["id"] != checkpoint
    for method in ("POST", "DELETE"):
        response = api.request(
            method, f"/api/contents/secret.txt/checkpoints/{checkpoint}"
        )
        assert response.status_code == 404
    assert (bobs_files / "secret.txt").read_text() == "bob's secret"
    assert len(other_api.get("/api/contents/secret.txt/checkpoints").json()) == 1


def test_both_users_see_only_their_listings(api, other_api, bobs_files):
    api.save_text("alice.txt", "a")
    assert {c["name"] for c in api.get("/api/contents").json()["content"]} == {
        "alice.txt"
    }
    assert {c["name"] for c in other_api.get("/api/contents").json()["content"]} == {
        "secret.txt",
        "dir",
    }
