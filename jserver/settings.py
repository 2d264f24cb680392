"""Settings for jserver.

This is the only module that reads the environment. Every variable is named
``JSERVER_<NAME>``, typed, defaulted and documented here and in the README.

With nothing set, jserver runs embedded: SQLite and the secret key in the data
directory, the in-memory channel layer, one daphne. Hosted deployments set
``JSERVER_DATABASE_URL`` (PostgreSQL), ``JSERVER_REDIS_URL``, ``JSERVER_SECRET_KEY``,
``JSERVER_ALLOWED_HOSTS`` and, behind TLS, ``JSERVER_HTTPS``.
"""

import os
import secrets
import sys
import sysconfig
from pathlib import Path
from urllib.parse import parse_qsl, unquote, urlsplit

from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent

# The jupyter_server release whose wire API jserver speaks (GET /api answers it).
JUPYTER_SERVER_VERSION = "2.21.1"


def env(name: str, default: str | None = None) -> str | None:
    """Return ``JSERVER_<name>`` from the environment, or ``default``."""
    value = os.environ.get(f"JSERVER_{name}")
    return default if value is None or value == "" else value


def env_bool(name: str, default: bool = False) -> bool:
    """Return ``JSERVER_<name>`` read as a boolean (1/true/yes/on)."""
    value = env(name)
    if value is None:
        return default
    lowered = value.strip().lower()
    if lowered in {"1", "true", "yes", "on"}:
        return True
    if lowered in {"0", "false", "no", "off"}:
        return False
    raise ImproperlyConfigured(f"JSERVER_{name} must be a boolean, got {value!r}")


def env_int(name: str, default: int) -> int:
    """Return ``JSERVER_<name>`` read as an integer."""
    value = env(name)
    if value is None:
        return default
    try:
        return int(value)
    except ValueError:
        raise ImproperlyConfigured(
            f"JSERVER_{name} must be an integer, got {value!r}"
        ) from None


def env_list(name: str, default: list[str]) -> list[str]:
    """Return ``JSERVER_<name>`` read as a comma-separated list."""
    value = env(name)
    if value is None:
        return default
    return [item.strip() for item in value.split(",") if item.strip()]


def normalise_base_url(value: str) -> str:
    """Return ``value`` as ``/prefix/``: leading and trailing slash, no doubles."""
    parts = [part for part in value.split("/") if part]
    for part in parts:
        if part in {".", ".."} or not all(c.isalnum() or c in "-_.~" for c in part):
            raise ImproperlyConfigured(f"JSERVER_BASE_URL has a bad segment: {part!r}")
    return "/" + "".join(f"{part}/" for part in parts)


def database_from_url(url: str) -> dict:
    """Return the ``DATABASES`` entry of a ``postgresql://`` or ``sqlite:///`` URL."""
    parts = urlsplit(url)
    options = dict(parse_qsl(parts.query))
    if parts.scheme in {"postgres", "postgresql"}:
        name = unquote(parts.path.lstrip("/"))
        if not name:
            raise ImproperlyConfigured("JSERVER_DATABASE_URL names no database")
        # psycopg 3's pool: connections are reused across requests and threads
        # (persistent per-thread connections leak under ASGI's per-request threads).
        test_name = options.pop("test_name", None) or f"test_{name}"
        pool = {
            "min_size": int(options.pop("pool_min_size", "1")),
            "max_size": int(options.pop("pool_max_size", "10")),
            "timeout": float(options.pop("pool_timeout", "10")),
        }
        return {
            "ENGINE": "django.db.backends.postgresql",
            "NAME": name,
            "USER": unquote(parts.username or ""),
            "PASSWORD": unquote(parts.password or ""),
            "HOST": parts.hostname or "",
            "PORT": str(parts.port or ""),
            "OPTIONS": {**options, "pool": pool},
            "TEST": {"NAME": test_name},
        }
    if parts.scheme == "sqlite":
        # sqlite:///relative/path, sqlite:////absolute/path (as SQLAlchemy reads them)
        path = unquote(parts.path)[1:]
        if not path:
            raise ImproperlyConfigured("JSERVER_DATABASE_URL names no SQLite file")
        return sqlite_database(Path(path).resolve())
    raise ImproperlyConfigured(
        "JSERVER_DATABASE_URL must start with postgresql:// or sqlite:///"
    )


def sqlite_database(path: Path) -> dict:
    """Return a Django ``DATABASES`` entry for the SQLite file at ``path``."""
    return {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": str(path),
        # The test database is a file too, so a live daphne started by the
        # end-to-end tests shares it with the test process.
        "TEST": {"NAME": str(path.with_name(f"test_{path.name}"))},
        "OPTIONS": {
            # Several threads (and processes) write: wait instead of failing.
            "timeout": 20,
            "transaction_mode": "IMMEDIATE",
            "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
        },
        # Kept open by each thread: HTTP requests run on long-lived worker
        # threads (jserver/handler.py), so a connection serves many requests.
        "CONN_MAX_AGE": None,
    }


def redis_layer(url: str) -> dict:
    """Return the channels-redis channel layer for ``url``."""
    return {
        "BACKEND": "channels_redis.core.RedisChannelLayer",
        "CONFIG": {"hosts": [url], "prefix": "jserver"},
    }


def secret_key_from_file(path: Path) -> str:
    """Return the secret key stored at ``path``, creating it (mode 0600) if missing."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        return path.read_text().strip()
    except FileNotFoundError:
        pass
    key = secrets.token_urlsafe(50)
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL
    try:
        fd = os.open(path, flags, 0o600)
    except FileExistsError:  # another process created it first
        return path.read_text().strip()
    with os.fdopen(fd, "w") as handle:
        handle.write(key + "\n")
    return key


# Where the database (embedded), the secret key (embedded) and users' files live.
DATA_DIR = Path(env("DATA_DIR", str(BASE_DIR / "var"))).resolve()
DATA_DIR.mkdir(parents=True, exist_ok=True)
# The gzipped copies of the front ends' files (frontend/compress.py), built at
# start-up: derived data, rebuilt when missing.
FRONTEND_CACHE_DIR = DATA_DIR / "cache" / "frontend"

# Serve everything under this prefix, like jupyter_server's base_url ("/jupyter/").
BASE_URL = normalise_base_url(env("BASE_URL", "/"))
URL_PREFIX = BASE_URL[1:]  # the same prefix, as Django URL patterns want it

DEBUG = env_bool("DEBUG", False)

# Hosted deployments must set the key: several daphne processes share it.
if key := env("SECRET_KEY"):
    SECRET_KEY = key
    SECRET_KEY_FROM_ENV = True
elif env("DATABASE_URL"):
    raise ImproperlyConfigured(
        "JSERVER_SECRET_KEY must be set when JSERVER_DATABASE_URL is "
        "(every daphne process of a deployment needs the same key)"
    )
else:
    SECRET_KEY = secret_key_from_file(DATA_DIR / "secret_key")
    SECRET_KEY_FROM_ENV = False

ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", ["127.0.0.1", "localhost", "[::1]"])

# Origins (scheme://host[:port]) besides the server's own that browsers may use
# for cookie-authenticated WebSockets and unsafe requests.
ALLOW_ORIGINS = env_list("ALLOW_ORIGINS", [])
CSRF_TRUSTED_ORIGINS = ALLOW_ORIGINS

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "channels",
    "jserver",
    "accounts",
    "contents",
    "kernels",
    "frontend",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "frontend.middleware.StaticFilesMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "accounts.middleware.token_login_middleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "jserver.middleware.xsrf_cookie_middleware",
]
# jserver.handler runs this chain synchronously, in one call on a worker thread.

ROOT_URLCONF = "jserver.urls"
ASGI_APPLICATION = "jserver.asgi.application"
WSGI_APPLICATION = None

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "jserver.context_processors.site",
            ],
        },
    },
]

if url := env("DATABASE_URL"):  # hosted: postgresql://... through psycopg 3
    DATABASES = {"default": database_from_url(url)}
else:  # embedded: a file in the data directory, test database included
    DATABASES = {"default": sqlite_database(DATA_DIR / "jserver.sqlite3")}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

if url := env("REDIS_URL"):  # hosted: shared by every daphne process
    CHANNEL_LAYERS = {"default": redis_layer(url)}
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": url,
            "KEY_PREFIX": "jserver",
        }
    }
else:  # embedded: a single process, so in-memory groups suffice
    CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": f"django.contrib.auth.password_validation.{name}"}
    for name in (
        "UserAttributeSimilarityValidator",
        "MinimumLengthValidator",
        "CommonPasswordValidator",
        "NumericPasswordValidator",
    )
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

# URLs, all under the base URL.
LOGIN_URL = BASE_URL + "login"
LOGIN_REDIRECT_URL = BASE_URL
LOGOUT_REDIRECT_URL = None
STATIC_URL = BASE_URL + "static/"
STATIC_ROOT = None  # nothing is collected: WhiteNoise serves from the apps
# Serve app static files straight from the apps (no collectstatic step).
WHITENOISE_USE_FINDERS = True
WHITENOISE_AUTOREFRESH = DEBUG
# jupyter_server strips trailing slashes instead of adding them.
APPEND_SLASH = False

# Cookies: server-side sessions (logout and password change end them), scoped to
# the base URL. The XSRF cookie and header carry the names JupyterLab uses.
SESSION_COOKIE_NAME = "jserver-session"
SESSION_COOKIE_PATH = BASE_URL
SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SAMESITE = "Lax"
SESSION_COOKIE_AGE = env_int("SESSION_AGE_SECONDS", 14 * 24 * 3600)
CSRF_COOKIE_NAME = "_xsrf"
CSRF_HEADER_NAME = "HTTP_X_XSRFTOKEN"
CSRF_COOKIE_PATH = BASE_URL
CSRF_COOKIE_HTTPONLY = False  # JupyterLab reads it to send X-XSRFToken
CSRF_COOKIE_SAMESITE = "Lax"
CSRF_FAILURE_VIEW = "jserver.views.csrf_failure"

# HTTPS (behind a TLS-terminating proxy that sets X-Forwarded-Proto).
HTTPS = env_bool("HTTPS", False)
if HTTPS:
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    SECURE_SSL_REDIRECT = True
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True
    SECURE_HSTS_SECONDS = env_int("HSTS_SECONDS", 365 * 24 * 3600)
    SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("HSTS_INCLUDE_SUBDOMAINS", True)
    SECURE_HSTS_PRELOAD = env_bool("HSTS_PRELOAD", True)
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"

# Request bodies up to 512 MiB, as jupyter_server (whole notebooks are PUT as JSON).
MAX_BODY_SIZE = env_int("MAX_BODY_SIZE", 512 * 1024 * 1024)
DATA_UPLOAD_MAX_MEMORY_SIZE = MAX_BODY_SIZE
FILE_UPLOAD_MAX_MEMORY_SIZE = 2 * 1024 * 1024  # larger bodies spool to disk
DATA_UPLOAD_MAX_NUMBER_FIELDS = 10_000

# daphne: largest incoming WebSocket message, Tornado's default as jupyter_server.
WEBSOCKET_MAX_MESSAGE_SIZE = env_int("WEBSOCKET_MAX_MESSAGE_SIZE", 10 * 1024 * 1024)
# Seconds between server pings on idle WebSockets (jupyter_server: ws_ping_interval).
WEBSOCKET_PING_SECONDS = env_int("WEBSOCKET_PING_SECONDS", 30)
# Daphne serves on this address by default (manage.py serve).
BIND = env("BIND", "127.0.0.1")
PORT = env_int("PORT", 8888)
# Trust X-Forwarded-For/-Proto from a reverse proxy in front of daphne.
BEHIND_PROXY = env_bool("BEHIND_PROXY", False)

# Login throttling: failed attempts allowed per account and per client address
# within the window, before further attempts are refused.
LOGIN_FAILURES_PER_ACCOUNT = env_int("LOGIN_FAILURES_PER_ACCOUNT", 5)
LOGIN_FAILURES_PER_ADDRESS = env_int("LOGIN_FAILURES_PER_ADDRESS", 20)
LOGIN_FAILURE_WINDOW_SECONDS = env_int("LOGIN_FAILURE_WINDOW_SECONDS", 15 * 60)
# A token's last_used is written at most this often (one write per request is waste).
TOKEN_LAST_USED_RESOLUTION_SECONDS = 60

LOG_LEVEL = env("LOG_LEVEL", "INFO").upper()
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {"scrub": {"()": "jserver.logging.ScrubSecretsFilter"}},
    "formatters": {
        "plain": {"format": "[%(levelname)1.1s %(asctime)s %(name)s] %(message)s"}
    },
    "handlers": {
        "console": {
            "class": "logging.StreamHandler",
            "formatter": "plain",
            "filters": ["scrub"],
        }
    },
    "root": {"handlers": ["console"], "level": LOG_LEVEL},
    "loggers": {
        "daphne": {"level": "WARNING"},
        "django.db.backends": {"level": "INFO"},
        "asyncio": {"level": "WARNING"},
    },
}

# ---- frontend (JupyterLab 4 and Notebook 7: pages, assets, lab APIs)
# Where pip installed the front ends' data files (this environment's share/jupyter).
_SHARE_JUPYTER = Path(sysconfig.get_path("data")) / "share" / "jupyter"
# The built JupyterLab (static/, schemas/, themes/, settings/overrides.json), as
# jupyterlab's own JUPYTERLAB_DIR; only ever an installation, never a user's.
LAB_APP_DIR = Path(env("LAB_APP_DIR", str(_SHARE_JUPYTER / "lab"))).resolve()
# Directories searched in order for prebuilt labextensions (first hit wins):
# this environment's and the system's, never a home directory or JUPYTER_PATH.
LABEXTENSIONS_PATH = [
    Path(path).resolve()
    for path in env_list(
        "LABEXTENSIONS_PATH",
        [
            str(_SHARE_JUPYTER / "labextensions"),
            "/usr/local/share/jupyter/labextensions",
            "/usr/share/jupyter/labextensions",
        ],
    )
]
# JupyterLab plugins (ids or package names) switched off on top of those whose
# server side jserver does not offer (terminals, LSP, extension manager, news).
DISABLED_EXTENSIONS = env_list("DISABLED_EXTENSIONS", [])
# Export formats offered by /api/nbconvert, among those nbconvert has: by default
# the ones it produces without pandoc, LaTeX or a browser.
NBCONVERT_FORMATS = env_list(
    "NBCONVERT_FORMATS", ["html", "markdown", "notebook", "python", "script"]
)

# ---- sandbox
# Kernels run in a bubblewrap sandbox (kernels/sandbox.py; the README's "Security and
# isolation" section says what each setting does to a kernel).
# Without bubblewrap, start kernels unsandboxed (with a loud warning) or refuse to.
# Embedded (a developer's machine): allowed; hosted: refused unless set.
SANDBOX_ALLOW_UNSANDBOXED = env_bool(
    "SANDBOX_ALLOW_UNSANDBOXED", env("DATABASE_URL") is None
)
# The bubblewrap executable (found on PATH when unset).
SANDBOX_BWRAP = env("SANDBOX_BWRAP")
# Kernel network: "none" (an empty network namespace) or "outbound" (through
# slirp4netns, never to this host's own addresses or SANDBOX_BLOCKED_NETWORKS).
SANDBOX_NETWORK = env("SANDBOX_NETWORK", "none")
if SANDBOX_NETWORK not in {"none", "outbound"}:
    raise ImproperlyConfigured(
        f"JSERVER_SANDBOX_NETWORK must be none or outbound, got {SANDBOX_NETWORK!r}"
    )
# Destinations an "outbound" kernel cannot reach besides this host's addresses:
# private, shared (CGNAT) and link-local (cloud metadata) ranges by default.
SANDBOX_BLOCKED_NETWORKS = env_list(
    "SANDBOX_BLOCKED_NETWORKS",
    [
        "10.0.0.0/8",
        "172.16.0.0/12",
        "192.168.0.0/16",
        "100.64.0.0/10",
        "169.254.0.0/16",
    ],
)
# Default limits of one kernel (per-user overrides come with the kernels models).
# Memory: address space under rlimits (an idle ipykernel maps about 0.75 GiB),
# memory.max under cgroup v2.
SANDBOX_MEMORY_BYTES = env_int("SANDBOX_MEMORY_BYTES", 4 * 1024**3)
SANDBOX_MAX_PROCESSES = env_int("SANDBOX_MAX_PROCESSES", 512)  # threads count too
SANDBOX_MAX_OPEN_FILES = env_int("SANDBOX_MAX_OPEN_FILES", 4096)
SANDBOX_MAX_FILE_BYTES = env_int("SANDBOX_MAX_FILE_BYTES", 8 * 1024**3)
# A delegated cgroup v2 directory (e.g. a systemd unit's with Delegate=yes): each
# kernel gets a child with memory.max and pids.max. Empty: rlimits only.
SANDBOX_CGROUP_ROOT = env("SANDBOX_CGROUP_ROOT")
# When the server runs as root, user N's kernels run as uid and gid BASE + N
# (no account needed); owner roots are handed over to that uid.
SANDBOX_UID_BASE = env_int("SANDBOX_UID_BASE", 2_000_000_000)
# Entries of /etc a kernel sees (read-only); the rest of /etc is not there.
SANDBOX_ETC = env_list(
    "SANDBOX_ETC",
    [
        "alternatives",
        "ca-certificates",
        "ca-certificates.conf",
        "fonts",
        "gai.conf",
        "host.conf",
        "hosts",
        "ld.so.cache",
        "ld.so.conf",
        "ld.so.conf.d",
        "localtime",
        "mime.types",
        "nsswitch.conf",
        "pip.conf",
        "protocols",
        "services",
        "ssl",
        "timezone",
        "xdg/pip",
    ],
)
# More host paths kernels see read-only (software, shared data sets).
SANDBOX_READONLY_PATHS = env_list("SANDBOX_READONLY_PATHS", [])
# Bound on setting a sandbox up (network helper, routes) before a kernel runs.
SANDBOX_SETUP_TIMEOUT_SECONDS = env_int("SANDBOX_SETUP_TIMEOUT_SECONDS", 10)

# ---- contents
# Automatic checkpoints: one on the first save of a notebook or text file
# through the API, then at most one per interval of saves (seconds).
CHECKPOINT_INTERVAL_SECONDS = env_int("CHECKPOINT_INTERVAL_SECONDS", 5 * 60)
# Checkpoints kept per file (the oldest go first); jupyter_server keeps one.
CHECKPOINTS_KEPT = env_int("CHECKPOINTS_KEPT", 20)
# Largest file a checkpoint stores (bytes, compressed in the database): enough
# for notebooks with rich outputs, small enough that history stays cheap.
CHECKPOINT_MAX_BYTES = env_int("CHECKPOINT_MAX_BYTES", 32 * 1024 * 1024)
# Deleted files and directories, and their checkpoints, are kept this many
# days so that staff can restore them from the admin.
DELETED_RETENTION_DAYS = env_int("DELETED_RETENTION_DAYS", 30)
# Default storage quota per user in bytes; 0 means unlimited. Staff can set a
# per-user quota in the admin.
STORAGE_QUOTA_BYTES = env_int("STORAGE_QUOTA_BYTES", 0)

# ---- http (jserver/handler.py: Django's ASGI handler on long-lived worker threads)
# Requests handled at once (each on its own worker thread, whose database
# connection persists). A request holds its worker until it is answered, async
# views included; beyond this many, requests wait for a free worker.
HTTP_THREADS = env_int("HTTP_THREADS", 32)
# How long a request waits for a free worker before it is answered 503.
HTTP_QUEUE_SECONDS = env_int("HTTP_QUEUE_SECONDS", 30)
# Request bodies up to this size are held in memory; larger ones go to a
# temporary file first (Django's FILE_UPLOAD_MAX_MEMORY_SIZE is 2.5 MB).
HTTP_BODY_MEMORY_BYTES = env_int("HTTP_BODY_MEMORY_BYTES", 16 * 1024 * 1024)
# Seconds a process may remember an API token that authenticated, instead of
# reading it for every request (a lookup costs a database round trip, the
# largest fixed cost of a small request on PostgreSQL). A revoked or expired
# token, or a deactivated account, is refused from the next request on by the
# process where the change is made and by every process sharing DATA_DIR (told
# through a file there, accounts/tokens.py), and within this many seconds by
# any other. 0: every request reads the token.
TOKEN_CACHE_SECONDS = env_int("TOKEN_CACHE_SECONDS", 5)
# daphne passes a received body to Django in messages of at most this size.
HTTP_BODY_MESSAGE_BYTES = env_int("HTTP_BODY_MESSAGE_BYTES", 1024 * 1024)
# Bound on sending one server event (jserver/events.py) over the channel layer;
# requests queue their events and do not wait for them.
EVENTS_SEND_TIMEOUT_SECONDS = env_int("EVENTS_SEND_TIMEOUT_SECONDS", 10)

# ---- kernel lifecycle (kernels/manager.py)
# Running kernels per user; one more is refused with 429.
KERNELS_PER_USER = env_int("KERNELS_PER_USER", 10)
# jupyter_server's culling options: a kernel idle longer than the timeout
# (seconds, 0 = never) is shut down, checked every interval; connected or busy
# kernels are spared unless the matching option is on.
CULL_IDLE_TIMEOUT = env_int("CULL_IDLE_TIMEOUT", 0)
CULL_INTERVAL = env_int("CULL_INTERVAL", 300)
CULL_CONNECTED = env_bool("CULL_CONNECTED", False)
CULL_BUSY = env_bool("CULL_BUSY", False)
# Scheduling priority of kernels below the server's (nice increment, 0 = same):
# the server's threads that drain a kernel's output get the CPU first.
KERNEL_NICE = env_int("KERNEL_NICE", 5)
# Start ipykernel kernels with no send high-water mark on their sockets, so that
# a flood of output waits in the kernel instead of being dropped by ZMQ.
KERNEL_LOSSLESS_IOPUB = env_bool("KERNEL_LOSSLESS_IOPUB", True)
# Seconds to wait for a new kernel's kernel_info_reply (start, restart, and a
# WebSocket handshake on a kernel still starting).
KERNEL_INFO_TIMEOUT = env_int("KERNEL_INFO_TIMEOUT", 60)
# Seconds a kernel has to exit after a shutdown_request before it is killed.
KERNEL_SHUTDOWN_WAIT = env_int("KERNEL_SHUTDOWN_WAIT", 5)
# A kernel that dies is restarted this many times in a row (a kernel that ran
# KERNEL_STABLE_SECONDS resets the count), then declared dead.
KERNEL_RESTART_LIMIT = env_int("KERNEL_RESTART_LIMIT", 5)
KERNEL_STABLE_SECONDS = env_int("KERNEL_STABLE_SECONDS", 10)
# Output kept for a client that disconnected, replayed when it reconnects with
# the same session_id: bytes per kernel (all waiting sessions together), and how
# long a session's buffer waits for its client.
KERNEL_REPLAY_BYTES = env_int("KERNEL_REPLAY_BYTES", 64 * 1024 * 1024)
KERNEL_REPLAY_SECONDS = env_int("KERNEL_REPLAY_SECONDS", 3600)
# Messages waiting to be written to one WebSocket before consecutive stream
# outputs are merged (a slow client never holds up the kernel or other clients).
KERNEL_WS_BACKLOG = env_int("KERNEL_WS_BACKLOG", 256)
# jupyter_server's iopub rate limits, off by default; status messages are never
# dropped.
IOPUB_LIMIT_RATE = env_bool("IOPUB_LIMIT_RATE", False)
IOPUB_MSG_RATE_LIMIT = env_int("IOPUB_MSG_RATE_LIMIT", 1000)
IOPUB_DATA_RATE_LIMIT = env_int("IOPUB_DATA_RATE_LIMIT", 1_000_000)
IOPUB_RATE_WINDOW = env_int("IOPUB_RATE_WINDOW", 3)
# Client-to-kernel message types a WebSocket may send (empty: all), as
# jupyter_server's allowed_message_types.
KERNEL_ALLOWED_MESSAGE_TYPES = env_list("KERNEL_ALLOWED_MESSAGE_TYPES", [])

# ---- kernels
# Directories searched in order for kernelspecs (<dir>/<name>/kernel.json; the
# first of a name wins): this environment's and the system's, never a home
# directory, JUPYTER_PATH or the data directory. kernels/specs.py also refuses
# any kernelspec that group, others or another account could write.
KERNELSPEC_DIRS = [
    Path(path).resolve()
    for path in env_list(
        "KERNELSPEC_DIRS",
        [
            str(Path(sys.prefix) / "share" / "jupyter" / "kernels"),
            "/usr/local/share/jupyter/kernels",
            "/usr/share/jupyter/kernels",
        ],
    )
]
