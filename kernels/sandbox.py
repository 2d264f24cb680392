"""Kernel sandboxes: what to execute so that a kernel runs confined to its owner.

The kernel launcher is the only caller. For one kernel it describes the sandbox
(``SandboxSpec``), asks ``prepare`` what to execute, spawns that, and tells the
returned ``KernelCommand`` when the process has started and when it is gone::

    command = await asyncio.to_thread(sandbox.prepare, argv, spec)
    try:
        process = await asyncio.create_subprocess_exec(
            *command.argv, env=command.env, cwd=command.cwd,
            pass_fds=command.pass_fds, start_new_session=True,
            stdin=asyncio.subprocess.DEVNULL,
        )
    except BaseException:
        await command.aclose()
        raise
    try:
        await command.started()  # network helper; the kernel waits until then
    except SandboxError:
        process.kill()
        await process.wait()
        await command.aclose()
        raise
    ...
    os.killpg(process.pid, signal.SIGINT)  # interrupt, as jupyter_client does
    ...
    await process.wait()
    await command.aclose()  # stop the network helper, remove the cgroup

With bubblewrap, the kernel sees the system and the Python environment
read-only, its owner's root read-write at the same absolute path (and as HOME),
its own runtime directory, a private /tmp, /dev/shm, /proc and PID namespace, a
few entries of /etc, and nothing else of the host: no data directory beyond
those two directories, no server code or settings, none of the server's
environment. When the server runs as root, the kernel runs as a per-user uid
(``SANDBOX_UID_BASE`` + the user's id) in its own user namespace, which is what
makes RLIMIT_NPROC count (the kernel does not enforce it for root).

What gets executed, outermost first (root server; an unprivileged server runs
one unprivileged bwrap that does both bwraps' work):

1. ``sh`` joins the kernel's cgroup (only with ``SANDBOX_CGROUP_ROOT``);
2. ``env --ignore-signal=INT``: the wrappers ignore SIGINT, so interrupting the
   process group reaches the kernel without killing its sandbox;
3. ``bwrap`` (as root): mount, PID, IPC, UTS, cgroup and network namespaces and
   every mount, since only root can bind paths below directories such as a
   0700 home that holds the Python installation;
4. ``setpriv``: becomes the user's uid and gid, no groups, no capabilities,
   no_new_privs;
5. ``bwrap`` (as that uid): its own user namespace, with user namespaces
   disabled inside;
6. ``prlimit``: the rlimits, set inside that user namespace so that the process
   count is this kernel's alone;
7. ``env --default-signal=INT``, then the kernel's own argv.
"""

import asyncio
import configparser
import contextlib
import errno
import fcntl
import hashlib
import ipaddress
import json
import logging
import os
import re
import secrets
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from django.conf import settings

from jserver.errors import JupyterError

log = logging.getLogger(__name__)

NetworkPolicy = Literal["none", "outbound"]
LimitsMechanism = Literal["cgroup v2", "rlimits"]

# slirp4netns's fixed addresses (its --cidr default): the kernel's resolver is the
# helper's DNS forwarder, which asks the host's resolvers from the host side.
SLIRP_DNS = "10.0.2.3"
SLIRP_MTU = 65520  # slirp4netns's documented recommendation for throughput
NS_GET_USERNS = 0xB701  # ioctl(2) on a namespace file: its owning user namespace
# Directories mounted read-only in every sandbox, before the Python environment.
SYSTEM_TREE = Path("/usr")
MERGED_USR_LINKS = ("bin", "sbin", "lib", "lib32", "lib64", "libx32")
# Mode of directories the sandbox creates on the way to a mount point: a kernel
# may pass through them, not list them.
PASSAGE_MODE = "0711"
UNSANDBOXED_WARNING = (
    "KERNEL STARTED WITHOUT A SANDBOX: bubblewrap is not available, so this "
    "kernel runs as the server's own user and can read every user's files, the "
    "database and the server's secrets. Install bubblewrap, or set "
    "JSERVER_SANDBOX_ALLOW_UNSANDBOXED=0 to refuse to start kernels."
)


class SandboxError(JupyterError):
    """A kernel's sandbox could not be set up; the kernel must not run."""

    status = 500


class SandboxUnavailable(SandboxError):
    """Kernels cannot be sandboxed here and running them unsandboxed is refused."""


@dataclass(frozen=True)
class Limits:
    """Resource limits of one kernel (all its processes together, or each).

    Under cgroup v2, ``memory_bytes`` is the cgroup's ``memory.max`` (resident
    memory, the kernel is OOM-killed past it) and ``max_processes`` its
    ``pids.max``. Under rlimits, ``memory_bytes`` is each process's address
    space (RLIMIT_AS: allocations past it fail, Python raises MemoryError) and
    ``max_processes`` the tasks of the kernel's user namespace (RLIMIT_NPROC,
    threads included). Open files (RLIMIT_NOFILE) and file size (RLIMIT_FSIZE,
    writes past it fail with EFBIG) are rlimits under both. The private /tmp and
    /dev/shm are each at most ``memory_bytes``.
    """

    memory_bytes: int
    max_processes: int
    max_open_files: int
    max_file_bytes: int

    def __post_init__(self) -> None:
        for name in ("memory_bytes", "max_processes", "max_open_files"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be positive")
        if self.max_file_bytes < 1:
            raise ValueError("max_file_bytes must be positive")


@dataclass(frozen=True)
class SandboxSpec:
    """Everything that differs between two kernels' sandboxes.

    ``owner_root`` and ``runtime_dir`` are absolute, symlink-free directories
    inside the data directory, neither inside the other; ``cwd`` is inside
    ``owner_root``. ``env`` is the kernel's environment, already allow-listed by
    the caller: the sandbox adds ``HOME`` (the owner's root) and defaults for
    ``PATH`` and ``LANG``, and passes nothing else of the server's.
    """

    owner_id: int
    owner_root: Path
    cwd: Path
    runtime_dir: Path
    env: Mapping[str, str]
    limits: Limits
    network: NetworkPolicy = "none"


@dataclass(frozen=True)
class SandboxStatus:
    """What this machine allows, probed once per process."""

    available: bool
    reason: str  # why not, or a one-line description of what applies
    bwrap: str | None
    tenant_uids: bool  # kernels run as a per-user uid (the server is root)
    limits: LimitsMechanism
    cgroup_root: Path | None
    network_helper: str | None  # slirp4netns, needed by the "outbound" policy


@dataclass(frozen=True)
class _Tools:
    bwrap: str
    setpriv: str
    prlimit: str
    env: str
    sh: str


def default_limits() -> Limits:
    """Return the limits the settings give every kernel."""
    return Limits(
        memory_bytes=settings.SANDBOX_MEMORY_BYTES,
        max_processes=settings.SANDBOX_MAX_PROCESSES,
        max_open_files=settings.SANDBOX_MAX_OPEN_FILES,
        max_file_bytes=settings.SANDBOX_MAX_FILE_BYTES,
    )


def default_network() -> NetworkPolicy:
    """Return the network policy the settings give every kernel."""
    return settings.SANDBOX_NETWORK


_status_lock = threading.Lock()
_status: SandboxStatus | None = None
_warned_cgroup = False


def status(*, refresh: bool = False) -> SandboxStatus:
    """Return what this machine allows, probing it on the first call.

    The probe runs a minimal sandbox through the whole chain (tens of
    milliseconds, blocking): call it off the event loop.
    """
    global _status
    with _status_lock:
        if _status is None or refresh:
            _status = _probe()
            if _status.available:
                log.info("kernel sandbox: %s", _status.reason)
            else:
                log.warning("kernel sandbox unavailable: %s", _status.reason)
        return _status


def available() -> bool:
    """Return whether kernels can be sandboxed on this machine."""
    return status().available


def tenant_ids(owner_id: int) -> tuple[int, int] | None:
    """Return the uid and gid ``owner_id``'s kernels run as, or None.

    None means kernels run as the server's own uid: the server is not root, so
    it cannot give them another.
    """
    if os.geteuid() != 0:
        return None
    base = settings.SANDBOX_UID_BASE
    if base < 1:
        raise SandboxError("JSERVER_SANDBOX_UID_BASE must be positive")
    uid = base + int(owner_id)
    if not 0 < uid < 2**32 - 2 or uid == 65534:
        raise SandboxError(f"no sandbox uid for user {owner_id}")
    return uid, uid


def _tools(bwrap: str | None) -> tuple[_Tools | None, str]:
    found = {
        "setpriv": shutil.which("setpriv", path="/usr/bin:/bin"),
        "prlimit": shutil.which("prlimit", path="/usr/bin:/bin"),
        "env": shutil.which("env", path="/usr/bin:/bin"),
        "sh": shutil.which("sh", path="/usr/bin:/bin"),
    }
    if bwrap is None:
        return None, "bubblewrap (bwrap) is not installed"
    if not os.access(bwrap, os.X_OK):
        return None, f"bubblewrap is not installed (no executable {bwrap})"
    missing = [name for name, path in found.items() if path is None]
    if missing:
        return None, f"missing {', '.join(missing)} (util-linux, coreutils)"
    # All but sh also run inside the sandbox, which sees /usr: the probe fails if
    # one lives elsewhere.
    paths = {name: os.path.realpath(path) for name, path in found.items()}
    return _Tools(bwrap=bwrap, **paths), ""


def _probe() -> SandboxStatus:
    bwrap = settings.SANDBOX_BWRAP or shutil.which("bwrap")
    helper = shutil.which("slirp4netns")
    if (
        helper
        and os.geteuid() != 0
        and not os.access("/dev/net/tun", os.R_OK | os.W_OK)
    ):
        # Without root, slirp4netns opens /dev/net/tun itself (mode 0600 on
        # some hosts): the outbound policy cannot work here.
        helper = None
    cgroup_root, cgroup_reason = _cgroup_root()
    limits: LimitsMechanism = "cgroup v2" if cgroup_root else "rlimits"
    root = os.geteuid() == 0

    def unavailable(reason: str) -> SandboxStatus:
        return SandboxStatus(False, reason, bwrap, root, limits, cgroup_root, helper)

    tools, reason = _tools(bwrap)
    if tools is None:
        return unavailable(reason)
    if root and settings.SANDBOX_UID_BASE < 1:
        return unavailable(
            "the server runs as root and JSERVER_SANDBOX_UID_BASE is not positive:"
            " kernels would run as root"
        )
    # The whole chain a kernel goes through, around /usr/bin/true.
    mounts = ["--ro-bind", "/usr", "/usr", *_usr_links(), *_tmp_mount(None)]
    probe = [
        *[tools.env, "--ignore-signal=INT", "--"],
        *_chain_to_command(tools, mounts),
        *[tools.prlimit, "--nproc=64", "--nofile=64", "--"],
        *[tools.env, "--default-signal=INT", "--", "/usr/bin/true"],
    ]
    try:
        result = subprocess.run(
            probe,
            env={"PATH": "/usr/bin:/bin"},
            capture_output=True,
            timeout=30,
            start_new_session=True,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return unavailable(f"bubblewrap could not run: {exc}")
    if result.returncode != 0:
        detail = result.stderr.decode(errors="replace").strip()[-300:]
        return unavailable(f"bubblewrap fails here: {detail}")
    who = (
        f"per-user uids from {settings.SANDBOX_UID_BASE}"
        if root
        else f"the server's uid {os.geteuid()}"
    )
    where = f" in {cgroup_root}" if cgroup_root else f" ({cgroup_reason})"
    net = "slirp4netns for outbound" if helper else "no slirp4netns: network none only"
    return SandboxStatus(
        True,
        f"bubblewrap {bwrap}, kernels as {who}, limits by {limits}{where}, {net}",
        bwrap,
        root,
        limits,
        cgroup_root,
        helper,
    )


def _chain_to_command(
    tools: _Tools, mounts: list[str], uid: int | None = None
) -> list[str]:
    """Return the wrapper chain up to the command, for a probe or a kernel."""
    namespaces = [
        "--unshare-pid",
        "--unshare-ipc",
        "--unshare-uts",
        "--unshare-net",
        "--unshare-cgroup-try",
        "--die-with-parent",
        "--proc",
        "/proc",
        "--dev",
        "/dev",
    ]
    inner = ["--unshare-user", "--disable-userns"]
    if os.geteuid() != 0:
        return [tools.bwrap, *inner, *namespaces, *mounts, "--"]
    if uid is None:
        uid = settings.SANDBOX_UID_BASE
    return [
        tools.bwrap,
        *namespaces,
        *mounts,
        "--",
        *_drop_to(tools, uid, uid),
        tools.bwrap,
        *inner,
        "--dev-bind",  # --bind would make /dev/null and the rest unusable
        "/",
        "/",
        "--die-with-parent",
        "--",
    ]


def _tmp_mount(size: int | None) -> list[str]:
    sized = [] if size is None else ["--size", str(size)]
    return ["--perms", "1777", *sized, "--tmpfs", "/tmp"]


def _drop_to(tools: _Tools, uid: int, gid: int) -> list[str]:
    return [
        tools.setpriv,
        f"--reuid={uid}",
        f"--regid={gid}",
        "--clear-groups",
        "--bounding-set=-all",
        "--inh-caps=-all",
        "--no-new-privs",
        "--",
    ]


def _usr_links() -> list[str]:
    """Return the mounts that give /bin, /lib... as the host has them."""
    args: list[str] = []
    for name in MERGED_USR_LINKS:
        path = Path("/") / name
        if path.is_symlink():
            args += ["--symlink", os.readlink(path), str(path)]
        elif path.is_dir():
            args += ["--ro-bind", str(path), str(path)]
    return args


def _cgroup_root() -> tuple[Path | None, str]:
    """Return the delegated cgroup v2 directory to use, or why there is none."""
    global _warned_cgroup
    configured = settings.SANDBOX_CGROUP_ROOT
    if not configured:
        return None, "JSERVER_SANDBOX_CGROUP_ROOT is not set"
    problem = cgroup_problem(Path(configured))
    if problem:
        if not _warned_cgroup:
            log.warning("not using cgroup %s (%s): rlimits apply", configured, problem)
            _warned_cgroup = True
        return None, problem
    return Path(configured), ""


def cgroup_problem(path: Path) -> str:
    """Return why ``path`` is no delegated cgroup v2 with memory and pids, or ''."""
    mount = _mount_of(path)
    if mount is None or mount[1] != "cgroup2":
        return f"{path} is not in a cgroup2 filesystem"
    try:
        controllers = (path / "cgroup.controllers").read_text().split()
        enabled = (path / "cgroup.subtree_control").read_text().split()
    except OSError as exc:
        return f"{path} cannot be read: {exc.strerror}"
    missing = {"memory", "pids"} - set(controllers)
    if missing:
        return f"{path} has no {' or '.join(sorted(missing))} controller"
    if not {"memory", "pids"} <= set(enabled):
        try:
            (path / "cgroup.subtree_control").write_text("+memory +pids")
        except OSError as exc:
            return f"{path} does not delegate memory and pids: {exc.strerror}"
    if not os.access(path, os.W_OK):
        return f"{path} is not writable"
    return ""


def _mount_of(path: Path) -> tuple[str, str] | None:
    """Return (mount point, filesystem type) of the mount holding ``path``."""
    best: tuple[str, str] | None = None
    target = os.path.realpath(path)
    try:
        lines = Path("/proc/self/mountinfo").read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        fields = line.split()
        point = fields[4].replace("\\040", " ")
        fstype = fields[fields.index("-") + 1]
        inside = target == point or target.startswith(point.rstrip("/") + "/")
        if inside and (best is None or len(point) >= len(best[0])):
            best = (point, fstype)
    return best


# ---- preparing one kernel


def prepare(argv: Sequence[str], spec: SandboxSpec) -> "KernelCommand":
    """Return what to execute to run ``argv`` in the sandbox ``spec`` describes.

    Blocking (it walks the owner's root, writes small files, may create a
    cgroup): call it off the event loop. Raises ``SandboxError`` for a spec that
    would expose more than it should, ``SandboxUnavailable`` when there is no
    sandbox here and running unsandboxed is refused.
    """
    if not argv or not os.path.isabs(argv[0]):
        raise SandboxError("a kernel's argv must start with an absolute path")
    if spec.network not in ("none", "outbound"):
        raise SandboxError(f"unknown network policy {spec.network!r}")
    _check_dirs(spec)
    facts = status()
    if not facts.available:
        if not settings.SANDBOX_ALLOW_UNSANDBOXED:
            raise SandboxUnavailable(
                f"Kernels cannot start: no sandbox ({facts.reason}) and "
                "JSERVER_SANDBOX_ALLOW_UNSANDBOXED is off"
            )
        log.warning(UNSANDBOXED_WARNING)
        return _unsandboxed(argv, spec)
    if spec.network == "outbound" and facts.network_helper is None:
        raise SandboxError(
            "The outbound network policy needs slirp4netns, which is not installed"
        )
    tools, reason = _tools(facts.bwrap)
    if tools is None:  # uninstalled since the probe
        raise SandboxError(reason)
    return _Builder(argv, spec, tools, facts).build()


def _check_dirs(spec: SandboxSpec) -> None:
    data_dir = Path(os.path.realpath(settings.DATA_DIR))
    named = {"owner_root": spec.owner_root, "runtime_dir": spec.runtime_dir}
    for name, path in named.items():
        if not path.is_absolute() or os.path.realpath(path) != str(path):
            raise SandboxError(f"{name} must be an absolute path without links")
        if not path.is_relative_to(data_dir) or path == data_dir:
            raise SandboxError(f"{name} must be inside the data directory")
        try:
            is_dir = stat.S_ISDIR(os.lstat(path).st_mode)
        except FileNotFoundError:
            is_dir = False
        if not is_dir:
            raise SandboxError(f"{name} must be a directory")
    if spec.owner_root.is_relative_to(
        spec.runtime_dir
    ) or spec.runtime_dir.is_relative_to(spec.owner_root):
        raise SandboxError("owner_root and runtime_dir must not contain each other")
    cwd = Path(os.path.realpath(spec.cwd))
    if not cwd.is_relative_to(spec.owner_root) or not cwd.is_dir():
        raise SandboxError("cwd must be a directory inside owner_root")


def _kernel_env(spec: SandboxSpec, executable: str) -> dict[str, str]:
    env = {key: str(value) for key, value in spec.env.items()}
    env["HOME"] = str(spec.owner_root)
    bin_dir = Path(executable).parent  # the kernel's environment, its scripts first
    default_path = (
        f"{spec.owner_root}/.local/bin:{bin_dir}:/usr/local/bin:/usr/bin:/bin"
    )
    env.setdefault("PATH", default_path)
    env.setdefault("LANG", "C.UTF-8")
    for key, value in env.items():
        if "=" in key or "\0" in key or "\0" in value or not key:
            raise SandboxError(f"bad environment variable {key!r}")
    return env


def _unsandboxed(argv: Sequence[str], spec: SandboxSpec) -> "KernelCommand":
    prefix: list[str] = []
    prlimit = shutil.which("prlimit")
    if prlimit:
        # No RLIMIT_NPROC: without a user namespace of its own it would count
        # every process of the server's user, desktop sessions included.
        limits = _rlimit_args(spec.limits, cgroup=False)
        limits = [arg for arg in limits if not arg.startswith("--nproc")]
        prefix = [prlimit, *limits, "--"]
    return KernelCommand(
        argv=[*prefix, *argv],
        env=_kernel_env(spec, argv[0]),
        cwd=str(spec.cwd),
        pass_fds=(),
        sandboxed=False,
    )


def _rlimit_args(limits: Limits, *, cgroup: bool) -> list[str]:
    args = [f"--nofile={limits.max_open_files}", f"--fsize={limits.max_file_bytes}"]
    if not cgroup:  # the cgroup's pids.max and memory.max do these better
        args += [f"--nproc={limits.max_processes}", f"--as={limits.memory_bytes}"]
    return args


class _Builder:
    """Assemble one kernel's argv: mounts first, then the wrapper chain."""

    def __init__(
        self,
        argv: Sequence[str],
        spec: SandboxSpec,
        tools: _Tools,
        facts: SandboxStatus,
    ) -> None:
        self.argv, self.spec, self.tools, self.facts = list(argv), spec, tools, facts
        self.ids = tenant_ids(spec.owner_id)
        self.mounts: list[str] = []
        self.trees: list[Path] = []  # mounted host trees: everything below exists
        self.made: set[Path] = {Path("/")}  # directories the sandbox created
        self.support = Path(settings.DATA_DIR) / "sandbox"

    def build(self) -> "KernelCommand":
        spec = self.spec
        readonly = self._readonly_trees()
        data_dir = Path(os.path.realpath(settings.DATA_DIR))
        for tree in readonly:
            if data_dir.is_relative_to(tree):
                raise SandboxError(
                    f"the data directory is inside {tree}, which kernels see: "
                    "move it or remove that path from JSERVER_SANDBOX_READONLY_PATHS"
                )
        self.support.mkdir(mode=0o700, exist_ok=True)
        tmp_size = str(spec.limits.memory_bytes)
        self._tree("--ro-bind", SYSTEM_TREE)
        self.mounts += _usr_links()
        # The private /tmp (also where a root server's inner bwrap builds its root)
        # and /dev/shm hold memory: each is capped at the memory limit.
        self.mounts += _tmp_mount(spec.limits.memory_bytes)
        self.made.add(Path("/tmp"))
        self.mounts += ["--perms", "1777", "--size", tmp_size, "--tmpfs", "/dev/shm"]
        self._etc()
        for tree in readonly[1:]:
            self._tree("--ro-bind", tree)
        self._python_user_site()
        if self.ids is not None:
            _hand_over(spec.owner_root, *self.ids)
            _hand_over(spec.runtime_dir, *self.ids)
        self._tree("--bind", spec.owner_root)
        self._tree("--bind", spec.runtime_dir)
        self.mounts += ["--chdir", os.path.realpath(spec.cwd)]
        env = _kernel_env(spec, self.argv[0])
        for key, value in sorted(env.items()):
            self.mounts += ["--setenv", key, value]

        command = KernelCommand(
            argv=[],
            env={"PATH": "/usr/bin:/bin"},  # the wrappers' own; the kernel's is above
            cwd="/",
            pass_fds=(),
            sandboxed=True,
        )
        if self.facts.cgroup_root is not None:
            command.cgroup = _make_cgroup(self.facts.cgroup_root, spec.limits)
        outer = ["--clearenv", *self.mounts]
        if spec.network == "outbound":  # last: nothing after it can fail
            outer = command._network_fds(self.facts.network_helper, self.ids) + outer
        chain = self._chain(outer)
        if command.cgroup is not None:
            chain = [
                self.tools.sh,
                "-c",
                'echo 0 > "$0" && exec "$@"',
                str(command.cgroup / "cgroup.procs"),
                *chain,
            ]
        command.argv = chain
        return command

    def _chain(self, outer: list[str]) -> list[str]:
        tools, spec = self.tools, self.spec
        tail = [
            tools.prlimit,
            *_rlimit_args(spec.limits, cgroup=self.facts.cgroup_root is not None),
            "--",
            tools.env,
            "--default-signal=INT",
            "--",
            *self.argv,
        ]
        ignore = [tools.env, "--ignore-signal=INT", "--"]
        if self.ids is None:
            return [*ignore, *_chain_to_command(tools, outer), *tail]
        return [*ignore, *_chain_to_command(tools, outer, uid=self.ids[0]), *tail]

    def _readonly_trees(self) -> list[Path]:
        """Return /usr and the host trees of the Python environment, deduplicated."""
        candidates = [SYSTEM_TREE]
        for prefix in (
            sys.prefix,
            sys.base_prefix,
            sys.exec_prefix,
            sys.base_exec_prefix,
        ):
            candidates.append(Path(prefix))
        executable = Path(self.argv[0])
        for path in (executable, Path(os.path.realpath(executable))):
            if path.parent.name == "bin":
                candidates.append(path.parent.parent)
        candidates += [Path(p) for p in settings.SANDBOX_READONLY_PATHS]
        trees: list[Path] = []
        for candidate in candidates:
            if not candidate.is_absolute():
                raise SandboxError(f"read-only path {candidate} is not absolute")
            resolved = Path(os.path.realpath(candidate))
            if resolved == Path("/"):
                raise SandboxError("kernels cannot see the whole host")
            if not resolved.is_dir() or any(resolved.is_relative_to(t) for t in trees):
                continue
            trees = [t for t in trees if not t.is_relative_to(resolved)] + [resolved]
        trees.sort(key=lambda t: (t != SYSTEM_TREE, len(t.parts)))
        return trees

    def _passage(self, path: Path) -> None:
        """Create the directories leading to ``path`` (not ``path`` itself)."""
        for parent in reversed(path.parents):
            if parent in self.made or any(parent.is_relative_to(t) for t in self.trees):
                continue
            self.mounts += ["--perms", PASSAGE_MODE, "--dir", str(parent)]
            self.made.add(parent)

    def _tree(self, how: str, path: Path) -> None:
        self._passage(path)
        self.mounts += [how, str(path), str(path)]
        self.trees.append(path)

    def _etc(self) -> None:
        etc = Path("/etc")
        self.mounts += ["--perms", "0755", "--dir", "/etc"]
        self.made.add(etc)
        for entry in settings.SANDBOX_ETC:
            host = etc / entry
            generated = {"passwd", "group", "resolv.conf"}
            if Path(entry).is_absolute() or ".." in Path(entry).parts:
                continue
            if host.name in generated and host.parent == etc:
                continue
            if not os.path.lexists(host):
                continue
            for parent in reversed(host.parents):
                if parent not in self.made:
                    self.mounts += ["--perms", "0755", "--dir", str(parent)]
                    self.made.add(parent)
            if host.is_symlink():
                self.mounts += ["--symlink", os.readlink(host), str(host)]
            else:
                self.mounts += ["--ro-bind", str(host), str(host)]
        uid, gid = self.ids or (os.geteuid(), os.getegid())
        name = self.spec.env.get("USER", "")
        if not re.fullmatch(r"[A-Za-z0-9_][A-Za-z0-9_.@+-]{0,63}", name):
            name = "jovyan"
        home = self.spec.owner_root
        users = (
            "root:x:0:0:root:/root:/usr/sbin/nologin\n"
            f"{name}:x:{uid}:{gid}:{name}:{home}:/bin/sh\n"
            "nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n"
        )
        groups = f"root:x:0:\n{name}:x:{gid}:\nnogroup:x:65534:\n"
        self.mounts += [
            "--ro-bind",
            str(self._support_file("passwd", users)),
            "/etc/passwd",
        ]
        self.mounts += [
            "--ro-bind",
            str(self._support_file("group", groups)),
            "/etc/group",
        ]
        if self.spec.network == "outbound":
            resolv = self._support_file("resolv.conf", f"nameserver {SLIRP_DNS}\n")
            self.mounts += ["--ro-bind", str(resolv), "/etc/resolv.conf"]

    def _python_user_site(self) -> None:
        """Let ``pip install --user`` work in a virtualenv kernel.

        A virtualenv without system site-packages turns the user site off, so
        pip refuses ``--user`` and, with the environment read-only, every
        install. Inside the sandbox only, its pyvenv.cfg says the opposite and
        the base installation's site-packages are hidden behind empty
        directories: the kernel imports exactly what it did, plus what its
        owner installs into ``~/.local``.
        """
        venv = Path(self.argv[0]).parent.parent
        config_path = venv / "pyvenv.cfg"
        if not config_path.is_file():
            return
        text = config_path.read_text()
        parser = configparser.ConfigParser()
        try:
            parser.read_string("[venv]\n" + text)
        except configparser.Error:
            return
        section = parser["venv"]
        if section.get("include-system-site-packages", "false").lower() == "true":
            return
        home = section.get("home")
        version = section.get("version_info") or section.get("version") or ""
        match = re.match(r"(\d+)\.(\d+)", version)
        if not home or not match:
            return
        base = Path(os.path.realpath(home)).parent
        major_minor = f"{match[1]}.{match[2]}"
        hidden = [
            base / "lib" / f"python{major_minor}" / "site-packages",
            base / "local" / "lib" / f"python{major_minor}" / "dist-packages",
            base / "lib" / "python3" / "dist-packages",
        ]
        for directory in hidden:
            if directory.is_dir() and any(
                directory.is_relative_to(t) for t in self.trees
            ):
                self.mounts += [
                    "--perms",
                    "0555",
                    "--size",
                    "4096",
                    "--tmpfs",
                    str(directory),
                ]
        lines = [
            line
            for line in text.splitlines()
            if not line.strip().lower().startswith("include-system-site-packages")
        ]
        patched = "\n".join([*lines, "include-system-site-packages = true", ""])
        source = self._support_file("pyvenv.cfg", patched)
        resolved = Path(os.path.realpath(config_path))
        self.mounts += ["--ro-bind", str(source), str(resolved)]

    def _support_file(self, name: str, content: str) -> Path:
        """Return a root-owned read-only file with ``content``, named by its hash."""
        digest = hashlib.sha256(content.encode()).hexdigest()[:16]
        path = self.support / f"{name}-{digest}"
        if not path.exists():
            temporary = self.support / f".{name}-{secrets.token_hex(8)}"
            fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            with os.fdopen(fd, "w") as handle:
                handle.write(content)
            os.replace(temporary, path)
        return path


def _hand_over(root: Path, uid: int, gid: int) -> None:
    """Make ``root`` and everything below it belong to ``uid``:``gid``.

    Kernels run as the owner's uid, while the server creates files as root. The
    walk holds directory descriptors and never follows a link, so a kernel that
    swaps a directory for a link while it runs cannot redirect a chown outside
    ``root``. A non-directory with several links may be another name of a file
    outside ``root``: it keeps its owner.
    """
    os.chown(root, uid, gid, follow_symlinks=False)
    for _dirpath, dirnames, filenames, dirfd in os.fwalk(root, follow_symlinks=False):
        for name in dirnames + filenames:
            try:
                info = os.stat(name, dir_fd=dirfd, follow_symlinks=False)
                if (info.st_uid, info.st_gid) == (uid, gid):
                    continue
                if not stat.S_ISDIR(info.st_mode) and info.st_nlink > 1:
                    log.warning("not handing over %s: it has several links", name)
                    continue
                os.chown(name, uid, gid, dir_fd=dirfd, follow_symlinks=False)
            except FileNotFoundError:  # removed meanwhile by a running kernel
                continue


def _make_cgroup(root: Path, limits: Limits) -> Path:
    """Create a cgroup for one kernel under the delegated ``root``."""
    path = root / f"kernel-{secrets.token_hex(8)}"
    path.mkdir()
    try:
        (path / "memory.max").write_text(str(limits.memory_bytes))
        with contextlib.suppress(FileNotFoundError):  # no swap accounting
            (path / "memory.swap.max").write_text("0")
        # The OOM killer takes the whole kernel, not one of its processes.
        (path / "memory.oom.group").write_text("1")
        (path / "pids.max").write_text(str(limits.max_processes))
    except OSError:
        with contextlib.suppress(OSError):
            path.rmdir()
        raise
    return path


# ---- one kernel's sandbox, while it runs


@dataclass(eq=False)
class KernelCommand:
    """What to execute for one kernel, and the resources its sandbox holds.

    Contract: spawn ``argv`` with ``env``, ``cwd`` and ``pass_fds``, in a new
    session (``start_new_session=True``: no controlling terminal, and one process
    group to signal); then ``await started()``; interrupt with
    ``os.killpg(pid, SIGINT)``; stop with SIGKILL or SIGTERM to the process
    (``--die-with-parent`` takes the whole sandbox with it); after the process
    has exited, or if spawning failed, ``await aclose()``. The network helper
    and the cgroup belong to this object: ``aclose`` stops and removes them, and
    if the server dies first the helper exits by itself (its exit pipe closes).
    """

    argv: list[str]
    env: dict[str, str]
    cwd: str
    pass_fds: tuple[int, ...]
    sandboxed: bool
    cgroup: Path | None = None
    _child_fds: list[int] = field(default_factory=list, repr=False)
    _info_read: int | None = field(default=None, repr=False)
    _release: int | None = field(default=None, repr=False)
    _helper_exit: int | None = field(default=None, repr=False)
    _helper: asyncio.subprocess.Process | None = field(default=None, repr=False)
    _helper_path: str | None = field(default=None, repr=False)
    _tenant_uid: bool = field(default=False, repr=False)
    _closed: bool = field(default=False, repr=False)

    def _network_fds(
        self, helper: str | None, ids: tuple[int, int] | None
    ) -> list[str]:
        """Make the kernel wait, after its namespaces exist, for ``started()``."""
        info_read, info_write = os.pipe2(os.O_CLOEXEC)
        block_read, block_write = os.pipe2(os.O_CLOEXEC)
        self._info_read, self._release = info_read, block_write
        self._child_fds = [info_write, block_read]
        self.pass_fds = (info_write, block_read)
        self._helper_path = helper
        self._tenant_uid = ids is not None
        return ["--info-fd", str(info_write), "--block-fd", str(block_read)]

    async def started(self) -> None:
        """Finish the setup that needs the running sandbox; the kernel then runs.

        For the outbound policy: attach slirp4netns to the kernel's network
        namespace, make this host's addresses and the blocked networks
        unreachable from it, then let the kernel go on. Bounded by
        ``SANDBOX_SETUP_TIMEOUT_SECONDS``. On failure the sandbox is killed
        before it runs anything (the caller still reaps its process and calls
        ``aclose``) and ``SandboxError`` is raised.
        """
        for fd in self._child_fds:
            os.close(fd)
        self._child_fds = []
        if self._info_read is None:
            return
        pid = None
        try:
            async with asyncio.timeout(settings.SANDBOX_SETUP_TIMEOUT_SECONDS):
                info = json.loads(await _read_to_end(self._info_read))
                pid = int(info["child-pid"])
                _require_own_netns(pid)
                await _loopback_ready(pid)
                # A server without root enters the kernel's network namespace
                # through the user namespace that owns it (its own).
                owner = None if self._tenant_uid else _owning_userns(pid)
                try:
                    await self._start_helper(pid, owner)
                    await _block_routes(pid, owner)
                finally:
                    if owner is not None:
                        os.close(owner)
        except (TimeoutError, OSError, ValueError, KeyError, SandboxError) as exc:
            await self._stop_helper()
            if pid is not None:
                # Blocked before its command, the sandbox's first process does
                # not always die with its parent: kill it, and the namespace
                # goes with it.
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            if isinstance(exc, SandboxError):
                raise
            raise SandboxError(
                f"The kernel's network could not be set up: {exc}"
            ) from exc
        finally:
            os.close(self._info_read)
            self._info_read = None
        os.write(self._release, b"1")
        os.close(self._release)
        self._release = None

    async def _start_helper(self, pid: int, owner: int | None) -> None:
        ready_read, ready_write = os.pipe2(os.O_CLOEXEC)
        exit_read, exit_write = os.pipe2(os.O_CLOEXEC)
        self._helper_exit = exit_write
        options = [
            "--configure",
            f"--mtu={SLIRP_MTU}",
            "--disable-host-loopback",
            "--enable-seccomp",
            f"--ready-fd={ready_write}",
            f"--exit-fd={exit_read}",
        ]
        keep = [ready_write, exit_read]
        if owner is None:
            # As root: its own empty mount namespace, capabilities dropped. Not
            # for a server without root: building it needs uid 0 mapped in the
            # kernel's user namespace, and bwrap maps only the server's uid.
            options.append("--enable-sandbox")
        else:
            options.append(f"--userns-path=/proc/self/fd/{owner}")
            keep.append(owner)
        errors = tempfile.TemporaryFile(dir=settings.DATA_DIR / "sandbox")
        try:
            self._helper = await asyncio.create_subprocess_exec(
                self._helper_path or "slirp4netns",
                *options,
                str(pid),
                "tap0",
                pass_fds=keep,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.DEVNULL,
                stderr=errors,
                start_new_session=True,
            )
        finally:
            os.close(ready_write)
            os.close(exit_read)
        try:
            with errors:
                try:
                    ready = await _read_to_end(ready_read, stop_at=1)
                finally:
                    os.close(ready_read)
                if ready != b"1":
                    await self._stop_helper()
                    errors.seek(0)
                    detail = errors.read().decode(errors="replace").strip()[-300:]
                    raise SandboxError(f"slirp4netns failed: {detail}")
        except BaseException:
            await self._stop_helper()
            raise

    async def _stop_helper(self) -> None:
        if self._helper_exit is not None:
            os.close(self._helper_exit)  # slirp4netns exits when this closes
            self._helper_exit = None
        helper, self._helper = self._helper, None
        if helper is None or helper.returncode is not None:
            return
        try:
            async with asyncio.timeout(2):
                await helper.wait()
        except TimeoutError:
            helper.kill()
            await helper.wait()

    async def aclose(self) -> None:
        """Release what the sandbox holds; idempotent.

        Call it once the kernel's process has exited (or was never spawned).
        """
        if self._closed:
            return
        self._closed = True
        for fd in [*self._child_fds, self._info_read, self._release]:
            if fd is not None:
                with contextlib.suppress(OSError):
                    os.close(fd)
        self._child_fds, self._info_read, self._release = [], None, None
        await self._stop_helper()
        if self.cgroup is not None:
            await asyncio.to_thread(_remove_cgroup, self.cgroup)


async def _read_to_end(fd: int, stop_at: int | None = None) -> bytes:
    """Read a pipe until EOF (or ``stop_at`` bytes) without blocking the loop."""
    loop = asyncio.get_running_loop()
    os.set_blocking(fd, False)
    chunks: list[bytes] = []
    size = 0
    while stop_at is None or size < stop_at:
        readable = loop.create_future()
        loop.add_reader(fd, _resolve, readable)
        try:
            await readable
        finally:
            loop.remove_reader(fd)
        try:
            chunk = os.read(fd, 65536)
        except BlockingIOError:
            continue
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
    return b"".join(chunks)


def _resolve(future: asyncio.Future) -> None:
    if not future.done():
        future.set_result(None)


async def _run(
    argv: list[str], stdin: bytes = b"", pass_fds: tuple[int, ...] = ()
) -> bytes:
    process = await asyncio.create_subprocess_exec(
        *argv,
        pass_fds=pass_fds,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        out, err = await process.communicate(stdin)
    except BaseException:
        with contextlib.suppress(ProcessLookupError):
            process.kill()
        await process.wait()
        raise
    if process.returncode != 0:
        detail = err.decode(errors="replace").strip()[-300:]
        raise SandboxError(f"{Path(argv[0]).name} failed: {detail}")
    return out


async def host_addresses() -> list[str]:
    """Return this host's own IPv4 addresses (loopback excepted)."""
    out = await _run([_system_tool("ip"), "-json", "-4", "address", "show"])
    addresses = []
    for link in json.loads(out or b"[]"):
        for info in link.get("addr_info", []):
            address = ipaddress.ip_address(info["local"])
            if not address.is_loopback:
                addresses.append(str(address))
    return addresses


async def _loopback_ready(pid: int) -> None:
    """Wait until bwrap has set up the loopback of ``pid``'s network namespace.

    bwrap reports the sandbox's pid before its first process has configured
    the loopback; slirp4netns configuring the same namespace meanwhile makes
    bwrap fail ("loopback: Failed RTM_NEWADDR") about once in a hundred starts.
    """
    routes = Path(f"/proc/{pid}/net/fib_trie")
    while True:  # bounded by the caller's setup timeout
        if "127.0.0.1" in await asyncio.to_thread(routes.read_text):
            return
        await asyncio.sleep(0.002)


def _owning_userns(pid: int) -> int:
    """Open the user namespace that owns ``pid``'s network namespace.

    Not /proc/<pid>/ns/user: to disable user namespaces, bwrap moves the kernel
    into a nested one, which does not map root and owns nothing, at a moment
    the server cannot see.
    """
    net = os.open(f"/proc/{pid}/ns/net", os.O_RDONLY | os.O_CLOEXEC)
    try:
        return fcntl.ioctl(net, NS_GET_USERNS)
    finally:
        os.close(net)


def _require_own_netns(pid: int) -> None:
    """Refuse to configure ``pid``'s network unless it is not the server's own.

    A sandbox that died early (its pid gone or reused) must never make the
    helper or the routes land in the host's namespace.
    """
    theirs = os.stat(f"/proc/{pid}/ns/net").st_ino
    if theirs == os.stat("/proc/self/ns/net").st_ino:
        raise SandboxError("The kernel has no network namespace of its own")


async def _block_routes(pid: int, owner: int | None) -> None:
    """Make this host and the blocked networks unreachable in ``pid``'s netns.

    ``unreachable`` routes are more specific than the helper's default route and
    only the server can change them: the kernel has no capabilities.
    """
    _require_own_netns(pid)
    targets = [f"{address}/32" for address in await host_addresses()]
    for network in settings.SANDBOX_BLOCKED_NETWORKS:
        parsed = ipaddress.ip_network(network, strict=False)
        if parsed.version == 4:  # the helper gives kernels no IPv6
            targets.append(str(parsed))
    batch = "".join(
        f"route add unreachable {target}\n" for target in dict.fromkeys(targets)
    )
    enter = [_system_tool("nsenter"), f"--net=/proc/{pid}/ns/net"]
    keep: tuple[int, ...] = ()
    if owner is not None:
        enter += [f"--user=/proc/self/fd/{owner}", "--preserve-credentials"]
        keep = (owner,)
    ip = [_system_tool("ip"), "-batch", "-"]
    await _run([*enter, *ip], batch.encode(), pass_fds=keep)


def _system_tool(name: str) -> str:
    path = shutil.which(name, path="/usr/sbin:/usr/bin:/sbin:/bin")
    if path is None:
        raise SandboxError(f"{name} is not installed (iproute2, util-linux)")
    return path


def _remove_cgroup(path: Path) -> None:
    """Kill what is left in a kernel's cgroup and remove it."""
    with contextlib.suppress(OSError):
        (path / "cgroup.kill").write_text("1")
    for _attempt in range(50):
        try:
            path.rmdir()
            return
        except FileNotFoundError:
            return
        except OSError as exc:
            if exc.errno != errno.EBUSY:
                log.warning("could not remove cgroup %s: %s", path, exc)
                return
        threading.Event().wait(0.02)  # its processes are still being reaped
    log.warning("cgroup %s is still busy; left in place", path)
