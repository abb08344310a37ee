"""This machine's CPU, measured instead of trusted: a short probe run, cached per machine, for the local provider's plan.

A table entry for "cpu" held only on the day it was measured (shared CPUs drift ~4x between days, BENCHMARKS.md).
So the first plan on a machine runs the real pod-side pipeline on builtin:tiny-llama for a few steps (about 10 s)
and times each part of it. The result is cached in PODTUNE_HOME, keyed by the CPU model and count, the Python
and the training libraries' versions, and is re-measured after MAX_AGE_S. `PODTUNE_CPU_PROBE=off` keeps the
table entry (the test suite does, for speed and determinism).

Nothing here imports torch: the probe is a subprocess, the pipeline started through remote/warm.py as a run starts
it (the libraries imported first, then the job), so its imports land in the phase a run's do.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from importlib import metadata
from pathlib import Path
from typing import Any

from remote.events import EventKind, RunPaths, WorkspacePaths

from ..paths import REPO_ROOT, WARM_SCRIPT, podtune_home

CACHE_FILE = "cpu-calibration.json"
MAX_AGE_S = 24 * 3600  # a shared CPU's speed drifts from day to day: a day-old measurement is measured again
PROBE_STEPS = 24  # ~0.07 s a step on a laptop CPU: twice the 12 steps cost ~1 s once a day, and halve the noise
PROBE_METHOD = 3  # bumped when the figures mean something else (3: started through remote/warm.py, as a run is)
PROBE_RECIPE = REPO_ROOT / "recipes" / "tiny-cpu.yaml"
PROBE_DATA = REPO_ROOT / "recipes" / "data" / "tiny-instructions.jsonl"
LIBRARIES = ("torch", "transformers", "trl", "peft", "bitsandbytes", "accelerate", "datasets")
PROBE_ENV = "PODTUNE_CPU_PROBE"


def enabled() -> bool:
    return os.environ.get(PROBE_ENV, "").strip().lower() not in ("off", "0", "no", "false")


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def _version(name: str) -> str:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "-"


def machine_key() -> dict[str, Any]:
    """What the measurement depends on: a different CPU, core count or library release is measured anew."""
    from .. import __version__

    return {"cpu": _cpu_model(), "cpus": _cpus(), "python": platform.python_version(), "podtune": __version__,
            "method": PROBE_METHOD, **{lib: _version(lib) for lib in LIBRARIES}}


def key_id(key: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]


def cache_path() -> Path:
    return podtune_home() / CACHE_FILE


def load(key: dict[str, Any] | None = None, *, now: float | None = None, path: Path | None = None) -> dict | None:
    """The cached calibration for this machine, or None when absent, for another machine, or too old."""
    key = machine_key() if key is None else key
    now = time.time() if now is None else now
    try:
        cached = json.loads((path or cache_path()).read_text(encoding="utf-8"))
    except (FileNotFoundError, json.JSONDecodeError, OSError):
        return None
    entry = cached.get("entries", {}).get(key_id(key)) if isinstance(cached, dict) else None
    if not isinstance(entry, dict) or entry.get("key") != key:
        return None
    if not 0 <= now - float(entry.get("measured_at", 0)) < MAX_AGE_S:
        return None
    return entry


def save(key: dict[str, Any], result: dict[str, Any], *, now: float | None = None, path: Path | None = None) -> dict:
    path = path or cache_path()
    try:
        cached = json.loads(path.read_text(encoding="utf-8"))
        entries = cached.get("entries", {}) if isinstance(cached, dict) else {}
    except (FileNotFoundError, json.JSONDecodeError, OSError):
        entries = {}
    entry = {"key": key, "measured_at": time.time() if now is None else now, **result}
    entries[key_id(key)] = entry
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps({"entries": entries}, indent=1), encoding="utf-8")
    os.replace(tmp, path)
    return entry


def cpu_calibration(*, say: Callable[[str], None] | None = None,
                    probe: Callable[[], dict[str, Any]] | None = None) -> dict[str, Any] | None:
    """This machine's calibration: cached, or measured now (and cached). None when the probe is turned off or fails."""
    if not enabled():
        return None
    key = machine_key()
    cached = load(key)
    if cached is not None:
        return cached
    if say:
        say(f"measuring this machine's CPU once for the plan (a {PROBE_STEPS}-step tiny run, ~10 s; cached in "
            f"{cache_path()} for a day)")
    try:
        result = (probe or run_probe)()
    except (OSError, RuntimeError, subprocess.SubprocessError, ValueError, KeyError) as exc:
        if say:
            say(f"the CPU probe failed ({exc.__class__.__name__}: {str(exc)[:200]}); the plan uses the table's entry")
        return None
    return save(key, result)


def run_probe(python: str = sys.executable, steps: int = PROBE_STEPS, timeout_s: float = 300) -> dict[str, Any]:
    """Run the pod-side pipeline (download, train, merge) of the tiny recipe for `steps` steps; time its parts."""
    text = PROBE_RECIPE.read_text(encoding="utf-8")
    # Two checkpoints, as the tiny recipe writes (at 15 and 30): their cost lands in train_start_s.
    save_steps = steps // 2
    text = text.replace("max_steps: 30", f"max_steps: {steps}").replace("save_steps: 15", f"save_steps: {save_steps}")
    with tempfile.TemporaryDirectory(prefix="podtune-cpu-probe-") as tmp_name:
        tmp = Path(tmp_name)
        run_dir = tmp / "run"
        paths = RunPaths(run_dir)
        (run_dir / "data").mkdir(parents=True)
        (run_dir / "data" / PROBE_DATA.name).write_bytes(PROBE_DATA.read_bytes())
        (paths.recipe).write_text(text, encoding="utf-8")
        env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "HUGGING"))}
        env.update(HF_HOME=str(WorkspacePaths(tmp).hf_home), HF_HUB_OFFLINE="1", PYTHONPATH=str(REPO_ROOT),
                   PYTHONUNBUFFERED="1", HF_HUB_DISABLE_TELEMETRY="1", HF_HUB_DISABLE_PROGRESS_BARS="1",
                   TOKENIZERS_PARALLELISM="false")
        from remote.requirements import for_recipe
        from remote.recipe import load_recipe

        wanted = for_recipe(load_recipe(paths.recipe))
        t0 = time.time()
        subprocess.run([python, "-m", "remote.requirements", *wanted], cwd=REPO_ROOT, env=env, timeout=timeout_s,
                       capture_output=True, check=True)
        setup_s = time.time() - t0
        # Handed its job from the start: the warm start imports the libraries, then runs the pipeline at once.
        warm = paths.warm
        warm.root.mkdir()
        warm.args.write_text(json.dumps(["pipeline", "--run-dir", str(run_dir), "--phases", "download,train,merge"]))
        warm.claim.mkdir()
        spawned = time.time()
        done = subprocess.run([python, "-u", str(WARM_SCRIPT), *warm.boot_options(str(REPO_ROOT), str(paths.log), 1)],
                              cwd=REPO_ROOT, env=env, timeout=timeout_s, capture_output=True, text=True)
        ended = time.time()
        if done.returncode != 0:
            log = paths.log.read_text(errors="replace")[-500:] if paths.log.exists() else done.stderr[-500:]
            raise RuntimeError(f"probe pipeline exited {done.returncode}: {log}")
        events = [json.loads(line) for line in paths.events.read_text().splitlines() if line.strip()]
    return summarize(events, spawned=spawned, ended=ended, setup_s=setup_s, save_steps=save_steps)


def summarize(events: list[dict[str, Any]], *, spawned: float, ended: float, setup_s: float,
              save_steps: int | None = None) -> dict[str, Any]:
    """The probe's figures from its events: the steady training rate and each fixed cost around it."""
    first: dict[str, float] = {}
    last: dict[str, float] = {}
    for e in events:
        if e.get("kind") in (EventKind.PHASE_START, EventKind.PHASE_END):
            (first if e["kind"] == EventKind.PHASE_START else last)[e["phase"]] = e["ts"]
    phase = {p: last[p] - first[p] for p in first if p in last}
    steps = [e for e in events if e.get("kind") == EventKind.STEP]
    if len(steps) < 3:
        raise ValueError(f"the probe logged {len(steps)} steps; at least 3 are needed")
    done = next(e for e in events if e.get("kind") == EventKind.TRAIN_DONE)
    start = next(e for e in events if e.get("kind") == EventKind.PIPELINE_START)
    # The steady rate: tokens per step over the mean time of the steps after the first, less the ones that
    # wrote a checkpoint (the first step's warm-up and the checkpoints are the fixed cost below). The mean, not
    # the median: a run pays for its slow steps too (a shared CPU's moments of load, the allocator), and the
    # median left them out (the plan said 18 % less training than the runs took).
    steady = [b["ts"] - a["ts"] for a, b in zip(steps, steps[1:]) if not (save_steps and a["step"] % save_steps == 0)]
    per_step = (steps[-1]["tokens"] - steps[0]["tokens"]) / (len(steps) - 1)
    rate = per_step / max(statistics.fmean(steady or [b["ts"] - a["ts"] for a, b in zip(steps, steps[1:])]), 1e-6)
    train_s = float(done["train_seconds"])
    start_s = max(0.0, train_s - steps[-1]["tokens"] / rate)
    return {
        "tokens_per_s": round(rate, 1),
        "train_start_s": round(start_s, 3),  # trainer.train()'s fixed part: first step, optimizer, dataloader
        "train_setup_s": round(max(0.0, phase["train"] - train_s), 3),  # model load, data, trainer construction
        "import_s": round(start["ts"] - spawned, 3),  # interpreter + every library, before the pipeline's first event
        "download_s": round(phase["download"], 3),  # builtin:tiny-llama built from nothing, as a fresh run does
        "merge_s": round(phase["merge"], 3),  # the tiny recipe's merge, with its sample answers
        "exit_s": round(max(0.0, ended - events[-1]["ts"]), 3),  # the interpreter's teardown after the last event
        "setup_s": round(setup_s, 3),  # the setup phase's package check on this Python
        "steps": len(steps), "tokens": steps[-1]["tokens"],
        "probe_s": round(ended - spawned + setup_s, 2),
    }
