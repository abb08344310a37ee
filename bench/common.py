"""What every benchmark module shares: median / min / max of repeated runs, and the machine it ran on."""

from __future__ import annotations

import os
import platform
import statistics
import subprocess
from collections.abc import Iterable


def summary(values: Iterable[float]) -> dict:
    """median, min, max and every raw value (the JSON keeps them all)."""
    xs = [float(v) for v in values]
    if not xs:
        return {"median": None, "min": None, "max": None, "n": 0, "values": []}
    return {"median": statistics.median(xs), "min": min(xs), "max": max(xs), "n": len(xs), "values": xs}


def user_env(*drop_prefixes: str) -> dict[str, str]:
    """This environment as on a user's machine, for the commands a benchmark times: without the variables whose
    names start with `drop_prefixes` (credentials and caches the benchmark sets itself), and without
    PYTHONDONTWRITEBYTECODE. This build machine sets it; with it, every `podtune` start compiled the
    orchestrator's sources again (~0.06 s), which an installed podtune, or any second run, does not."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(drop_prefixes)}
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    return env


def percentile(values: Iterable[float], p: float) -> float:
    xs = sorted(values)
    if not xs:
        return float("nan")
    k = (len(xs) - 1) * p / 100
    lo, hi = int(k), min(int(k) + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (k - lo)


def machine() -> dict:
    cpu = ""
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return {"cpu": cpu or platform.processor(), "cores": os.cpu_count(), "arch": platform.machine(),
            "python": platform.python_version(), "uptime": _uptime()}


def _uptime() -> str:
    try:
        return subprocess.run(["uptime"], capture_output=True, text=True, timeout=5).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""
