"""The one place where kernel processes are started.

``launch`` writes the kernel's connection file into its runtime directory,
asks the sandbox (``kernels/sandbox.py``) what to execute, spawns it in a new
session (one process group to interrupt and to kill) with its working
directory inside the owner's root, and returns a ``KernelProcess`` that owns
the process and its sandbox until ``wait``/``kill`` have reaped it.

Kernels talk ZMQ over the ``ipc`` transport: sockets are files in the kernel's
runtime directory (``<data dir>/runtime/<id>``, outside every user's root),
which the sandbox shares with the kernel. No TCP port is opened, so no other
user's kernel on this machine can connect to it, and a kernel without network
(the sandbox's default) still reaches the server.
"""

import asyncio
import contextlib
import contextvars
import json
import logging
import os
import secrets
import shutil
import signal
import stat
import time
from dataclasses import dataclass
from pathlib import Path

import psutil
from django.conf import settings

from kernels import sandbox
from kernels.specs import KernelSpec, command

log = logging.getLogger(__name__)

PORTS = {
    "shell_port": 1,
    "iopub_port": 2,
    "stdin_port": 3,
    "control_port": 4,
    "hb_port": 5,
}
# A unix socket path is at most 107 bytes; the runtime directory must leave room.
MAX_SOCKET_PATH = 100
# Variables of the server's environment a kernel gets when it is not sandboxed
# (the sandbox adds its own HOME, PATH and LANG and passes nothing else).
PASSED_ENV = ("LANG", "LC_ALL", "LC_CTYPE", "TZ")


# ipykernel's iopub is a ZMQ PUB socket: when the pipe to the server is full (its
# high-water mark, 1000 messages by default) it silently DROPS output; under CPU
# pressure a flood of prints fills it before the kernel's own I/O thread drains
# it. ipykernel has no option for it, so a kernelspec that runs
# ``python -m ipykernel_launcher`` is started through this equivalent entry
# point, which gives the kernel's sockets no send high-water mark: output waits
# in the kernel (within its memory limit) instead of being lost.
IPYKERNEL_BOOT = """\
import sys
if sys.path and sys.path[0] in ("", "."):
    del sys.path[0]
import zmq
_init = zmq.Context.__init__
def _init_without_send_limit(self, *args, **kwargs):
    _init(self, *args, **kwargs)
    self.setsockopt(zmq.SNDHWM, 0)
zmq.Context.__init__ = _init_without_send_limit
from ipykernel import kernelapp
kernelapp.launch_new_instance()
"""


def lossless_iopub(argv: list[str]) -> list[str]:
    """Return ``argv`` with ``-m ipykernel_launcher`` replaced by ``IPYKERNEL_BOOT``."""
    if len(argv) >= 3 and argv[1:3] == ["-m", "ipykernel_launcher"]:
        return [argv[0], "-c", IPYKERNEL_BOOT, *argv[3:]]
    return argv


def runtime_root() -> Path:
    path = Path(os.path.realpath(settings.DATA_DIR)) / "runtime"
    path.mkdir(mode=0o711, exist_ok=True)
    return path


def connection_info(runtime_dir: Path, kernel_name: str) -> dict:
    """Return a new kernel's connection info: ipc sockets, a fresh HMAC key."""
    prefix = str(runtime_dir / "k")
    if len(prefix) + 3 > MAX_SOCKET_PATH:
        raise sandbox.SandboxError(
            f"the data directory's path is too long for kernel sockets: {prefix!r}"
        )
    return {
        "transport": "ipc",
        "ip": prefix,
        **PORTS,
        "key": secrets.token_hex(32),
        "signature_scheme": "hmac-sha256",
        "kernel_name": kernel_name,
    }


def endpoint(info: dict, channel: str) -> str:
    """Return the ZMQ address of ``channel`` (shell, iopub, ...) in ``info``."""
    return f"ipc://{info['ip']}-{info[channel + '_port']}"


@dataclass(eq=False)
class KernelProcess:
    """A started kernel process and its sandbox."""

    process: asyncio.subprocess.Process
    sandbox: sandbox.KernelCommand
    runtime_dir: Path
    relay: asyncio.Task | None = None

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def sandboxed(self) -> bool:
        return self.sandbox.sandboxed

    def alive(self) -> bool:
        return self.process.returncode is None

    def interrupt(self) -> None:
        """Send SIGINT to the kernel's process group, as jupyter_client does."""
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.process.pid, signal.SIGINT)

    async def wait(self) -> int:
        """Wait for the process to exit and release its sandbox."""
        code = await self.process.wait()
        if self.relay is not None:
            try:  # the pipe closes with the last process holding it
                async with asyncio.timeout(2):
                    await asyncio.shield(self.relay)
            except TimeoutError:
                self.relay.cancel()
        await self.sandbox.aclose()
        return code

    async def kill(self) -> None:
        """Kill the whole process group, reap it and release the sandbox."""
        if self.process.returncode is None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.process.pid, signal.SIGKILL)
            with contextlib.suppress(ProcessLookupError):
                self.process.kill()
        await self.wait()

    def memory(self) -> int | None:
        """Return the resident memory of the kernel and its children (bytes)."""
        return process_tree_rss(self.process.pid)


# What a kernel writes to its stdout/stderr (tracebacks of a crash, warnings)
# goes to the server's log, a line at most this long, at most this many lines
# per minute per kernel; the rest is counted and dropped.
RELAY_LINE_BYTES = 2000
RELAY_LINES_PER_MINUTE = 120


async def _relay_output(stream: asyncio.StreamReader, kernel_id: str) -> None:
    window_start, lines, dropped = time.monotonic(), 0, 0
    try:
        while True:
            try:
                line = await stream.readuntil(b"\n")
            except asyncio.IncompleteReadError as exc:
                line = exc.partial
            except asyncio.LimitOverrunError as exc:
                line = await stream.readexactly(exc.consumed)
            if not line:
                break
            now = time.monotonic()
            if now - window_start >= 60:
                if dropped:
                    log.warning(
                        "kernel %s: %d output lines not logged", kernel_id, dropped
                    )
                window_start, lines, dropped = now, 0, 0
            if lines >= RELAY_LINES_PER_MINUTE:
                dropped += 1
                continue
            lines += 1
            text = line[:RELAY_LINE_BYTES].decode("utf-8", "replace").rstrip()
            log.info("kernel %s: %s", kernel_id, text.replace("\n", " "))
    except (OSError, ValueError):
        return


def process_tree_rss(pid: int) -> int | None:
    """Return the resident memory of ``pid`` and its descendants, or None."""
    try:
        root = psutil.Process(pid)
        total = root.memory_info().rss
        for child in root.children(recursive=True):
            with contextlib.suppress(psutil.Error):
                total += child.memory_info().rss
        return total
    except psutil.Error:
        return None


def _prepare(
    spec: KernelSpec,
    *,
    owner_id: int,
    owner_root: Path,
    cwd: Path,
    runtime_dir: Path,
    info: dict,
    env: dict[str, str],
    limits: sandbox.Limits,
) -> sandbox.KernelCommand:
    """Write the connection file and build the command (blocking)."""
    remove_runtime_dir(runtime_dir)  # a previous run's sockets
    runtime_dir.mkdir(mode=0o700)
    connection_file = runtime_dir / "kernel.json"
    fd = os.open(
        connection_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600
    )
    with os.fdopen(fd, "w") as handle:
        json.dump(info, handle)
    argv = command(spec, str(connection_file))
    if settings.KERNEL_LOSSLESS_IOPUB:
        argv = lossless_iopub(argv)
    if not os.path.isabs(argv[0]):
        found = shutil.which(argv[0])
        if found is None:
            raise sandbox.SandboxError(f"kernel executable not found: {argv[0]}")
        argv[0] = found
    kernel_env = {key: os.environ[key] for key in PASSED_ENV if key in os.environ}
    kernel_env.update({str(k): str(v) for k, v in spec.env.items()})
    kernel_env.update(env)
    kernel_env["JPY_PARENT_PID"] = str(os.getpid())
    return sandbox.prepare(
        argv,
        sandbox.SandboxSpec(
            owner_id=owner_id,
            owner_root=Path(os.path.realpath(owner_root)),
            cwd=Path(os.path.realpath(cwd)),
            runtime_dir=runtime_dir,
            env=kernel_env,
            limits=limits,
            network=sandbox.default_network(),
        ),
    )


async def launch(
    spec: KernelSpec,
    *,
    kernel_id: str,
    owner_id: int,
    owner_root: Path,
    cwd: Path,
    env: dict[str, str],
    info: dict | None = None,
    limits: sandbox.Limits | None = None,
) -> tuple[KernelProcess, dict]:
    """Start a kernel of ``spec`` for its owner; return it and its connection info.

    ``info`` (from an earlier start of the same kernel) restarts it on the same
    sockets and key, as jupyter_client restarts on the same ports.
    """
    runtime_dir = runtime_root() / kernel_id.replace("-", "")[:16]
    if info is None:
        info = connection_info(runtime_dir, spec.name)
    kernel_command = await asyncio.to_thread(
        _prepare,
        spec,
        owner_id=owner_id,
        owner_root=owner_root,
        cwd=cwd,
        runtime_dir=runtime_dir,
        info=info,
        env=env,
        limits=limits or sandbox.default_limits(),
    )
    argv = kernel_command.argv
    nice = shutil.which("nice", path="/usr/bin:/bin")
    if settings.KERNEL_NICE and nice:
        # Below the server: a kernel flooding output cannot starve the threads
        # that drain it (ZMQ's publisher drops what they do not drain in time).
        argv = [nice, "-n", str(settings.KERNEL_NICE), *argv]
    try:
        process = await asyncio.create_subprocess_exec(
            *argv,
            env=kernel_command.env,
            cwd=kernel_command.cwd,
            pass_fds=kernel_command.pass_fds,
            start_new_session=True,
            stdin=asyncio.subprocess.DEVNULL,
            # Never the server's own stdout/stderr (its log, which a kernel
            # could reopen through /proc/self/fd and read or forge): a pipe
            # the server drains into its log, bounded.
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
    except BaseException:
        await kernel_command.aclose()
        remove_runtime_dir(runtime_dir)
        raise
    kernel = KernelProcess(process, kernel_command, runtime_dir)
    kernel.relay = asyncio.get_running_loop().create_task(
        _relay_output(process.stdout, kernel_id), context=contextvars.Context()
    )
    try:
        await kernel_command.started()
    except BaseException:
        await kernel.kill()
        remove_runtime_dir(runtime_dir)
        raise
    log.info(
        "kernel %s (%s) started, pid %d, %s",
        kernel_id,
        spec.name,
        process.pid,
        "sandboxed" if kernel_command.sandboxed else "NOT sandboxed",
    )
    return kernel, info


def remove_runtime_dir(path: Path) -> None:
    """Remove a kernel's runtime directory (its sockets and connection file)."""
    try:
        if not stat.S_ISDIR(os.lstat(path).st_mode):
            os.unlink(path)
            return
    except FileNotFoundError:
        return
    shutil.rmtree(path, ignore_errors=True)
