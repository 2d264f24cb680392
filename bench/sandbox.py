"""Startup overhead of the kernel sandbox: the same programs, sandboxed and not.

Run from the repository root with the project's virtualenv::

    .venv/bin/python bench/sandbox.py [--rounds 30] [--write]

Each round runs every variant once, in turn, so that the machine's noise falls
on all of them alike. A sandboxed run is measured as the launcher will pay it:
``prepare`` (with the hand-over of a small owner root), the spawn, ``started``
(the network helper for "outbound"), the program, ``aclose``. Programs:
``python -c pass`` (the floor), and importing ``ipykernel.kernelapp`` (most of
a kernel's start; the start of real kernels is measured once the kernel
launcher exists). ``--write`` replaces this benchmark's section of
bench/RESULTS.md.
"""

import argparse
import asyncio
import atexit
import os
import platform
import secrets
import shutil
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "jserver.settings")
if "JSERVER_DATA_DIR" not in os.environ:
    os.environ["JSERVER_DATA_DIR"] = tempfile.mkdtemp(prefix="jserver-bench-")
    atexit.register(shutil.rmtree, os.environ["JSERVER_DATA_DIR"], True)
os.environ.setdefault("JSERVER_SECRET_KEY", "bench-only-" + "k" * 50)

import django  # noqa: E402

django.setup()

from django.conf import settings  # noqa: E402

from kernels import sandbox  # noqa: E402

RESULTS = REPO / "bench" / "RESULTS.md"
BEGIN = "<!-- bench/sandbox.py begin -->"
END = "<!-- bench/sandbox.py end -->"
PROGRAMS = {
    "python -c pass": ["-c", "pass"],
    "import ipykernel.kernelapp": ["-c", "import ipykernel.kernelapp"],
}


def make_spec(network: sandbox.NetworkPolicy, files: int = 20) -> sandbox.SandboxSpec:
    data = Path(settings.DATA_DIR)
    root = data / "users" / "1"
    root.mkdir(mode=0o700, parents=True, exist_ok=True)
    for number in range(files):
        (root / f"file-{number}.txt").write_text("x")
    runtime = data / "runtime" / secrets.token_hex(6)
    runtime.mkdir(mode=0o700, parents=True)
    return sandbox.SandboxSpec(
        owner_id=1,
        owner_root=root,
        cwd=root,
        runtime_dir=runtime,
        env={"USER": "bench"},
        limits=sandbox.default_limits(),
        network=network,
    )


async def run_plain(arguments: list[str]) -> float:
    started = time.perf_counter()
    process = await asyncio.create_subprocess_exec(
        sys.executable, *arguments, env={"PATH": "/usr/bin:/bin"}
    )
    assert await process.wait() == 0
    return time.perf_counter() - started


async def run_sandboxed(arguments: list[str], network: sandbox.NetworkPolicy) -> float:
    spec = make_spec(network)
    started = time.perf_counter()
    command = await asyncio.to_thread(
        sandbox.prepare, [sys.executable, *arguments], spec
    )
    process = await asyncio.create_subprocess_exec(
        *command.argv,
        env=command.env,
        cwd=command.cwd,
        pass_fds=command.pass_fds,
        start_new_session=True,
    )
    try:
        await command.started()
        returncode = await process.wait()
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
        await command.aclose()
    elapsed = time.perf_counter() - started
    shutil.rmtree(spec.runtime_dir)
    if returncode != 0:
        raise sandbox.SandboxError(f"exit status {returncode}")
    return elapsed


def hand_over_seconds(files: int, rounds: int) -> list[float]:
    """Time ``prepare`` alone for an owner root of ``files`` files."""
    spec = make_spec("none", files)
    times = []
    for _ in range(rounds):
        started = time.perf_counter()
        sandbox.prepare([sys.executable, "-c", "pass"], spec)
        times.append(time.perf_counter() - started)
    return times


def summary(times: list[float]) -> tuple[float, float]:
    ordered = sorted(times)
    p90 = ordered[min(len(ordered) - 1, round(0.9 * (len(ordered) - 1)))]
    return statistics.median(ordered), p90


async def measure(rounds: int) -> list[tuple[str, str, list[float]]]:
    networks: list[sandbox.NetworkPolicy] = ["none"]
    if sandbox.status().network_helper:
        networks.append("outbound")
    rows: dict[tuple[str, str], list[float]] = {}
    failures: list[str] = []
    for _ in range(rounds):
        for name, arguments in PROGRAMS.items():
            rows.setdefault((name, "unsandboxed"), []).append(
                await run_plain(arguments)
            )
            for network in networks:
                variant = f"sandboxed, network {network}"
                try:
                    elapsed = await run_sandboxed(arguments, network)
                except sandbox.SandboxError as exc:  # counted, never hidden
                    failures.append(f"{name}, {variant}: {exc.message}")
                    continue
                rows.setdefault((name, variant), []).append(elapsed)
    rows_list = [(name, variant, times) for (name, variant), times in rows.items()]
    return rows_list, failures


def report(rows, failures, prepare_rows, rounds: int) -> str:
    facts = sandbox.status()
    lines = [
        BEGIN,
        "## Kernel sandbox startup (bench/sandbox.py)",
        "",
        f"{datetime.now(UTC):%Y-%m-%d}, {platform.node()}: {os.cpu_count()} cores, "
        f"Linux {platform.release()}, Python {platform.python_version()}, "
        f"{rounds} rounds (variants interleaved). Sandbox: {facts.reason}.",
        "",
        "| program | variant | median ms | p90 ms | median vs unsandboxed |",
        "| --- | --- | ---: | ---: | ---: |",
    ]
    base: dict[str, float] = {}
    for name, variant, times in rows:
        median, p90 = summary(times)
        if variant == "unsandboxed":
            base[name] = median
        ratio = median / base[name]
        lines.append(
            f"| `{name}` | {variant} | {median * 1e3:.1f} | {p90 * 1e3:.1f} "
            f"| {ratio:.2f}x (+{(median - base[name]) * 1e3:.1f} ms) |"
        )
    runs = rounds * sum(1 for _name, variant, _ in rows if variant != "unsandboxed")
    lines += ["", f"Failed sandboxed starts: {len(failures)} of {runs}."]
    lines += [f"- {failure}" for failure in failures]
    lines += [
        "",
        "`prepare` alone (argv, support files, and the walk that hands the owner's "
        "root over to its uid; files already handed over, as on every start but "
        "the first):",
        "",
        "| files in the owner's root | median ms | p90 ms |",
        "| ---: | ---: | ---: |",
    ]
    for files, times in prepare_rows:
        median, p90 = summary(times)
        lines.append(f"| {files} | {median * 1e3:.2f} | {p90 * 1e3:.2f} |")
    lines += [
        "",
        "The sandbox adds a fixed cost per start (bwrap twice, setpriv, prlimit, env, "
        "and for outbound slirp4netns plus the routes); the issue's target (a real "
        "kernel's start within 20% of the unsandboxed start) is measured on kernels "
        "once the launcher exists.",
        END,
    ]
    return "\n".join(lines) + "\n"


def write(section: str) -> None:
    text = RESULTS.read_text() if RESULTS.exists() else "# Benchmark results\n"
    if BEGIN in text and END in text:
        head, rest = text.split(BEGIN, 1)
        text = head + section.rstrip("\n") + rest.split(END, 1)[1]
    else:
        text = text.rstrip("\n") + "\n\n" + section
    RESULTS.write_text(text)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--write", action="store_true", help="update bench/RESULTS.md")
    args = parser.parse_args()
    if not sandbox.available():
        sys.exit(f"no sandbox here: {sandbox.status().reason}")
    rows, failures = asyncio.run(measure(args.rounds))
    prepare_rows = [(files, hand_over_seconds(files, 10)) for files in (20, 2000)]
    section = report(rows, failures, prepare_rows, args.rounds)
    print(section)
    if args.write:
        write(section)


if __name__ == "__main__":
    main()
