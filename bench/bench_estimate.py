"""`podtune plan` against what the run then measures: the tiny recipe on the local provider, this machine's CPU.

Each repeat is the real CLI (`podtune run recipes/tiny-cpu.yaml --yes`) in a fresh PODTUNE_HOME, so the first
phase builds builtin:tiny-llama exactly as a newcomer's `make demo` does, and the plan measures this CPU with its
probe (orchestrator/planning/calibrate.py; nothing is calibrated by hand). The plan the run stored is compared with the
phase times and the trainer's own train_seconds from the same run (one process, side by side).
The target (issue #14): training time and whole run (every phase after the plan) within +-15 % on any machine.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench.common import summary, user_env  # noqa: E402
PODTUNE = str(Path(sys.executable).parent / "podtune")
COMPARED = ("sync", "setup", "download", "train", "merge", "stop")


def one_run(home: Path) -> dict:
    env = user_env("HF_", "RUNPOD_")
    # This checkout's code, whichever checkout the installed console script was made from.
    env.update(PODTUNE_HOME=str(home), HF_HUB_OFFLINE="1", COLUMNS="200", PYTHONPATH=str(REPO))
    env.pop("PODTUNE_CPU_PROBE", None)  # the plan measures this machine, as a user's first plan does
    out = subprocess.run([PODTUNE, "run", "recipes/tiny-cpu.yaml", "--yes"], cwd=REPO, env=env,
                         capture_output=True, text=True, timeout=600)
    if out.returncode != 0:
        raise RuntimeError(f"podtune run failed:\n{out.stdout[-2000:]}\n{out.stderr[-2000:]}")
    (summary_file,) = (home / "runs").glob("*/summary.json")
    s = json.loads(summary_file.read_text())
    est = s["estimate"]["estimate"]
    actual = {p["phase"]: p["seconds"] for p in s["phases"]}
    return {
        "tokens": s["tokens"], "tokens_per_s": s["tokens_per_s"], "train_seconds": s["train_seconds"],
        "estimated_tokens_per_s": est["tokens_per_s"], "estimated_train_tokens_s": est["train_tokens_s"],
        "phases": {p: {"estimated": est["phases"].get(p), "measured": actual.get(p)} for p in COMPARED},
        "estimated_total_s": est["seconds"],
        "measured_total_s": sum(v for k, v in actual.items() if k not in ("plan",)),  # idle gaps included
        "plan_s": actual.get("plan"), "calibrated": est.get("calibrated", False), "measured_phases": actual,
        "throughput_source": est.get("throughput_source"),
        "train_error": est["train_tokens_s"] / s["train_seconds"] - 1,
        "total_error": est["seconds"] / sum(v for k, v in actual.items() if k not in ("plan",)) - 1,
    }


def main(repeats: int = 3) -> dict:
    runs = []
    for i in range(repeats):
        with tempfile.TemporaryDirectory(prefix="podtune-bench-est-") as tmp:
            runs.append(one_run(Path(tmp) / "home"))
            print(f"estimate run {i + 1}/{repeats}: train {runs[-1]['train_seconds']:.2f} s measured vs "
                  f"{runs[-1]['estimated_train_tokens_s']:.2f} s estimated", file=sys.stderr)
    med = statistics.median
    result = {
        "repeats": repeats,
        "runs": runs,
        "train_error_runs": summary(r["train_error"] for r in runs),
        "total_error_runs": summary(r["total_error"] for r in runs),
        "train_seconds_runs": summary(r["train_seconds"] for r in runs),
        "total_s_runs": summary(r["measured_total_s"] for r in runs),
        "plan_s_runs": summary(r["plan_s"] for r in runs),
        "median": {
            "tokens_per_s": med(r["tokens_per_s"] for r in runs),
            "train_seconds": med(r["train_seconds"] for r in runs),
            "phases": {p: med(r["phases"][p]["measured"] for r in runs) for p in COMPARED},
            "total_s": med(r["measured_total_s"] for r in runs),
        },
        "estimate": {  # each fresh home measured the CPU anew: the median of the three plans
            "tokens_per_s": med(r["estimated_tokens_per_s"] for r in runs),
            "train_seconds": med(r["estimated_train_tokens_s"] for r in runs),
            "phases": {p: med(r["phases"][p]["estimated"] or 0 for r in runs) for p in COMPARED},
            "total_s": med(r["estimated_total_s"] for r in runs),
        },
    }
    m, e = result["median"], result["estimate"]
    result["train_error"] = e["train_seconds"] / m["train_seconds"] - 1  # + means the plan said longer
    result["total_error"] = e["total_s"] / m["total_s"] - 1
    return result


if __name__ == "__main__":
    print(json.dumps(main(), indent=1))
