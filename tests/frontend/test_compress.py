"""Gzipped mirrors of the front ends' directories."""

import gzip
import os

import pytest

from frontend.compress import compressed_mirror


@pytest.fixture
def source(tmp_path):
    directory = tmp_path / "static"
    (directory / "sub").mkdir(parents=True)
    (directory / "main.0123456789abcdef.js").write_text("let x = 1;\n" * 500)
    (directory / "sub" / "small.css").write_text("a{}")
    (directory / "font.woff2").write_bytes(os.urandom(4096))
    return directory


def test_mirror_links_every_file_and_gzips_the_compressible_ones(source, tmp_path):
    mirror = compressed_mirror(source, tmp_path / "cache")
    assert mirror.is_relative_to(tmp_path / "cache")
    main = mirror / "main.0123456789abcdef.js"
    assert main.is_symlink() and main.read_text() == "let x = 1;\n" * 500
    assert gzip.decompress((mirror / f"{main.name}.gz").read_bytes()) == (
        main.read_bytes()
    )
    assert (mirror / "sub" / "small.css").read_text() == "a{}"
    assert not (mirror / "sub" / "small.css.gz").exists()  # too small to gain
    assert not (mirror / "font.woff2.gz").exists()  # already compressed


def test_mirror_is_built_once_and_rebuilt_when_the_files_change(source, tmp_path):
    cache = tmp_path / "cache"
    first = compressed_mirror(source, cache)
    (first / "marker").touch()
    assert compressed_mirror(source, cache) == first
    (source / "new.js").write_text("x" * 2000)
    second = compressed_mirror(source, cache)
    assert second != first and (second / "new.js.gz").exists()
    assert not any(p.name.startswith(".building-") for p in cache.iterdir())


def test_an_unusable_cache_serves_the_originals(source, tmp_path):
    blocker = tmp_path / "cache"
    blocker.write_text("not a directory")
    assert compressed_mirror(source, blocker) == source.resolve()
