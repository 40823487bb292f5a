"""What every benchmark shares: the machine description, results files, tables, services, sampling.

Results go to ``bench/results/<name>.json`` with the date, the git commit and the machine,
so a number in docs/benchmarks.md can always be traced to the run that produced it.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import httpx
import psutil

from backend.localservices import LocalInflux, LocalMosquitto

REPO = Path(__file__).resolve().parent.parent
RESULTS_DIR = REPO / "bench" / "results"
WORK_ROOT = REPO / "var" / "bench"


def _first_line(command: Sequence[str]) -> str:
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"unknown ({exc})"
    text = (done.stdout or done.stderr).strip()
    return text.splitlines()[0] if text else "unknown"


def _cpu_model() -> str:
    with contextlib.suppress(OSError):
        for row in Path("/proc/cpuinfo").read_text(encoding="utf-8").splitlines():
            if row.startswith("model name"):
                return row.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def machine() -> dict[str, Any]:
    """CPU model, cores, RAM, kernel, Python, Mosquitto and InfluxDB versions of this machine."""
    mosquitto = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
    return {
        "cpu": _cpu_model(),
        "cores": os.cpu_count(),
        "ram_gb": round(psutil.virtual_memory().total / 2**30, 1),
        "kernel": platform.release(),
        "os": _first_line(["sh", "-c", ". /etc/os-release && echo $PRETTY_NAME"]),
        "python": platform.python_version(),
        "mosquitto": _first_line([mosquitto, "-h"]).replace("mosquitto version ", ""),
        "influxdb": _first_line(["influxd", "version"]).replace("InfluxDB ", ""),
    }


def git_commit() -> str:
    """The checked-out commit, with ``+dirty`` when the tree has uncommitted changes (read-only)."""
    head = _first_line(["git", "-C", str(REPO), "rev-parse", "HEAD"])
    status = subprocess.run(
        ["git", "-C", str(REPO), "status", "--porcelain"], capture_output=True, text=True, check=False
    )
    return head + ("+dirty" if status.stdout.strip() else "")


def write_result(name: str, quick: bool, data: dict[str, Any]) -> Path:
    """Write ``bench/results/<name>[-quick].json`` and return its path."""
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    document = {
        "benchmark": name,
        "mode": "quick" if quick else "full",
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "commit": git_commit(),
        "machine": machine(),
        # Other work on the machine skews every figure; the 1/5/15-minute load shows it.
        "load_average_at_end": [round(x, 2) for x in os.getloadavg()],
        **data,
    }
    path = RESULTS_DIR / (f"{name}-quick.json" if quick else f"{name}.json")
    path.write_text(json.dumps(document, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return path


def table(title: str, headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A Markdown table (pasted as is into docs/benchmarks.md), printed and returned."""
    cells = [[_cell(v) for v in row] for row in rows]
    text = [f"\n### {title}\n", "| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    text += ["| " + " | ".join(row) + " |" for row in cells]
    out = "\n".join(text)
    print(out, flush=True)
    return out


def _cell(value: Any) -> str:
    if isinstance(value, float):
        if abs(value) >= 100:
            return f"{value:,.0f}"
        return f"{value:.3g}" if abs(value) < 1 else f"{value:.1f}"
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:,}"
    return str(value)


def say(text: str) -> None:
    """Progress on stdout, timestamped (a long run should show it is alive)."""
    print(f"[{time.strftime('%H:%M:%S')}] {text}", flush=True)


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q`` quantile (0..1) by linear interpolation; NaN for no values."""
    if not values:
        return float("nan")
    if len(values) == 1:
        return float(values[0])
    return float(statistics.quantiles(values, n=100, method="inclusive")[max(0, min(98, round(q * 100) - 1))])


@contextlib.contextmanager
def workdir(name: str) -> Iterator[Path]:
    """A fresh directory under ``var/bench/`` for one benchmark, removed afterwards
    (kept, for reading its logs, when the environment has ``BENCH_KEEP=1``)."""
    WORK_ROOT.mkdir(parents=True, exist_ok=True)
    path = Path(tempfile.mkdtemp(prefix=f"{name}-", dir=WORK_ROOT))
    try:
        yield path
    finally:
        if os.environ.get("BENCH_KEEP") != "1":
            shutil.rmtree(path, ignore_errors=True)


@contextlib.contextmanager
def services(root: Path, *, mosquitto: bool = True, influx: bool = True) -> Iterator[tuple[Any, Any]]:
    """A private Mosquitto and InfluxDB (``backend.localservices``) under ``root``, stopped afterwards."""
    broker = LocalMosquitto(root) if mosquitto else None
    database = LocalInflux(root) if influx else None
    try:
        if broker is not None:
            broker.start()
        if database is not None:
            database.start()
        yield broker, database
    finally:
        for service in (database, broker):
            if service is not None:
                with contextlib.suppress(Exception):
                    service.stop()


def influx_query(url: str, database: str, statement: str, timeout: float = 60.0) -> list[dict[str, Any]]:
    """Run one InfluxQL statement (blocking); the series of its first result."""
    response = httpx.post(
        f"{url}/query", data={"db": database, "q": statement, "epoch": "ms"}, timeout=timeout
    )
    response.raise_for_status()
    result = response.json()["results"][0]
    if "error" in result:
        raise RuntimeError(f"{statement[:120]}: {result['error']}")
    series: list[dict[str, Any]] = result.get("series", [])
    return series


def influx_count(url: str, database: str, statement: str) -> int:
    """The first value of a ``SELECT count(...)`` (0 when there are no rows)."""
    series = influx_query(url, database, statement)
    return int(series[0]["values"][0][1]) if series and series[0]["values"] else 0


class Sampler:
    """Samples CPU (% of one core) and RSS of some processes every ``interval_s`` in a thread.

    Args:
        pids: Processes to follow (children are included).
        interval_s: Sampling period.
    """

    def __init__(self, pids: dict[str, int], interval_s: float = 1.0) -> None:
        self.interval_s = interval_s
        self.procs = {name: psutil.Process(pid) for name, pid in pids.items()}
        self.cpu: dict[str, list[float]] = {name: [] for name in pids}
        self.rss_mb: dict[str, list[float]] = {name: [] for name in pids}
        self._times: dict[str, float] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._started = 0.0

    def _cpu_seconds(self, proc: psutil.Process) -> float:
        total = 0.0
        for p in [proc, *proc.children(recursive=True)]:
            with contextlib.suppress(psutil.Error):
                t = p.cpu_times()
                total += t.user + t.system
        return total

    def _rss(self, proc: psutil.Process) -> float:
        total = 0
        for p in [proc, *proc.children(recursive=True)]:
            with contextlib.suppress(psutil.Error):
                total += p.memory_info().rss
        return total / 2**20

    def start(self) -> Sampler:
        """Begin sampling (CPU is measured from now)."""
        self._started = time.monotonic()
        self._cpu0 = {name: self._cpu_seconds(p) for name, p in self.procs.items()}
        self._last = dict(self._cpu0)
        self._last_t = self._started
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            now = time.monotonic()
            for name, proc in self.procs.items():
                cpu = self._cpu_seconds(proc)
                self.cpu[name].append(100 * (cpu - self._last[name]) / max(1e-6, now - self._last_t))
                self._last[name] = cpu
                self.rss_mb[name].append(self._rss(proc))
            self._last_t = now

    def stop(self) -> dict[str, dict[str, float]]:
        """Stop; per process: CPU seconds, mean and max CPU % of one core, max and last RSS in MiB."""
        self._stop.set()
        self._thread.join(timeout=5)
        elapsed = max(1e-6, time.monotonic() - self._started)
        out = {}
        for name, proc in self.procs.items():
            with contextlib.suppress(psutil.Error):
                self._last[name] = self._cpu_seconds(proc)
            out[name] = {
                "cpu_s": round(self._last[name] - self._cpu0[name], 3),
                "cpu_mean_pct": round(100 * (self._last[name] - self._cpu0[name]) / elapsed, 2),
                "cpu_max_pct": round(max(self.cpu[name], default=0.0), 1),
                "rss_max_mb": round(max(self.rss_mb[name], default=0.0), 1),
                "rss_last_mb": round(self.rss_mb[name][-1], 1) if self.rss_mb[name] else 0.0,
            }
        return out


def log_time(text: str, pattern: str) -> float | None:
    """Epoch seconds of the first log line matching ``pattern`` ("YYYY-MM-DD HH:MM:SS,mmm ..." lines)."""
    for row in text.splitlines():
        if re.search(pattern, row):
            match = re.match(r"(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d),(\d{3})", row)
            if match:
                stamp = datetime.datetime.strptime(match.group(1), "%Y-%m-%d %H:%M:%S")
                return stamp.timestamp() + int(match.group(2)) / 1000
    return None
