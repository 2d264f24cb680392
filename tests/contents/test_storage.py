"""contents.storage: path confinement, links, atomic writes, trash, uploads, usage."""

import errno
import os
import stat
import threading

import pytest

from contents import storage as storage_module
from contents.storage import (
    MAX_SYMLINKS,
    PARTIAL_PREFIX,
    Storage,
    UploadLost,
    kernel_cwd,
    split_api_path,
    usage,
    user_root,
)
from jserver.errors import NotFound

pytestmark = pytest.mark.django_db


@pytest.fixture
def store(user):
    return Storage(user)


def leftovers(directory) -> list[str]:
    return sorted(name for name in os.listdir(directory) if name.startswith(".~"))


# ---- roots and API paths ----------


def test_user_root_is_private_and_keyed_by_id(user, other_user, settings):
    root = user_root(user)
    assert root == settings.DATA_DIR / "users" / str(user.pk)
    assert root.stat().st_mode & 0o777 == 0o700
    assert user_root(other_user) != root


@pytest.mark.parametrize(
    ("path", "message"),
    [
        ("..", ".. is outside root contents directory"),
        ("../x", "../x is outside root contents directory"),
        ("a/../../x", "a/../../x is outside root contents directory"),
        ("a/./b", "a/./b is outside root contents directory"),
        ("/a/../..", "a/../.. is outside root contents directory"),
        (
            "sub/../../etc/passwd",
            "sub/../../etc/passwd is outside root contents directory",
        ),
        ("a\\..\\b", "a\\..\\b is not a valid path"),
        ("..\\x", "..\\x is not a valid path"),
        ("a\x00b", "a\x00b is not a valid path"),
        ("\x00", "\x00 is not a valid path"),
    ],
)
def test_escapes_are_not_found(path, message):
    with pytest.raises(NotFound) as caught:
        split_api_path(path)
    assert caught.value.message == message


def test_split_api_path():
    assert split_api_path("") == []
    assert split_api_path("/") == []
    assert split_api_path("/a//b/c.ipynb/") == ["a", "b", "c.ipynb"]
    # Not escapes on a POSIX filesystem: ordinary names.
    assert split_api_path("C:/x") == ["C:", "x"]
    assert split_api_path("...") == ["..."]
    assert split_api_path("．．/x") == ["．．", "x"]  # full-width dots


# ---- symbolic links ----------


def test_links_inside_the_root_are_followed(store, root):
    (root / "sub").mkdir()
    (root / "sub" / "t.txt").write_text("hi")
    os.symlink("sub/t.txt", root / "relative")
    os.symlink(root / "sub" / "t.txt", root / "absolute")
    os.symlink("sub", root / "dirlink")
    os.symlink("../sub/t.txt", root / "sub" / "up")
    os.symlink("relative", root / "chain")
    for path in ("relative", "absolute", "dirlink/t.txt", "sub/up", "chain"):
        data, st = store.read(split_api_path(path))
        assert data == b"hi" and stat.S_ISREG(st.st_mode), path
    with store.locate(["dirlink", "t.txt"]) as location:
        assert location.parts == ("sub", "t.txt")


@pytest.mark.parametrize(
    "target",
    [
        "/etc/passwd",
        "../../../../../../etc/passwd",
        "..",
        "../",
        "sub/../..",
    ],
)
def test_links_leaving_the_root_are_refused(store, root, target):
    (root / "sub").mkdir()
    os.symlink(target, root / "out")
    with pytest.raises(NotFound) as caught:
        store.read(["out"])
    assert caught.value.message == "out is outside root contents directory"
    with pytest.raises(NotFound):
        store.write(["out"], b"overwritten")


def test_a_link_to_another_users_root_is_refused(store, root, other_root):
    (other_root / "secret.txt").write_text("theirs")
    os.symlink(other_root, root / "theirs")
    os.symlink(other_root / "secret.txt", root / "their-file")
    for path in (["theirs", "secret.txt"], ["their-file"]):
        with pytest.raises(NotFound):
            store.read(path)
        with pytest.raises(NotFound):
            store.write(path, b"x")
        with pytest.raises(NotFound):
            store.copy_file(path, ["copied"])
    assert (other_root / "secret.txt").read_text() == "theirs"


def test_sibling_prefix_roots_do_not_match(store, root, settings):
    # /users/1 must not reach /users/10 (CVE-2026-35397): compare components.
    sibling = root.parent / (root.name + "0")
    sibling.mkdir(exist_ok=True)
    (sibling / "x").write_text("sibling")
    os.symlink(str(sibling / "x"), root / "x")
    with pytest.raises(NotFound):
        store.read(["x"])


def test_link_loops_are_refused(store, root):
    os.symlink("b", root / "a")
    os.symlink("a", root / "b")
    with pytest.raises(NotFound):
        store.read(["a"])


def test_dangling_links_and_special_files_are_not_found(store, root):
    os.symlink("nowhere", root / "dangling")
    os.mkfifo(root / "fifo")
    for name in ("dangling", "fifo"):
        with pytest.raises(FileNotFoundError):
            store.lookup([name])
    with pytest.raises(FileNotFoundError):
        store.read(["fifo"])  # opened without blocking, then refused


def test_listing_shows_only_links_that_stay_inside(store, root, other_root):
    (root / "sub").mkdir()
    (root / "t.txt").write_text("12345")
    os.symlink("t.txt", root / "inside")
    os.symlink("sub", root / "inside-dir")
    os.symlink("/etc/passwd", root / "outside")
    os.symlink(other_root, root / "theirs")
    os.symlink("missing", root / "dangling")
    os.mkfifo(root / "fifo")
    _, entries = store.listdir([])
    found = {entry.name: entry for entry in entries}
    assert set(found) == {"sub", "t.txt", "inside", "inside-dir"}
    assert found["inside"].is_link and found["inside"].stat.st_size == 5
    assert found["inside-dir"].is_dir


def test_listing_stats_each_entry_once_and_opens_none(store, root, monkeypatch):
    for number in range(50):
        (root / f"f{number}.ipynb").write_text("{}")
    opened = []
    real_open = os.open

    def counting_open(path, flags, *args, **kwargs):
        opened.append(path)
        return real_open(path, flags, *args, **kwargs)

    monkeypatch.setattr(storage_module.os, "open", counting_open)
    _, entries = store.listdir([])
    assert len(entries) == 50
    assert all(not str(name).endswith(".ipynb") for name in opened)
    assert len(opened) <= 2  # the root, and the directory listed


def test_a_directory_swapped_for_a_link_after_the_check_is_not_followed(
    store, root, other_root, monkeypatch
):
    """The kernel swaps ``sub`` for a link to another root between the server's
    ``lstat`` and its ``open``: ``O_NOFOLLOW`` refuses, resolution starts over
    and sees a link leaving the root."""
    (root / "sub").mkdir()
    (root / "sub" / "secret.txt").write_text("mine")
    (other_root / "secret.txt").write_text("theirs")
    real_stat = os.stat
    swapped = []

    def swapping_stat(path, *args, **kwargs):
        result = real_stat(path, *args, **kwargs)
        if path == "sub" and not swapped:
            swapped.append(True)
            os.rename(root / "sub", root / "elsewhere")
            os.symlink(other_root, root / "sub")
        return result

    monkeypatch.setattr(storage_module.os, "stat", swapping_stat)
    with pytest.raises(NotFound):
        store.read(["sub", "secret.txt"])
    assert swapped


def test_a_file_swapped_for_a_link_after_the_check_is_not_followed(
    store, root, monkeypatch
):
    (root / "t.txt").write_text("mine")
    real_stat = os.stat
    swapped = []

    def swapping_stat(path, *args, **kwargs):
        result = real_stat(path, *args, **kwargs)
        if path == "t.txt" and not swapped:
            swapped.append(True)
            os.unlink(root / "t.txt")
            os.symlink("/etc/passwd", root / "t.txt")
        return result

    monkeypatch.setattr(storage_module.os, "stat", swapping_stat)
    with pytest.raises(NotFound):
        store.read(["t.txt"])


def test_racing_link_swaps_never_read_outside(store, root, other_root):
    """A thread keeps swapping ``sub`` between a directory and a link to another
    user's root while the server reads ``sub/secret.txt``: every read returns
    this user's bytes or fails, never the other user's."""
    (other_root / "secret.txt").write_text("theirs")
    (root / "real").mkdir()
    (root / "real" / "secret.txt").write_text("mine")
    os.symlink(other_root, root / "evil")
    stop = threading.Event()

    def swap() -> None:
        while not stop.is_set():
            os.rename(root / "real", root / "sub")
            os.rename(root / "sub", root / "real")
            os.rename(root / "evil", root / "sub")
            os.rename(root / "sub", root / "evil")

    swapper = threading.Thread(target=swap)
    swapper.start()
    seen = set()
    try:
        for _ in range(3000):
            try:
                data, _ = store.read(["sub", "secret.txt"])
            except (NotFound, OSError):
                continue
            seen.add(data)
    finally:
        stop.set()
        swapper.join()
    assert seen <= {b"mine"}


def test_locate_gives_up_after_too_many_links(store, root):
    os.symlink("l0", root / "start")
    for number in range(MAX_SYMLINKS + 1):
        os.symlink(f"l{number + 1}", root / f"l{number}")
    (root / f"l{MAX_SYMLINKS + 1}").write_text("end")
    with pytest.raises(NotFound):
        store.read(["start"])


# ---- hard links ----------


def test_hard_link_to_a_foreign_file_is_not_read(store, root, tmp_path):
    foreign = tmp_path / "foreign.txt"
    foreign.write_text("not yours")
    os.chown(foreign, 12345, 12345)
    os.link(foreign, root / "linked.txt")
    with pytest.raises(NotFound):
        store.read(["linked.txt"])


def test_hard_links_of_the_users_own_files_are_read(store, root):
    (root / "a.txt").write_text("shared")
    os.link(root / "a.txt", root / "b.txt")
    assert store.read(["b.txt"])[0] == b"shared"


def test_saving_over_a_hard_link_never_writes_into_the_other_name(
    store, root, tmp_path
):
    outside = tmp_path / "outside.txt"
    outside.write_text("original")
    os.link(outside, root / "linked.txt")
    store.write(["linked.txt"], b"replaced")
    assert outside.read_text() == "original"
    assert (root / "linked.txt").read_text() == "replaced"


# ---- atomic writes ----------


def test_write_replaces_atomically_and_keeps_the_mode(store, root):
    (root / "run.sh").write_text("old")
    os.chmod(root / "run.sh", 0o751)
    st = store.write(["run.sh"], b"new")
    assert (root / "run.sh").read_bytes() == b"new"
    assert stat.S_IMODE(os.stat(root / "run.sh").st_mode) == 0o751
    assert st.st_size == 3 and st.st_mtime == os.stat(root / "run.sh").st_mtime
    assert leftovers(root) == []


def test_write_through_a_link_inside_the_root_keeps_the_link(store, root):
    (root / "real.txt").write_text("old")
    os.symlink("real.txt", root / "alias.txt")
    store.write(["alias.txt"], b"new")
    assert os.path.islink(root / "alias.txt")
    assert (root / "real.txt").read_text() == "new"


def test_a_full_disk_leaves_the_previous_content(store, root, monkeypatch):
    (root / "nb.ipynb").write_text("previous")
    real_write = os.write
    calls = []

    def full_disk(fd, data):
        calls.append(fd)
        if len(calls) > 1:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_write(fd, bytes(data)[:10])

    monkeypatch.setattr(storage_module.os, "write", full_disk)
    with pytest.raises(OSError) as caught:
        store.write(["nb.ipynb"], b"x" * 100_000)
    assert caught.value.errno == errno.ENOSPC
    assert (root / "nb.ipynb").read_text() == "previous"
    assert leftovers(root) == []


@pytest.mark.parametrize("failing", ["fsync", "rename"])
def test_a_failure_before_the_rename_leaves_the_previous_content(
    store, root, monkeypatch, failing
):
    (root / "f.txt").write_text("previous")

    def fail(*args, **kwargs):
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(storage_module.os, failing, fail)
    with pytest.raises(OSError):
        store.write(["f.txt"], b"new content")
    assert (root / "f.txt").read_text() == "previous"
    assert leftovers(root) == []


def test_an_exception_while_producing_the_content_leaves_nothing(store, root):
    (root / "f.txt").write_text("previous")

    def produce(fd: int) -> None:
        os.write(fd, b"half")
        raise RuntimeError("producer failed")

    with pytest.raises(RuntimeError):
        store.write(["f.txt"], produce)
    assert (root / "f.txt").read_text() == "previous"
    assert leftovers(root) == []


def test_write_refuses_directories_and_missing_parents(store, root):
    (root / "d").mkdir()
    with pytest.raises(IsADirectoryError):
        store.write(["d"], b"x")
    with pytest.raises(IsADirectoryError):
        store.write([], b"x")
    with pytest.raises(FileNotFoundError):
        store.write(["missing", "f.txt"], b"x")


def test_before_hook_can_refuse_a_write(store, root):
    (root / "f.txt").write_text("keep")

    def refuse(st):
        assert st.st_size == 4
        raise PermissionError("no")

    with pytest.raises(PermissionError):
        store.write(["f.txt"], b"changed", before=refuse)
    assert (root / "f.txt").read_text() == "keep"


# ---- directories, renames, copies, trash ----------


def test_mkdir_and_rename(store, root):
    _, created = store.mkdir(["d"])
    assert created and (root / "d").is_dir()
    assert store.mkdir(["d"])[1] is False
    (root / "f").write_text("x")
    with pytest.raises(FileExistsError):
        store.mkdir(["f"])
    store.rename(["f"], ["d", "g"])
    assert (root / "d" / "g").read_text() == "x"
    (root / "h").write_text("y")
    with pytest.raises(FileExistsError):
        store.rename(["h"], ["d", "g"])
    with pytest.raises(FileNotFoundError):
        store.rename(["nope"], ["x"])
    with pytest.raises(OSError) as caught:
        store.rename(["d"], ["d", "inner"])
    assert caught.value.errno == errno.EINVAL


def test_rename_moves_a_link_not_its_target(store, root):
    (root / "t.txt").write_text("x")
    os.symlink("/etc/passwd", root / "out")
    store.rename(["out"], ["moved"])
    assert os.readlink(root / "moved") == "/etc/passwd"


def test_copy_tree_copies_links_as_links(store, root):
    (root / "src" / "inner").mkdir(parents=True)
    (root / "src" / "inner" / "f.txt").write_text("data")
    os.symlink("/etc/passwd", root / "src" / "out")
    os.mkfifo(root / "src" / "fifo")
    store.copy_tree(["src"], ["dst"])
    assert (root / "dst" / "inner" / "f.txt").read_text() == "data"
    assert os.readlink(root / "dst" / "out") == "/etc/passwd"
    assert not (root / "dst" / "fifo").exists()
    with pytest.raises(FileExistsError):
        store.copy_tree(["src"], ["dst"])


def test_trash_and_untrash(store, root, user):
    (root / "d").mkdir()
    (root / "d" / "a.txt").write_text("12345")
    (root / "d" / "b.txt").write_text("123")
    name, st, size = store.trash(["d"])
    assert not (root / "d").exists() and size == 8 and stat.S_ISDIR(st.st_mode)
    trash = storage_module.trash_root(user)
    assert (trash / name / "a.txt").read_text() == "12345"
    assert not trash.is_relative_to(root)
    store.untrash(name, ["restored"])
    assert (root / "restored" / "b.txt").read_text() == "123"
    with pytest.raises(FileNotFoundError):
        store.trash(["d"])


def test_trash_across_devices_copies_then_removes(store, root, monkeypatch):
    (root / "d").mkdir()
    (root / "d" / "f.txt").write_text("x")
    real_rename = os.rename

    def cross_device(src, dst, **kwargs):
        if kwargs.get("src_dir_fd") != kwargs.get("dst_dir_fd"):
            raise OSError(errno.EXDEV, "Invalid cross-device link")
        return real_rename(src, dst, **kwargs)

    monkeypatch.setattr(storage_module.os, "rename", cross_device)
    name, _, _ = store.trash(["d"])
    assert not (root / "d").exists()
    assert (storage_module.trash_root(store.owner) / name / "f.txt").read_text() == "x"


# ---- chunked uploads ----------


def test_partial_uploads_never_touch_the_target_until_finished(store, root):
    (root / "big.bin").write_bytes(b"old")
    partial = store.start_partial(["big.bin"], b"aa")
    st = store.append_partial(partial, b"bb")
    assert (root / "big.bin").read_bytes() == b"old"
    partial = storage_module.PartialFile(**{**partial.__dict__, "size": st.st_size})
    store.append_partial(partial, b"cc", finish=True)
    assert (root / "big.bin").read_bytes() == b"aabbcc"
    assert leftovers(root) == []


def test_an_upload_whose_partial_file_was_replaced_is_lost(store, root, tmp_path):
    partial = store.start_partial(["f.bin"], b"aa")
    os.unlink(root / partial.name)
    outside = tmp_path / "outside"
    outside.write_bytes(b"aa")
    os.link(outside, root / partial.name)
    with pytest.raises(UploadLost):
        store.append_partial(partial, b"bb")
    assert outside.read_bytes() == b"aa"
    os.unlink(root / partial.name)
    os.symlink(outside, root / partial.name)
    with pytest.raises(UploadLost):
        store.append_partial(partial, b"bb")


# ---- usage and kernels ----------


def test_usage_counts_regular_files_once(user, root, settings):
    (root / "d").mkdir()
    (root / "d" / "a").write_bytes(b"x" * 100)
    os.link(root / "d" / "a", root / "b")
    (root / "c").write_bytes(b"x" * 50)
    os.symlink("/etc/passwd", root / "link")
    settings.STORAGE_QUOTA_BYTES = 1000
    assert usage(user) == (150, 1000)
    settings.STORAGE_QUOTA_BYTES = 0
    storage_module.forget_quota(user.pk)
    assert usage(user)[1] is None


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
    with pytest.raises(NotFound):
        kernel_cwd(user, "theirs/nb.ipynb")


def test_kernel_cwd_resolves_links_inside_the_root(user):
    root = user_root(user)
    (root / "real").mkdir()
    os.symlink("real", root / "alias")
    assert kernel_cwd(user, "alias/nb.ipynb") == root / "real"


def test_partial_files_are_hidden_names():
    assert PARTIAL_PREFIX.startswith(".")
    assert storage_module.UPLOAD_PREFIX.startswith(".")
