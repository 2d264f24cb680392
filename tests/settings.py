"""Settings for the test suite: jserver's own, in a fresh data directory.

The data directory (users' files, the SQLite test database) is a new
temporary directory per run unless ``JSERVER_DATA_DIR`` is set; a live daphne
started by the end-to-end tests inherits it through the environment.
"""

import atexit
import os
import shutil
import tempfile

if "JSERVER_DATA_DIR" not in os.environ:
    _data_dir = tempfile.mkdtemp(prefix="jserver-test-")
    os.environ["JSERVER_DATA_DIR"] = _data_dir
    atexit.register(shutil.rmtree, _data_dir, True)
# Hosted mode (JSERVER_DATABASE_URL) requires a key; tests need no real one.
os.environ.setdefault("JSERVER_SECRET_KEY", "test-only-" + "k" * 50)

from jserver.settings import *  # noqa: E402,F403

ALLOWED_HOSTS = [*ALLOWED_HOSTS, "testserver"]  # noqa: F405
# Password hashing at production strength only slows the suite down.
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
