"""Fixtures of the front-end suites.

- ``fresh_data``: a new data directory for the test (users' files and trash),
  sharing the run's cache of gzipped front-end files, which takes seconds to
  build.
"""

import pytest
from django.core.cache import cache


@pytest.fixture
def fresh_data(settings, tmp_path):
    shared = settings.DATA_DIR / "cache"
    shared.mkdir(parents=True, exist_ok=True)
    settings.DATA_DIR = tmp_path / "data"
    settings.DATA_DIR.mkdir()
    (settings.DATA_DIR / "cache").symlink_to(shared)
    cache.clear()  # quotas and usage measured in another data directory
    yield settings.DATA_DIR
    cache.clear()
