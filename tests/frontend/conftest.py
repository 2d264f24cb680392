"""Fixtures of the front-end suites.

- ``fresh_data``: a new data directory for the test (users' files and trash);
  the run's gzipped front-end files stay where they are
  (``FRONTEND_CACHE_DIR``): they take seconds to build.
"""

import pytest
from django.core.cache import cache


@pytest.fixture
def fresh_data(settings, tmp_path):
    settings.DATA_DIR = tmp_path / "data"
    settings.DATA_DIR.mkdir()
    cache.clear()  # quotas and usage measured in another data directory
    yield settings.DATA_DIR
    cache.clear()
