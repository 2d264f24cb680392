"""Tenant isolation, attacked from cells of real kernels through the API.

User A's kernel tries what issue 6 lists: B's files by absolute path, the data
directory, the database, the secret key and the server's settings, the server's
process and environment, the host's services over TCP (network policies
``none`` and ``outbound``), B's kernel sockets, links out of A's root read back
through the Contents API and ``/files``, a fork bomb, memory, open files and
file sizes past the limits. Each attempt must fail in one precise way, and a
control beside it shows that the target is real (the file exists, the port
listens, the path is the one the server uses). A's kernel must still do what
users do: the files at the paths the Contents API shows, ``input()``,
interrupts.

Kernels are shared to keep this quick: one per user on the session's daphne
for the whole module, and dedicated daphnes only where a setting differs
(outbound network, small limits). The module's users live outside
pytest-django's per-test flush (``db_access``) and are deleted at its end.
Every test needs bubblewrap (the tests' daphnes run in hosted mode, which
refuses unsandboxed kernels): they skip with one line where it is missing,
except under ``CI=true``, where that is a failure.
"""

import asyncio
import contextlib
import json
import os
import socket
import stat
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from django.conf import settings
from django.contrib.auth.models import User

from contents.storage import user_root
from jserver.settings import secret_key_from_file
from kernels import sandbox
from kernels.models import Kernel
from tests.conftest import REPO, LiveServer, start_daphne, stop_daphne
from tests.factories import make_token, make_user
from tests.kernels.conftest import Api, KernelSocket, kernel_processes
from tests.kernels.test_sandbox import _require_sandbox

pytestmark = [
    pytest.mark.kernel,
    pytest.mark.e2e,
    pytest.mark.timeout(180),
    # The daphnes need the test database, but the module's users and kernels
    # outlive single tests: with no available apps, the flush after each test
    # truncates nothing (the fixtures delete their own users), and there is no
    # test transaction, which would lock SQLite against the daphnes' writes.
    pytest.mark.django_db(transaction=True, available_apps=[]),
]

# Limits of the dedicated daphne. Under rlimits the memory limit is address
# space, and an idle ipykernel maps about 0.8 GiB (README, "Limits"): less
# than that and no kernel starts at all.
MEMORY_BYTES = 1536 * 1024**2
MAX_PROCESSES = 64  # threads count too: an idle ipykernel has about 13
MAX_OPEN_FILES = 256
MAX_FILE_BYTES = 1024**2
# What an idle server answers /api/status within, even on a loaded machine.
STATUS_SECONDS = 3


# ---- failures, as the probes in a kernel report them


def failed(exception: str, code: str | None) -> dict:
    return {"error": exception, "errno": code}


ABSENT = failed("FileNotFoundError", "ENOENT")
UNLISTABLE = failed("PermissionError", "EACCES")
REFUSED = failed("ConnectionRefusedError", "ECONNREFUSED")
NO_NETWORK = failed("OSError", "ENETUNREACH")
NO_ROUTE = failed("OSError", "EHOSTUNREACH")

# Defined in every probe cell: each probe is an expression, its outcome either
# {"value": ...} or the exception's class and errno name.
PRELUDE = """
import errno as _errno, json as _json, os, socket, stat, subprocess, sys

def _outcome(thunk):
    try:
        value = thunk()
    except Exception as exc:
        number = getattr(exc, "errno", None)
        return {"error": type(exc).__name__,
                "errno": _errno.errorcode.get(number, number)}
    return {"value": value}

def _read(path):
    with open(path, "rb") as handle:
        return handle.read().decode(errors="replace")

def _tcp(host, port):
    with socket.create_connection((host, port), timeout=5):
        return "connected"

def _unix(path):
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(5)
        sock.connect(path)
        return "connected"

def _proc_texts():
    texts = {}
    for pid in os.listdir("/proc"):
        for name in ("environ", "cmdline"):
            if pid.isdigit():
                try:
                    texts[f"{pid}/{name}"] = _read(f"/proc/{pid}/{name}")
                except OSError:
                    pass
    return texts

def _descriptors():
    seen = {}
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
            mode = os.stat(f"/proc/self/fd/{fd}").st_mode
        except OSError:  # the listing's own descriptor, closed by now
            continue
        kind = "file" if stat.S_ISREG(mode) else "other"
        if stat.S_ISSOCK(mode):
            with socket.socket(fileno=os.dup(int(fd))) as sock:
                kind = sock.family.name
        seen[fd] = [kind, target]
    return seen
"""


async def probe(sock: KernelSocket, checks: dict[str, str], setup: str = "") -> dict:
    """Run each of ``checks`` (name: expression) in the kernel; return outcomes."""
    lines = [PRELUDE, setup, "_results = {}"]
    lines += [
        f"_results[{name!r}] = _outcome(lambda: {expression})"
        for name, expression in checks.items()
    ]
    lines.append("print(_json.dumps(_results, default=repr))")
    run = await sock.execute("\n".join(lines))
    assert run.status == "ok", run.reply["content"]
    assert run.stream(), run.outputs
    return json.loads(run.stream())


# ---- users, their kernels, servers


@dataclass
class Tenant:
    api: Api
    user: User
    root: Path
    kernel_id: str
    sandboxed: bool
    sockets: str  # the kernel's ipc sockets are <sockets>-<port number>

    @property
    def runtime_dir(self) -> Path:
        return Path(self.sockets).parent

    async def socket(self) -> KernelSocket:
        return await KernelSocket.open(self.api, self.kernel_id)


@dataclass
class Tenants:
    server: LiveServer
    alice: Tenant
    bob: Tenant | None = None


def make_tenant(server: LiveServer, username: str) -> Tenant:
    """Create a user with a token and start their kernel (blocking)."""
    user = make_user(username)
    api = Api(server.url, make_token(user))
    status, _, model = api.call_sync("POST", "api/kernels", {})
    assert status == 201, model
    api.kernels.append(model["id"])
    row = Kernel.objects.get(pk=model["id"])
    return Tenant(
        api,
        user,
        user_root(user),
        model["id"],
        row.sandboxed,
        row.connection_info["ip"],
    )


def retire(tenants: list[Tenant]) -> None:
    """Shut down every kernel of ``tenants`` (blocking)."""
    for tenant in tenants:
        _, _, kernels = tenant.api.call_sync("GET", "api/kernels")
        for kernel in kernels or []:
            status, _, body = tenant.api.call_sync(
                "DELETE", f"api/kernels/{kernel['id']}"
            )
            assert status == 204, body


def processes_of(tenants: list[Tenant]) -> list[int]:
    """Return the pids of processes running the kernels of ``tenants``."""
    found = []
    for pid in kernel_processes():
        with contextlib.suppress(OSError):
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
            if any(str(tenant.runtime_dir) in cmdline for tenant in tenants):
                found.append(pid)
    return found


@contextlib.contextmanager
def tenants_on(server: LiveServer, *usernames: str) -> Iterator[Tenants]:
    """Give each of ``usernames`` a kernel on ``server``; shut them down after."""
    made: list[Tenant] = []
    try:
        for username in usernames:
            made.append(make_tenant(server, username))
        yield Tenants(server, *made)
    finally:
        try:
            retire(made)
        finally:
            User.objects.filter(username__in=usernames).delete()
    deadline = time.monotonic() + 15
    while (left := processes_of(made)) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not left, f"kernel processes left behind: {left}"


@pytest.fixture(scope="module")
def db_access(django_db_setup, django_db_blocker):
    """The database for the whole module, without pytest-django's per-test flush.

    The module's kernels outlive single tests, and a flush would delete their
    owners and tokens under them; each fixture deletes the users it made.
    """
    with django_db_blocker.unblock():
        yield


@pytest.fixture(scope="module")
def sandbox_required():
    """Skip (fail under CI=true) without bubblewrap: kernels cannot start here.

    The tests' daphnes run in hosted mode (a database URL), which refuses
    unsandboxed kernels.
    """
    _require_sandbox()


@pytest.fixture(scope="module")
def pair(sandbox_required, db_access, daphne_server):
    """Alice's and Bob's kernels on the session's daphne (network ``none``)."""
    with tenants_on(daphne_server, "iso-alice", "iso-bob") as tenants:
        yield tenants


@pytest.fixture(scope="module")
def limited(sandbox_required, db_access, tmp_path_factory):
    """A daphne whose kernels have small limits, with Alice's and Bob's kernels."""
    live = start_daphne(
        tmp_path_factory.mktemp("limited"),
        JSERVER_SANDBOX_MEMORY_BYTES=str(MEMORY_BYTES),
        JSERVER_SANDBOX_MAX_PROCESSES=str(MAX_PROCESSES),
        JSERVER_SANDBOX_MAX_OPEN_FILES=str(MAX_OPEN_FILES),
        JSERVER_SANDBOX_MAX_FILE_BYTES=str(MAX_FILE_BYTES),
    )
    try:
        with tenants_on(live, "iso-limited-alice", "iso-limited-bob") as tenants:
            yield tenants
    finally:
        stop_daphne(live)


@pytest.fixture(scope="module")
def outbound(sandbox_required, db_access, tmp_path_factory):
    """A daphne whose kernels have the ``outbound`` network, with Alice's."""
    live = start_daphne(
        tmp_path_factory.mktemp("outbound"), JSERVER_SANDBOX_NETWORK="outbound"
    )
    try:
        with tenants_on(live, "iso-outbound-alice") as tenants:
            yield tenants
    finally:
        stop_daphne(live)


@contextlib.asynccontextmanager
async def connected(tenant: Tenant):
    sock = await tenant.socket()
    try:
        yield sock
    finally:
        await sock.close()


async def put_text(api: Api, path: str, text: str) -> dict:
    body = {"type": "file", "format": "text", "content": text}
    status, _, model = await api.call("PUT", f"api/contents/{path}", body)
    assert status in (200, 201), model
    return model


def get_raw(api: Api, path: str) -> tuple[int, bytes]:
    """GET ``path`` with the user's token; return the status and the raw body."""
    request = urllib.request.Request(
        api.base + path, headers={"Authorization": f"token {api.token}"}
    )
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


def server_environment(pid: int) -> dict[str, str]:
    """Return the environment the process ``pid`` was started with."""
    raw = Path(f"/proc/{pid}/environ").read_bytes()
    pairs = (item.split(b"=", 1) for item in raw.split(b"\0") if b"=" in item)
    return {key.decode(): value.decode(errors="replace") for key, value in pairs}


def accepts(address: tuple[str, int]) -> bool:
    try:
        with socket.create_connection(address, timeout=2):
            return True
    except OSError:
        return False


@contextlib.asynccontextmanager
async def host_services(ports: list[int]):
    """Listen where no kernel may connect; yield this host's addresses and a port.

    PostgreSQL and Redis may run here or not: where nothing listens on
    127.0.0.1 at one of ``ports``, a stand-in does, and one more listener takes
    a port on every address of this host. A refused connection from a kernel
    then proves isolation, not an idle port.
    """
    with contextlib.ExitStack() as stack:
        for port in ports:
            if not accepts(("127.0.0.1", port)):
                stack.enter_context(socket.create_server(("127.0.0.1", port)))
            assert accepts(("127.0.0.1", port))
        everywhere = stack.enter_context(socket.create_server(("0.0.0.0", 0)))
        port = everywhere.getsockname()[1]
        addresses = await sandbox.host_addresses()
        for address in addresses:
            assert accepts((address, port)), address
        yield addresses, port


def tcp_checks(hosts: list[str], ports: list[int]) -> dict[str, str]:
    return {
        f"{host}:{port}": f"_tcp({host!r}, {port})" for host in hosts for port in ports
    }


# ---- other users' files, the data directory, the server's secrets


async def test_other_users_files_are_absent_by_absolute_path(pair):
    alice, bob = pair.alice, pair.bob
    await put_text(bob.api, "secret.txt", "bob's secret")
    await put_text(alice.api, "mine.txt", "alice's own")
    bob_file = bob.root / "secret.txt"
    assert bob_file.read_text() == "bob's secret"  # where the server keeps it
    async with connected(alice) as sock:
        seen = await probe(
            sock,
            {
                "own file": f"_read({str(alice.root / 'mine.txt')!r})",
                "bob's file": f"_read({str(bob_file)!r})",
                "bob's root": f"os.listdir({str(bob.root)!r})",
                "bob's root, stat": f"os.stat({str(bob.root)!r}).st_mode",
                "bob's root, O_PATH": f"os.open({str(bob.root)!r}, os.O_PATH)",
                "hard link": f"os.link({str(bob_file)!r}, "
                f"{str(alice.root / 'hard.txt')!r})",
                "users": f"os.listdir({str(bob.root.parent)!r})",
            },
        )
    assert seen == {
        "own file": {"value": "alice's own"},
        "bob's file": ABSENT,
        "bob's root": ABSENT,
        "bob's root, stat": ABSENT,
        "bob's root, O_PATH": ABSENT,
        "hard link": ABSENT,
        "users": UNLISTABLE,
    }


async def test_data_directory_cannot_be_listed_or_read(pair):
    data_dir = Path(settings.DATA_DIR)
    canary = data_dir / "isolation-canary"
    canary.write_text("the server's, readable by anyone on the host")
    os.chmod(canary, 0o644)
    try:
        # Everything at the top of the data directory, as the server sees it:
        # the SQLite files, the sandbox's own files, logs, caches, the canary.
        entries = sorted(os.listdir(data_dir))
        assert {"users", "runtime", "sandbox", canary.name} <= set(entries)
        passages = {"users", "runtime"}  # lead to the kernel's own directories
        checks = {
            "data dir": f"os.listdir({str(data_dir)!r})",
            "users": f"os.listdir({str(data_dir / 'users')!r})",
            "runtime": f"os.listdir({str(data_dir / 'runtime')!r})",
        }
        checks |= {
            name: f"os.lstat({str(data_dir / name)!r})"
            for name in entries
            if name not in passages
        }
        async with connected(pair.alice) as sock:
            seen = await probe(sock, checks)
    finally:
        canary.unlink()
    assert seen.pop("data dir") == UNLISTABLE
    assert seen.pop("users") == UNLISTABLE
    assert seen.pop("runtime") == UNLISTABLE
    assert seen == {name: ABSENT for name in entries if name not in passages}


async def test_database_secret_key_and_settings_are_unreadable(pair):
    database = settings.DATABASES["default"]
    key_file = Path(settings.DATA_DIR) / "secret_key"
    files = {
        "settings module": REPO / "jserver" / "settings.py",
        "test settings": REPO / "tests" / "settings.py",
        "manage.py": REPO / "manage.py",
        "secret key file": key_file,
    }
    if database["ENGINE"].endswith("sqlite3"):
        files["database"] = Path(database["NAME"])
        assert files["database"].stat().st_size > 0
    # The embedded server keeps its key there; the tests' key comes from the
    # environment, so make the file as the server would.
    made_key = not key_file.exists()
    secret_key_from_file(key_file)
    try:
        for path in files.values():
            assert path.is_file(), path
        checks = {name: f"_read({str(path)!r})" for name, path in files.items()}
        checks["repository"] = f"os.listdir({str(REPO)!r})"
        async with connected(pair.alice) as sock:
            seen = await probe(sock, checks)
    finally:
        if made_key:
            key_file.unlink()
    assert seen == {name: ABSENT for name in files} | {"repository": UNLISTABLE}


async def test_server_process_and_environment_are_invisible(pair):
    server_pid = pair.server.process.pid
    environment = server_environment(server_pid)
    secrets = {
        settings.SECRET_KEY,
        *(
            value
            for key, value in environment.items()
            if key
            in {"JSERVER_SECRET_KEY", "JSERVER_DATABASE_URL", "JSERVER_REDIS_URL"}
        ),
    }
    assert environment["JSERVER_SECRET_KEY"] == settings.SECRET_KEY
    assert "JSERVER_DATABASE_URL" in environment
    async with connected(pair.alice) as sock:
        seen = await probe(
            sock,
            {
                "server environ": f"_read('/proc/{server_pid}/environ')",
                "server exists": f"os.path.exists('/proc/{server_pid}')",
                "pids": "sorted(int(p) for p in os.listdir('/proc') if p.isdigit())",
                "own pid": "os.getpid()",
                "initial environment": "_read('/proc/self/environ')",
                "environment": "dict(os.environ)",
                "proc texts": "_proc_texts()",
            },
        )
    assert seen["server environ"] == ABSENT
    assert seen["server exists"] == {"value": False}
    # Its own PID namespace: the sandbox's few processes, numbered from 1.
    pids = seen["pids"]["value"]
    assert seen["own pid"]["value"] in pids and max(pids) < 10, pids
    initial = dict(
        item.split("=", 1)
        for item in seen["initial environment"]["value"].split("\0")
        if item
    )
    # Rebuilt from scratch: the launcher's allow-list, HOME, PATH, bwrap's PWD.
    allowed = {"HOME", "PATH", "PWD", "LANG", "LC_ALL", "LC_CTYPE", "TZ"}
    assert set(initial) - {"JPY_PARENT_PID"} <= allowed, initial
    names = set(seen["environment"]["value"])
    assert not {n for n in names if n.startswith(("JSERVER_", "DJANGO_"))}, names
    assert not {n for n in names if "SECRET" in n or "DATABASE" in n or "REDIS" in n}
    texts = [json.dumps(seen["environment"]), *seen["proc texts"]["value"].values()]
    assert len(seen["proc texts"]["value"]) >= 2  # its own environ and cmdline
    for secret in secrets:
        assert not [text for text in texts if secret in text]


# A kernel's stdout and stderr are a pipe the server relays to its log, never
# the server's own (its log file, which the kernel could reopen through
# /proc/self/fd/<n> and read or forge).
def _server_descriptors(pid: int) -> tuple[set[str], set[str]]:
    """Return what the server's descriptors point at, and the pipes it only reads
    (a kernel's stdout/stderr, whose write end the kernel holds)."""
    servers, relay = set(), set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        with contextlib.suppress(OSError):
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
            servers.add(target)
            with open(f"/proc/{pid}/fdinfo/{fd}") as info:
                flags = int(info.read().split("flags:")[1].split()[0], 8)
            if target.startswith("pipe:[") and flags & os.O_ACCMODE == os.O_RDONLY:
                relay.add(target)
    return servers, relay


async def test_kernel_holds_no_descriptor_of_the_servers_files(pair):
    async with connected(pair.alice) as sock:
        seen = await probe(sock, {"descriptors": "_descriptors()"})
    descriptors = seen["descriptors"]["value"]
    assert descriptors, seen
    own = (str(pair.alice.root), str(pair.alice.runtime_dir))
    server_pid = pair.server.process.pid
    servers, relay = _server_descriptors(server_pid)
    for fd, (kind, target) in descriptors.items():
        if target in relay:
            continue
        if kind == "file":  # its history database, say
            assert target.startswith(own), (fd, target)
        else:  # pipes and sockets: its own (ipykernel listens on its own
            # loopback), never one the server holds (its log, its listener)
            shared = target.startswith(("socket:[", "pipe:[", "/")) and not (
                target.startswith("/dev/")
            )
            assert not (shared and target in servers), (fd, kind, target)


# ---- the network


async def test_host_services_are_unreachable_without_network(pair):
    ports = [pair.server.port, 5432, 6379]
    async with host_services(ports) as (addresses, port):
        async with connected(pair.alice) as sock:
            seen = await probe(
                sock,
                tcp_checks(["127.0.0.1"], ports)
                | tcp_checks(addresses, [port])
                | {"routes": "_read('/proc/net/route').splitlines()[1:]"}
                | {"interfaces": "_read('/proc/net/dev').splitlines()[2:]"},
            )
    assert seen.pop("routes") == {"value": []}
    interfaces = [
        line.split(":")[0].strip() for line in seen.pop("interfaces")["value"]
    ]
    assert interfaces == ["lo"]
    for name, outcome in seen.items():
        expected = REFUSED if name.startswith("127.0.0.1:") else NO_NETWORK
        assert outcome == expected, name


async def test_host_services_are_unreachable_with_outbound_network(outbound, pair):
    ports = [outbound.server.port, pair.server.port, 5432, 6379]
    async with host_services(ports) as (addresses, port):
        async with connected(outbound.alice) as sock:
            seen = await probe(
                sock,
                tcp_checks(["127.0.0.1"], ports)
                | tcp_checks(addresses, [port])
                # slirp4netns's gateway would be the host's loopback, but for
                # --disable-host-loopback; 169.254.169.254: cloud metadata.
                | tcp_checks(["10.0.2.2"], ports)
                | tcp_checks(["169.254.169.254"], [80])
                | {"routes": "_read('/proc/net/route').splitlines()[1:]"},
            )
    # The policy applies: a default route through slirp4netns's tap device.
    routes = [line.split() for line in seen.pop("routes")["value"]]
    assert ["tap0", "00000000", "0202000A"] in [r[:3] for r in routes], routes
    for name, outcome in seen.items():
        if name.startswith("127.0.0.1:"):
            assert outcome == REFUSED, name
        elif name.startswith("10.0.2.2:"):
            assert outcome == NO_NETWORK, name
        else:  # unreachable routes for this host's addresses, blocked networks
            assert outcome == NO_ROUTE, name


# ---- another kernel's sockets


async def test_other_kernels_sockets_are_unreachable(pair):
    alice, bob = pair.alice, pair.bob
    assert alice.sandboxed and bob.sandboxed
    ports = range(1, 6)  # shell, iopub, stdin, control, heartbeat
    for port in ports:  # where the server connects to Bob's kernel
        assert stat.S_ISSOCK(os.stat(f"{bob.sockets}-{port}").st_mode)
    checks = {f"bob {port}": f"_unix({bob.sockets + f'-{port}'!r})" for port in ports}
    checks |= {
        "bob's runtime dir": f"os.listdir({str(bob.runtime_dir)!r})",
        "bob's connection file": f"_read({str(bob.runtime_dir / 'kernel.json')!r})",
        "runtime root": f"os.listdir({str(bob.runtime_dir.parent)!r})",
        # Control: the same kind of address works for its own kernel.
        "own heartbeat": f"_unix({alice.sockets + '-5'!r})",
        "own runtime dir": f"sorted(os.listdir({str(alice.runtime_dir)!r}))",
    }
    async with connected(alice) as sock:
        seen = await probe(sock, checks)
    assert seen.pop("own heartbeat") == {"value": "connected"}
    own = seen.pop("own runtime dir")["value"]
    assert {"kernel.json", "k-1", "k-2", "k-3", "k-4", "k-5"} <= set(own)
    assert seen.pop("runtime root") == UNLISTABLE
    assert seen == {name: ABSENT for name in seen}
    assert set(seen) == {f"bob {p}" for p in ports} | {
        "bob's runtime dir",
        "bob's connection file",
    }


# ---- links out of the root, followed by the server


async def test_links_out_of_the_root_are_not_followed_by_the_server(pair):
    alice, bob = pair.alice, pair.bob
    await put_text(bob.api, "secret.txt", "bob's secret")
    links = {
        "to-bob": str(bob.root),
        "bob-secret.txt": str(bob.root / "secret.txt"),
        "relative-bob": f"../{bob.user.pk}",
        "data": str(settings.DATA_DIR),
    }
    setup = f"_links = {json.dumps(links)}\n_root = {str(alice.root)!r}"
    make = "[os.symlink(t, os.path.join(_root, n)) for n, t in _links.items()]"
    remove = (
        "[os.unlink(p) for p in (os.path.join(_root, n) for n in [*_links, "
        "'stolen.txt']) if os.path.islink(p)]"
    )
    async with connected(alice) as sock:
        made = await probe(sock, {"links": make}, setup)
        assert made == {"links": {"value": [None] * len(links)}}
        try:
            # On the host the links lead where they say: only the server's
            # refusal stands between Alice and Bob's file.
            assert (alice.root / "bob-secret.txt").read_text() == "bob's secret"
            assert (alice.root / "to-bob" / "secret.txt").read_text() == "bob's secret"
            assert (alice.root / "relative-bob" / "secret.txt").is_file()
            await _assert_links_refused(alice, bob)
        finally:
            removed = await probe(sock, {"links": remove}, setup)
            assert "error" not in removed["links"], removed


async def _assert_links_refused(alice: Tenant, bob: Tenant) -> None:
    reads = [
        "api/contents/to-bob/secret.txt",
        "api/contents/to-bob",
        "api/contents/bob-secret.txt",
        "api/contents/bob-secret.txt?content=0",
        "api/contents/relative-bob/secret.txt",
        "api/contents/data",
        "files/to-bob/secret.txt",
        "files/bob-secret.txt",
        "files/relative-bob/secret.txt",
    ]
    # Control: the same requests reach Alice's own files.
    await put_text(alice.api, "own.txt", "alice's own")
    for path in ("api/contents/own.txt", "files/own.txt"):
        status, body = await asyncio.to_thread(get_raw, alice.api, path)
        assert status == 200 and b"alice's own" in body, (path, status)
    for path in reads:
        status, body = await asyncio.to_thread(get_raw, alice.api, path)
        assert status == 404, (path, status, body)
        assert b"bob's secret" not in body
    _, _, listing = await alice.api.call("GET", "api/contents")
    names = {item["name"] for item in listing["content"]}
    assert not names & {"to-bob", "bob-secret.txt", "relative-bob", "data"}, names
    # Nor written, copied, renamed or deleted through.
    body = {"type": "file", "format": "text", "content": "planted"}
    status, _, _ = await alice.api.call("PUT", "api/contents/to-bob/planted.txt", body)
    assert status == 404
    status, _, _ = await alice.api.call(
        "POST", "api/contents", {"copy_from": "bob-secret.txt"}
    )
    assert status == 404
    status, _, _ = await alice.api.call(
        "PATCH", "api/contents/bob-secret.txt", {"path": "stolen.txt"}
    )
    assert status == 404
    status, _, _ = await alice.api.call("DELETE", "api/contents/to-bob/secret.txt")
    assert status == 404
    # A checkpoint would copy the file into Alice's checkpoints.
    for path in ("bob-secret.txt", "to-bob/secret.txt"):
        status, _, _ = await alice.api.call("POST", f"api/contents/{path}/checkpoints")
        assert status == 404, path
        status, _, listed = await alice.api.call(
            "GET", f"api/contents/{path}/checkpoints"
        )
        assert (status, listed) == (200, []), path
    # A kernel started in the linked directory does not start there.
    status, _, body = await alice.api.call("POST", "api/kernels", {"path": "to-bob"})
    assert status == 404, body
    assert (bob.root / "secret.txt").read_text() == "bob's secret"
    assert not (bob.root / "planted.txt").exists()
    # A rename moves names, never targets: at most the link itself moved, and
    # it is refused under its new name too.
    stolen = alice.root / "stolen.txt"
    assert not os.path.lexists(stolen) or stolen.is_symlink()
    status, body = await asyncio.to_thread(
        get_raw, alice.api, "api/contents/stolen.txt"
    )
    assert status == 404 and b"bob's secret" not in body


# ---- limits


async def test_fork_bomb_is_contained(limited):
    alice, bob = limited.alice, limited.bob
    release = alice.root / ".release-the-bomb"
    # Forks until the limit, holds the children while the test looks around,
    # then lets them go and reaps them, all in one cell: at its limit the
    # kernel cannot start the thread a new execution needs.
    bomb = f"""
import errno, json, os, time
r, w = os.pipe()
children, failure = [], None
for _ in range({4 * MAX_PROCESSES}):
    try:
        pid = os.fork()
    except OSError as exc:
        failure = [type(exc).__name__, errno.errorcode[exc.errno]]
        break
    if pid == 0:  # each child waits for the pipe to close, then exits
        os.close(w)
        os.read(r, 1)
        os._exit(0)
    children.append(pid)
os.close(r)
print(json.dumps({{"forked": len(children), "failure": failure}}), flush=True)
for _ in range(600):
    if os.path.exists({str(release)!r}):
        break
    time.sleep(0.1)
os.close(w)
print(json.dumps([os.waitpid(pid, 0)[1] for pid in children]))
"""
    async with connected(alice) as sock, connected(bob) as bob_sock:
        msg_id = await sock.submit(bomb)
        try:
            _, held = await sock.wait_for(
                lambda ch, m: m["msg_type"] == "stream"
                and m["parent_header"].get("msg_id") == msg_id
            )
            seen = json.loads(held["content"]["text"])
            assert seen["failure"] == ["BlockingIOError", "EAGAIN"], seen
            assert 0 < seen["forked"] < MAX_PROCESSES
            # Held at its limit, Alice's sandbox stops nobody else.
            for _ in range(3):
                started = time.monotonic()
                status, _, body = await alice.api.call("GET", "api/status")
                assert status == 200 and body["kernels"] == 1
                assert time.monotonic() - started < STATUS_SECONDS
            bob_seen = await probe(
                bob_sock, {"true": "subprocess.run(['true']).returncode"}
            )
            assert bob_seen == {"true": {"value": 0}}
        finally:
            release.touch()
        try:
            run = await sock.collect(msg_id)
        finally:
            release.unlink()
        assert run.status == "ok", run.reply["content"]
        assert json.loads(run.stream()) == [0] * seen["forked"]
        # The kernel survived, and can fork again.
        after = await probe(sock, {"true": "subprocess.run(['true']).returncode"})
        assert after == {"true": {"value": 0}}


async def test_memory_past_the_limit_fails_in_the_kernel(limited):
    alice = limited.alice
    if sandbox.status().limits == "cgroup v2":
        await _assert_kernel_killed_past_memory_limit(alice)
        return
    chunk = 64 * 1024**2
    # bytes() asks calloc, which maps without touching: the limit is on
    # address space, so this needs no real memory.
    grab = f"""
def _grab():
    held = []
    try:
        for _ in range({4 * MEMORY_BYTES // chunk}):
            held.append(bytes({chunk}))
    except MemoryError:
        return len(held) * {chunk}
    return "no MemoryError"
"""
    async with connected(alice) as sock:
        seen = await probe(sock, {"allocated": "_grab()"}, grab)
        allocated = seen["allocated"]["value"]
        assert isinstance(allocated, int) and 0 < allocated < MEMORY_BYTES, seen
        # One allocation far past the limit: the client gets the error.
        run = await sock.execute(f"x = bytes({8 * MEMORY_BYTES})")
        assert run.status == "error"
        assert run.reply["content"]["ename"] == "MemoryError"
        errors = [m for m in run.outputs if m["msg_type"] == "error"]
        assert [m["content"]["ename"] for m in errors] == ["MemoryError"]
        # The kernel survives, the server is fine.
        assert (await sock.execute("6 * 7")).result() == "42"
    status, _, model = await alice.api.call("GET", f"api/kernels/{alice.kernel_id}")
    assert status == 200 and model["execution_state"] == "idle"
    started = time.monotonic()
    status, _, _ = await alice.api.call("GET", "api/status")
    assert status == 200 and time.monotonic() - started < STATUS_SECONDS


async def _assert_kernel_killed_past_memory_limit(alice: Tenant) -> None:
    """Under cgroup v2 the kernel is OOM-killed; the client sees it restart."""
    async with connected(alice) as sock:
        # bytearray() writes its memory: resident, which memory.max counts.
        await sock.submit(
            f"x = [bytearray(2**26) for _ in range({MEMORY_BYTES >> 25})]"
        )
        await sock.wait_for(
            lambda ch, m: m["msg_type"] == "status"
            and m["content"]["execution_state"] in ("restarting", "dead"),
            timeout=60,
        )
        for _ in range(150):
            _, _, model = await alice.api.call("GET", f"api/kernels/{alice.kernel_id}")
            if model["execution_state"] == "idle":
                break
            await asyncio.sleep(0.2)
        assert (await sock.execute("6 * 7", timeout=60)).result() == "42"
    status, _, _ = await alice.api.call("GET", "api/status")
    assert status == 200


async def test_file_past_the_size_limit_fails_with_efbig(limited):
    alice = limited.alice
    path = alice.root / "big.bin"
    write = f"""
def _write(path):
    with open(path, "wb") as handle:
        handle.write(b"x" * {4 * MAX_FILE_BYTES})
"""
    async with connected(alice) as sock:
        seen = await probe(
            sock,
            {
                "root": f"_write({str(path)!r})",
                "size": f"os.path.getsize({str(path)!r})",
                "tmp": "_write('/tmp/big.bin')",
            },
            write,
        )
        assert seen == {
            "root": failed("OSError", "EFBIG"),
            "size": {"value": MAX_FILE_BYTES},
            "tmp": failed("OSError", "EFBIG"),
        }
        assert (await sock.execute("6 * 7")).result() == "42"
    assert path.stat().st_size == MAX_FILE_BYTES
    status, _, _ = await alice.api.call("DELETE", "api/contents/big.bin")
    assert status == 204


async def test_open_files_past_the_limit_fail_with_emfile(limited):
    opener = """
def _open_all():
    opened = []
    try:
        while True:
            opened.append(os.open("/dev/null", os.O_RDONLY))
    except OSError as exc:
        return [len(opened), _errno.errorcode[exc.errno]]
    finally:
        for fd in opened:
            os.close(fd)
"""
    async with connected(limited.alice) as sock:
        seen = await probe(sock, {"opened": "_open_all()"}, opener)
        opened, code = seen["opened"]["value"]
        assert code == "EMFILE" and 0 < opened < MAX_OPEN_FILES, seen
        assert (await sock.execute("6 * 7")).result() == "42"


# ---- what users do still works


async def test_kernel_sees_and_writes_the_files_the_contents_api_shows(pair):
    alice = pair.alice
    model = await put_text(alice.api, "from-api.txt", "written through the API")
    assert model["path"] == "from-api.txt"
    write = f"""
_root = {str(alice.root)!r}
with open(os.path.join(_root, "from-kernel.txt"), "w") as handle:
    handle.write("written by the kernel")
os.makedirs(os.path.join(_root, "kernel-dir"), exist_ok=True)
with open(os.path.join(_root, "kernel-dir", "nested.txt"), "w") as handle:
    handle.write("nested")
"""
    async with connected(alice) as sock:
        seen = await probe(
            sock,
            {
                "read": f"_read(os.path.join(_root, {model['path']!r}))",
                "cwd": "os.getcwd()",
                "home": "os.environ['HOME']",
                "expanduser": "os.path.expanduser('~')",
                "ls": "subprocess.run(['ls'], capture_output=True, text=True)"
                ".stdout.split()",
            },
            write,
        )
    assert seen["read"] == {"value": "written through the API"}
    assert seen["cwd"] == seen["home"] == seen["expanduser"]
    assert seen["cwd"] == {"value": str(alice.root)}
    assert {"from-api.txt", "from-kernel.txt", "kernel-dir"} <= set(seen["ls"]["value"])
    for path, text in (
        ("from-kernel.txt", "written by the kernel"),
        ("kernel-dir/nested.txt", "nested"),
    ):
        status, _, got = await alice.api.call("GET", f"api/contents/{path}")
        assert status == 200 and got["content"] == text, got
        assert got["path"] == path
        assert (alice.root / got["path"]).read_text() == text
    for path in ("from-api.txt", "from-kernel.txt", "kernel-dir"):
        status, _, _ = await alice.api.call("DELETE", f"api/contents/{path}")
        assert status == 204


async def test_input_and_interrupt_work(pair):
    alice = pair.alice
    async with connected(alice) as sock:
        msg_id = await sock.submit(
            "x = input('name? '); print('hi', x)", allow_stdin=True
        )
        _, request = await sock.wait_for(lambda ch, m: ch == "stdin")
        assert request["content"]["prompt"] == "name? "
        await sock.send("stdin", "input_reply", {"value": "Ada"})
        assert (await sock.collect(msg_id)).stream() == "hi Ada\n"

        msg_id = await sock.submit("import time; time.sleep(60)")
        await sock.wait_for(lambda ch, m: m["msg_type"] == "execute_input")
        started = time.monotonic()
        status, _, _ = await alice.api.call(
            "POST", f"api/kernels/{alice.kernel_id}/interrupt"
        )
        assert status == 204
        run = await sock.collect(msg_id, timeout=20)
        assert run.reply["content"]["ename"] == "KeyboardInterrupt"
        assert time.monotonic() - started < 15
        assert (await sock.execute("'still here'")).result() == "'still here'"
