"""The kernel sandbox, proved with real processes run as a tenant's kernel would be.

Each test runs a Python program through ``kernels.sandbox`` exactly as the kernel
launcher will (prepare, spawn in a new session, started, aclose) and checks what
it can and cannot do. Tests that need bubblewrap skip with one line where it is
missing, except under ``CI=true``, where that is a failure (``scripts/test``
installs it).
"""

import asyncio
import contextlib
import json
import logging
import os
import secrets
import signal
import socket
import stat
import subprocess
import sys
import textwrap
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace
from pathlib import Path

import pytest
from django.conf import settings
from django.contrib.auth.models import User
from django.test import override_settings

from contents.storage import user_root
from kernels import sandbox
from kernels.sandbox import Limits, SandboxError, SandboxSpec, SandboxUnavailable

REPO = Path(__file__).resolve().parents[2]
LIMITS = Limits(
    memory_bytes=2 * 1024**3,
    max_processes=128,
    max_open_files=256,
    max_file_bytes=64 * 1024**2,
)


def _require_sandbox() -> None:
    facts = sandbox.status()
    if facts.available:
        return
    message = f"bubblewrap sandbox unavailable here: {facts.reason}"
    if os.environ.get("CI") == "true":
        pytest.fail(message + " (CI=true requires it: scripts/test installs it)")
    pytest.skip(message)


@pytest.fixture
def needs_sandbox():
    _require_sandbox()


@dataclass
class Tenant:
    id: int
    root: Path
    runtime_dir: Path

    def spec(self, **changes) -> SandboxSpec:
        base = SandboxSpec(
            owner_id=self.id,
            owner_root=self.root,
            cwd=self.root,
            runtime_dir=self.runtime_dir,
            env={"USER": f"user{self.id}"},
            limits=LIMITS,
            network="none",
        )
        return replace(base, **changes)


def make_tenant(user_id: int) -> Tenant:
    root = user_root(User(pk=user_id))
    runtime = Path(settings.DATA_DIR) / "runtime" / f"kernel-{secrets.token_hex(6)}"
    runtime.mkdir(mode=0o700, parents=True)
    (runtime / "kernel.json").write_text('{"key": "not for other kernels"}')
    os.chmod(runtime / "kernel.json", 0o600)
    return Tenant(user_id, root, runtime)


@pytest.fixture
def tenant() -> Tenant:
    return make_tenant(9001 + secrets.randbelow(10**6))


@pytest.fixture
def other_tenant(tenant) -> Tenant:
    other = make_tenant(tenant.id + 1)
    (other.root / "private.txt").write_text("other tenant's data")
    return other


@dataclass
class Result:
    returncode: int
    stdout: str
    stderr: str

    def json(self):
        assert self.returncode == 0, self.stderr
        return json.loads(self.stdout.strip().splitlines()[-1])


@contextlib.asynccontextmanager
async def sandboxed(
    code: str, spec: SandboxSpec, *, spawn_env: dict[str, str] | None = None
) -> AsyncIterator[asyncio.subprocess.Process]:
    """Run ``code`` as the launcher will run a kernel; kill it on the way out."""
    argv = [sys.executable, "-c", textwrap.dedent(code)]
    command = await asyncio.to_thread(sandbox.prepare, argv, spec)
    assert command.sandboxed
    process = await asyncio.create_subprocess_exec(
        *command.argv,
        env=command.env if spawn_env is None else spawn_env,
        cwd=command.cwd,
        pass_fds=command.pass_fds,
        start_new_session=True,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        await command.started()
        yield process
    finally:
        if process.returncode is None:
            process.kill()
        await process.wait()
        await command.aclose()


async def run(code: str, spec: SandboxSpec, *, stdin: bytes = b"", **kwargs) -> Result:
    async with sandboxed(code, spec, **kwargs) as process:
        async with asyncio.timeout(45):
            out, err = await process.communicate(stdin)
    return Result(process.returncode, out.decode(), err.decode())


# ---- the filesystem


async def test_owner_files_are_read_and_written_at_the_same_paths(
    needs_sandbox, tenant
):
    (tenant.root / "notes.txt").write_text("written by the server\n")
    (tenant.root / "data").mkdir()
    code = f"""
        import json, os
        root = {str(tenant.root)!r}
        with open(os.path.join(root, "notes.txt"), "a") as f:
            f.write("appended by the kernel\\n")
        os.makedirs(os.path.join(root, "data", "deep"))
        with open(os.path.join(root, "data", "deep", "new.txt"), "w") as f:
            f.write("new")
        print(json.dumps({{"cwd": os.getcwd(), "home": os.environ["HOME"],
                          "uid": os.getuid()}}))
    """
    seen = (await run(code, tenant.spec())).json()
    assert seen["cwd"] == seen["home"] == str(tenant.root)
    assert (tenant.root / "notes.txt").read_text() == (
        "written by the server\nappended by the kernel\n"
    )
    assert (tenant.root / "data" / "deep" / "new.txt").read_text() == "new"
    if os.geteuid() == 0:  # kernels run as the owner's own uid, never root
        assert seen["uid"] == sandbox.tenant_ids(tenant.id)[0] != 0


async def test_working_directory_is_the_requested_one(needs_sandbox, tenant):
    (tenant.root / "project").mkdir()
    spec = tenant.spec(cwd=tenant.root / "project")
    seen = (await run("import json, os; print(json.dumps(os.getcwd()))", spec)).json()
    assert seen == str(tenant.root / "project")


async def test_other_tenants_root_is_invisible(needs_sandbox, tenant, other_tenant):
    code = f"""
        import json, os
        seen = {{}}
        for path in {[str(other_tenant.root / "private.txt"), str(other_tenant.root)]}:
            try:
                if path.endswith(".txt"):
                    seen[path] = open(path).read()
                else:
                    seen[path] = os.listdir(path)
            except OSError as e:
                seen[path] = type(e).__name__
        print(json.dumps(seen))
    """
    seen = (await run(code, tenant.spec())).json()
    assert seen == {
        str(other_tenant.root / "private.txt"): "FileNotFoundError",
        str(other_tenant.root): "FileNotFoundError",
    }


async def test_data_directory_and_server_files_are_out_of_reach(needs_sandbox, tenant):
    data_dir = Path(settings.DATA_DIR)
    secret = "server-secret-" + secrets.token_hex(8)
    (data_dir / "secret_key").write_text(secret)
    (data_dir / "jserver.sqlite3").write_text(secret)
    targets = [
        data_dir / "secret_key",
        data_dir / "jserver.sqlite3",
        REPO / "jserver" / "settings.py",
        REPO / "manage.py",
        Path("/etc/shadow"),
        Path("/root/.bash_history"),
    ]
    database = settings.DATABASES["default"]
    if database["ENGINE"].endswith("sqlite3"):
        targets.append(Path(database["NAME"]))
    code = f"""
        import json, os
        seen = {{}}
        for path in {[str(p) for p in targets]!r}:
            try:
                seen[path] = open(path, errors="replace").read()
            except OSError as e:
                seen[path] = type(e).__name__
        for path in [{str(data_dir)!r}, {str(data_dir / "users")!r}]:
            try:
                seen[path] = os.listdir(path)
            except OSError as e:
                seen[path] = type(e).__name__
        print(json.dumps(seen))
    """
    seen = (await run(code, tenant.spec())).json()
    for path in targets:
        assert seen[str(path)] in {"FileNotFoundError", "PermissionError"}, path
    # The data directory exists only as a passage to the owner's root: unlistable.
    assert seen[str(data_dir)] == seen[str(data_dir / "users")] == "PermissionError"


async def test_system_and_python_environment_are_read_only(needs_sandbox, tenant):
    targets = [
        Path(sys.prefix) / "pyvenv.cfg",
        Path(sys.prefix) / "new-file",
        Path(sys.base_prefix) / "new-file",
        Path("/usr/new-file"),
        Path("/etc/new-file"),
    ]
    code = f"""
        import json
        seen = {{}}
        for path in {[str(p) for p in targets]!r}:
            try:
                open(path, "a").close()
                seen[path] = "written"
            except OSError as e:
                seen[path] = type(e).__name__
        print(json.dumps(seen))
    """
    seen = (await run(code, tenant.spec())).json()
    assert set(seen.values()) <= {"PermissionError", "OSError", "FileNotFoundError"}, (
        seen
    )


async def test_tmp_is_private(needs_sandbox, tenant):
    marker = Path("/tmp") / f"jserver-host-{secrets.token_hex(6)}"
    marker.write_text("host")
    try:
        code = f"""
            import json, os
            open("/tmp/kernel-file", "w").write("kernel")
            print(json.dumps(os.path.exists({str(marker)!r})))
        """
        assert (await run(code, tenant.spec())).json() is False
        assert not Path("/tmp/kernel-file").exists()
    finally:
        marker.unlink()


async def test_another_kernels_runtime_directory_is_unreachable(
    needs_sandbox, tenant, other_tenant
):
    same_tenant_kernel = make_tenant(tenant.id)
    listeners = []
    for runtime in (other_tenant.runtime_dir, same_tenant_kernel.runtime_dir):
        listener = socket.socket(socket.AF_UNIX)
        listener.bind(str(runtime / "shell.ipc"))
        listener.listen()
        listeners.append(listener)
    abstract_name = f"\0jserver-test-{secrets.token_hex(6)}"
    abstract = socket.socket(socket.AF_UNIX)
    abstract.bind(abstract_name)
    abstract.listen()
    listeners.append(abstract)
    targets = [
        str(runtime / name)
        for runtime in (other_tenant.runtime_dir, same_tenant_kernel.runtime_dir)
        for name in ("kernel.json", "shell.ipc")
    ]
    code = f"""
        import json, socket
        seen = {{}}
        for path in {targets!r} + [{abstract_name!r}]:
            try:
                if path.endswith(".json"):
                    seen[path] = open(path).read()
                else:
                    s = socket.socket(socket.AF_UNIX)
                    s.connect(path)
                    seen[path] = "connected"
            except OSError as e:
                seen[path] = type(e).__name__
        with open({str(tenant.runtime_dir / "kernel.json")!r}) as f:
            seen["own"] = f.read()
        own = socket.socket(socket.AF_UNIX)
        own.bind({str(tenant.runtime_dir / "iopub.ipc")!r})
        print(json.dumps(seen))
    """
    try:
        seen = (await run(code, tenant.spec())).json()
    finally:
        for listener in listeners:
            listener.close()
    for path in targets:
        assert seen[path] == "FileNotFoundError", path
    assert seen[abstract_name] == "ConnectionRefusedError"  # another namespace
    # Its own runtime directory: the connection file and ipc sockets work.
    assert seen["own"] == '{"key": "not for other kernels"}'
    assert (tenant.runtime_dir / "iopub.ipc").exists()


# ---- the environment and other processes


async def test_no_server_environment_reaches_the_kernel(
    needs_sandbox, tenant, monkeypatch
):
    secret = "server-secret-" + secrets.token_hex(8)
    monkeypatch.setenv("JSERVER_TEST_SECRET", secret)
    code = f"""
        import json, os
        seen = {{"env": dict(os.environ), "server": None, "proc": {{}}}}
        try:
            seen["server"] = open("/proc/{os.getpid()}/environ", "rb").read().decode()
        except OSError as e:
            seen["server"] = type(e).__name__
        for pid in [p for p in os.listdir("/proc") if p.isdigit()]:
            for name in ("environ", "cmdline"):
                try:
                    with open(f"/proc/{{pid}}/{{name}}", "rb") as f:
                        seen["proc"][pid + name] = f.read().decode()
                except OSError as e:
                    seen["proc"][pid + name] = type(e).__name__
        print(json.dumps(seen))
    """
    spec = tenant.spec(env={"USER": "alice", "JPY_PARENT_PID": "1"})
    # Even a launcher that handed the wrapper the server's whole environment
    # (instead of command.env) must not leak it: the kernel's is rebuilt.
    for spawn_env in (None, dict(os.environ)):
        result = await run(code, spec, spawn_env=spawn_env)
        seen = result.json()
        assert set(seen["env"]) <= {
            "HOME",
            "LANG",
            "PATH",
            "PWD",
            "USER",
            "JPY_PARENT_PID",
        }
        assert not any(key.startswith(("JSERVER_", "DJANGO")) for key in seen["env"])
        assert seen["server"] in {"FileNotFoundError", "PermissionError"}
        assert secret not in result.stdout
        # Only the sandbox's own processes are visible: its PID namespace.
        assert {
            key[: -len("environ")] for key in seen["proc"] if key.endswith("environ")
        } <= {
            "1",
            "2",
            "3",
            "4",
        }


async def test_interrupt_reaches_the_process_and_spares_the_sandbox(
    needs_sandbox, tenant
):
    code = """
        import sys, time
        try:
            print("ready", flush=True)
            time.sleep(30)
        except KeyboardInterrupt:
            print("interrupted", flush=True)
        time.sleep(0.5)
        print("still running", flush=True)
    """
    async with sandboxed(code, tenant.spec()) as process:
        async with asyncio.timeout(30):
            assert await process.stdout.readline() == b"ready\n"
            os.killpg(process.pid, signal.SIGINT)  # as jupyter_client interrupts
            rest = await process.stdout.read()
            assert await process.wait() == 0
    assert rest == b"interrupted\nstill running\n"


async def test_input_over_a_pipe(needs_sandbox, tenant):
    code = "print('got', input('name? '))"
    result = await run(code, tenant.spec(), stdin=b"alice\n")
    assert result.returncode == 0, result.stderr
    assert result.stdout == "name? got alice\n"


async def test_killing_the_process_takes_the_whole_sandbox(needs_sandbox, tenant):
    code = """
        import subprocess, sys, time
        subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
        print("ready", flush=True)
        time.sleep(60)
    """
    uid = (sandbox.tenant_ids(tenant.id) or (None,))[0]
    async with sandboxed(code, tenant.spec()) as process:
        async with asyncio.timeout(30):
            assert await process.stdout.readline() == b"ready\n"
        process.kill()
        await process.wait()
    if uid is not None:
        await _wait_until(lambda: not _processes_of(uid))


# ---- limits


def _processes_of(uid: int) -> list[int]:
    """Return the host's tasks (threads included) whose real uid is ``uid``."""
    tasks = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        with contextlib.suppress(OSError):
            for tid in os.listdir(f"/proc/{pid}/task"):
                status = Path(f"/proc/{pid}/task/{tid}/status").read_text()
                uids = next(
                    line for line in status.splitlines() if line.startswith("Uid:")
                )
                if int(uids.split()[1]) == uid:
                    tasks.append(int(tid))
    return tasks


async def _wait_until(condition, seconds: float = 15) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.1)


@pytest.mark.skipif(os.geteuid() != 0, reason="counts the tenant uid's processes")
async def test_fork_bomb_is_contained(needs_sandbox, tenant):
    limits = replace(LIMITS, max_processes=48)
    code = """
        import os, time
        print("ready", flush=True)
        deadline = time.monotonic() + 3
        refused = 0
        while time.monotonic() < deadline:
            try:
                os.fork()  # parent and child both go on forking
            except OSError:
                refused += 1
                time.sleep(0.05)
        time.sleep(60)
    """
    uid = sandbox.tenant_ids(tenant.id)[0]
    async with sandboxed(code, tenant.spec(limits=limits)) as process:
        async with asyncio.timeout(30):
            assert await process.stdout.readline() == b"ready\n"
        most = 0
        for _ in range(20):
            most = max(most, len(_processes_of(uid)))
            # The machine stays responsive: the server can still start processes.
            started = time.monotonic()
            await asyncio.to_thread(subprocess.run, ["/usr/bin/true"], check=True)
            assert time.monotonic() - started < 10
            await asyncio.sleep(0.2)
        # The limit, plus the wrapper that made the kernel's user namespace.
        assert 10 < most <= limits.max_processes + 1
    await _wait_until(lambda: not _processes_of(uid))


async def test_memory_past_the_limit_is_refused(needs_sandbox, tenant):
    limits = replace(LIMITS, memory_bytes=512 * 1024**2)
    code = """
        import json, mmap
        seen = {}
        small = bytearray(64 * 1024**2)  # well within the limit
        seen["small"] = len(small)
        try:
            mmap.mmap(-1, 1024**3)  # shared memory counts too
            seen["mmap"] = "mapped"
        except OSError as e:
            seen["mmap"] = e.errno
        print(json.dumps(seen), flush=True)
        big = bytearray(1024**3)
        print("allocated", flush=True)
    """
    result = await run(code, tenant.spec(limits=limits))
    seen = json.loads(result.stdout.splitlines()[0])
    assert seen == {"small": 64 * 1024**2, "mmap": 12}  # ENOMEM
    # The process does not get the memory: it ends with MemoryError.
    assert result.returncode != 0
    assert "MemoryError" in result.stderr
    assert "allocated" not in result.stdout


async def test_writing_past_the_file_size_limit_fails(needs_sandbox, tenant):
    limits = replace(LIMITS, max_file_bytes=1024**2)
    code = """
        import json
        try:
            with open("big.bin", "wb") as f:
                f.write(b"x" * (2 * 1024**2))
            print(json.dumps("written"))
        except OSError as e:
            print(json.dumps(e.errno))
    """
    assert (await run(code, tenant.spec(limits=limits))).json() == 27  # EFBIG
    assert (tenant.root / "big.bin").stat().st_size == 1024**2


async def test_open_files_are_limited(needs_sandbox, tenant):
    limits = replace(LIMITS, max_open_files=64)
    code = """
        import json
        files = []
        try:
            for _ in range(200):
                files.append(open("/dev/null"))
        except OSError as e:
            print(json.dumps([len(files), e.errno]))
    """
    opened, error = (await run(code, tenant.spec(limits=limits))).json()
    assert opened < 64 and error == 24  # EMFILE


async def test_user_namespaces_are_disabled_inside(needs_sandbox, tenant):
    code = """
        import json, subprocess
        r = subprocess.run(["unshare", "--user", "true"], capture_output=True)
        print(json.dumps(r.returncode))
    """
    assert (await run(code, tenant.spec())).json() != 0


# ---- network


def _host_listeners() -> tuple[list[int], list[socket.socket]]:
    """Return ports listening on this host's loopback (ours and the services')."""
    ours = []
    for address in ("127.0.0.1", "0.0.0.0"):  # jserver on loopback, or on every address
        listener = socket.socket()
        listener.bind((address, 0))
        listener.listen()
        ours.append(listener)
    ports = [listener.getsockname()[1] for listener in ours]
    for port in (5432, 6379):  # PostgreSQL and Redis, where this machine runs them
        with socket.socket() as probe:
            probe.settimeout(2)
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                ports.append(port)
    return ports, ours


_PROBE = """
    import json, socket
    seen = {}
    for host, port in %r:
        s = socket.socket()
        s.settimeout(5)
        try:
            s.connect((host, port))
            seen[f"{host}:{port}"] = "connected"
        except OSError as e:
            seen[f"{host}:{port}"] = type(e).__name__
        finally:
            s.close()
    print(json.dumps(seen))
"""


@pytest.mark.parametrize("network", ["none", "outbound"])
async def test_host_services_are_unreachable(needs_sandbox, tenant, network):
    if network == "outbound" and sandbox.status().network_helper is None:
        pytest.skip("slirp4netns is not installed")
    ports, listeners = _host_listeners()
    hosts = ["127.0.0.1", "10.0.2.2", *await sandbox.host_addresses()]
    targets = [(host, port) for host in hosts for port in ports]
    try:
        seen = (await run(_PROBE % targets, tenant.spec(network=network))).json()
    finally:
        for listener in listeners:
            listener.close()
    assert "connected" not in seen.values(), seen
    assert len(seen) == len(targets) >= 6


@pytest.fixture
def outside_host():
    """Yield (address, port) of a listener in a network namespace of its own.

    It stands for a host outside: reachable from this host through a veth pair
    (198.18.0.0/15, the benchmarking range, so not in the blocked networks).
    """
    if os.geteuid() != 0:
        pytest.skip("creating a network namespace needs root")
    name = f"jst-{secrets.token_hex(4)}"
    subnet = secrets.randbelow(2**15 - 1)  # a /30 of 198.18.0.0/15
    base = (198 << 24) | (18 << 16) | (subnet << 2)
    host_side = socket.inet_ntoa((base + 1).to_bytes(4, "big"))
    outside = socket.inet_ntoa((base + 2).to_bytes(4, "big"))
    ip = sandbox._system_tool("ip")
    veth = f"v{name}"

    def sh(*args):
        subprocess.run([ip, *args], check=True, capture_output=True)

    sh("netns", "add", name)
    server = None
    try:
        sh("link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", name)
        sh("address", "add", f"{host_side}/30", "dev", veth)
        sh("link", "set", veth, "up")
        sh("-n", name, "address", "add", f"{outside}/30", "dev", "eth0")
        sh("-n", name, "link", "set", "eth0", "up")
        sh("-n", name, "link", "set", "lo", "up")
        serve = (
            "import socket, sys\n"
            f"s = socket.create_server(({outside!r}, 0))\n"
            "print(s.getsockname()[1], flush=True)\n"
            "while True:\n"
            "    c, _ = s.accept(); c.sendall(b'hello from outside'); c.close()\n"
        )
        server = subprocess.Popen(
            [ip, "netns", "exec", name, sys.executable, "-c", serve],
            stdout=subprocess.PIPE,
        )
        port = int(server.stdout.readline())
        yield outside, port, host_side
    finally:
        if server is not None:
            server.kill()
            server.wait()
            server.stdout.close()
        subprocess.run([ip, "link", "delete", veth], capture_output=True)
        subprocess.run([ip, "netns", "delete", name], capture_output=True)


async def test_outbound_reaches_outside_but_not_this_host(
    needs_sandbox, tenant, outside_host
):
    if sandbox.status().network_helper is None:
        pytest.skip("slirp4netns is not installed")
    address, port, host_side = outside_host
    code = f"""
        import json, socket
        seen = {{}}
        with socket.create_connection(({address!r}, {port}), timeout=10) as s:
            seen["outside"] = s.recv(100).decode()
        try:
            socket.create_connection(({host_side!r}, {port}), timeout=5)
            seen["host side"] = "connected"
        except OSError as e:
            seen["host side"] = type(e).__name__
        try:
            socket.create_connection(("169.254.169.254", 80), timeout=5)
            seen["metadata"] = "connected"
        except OSError as e:
            seen["metadata"] = type(e).__name__
        print(json.dumps(seen))
    """
    seen = (await run(code, tenant.spec(network="outbound"))).json()
    assert seen["outside"] == "hello from outside"
    assert seen["host side"] != "connected"
    assert seen["metadata"] != "connected"
    # Under "none", the outside host is out of reach too.
    seen = (await run(_PROBE % [(address, port)], tenant.spec())).json()
    assert seen == {f"{address}:{port}": "OSError"}


def _index_reachable() -> bool:
    try:
        with socket.create_connection(("pypi.org", 443), timeout=5):
            return True
    except OSError:
        return False


@pytest.mark.timeout(180)
async def test_pip_install_user_lands_in_the_owner_root(needs_sandbox, tenant):
    if sandbox.status().network_helper is None:
        pytest.skip("slirp4netns is not installed")
    if not await asyncio.to_thread(_index_reachable):
        pytest.skip("the package index is not reachable from this machine")
    code = """
        import subprocess, sys
        r = subprocess.run(
            [sys.executable, "-m", "pip", "install", "--user", "--no-cache-dir",
             "--disable-pip-version-check", "--quiet", "--retries=0", "--timeout=10",
             "iso8601==2.1.0"],
            capture_output=True, text=True)
        print(r.stdout, r.stderr, file=sys.stderr)
        r.check_returncode()
        import site
        site.addsitedir(site.getusersitepackages())
        import iso8601
        import json; print(json.dumps(iso8601.__file__))
    """
    result = await run(code, tenant.spec(network="outbound"))
    installed = Path(result.json())
    assert installed.is_relative_to(tenant.root / ".local"), result.stderr
    assert installed.is_file()  # the server sees it where the kernel put it
    # Under "none", pip cannot reach the index.
    other = make_tenant(tenant.id + 1)
    result = await run(code, other.spec())
    assert result.returncode != 0
    assert not (other.root / ".local").exists()


async def test_failed_network_setup_kills_the_waiting_sandbox(
    needs_sandbox, tenant, monkeypatch
):
    facts = replace(sandbox.status(), network_helper="/usr/bin/false")
    monkeypatch.setattr(sandbox, "status", lambda **_: facts)
    code = "open('ran', 'w').write('the kernel ran')"
    argv = [sys.executable, "-c", code]
    command = sandbox.prepare(argv, tenant.spec(network="outbound"))
    process = await asyncio.create_subprocess_exec(
        *command.argv,
        env=command.env,
        cwd=command.cwd,
        pass_fds=command.pass_fds,
        start_new_session=True,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
    try:
        with pytest.raises(SandboxError, match="slirp4netns failed"):
            await command.started()
        async with asyncio.timeout(20):  # the sandbox is gone without a kill
            assert await process.wait() != 0
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
        await command.aclose()
    assert not (tenant.root / "ran").exists()


@pytest.mark.kernel
@pytest.mark.timeout(120)
async def test_an_ipykernel_runs_in_the_sandbox_over_ipc(needs_sandbox, tenant):
    """The launcher's case: ipc sockets in the runtime directory, interrupts."""
    import zmq.asyncio
    from jupyter_client import AsyncKernelClient
    from jupyter_client.connect import write_connection_file

    connection_file, _info = write_connection_file(
        str(tenant.runtime_dir / "kernel-1.json"),
        transport="ipc",
        ip=str(tenant.runtime_dir / "kernel-1"),
        key=secrets.token_hex(32).encode(),
    )
    argv = [sys.executable, "-m", "ipykernel_launcher", "-f", connection_file]
    command = await asyncio.to_thread(sandbox.prepare, argv, tenant.spec())
    process = await asyncio.create_subprocess_exec(
        *command.argv,
        env=command.env,
        cwd=command.cwd,
        pass_fds=command.pass_fds,
        start_new_session=True,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
    context = zmq.asyncio.Context()
    client = AsyncKernelClient(connection_file=connection_file, context=context)
    client.load_connection_file()
    client.start_channels()

    async def execute(code: str) -> dict:
        msg_id = client.execute(code)
        while True:
            reply = await client.get_shell_msg(timeout=30)
            if reply["parent_header"].get("msg_id") == msg_id:
                return reply["content"]

    try:
        await command.started()
        await client.wait_for_ready(timeout=60)
        code = "import os; open('from-kernel.txt', 'w').write(str(os.getuid()))"
        assert (await execute(code))["status"] == "ok"
        assert (tenant.root / "from-kernel.txt").exists()
        sleeping = asyncio.ensure_future(execute("import time; time.sleep(30)"))
        await asyncio.sleep(1)
        os.killpg(process.pid, signal.SIGINT)  # as jupyter_client interrupts
        assert (await sleeping)["ename"] == "KeyboardInterrupt"
        # Still alive. ipykernel aborts what arrives just after an error: retry.
        for _attempt in range(20):
            status = (await execute("1 + 1"))["status"]
            if status != "aborted":
                break
            await asyncio.sleep(0.2)
        assert status == "ok"
    finally:
        client.stop_channels()
        context.destroy(linger=0)
        if process.returncode is None:
            process.kill()
        await process.wait()
        await command.aclose()


# ---- preparing: what is refused, and without bubblewrap


@pytest.fixture
def probe_again():
    yield
    sandbox.status(refresh=True)


def test_spec_escaping_the_data_directory_is_refused(tenant, tmp_path):
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    link = tenant.root.parent / f"link-{secrets.token_hex(4)}"
    link.symlink_to(tenant.root)
    cases = [
        tenant.spec(owner_root=outside, cwd=outside),
        tenant.spec(owner_root=link, cwd=link),
        tenant.spec(owner_root=Path(settings.DATA_DIR), cwd=Path(settings.DATA_DIR)),
        tenant.spec(cwd=Path("/tmp")),
        tenant.spec(runtime_dir=tenant.root),
        tenant.spec(runtime_dir=outside),
    ]
    for spec in cases:
        with pytest.raises(SandboxError):
            sandbox.prepare([sys.executable, "-c", "pass"], spec)
    with pytest.raises(SandboxError):
        sandbox.prepare(["python", "-c", "pass"], tenant.spec())


def test_readonly_path_holding_the_data_directory_is_refused(needs_sandbox, tenant):
    parent = str(Path(settings.DATA_DIR).parent)
    with override_settings(SANDBOX_READONLY_PATHS=[parent]):
        with pytest.raises(SandboxError, match="data directory"):
            sandbox.prepare([sys.executable, "-c", "pass"], tenant.spec())


def test_outbound_without_slirp4netns_is_refused(needs_sandbox, tenant, monkeypatch):
    facts = replace(sandbox.status(), network_helper=None)
    monkeypatch.setattr(sandbox, "status", lambda **_: facts)
    with pytest.raises(SandboxError, match="slirp4netns"):
        sandbox.prepare([sys.executable, "-c", "pass"], tenant.spec(network="outbound"))


def test_without_bubblewrap_kernels_run_unsandboxed_with_a_warning(
    tenant, probe_again, caplog
):
    with override_settings(
        SANDBOX_BWRAP="/nonexistent/bwrap", SANDBOX_ALLOW_UNSANDBOXED=True
    ):
        facts = sandbox.status(refresh=True)
        assert not facts.available and "not installed" in facts.reason
        with caplog.at_level(logging.WARNING, logger="kernels.sandbox"):
            command = sandbox.prepare([sys.executable, "-c", "pass"], tenant.spec())
    assert not command.sandboxed
    assert command.argv[-3:] == [sys.executable, "-c", "pass"]
    assert command.env["HOME"] == str(tenant.root) and command.cwd == str(tenant.root)
    assert "WITHOUT A SANDBOX" in caplog.text
    completed = subprocess.run(command.argv, env=command.env, cwd=command.cwd)
    assert completed.returncode == 0


def test_without_bubblewrap_hosted_mode_refuses(tenant, probe_again):
    with override_settings(
        SANDBOX_BWRAP="/nonexistent/bwrap", SANDBOX_ALLOW_UNSANDBOXED=False
    ):
        sandbox.status(refresh=True)
        with pytest.raises(SandboxUnavailable, match="ALLOW_UNSANDBOXED"):
            sandbox.prepare([sys.executable, "-c", "pass"], tenant.spec())


@pytest.mark.skipif(os.geteuid() != 0, reason="hand-over happens for a root server")
def test_hand_over_never_follows_links_out_of_the_root(needs_sandbox, tenant):
    outside = Path(settings.DATA_DIR) / f"outside-{secrets.token_hex(4)}"
    outside.write_text("server file")
    (tenant.root / "link").symlink_to(outside)
    (tenant.root / "dirlink").symlink_to(Path(settings.DATA_DIR))
    os.link(outside, tenant.root / "hardlink")
    (tenant.root / "mine.txt").write_text("made by the server")
    command = sandbox.prepare([sys.executable, "-c", "pass"], tenant.spec())
    asyncio.run(command.aclose())
    uid, gid = sandbox.tenant_ids(tenant.id)
    assert os.stat(outside).st_uid == 0
    assert os.stat(settings.DATA_DIR).st_uid == 0
    assert os.lstat(tenant.root / "link").st_uid == uid
    assert os.stat(tenant.root / "mine.txt")[4:6] == (uid, gid)
    assert os.stat(tenant.runtime_dir / "kernel.json").st_uid == uid


def test_limits_reject_nonsense():
    with pytest.raises(ValueError):
        replace(LIMITS, max_processes=0)


def test_cgroup_outside_cgroup2_is_not_used(tmp_path):
    assert "not in a cgroup2 filesystem" in sandbox.cgroup_problem(tmp_path)


def test_with_a_cgroup_root_each_kernel_gets_a_cgroup(needs_sandbox, tenant, tmp_path):
    """The plan only: no machine here delegates cgroup v2 controllers.

    A plain directory stands for the delegated cgroup; the kernel's cgroup gets
    the limits, the command joins it first, and the process and memory rlimits
    give way to pids.max and memory.max.
    """
    facts = replace(sandbox.status(), cgroup_root=tmp_path, limits="cgroup v2")
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(sandbox, "status", lambda **_: facts)
        command = sandbox.prepare([sys.executable, "-c", "pass"], tenant.spec())
    cgroup = command.cgroup
    assert cgroup.parent == tmp_path
    assert (cgroup / "memory.max").read_text() == str(LIMITS.memory_bytes)
    assert (cgroup / "pids.max").read_text() == str(LIMITS.max_processes)
    assert (cgroup / "memory.oom.group").read_text() == "1"
    assert command.argv[1:4] == [
        "-c",
        'echo 0 > "$0" && exec "$@"',
        str(cgroup / "cgroup.procs"),
    ]
    assert not any(arg.startswith(("--nproc", "--as=")) for arg in command.argv)
    assert f"--nofile={LIMITS.max_open_files}" in command.argv


def test_network_setting_is_checked():
    completed = subprocess.run(
        [sys.executable, "-c", "import jserver.settings"],
        cwd=REPO,
        env={**os.environ, "JSERVER_SANDBOX_NETWORK": "everything"},
        capture_output=True,
        text=True,
    )
    assert completed.returncode != 0
    assert "JSERVER_SANDBOX_NETWORK must be none or outbound" in completed.stderr


# ---- an unprivileged server

UNPRIVILEGED_SERVER = """
import asyncio, json, os, sys
sys.path.insert(0, os.environ["REPO"])
os.environ["DJANGO_SETTINGS_MODULE"] = "jserver.settings"
import django
django.setup()
from pathlib import Path
from django.conf import settings
from kernels import sandbox

outside, port = sys.argv[1], int(sys.argv[2])
data = Path(settings.DATA_DIR)
(data / "secret_key").write_text("server secret")
roots = {}
for owner in (1, 2):
    roots[owner] = data / "users" / str(owner)
    roots[owner].mkdir(parents=True, mode=0o700)
(roots[2] / "private.txt").write_text("other tenant's data")
runtime = data / "runtime" / "k"
runtime.mkdir(parents=True, mode=0o700)
probe = '''
import json, os, socket, sys, time
seen = {"uid": os.getuid()}
for path in sys.argv[1:3]:
    try:
        seen[path] = open(path).read()
    except OSError as e:
        seen[path] = type(e).__name__
open("mine.txt", "w").write("kernel")
for name, address in (("outside", (sys.argv[3], int(sys.argv[4]))),
                      ("host", ("10.0.2.2", int(sys.argv[4])))):
    try:
        socket.create_connection(address, timeout=5).close()
        seen[name] = "connected"
    except OSError as e:
        seen[name] = type(e).__name__
forked = 0
try:
    for _ in range(100):
        if os.fork() == 0:
            time.sleep(5)
            os._exit(0)
        forked += 1
except OSError:
    pass
seen["forked"] = forked
print(json.dumps(seen))
'''
limits = sandbox.Limits(
    memory_bytes=2 * 1024**3, max_processes=32, max_open_files=256,
    max_file_bytes=1024**2,
)

async def main():
    results = {"status": sandbox.status().reason}
    for network in os.environ["NETWORKS"].split(","):
        spec = sandbox.SandboxSpec(
            owner_id=1, owner_root=roots[1], cwd=roots[1], runtime_dir=runtime,
            env={}, limits=limits, network=network,
        )
        argv = [sys.executable, "-c", probe, str(data / "secret_key"),
                str(roots[2] / "private.txt"), outside, str(port)]
        command = await asyncio.to_thread(sandbox.prepare, argv, spec)
        process = await asyncio.create_subprocess_exec(
            *command.argv, env=command.env, cwd=command.cwd,
            pass_fds=command.pass_fds, start_new_session=True,
            stdout=asyncio.subprocess.PIPE,
        )
        try:
            await command.started()
            out, _ = await process.communicate()
            results[network] = json.loads(out)
        finally:
            if process.returncode is None:
                process.kill()
            await process.wait()
            await command.aclose()
    results["mine"] = (roots[1] / "mine.txt").read_text()
    results["sandboxed"] = command.sandboxed
    print(json.dumps(results))

asyncio.run(main())
"""


@pytest.mark.timeout(120)
def test_an_unprivileged_server_sandboxes_kernels_too(
    needs_sandbox, outside_host, tmp_path
):
    """Run a server as an ordinary uid (as on a developer's machine) and probe.

    The server then runs one unprivileged bwrap, kernels keep its uid, and the
    process limit still counts only the kernel's own user namespace.
    """
    uid = 4000 + secrets.randbelow(1000)
    data_dir = tmp_path / "data"
    data_dir.mkdir(mode=0o700)
    os.chown(data_dir, uid, uid)
    os.chmod(tmp_path, 0o755)
    address, port, _host_side = outside_host
    # An unprivileged slirp4netns opens /dev/net/tun itself: some hosts keep it
    # root-only, and then the outbound policy is (rightly) unavailable.
    tun_open = stat.S_IMODE(os.stat("/dev/net/tun").st_mode) & 0o006 == 0o006
    networks = ("none", "outbound") if tun_open else ("none",)
    # A view of this machine where that uid reaches the code and Python (here
    # under root's 0700 home), and nothing of the root server's data.
    view = [
        "--ro-bind",
        "/usr",
        "/usr",
        *sandbox._usr_links(),
        "--ro-bind",
        "/etc",
        "/etc",
    ]
    view += [
        "--dev-bind",
        "/dev",
        "/dev",
        "--bind",
        "/proc",
        "/proc",
        "--tmpfs",
        "/run",
    ]
    view += ["--perms", "1777", "--tmpfs", "/tmp"]
    made = {Path("/"), Path("/tmp")}
    for tree in (REPO, Path(sys.prefix), Path(os.path.realpath(sys.base_prefix))):
        for parent in reversed(tree.parents):
            if parent not in made:
                view += ["--perms", "0755", "--dir", str(parent)]
                made.add(parent)
        view += ["--ro-bind", str(tree), str(tree)]
    for parent in reversed(data_dir.parents):
        if parent not in made:
            view += ["--perms", "0755", "--dir", str(parent)]
            made.add(parent)
    view += ["--bind", str(data_dir), str(data_dir)]
    completed = subprocess.run(
        [
            "bwrap",
            "--die-with-parent",
            *view,
            *sandbox._drop_to(sandbox._tools(sandbox.status().bwrap)[0], uid, uid),
            sys.executable,
            "-c",
            UNPRIVILEGED_SERVER,
            address,
            str(port),
        ],
        env={
            "PATH": "/usr/bin:/bin",
            "REPO": str(REPO),
            "HOME": str(data_dir),
            "JSERVER_DATA_DIR": str(data_dir),
            "JSERVER_SECRET_KEY": "test-only-" + "k" * 50,
            "NETWORKS": ",".join(networks),
        },
        capture_output=True,
        text=True,
        timeout=100,
    )
    assert completed.returncode == 0, completed.stderr
    results = json.loads(completed.stdout.strip().splitlines()[-1])
    assert results["sandboxed"] and f"server's uid {uid}" in results["status"]
    assert results["mine"] == "kernel"
    secret_key = str(data_dir / "secret_key")
    other = str(data_dir / "users" / "2" / "private.txt")
    for network in networks:
        seen = results[network]
        assert seen["uid"] == uid
        assert seen[secret_key] == seen[other] == "FileNotFoundError"
        assert seen["host"] != "connected"
        assert 0 < seen["forked"] < 32
    assert results["none"]["outside"] != "connected"
    if tun_open:
        assert results["outbound"]["outside"] == "connected"
