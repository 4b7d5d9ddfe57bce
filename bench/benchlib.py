"""What the benchmarks in bench/ share: child processes, CPU accounting, the machine's
description and the marker sections of bench/README.md.

Every benchmark script imports this (``from benchlib import ...``; the scripts run with
``bench/`` on ``sys.path``), so each of them stops its children, reports the machine and
writes its own README section the same way.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import re
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
PYTHON = sys.executable

_children: list[subprocess.Popen] = []


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# processes ---------------------------------------------------------------------------------


def start(argv: list[str], logfile: Path, cwd: Path = ROOT, env: dict | None = None):
    with open(logfile, "wb") as handle:
        proc = subprocess.Popen(
            argv,
            cwd=cwd,
            stdout=handle,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            env=env,
        )
    _children.append(proc)
    return proc


def stop(proc: subprocess.Popen, timeout: float = 30.0) -> int | None:
    """SIGTERM the process we started (by its pid), SIGKILL it if it does not stop."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            log(f"pid {proc.pid} ignored SIGTERM for {timeout:.0f}s; killing it")
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            proc.wait(10)
    if proc in _children:
        _children.remove(proc)
    return proc.returncode


def stop_all() -> None:
    for proc in list(_children):
        stop(proc, timeout=15)


def wait_started(proc: subprocess.Popen, logfile: Path, timeout: float = 30.0) -> str:
    """The public address from the ``{"msg": "started", "listen": {...}}`` log line."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{proc.args} exited {proc.returncode}:\n{tail(logfile)}")
        for line in logfile.read_text(errors="replace").splitlines():
            with contextlib.suppress(ValueError):
                entry = json.loads(line)
                if isinstance(entry, dict) and entry.get("msg") == "started":
                    return entry["listen"]["public"]
        time.sleep(0.05)
    raise RuntimeError(f"{proc.args} did not log 'started' within {timeout:.0f}s:\n{tail(logfile)}")


def tail(path: Path, lines: int = 20) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


# CPU accounting ----------------------------------------------------------------------------

TICK = os.sysconf("SC_CLK_TCK")


def machine_ticks() -> tuple[int, int, int]:
    """(busy, steal, total) jiffies of all CPUs from /proc/stat."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    user, nice, system, idle, iowait, irq, softirq, steal = (fields + [0] * 8)[:8]
    busy = user + nice + system + irq + softirq
    return busy, steal, busy + idle + iowait + steal


def process_ticks(pid: int | None, main_thread: bool = False) -> int:
    """utime + stime of a running process (all its threads, or only its main thread)."""
    if not pid:
        return 0
    try:
        path = f"/proc/{pid}/task/{pid}/stat" if main_thread else f"/proc/{pid}/stat"
        stat = Path(path).read_text()
    except OSError:
        return 0
    fields = stat.rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])


class CpuMeter:
    """Where the machine's CPU went during one measured run: the server under test, wrk, and
    everything else (other processes on the machine disturb the figures; reported)."""

    def __init__(self, server_pid: int | None) -> None:
        self.server_pid = server_pid
        self.machine = machine_ticks()
        self.server = process_ticks(server_pid)
        self.server_main = process_ticks(server_pid, main_thread=True)
        self.children = os.times()
        self.wall = time.monotonic()

    def result(self) -> dict:
        busy0, steal0, total0 = self.machine
        busy1, steal1, total1 = machine_ticks()
        server = (process_ticks(self.server_pid) - self.server) / TICK
        main = (process_ticks(self.server_pid, main_thread=True) - self.server_main) / TICK
        now = os.times()
        wrk = (
            now.children_user
            + now.children_system
            - self.children.children_user
            - self.children.children_system
        )
        own = now.user + now.system - self.children.user - self.children.system
        wall = time.monotonic() - self.wall
        cpus = os.cpu_count() or 1
        busy = (busy1 - busy0) / TICK
        return {
            "wall": wall,
            "server_cores": server / wall,
            "server_main_thread_cores": main / wall,
            "wrk_cores": wrk / wall,
            "other_cores": max(0.0, busy - server - wrk - own) / wall,
            "machine_busy": busy / (wall * cpus),
            "steal": (steal1 - steal0) / max(1, total1 - total0),
        }


def wait_for_quiet(limit_seconds: float, threshold: float = 0.3, max_steal: float = 0.1):
    """Wait (bounded) until, over 2 s, other processes use less than ``threshold`` cores and
    the hypervisor steals less than ``max_steal`` of the CPU time. Benchmarks on a busy
    machine measure the neighbours."""
    deadline = time.monotonic() + limit_seconds
    while True:
        meter = CpuMeter(None)
        time.sleep(2)
        cpu = meter.result()
        quiet = cpu["other_cores"] < threshold and cpu["steal"] < max_steal
        state = f"other processes {cpu['other_cores']:.2f} cores, steal {cpu['steal']:.0%}"
        if quiet:
            return cpu
        if time.monotonic() >= deadline:
            log(f"machine still busy ({state}); going on")
            return cpu
        log(f"{state}; waiting for a quieter machine")


# machine and README ----------------------------------------------------------------------


def machine() -> dict:
    meminfo = Path("/proc/meminfo").read_text()
    mem_kb = int(re.search(r"MemTotal:\s+(\d+)", meminfo).group(1))
    cpu = "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    try:
        wrk_version = subprocess.run(["wrk", "--version"], capture_output=True, text=True).stdout
    except OSError:
        wrk_version = ""
    import hashlib

    import aiohttp
    import msgspec
    import uvloop

    sources = hashlib.sha256()
    package = ROOT / "tracklayer"
    for path in sorted(package.rglob("*.py")):
        sources.update(str(path.relative_to(package)).encode() + b"\0" + path.read_bytes())
    return {
        "tracklayer_sources": sources.hexdigest()[:12],
        "nproc": os.cpu_count(),
        "memory": f"{mem_kb / 1024 / 1024:.1f} GiB",
        "cpu": cpu,
        "kernel": platform.release(),
        "python": platform.python_version(),
        "sqlite": sqlite3.sqlite_version,
        "wrk": (wrk_version.split()[1] if wrk_version.split() else "?"),
        "aiohttp": aiohttp.__version__,
        "uvloop": uvloop.__version__,
        "msgspec": msgspec.__version__,
    }


README_HEAD = """# TrackLayer benchmarks

`bench/run` runs every benchmark here and rewrites its own sections of this file (between
`<!-- NAME:start -->` and `<!-- NAME:end -->` markers); everything outside the markers is
kept, so later benchmarks add their own sections and notes stay put.
"""


def update_section(readme: Path, name: str, content: str) -> None:
    start, end = f"<!-- {name}:start -->", f"<!-- {name}:end -->"
    block = f"{start}\n{content.rstrip()}\n{end}"
    text = readme.read_text() if readme.exists() else README_HEAD
    pattern = re.compile(re.escape(start) + r".*?" + re.escape(end), re.S)
    if pattern.search(text):
        text = pattern.sub(lambda _: block, text, count=1)
    else:
        text = text.rstrip() + "\n\n" + block + "\n"
    readme.write_text(text)


def console_table(rows: list[tuple[str, ...]]) -> str:
    """Rows of cells as left-aligned columns, for the summary each script prints."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join(
        "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
        for row in rows
    )
