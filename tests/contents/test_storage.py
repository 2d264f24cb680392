"""Path confinement of users' roots."""

import os

import pytest

from contents.storage import kernel_cwd, split_api_path, user_root
from jserver.errors import NotFound

pytestmark = pytest.mark.django_db


def test_user_root_is_private_and_keyed_by_id(user, other_user, settings):
    root = user_root(user)
    assert root == settings.DATA_DIR / "users" / str(user.pk)
    assert root.stat().st_mode & 0o777 == 0o700
    assert user_root(other_user) != root


@pytest.mark.parametrize(
    "path", ["..", "../x", "a/../../x", "a/./b", "a\\..\\b", "a\x00b", "/a/../.."]
)
def test_escapes_are_not_found(path):
    with pytest.raises(NotFound):
        split_api_path(path)


def test_split_api_path():
    assert split_api_path("") == []
    assert split_api_path("/a//b/c.ipynb/") == ["a", "b", "c.ipynb"]


def test_kernel_cwd_walks_up_to_an_existing_directory(user):
    root = user_root(user)
    (root / "project" / "data").mkdir(parents=True)
    assert kernel_cwd(user, "project/data") == root / "project" / "data"
    assert kernel_cwd(user, "project/nb.ipynb") == root / "project"
    assert kernel_cwd(user, "missing/deep/x.ipynb") == root
    assert kernel_cwd(user, None) == root


def test_kernel_cwd_refuses_a_link_out_of_the_root(user, other_user):
    root = user_root(user)
    os.symlink(user_root(other_user), root / "theirs")
    with pytest.raises(NotFound):
        kernel_cwd(user, "theirs")
