"""Where a warm emulator run spends the time before the pod's Python starts and after the work ends.

    python bench/trace_stages.py [RUNS]        # default 5; about 12 s a run

The control-plane rows in BENCHMARKS.md give "before launch" and "after pipeline_done" as two numbers; this
splits them into stages. It checks HEAD out into a temporary git worktree, applies bench/trace_stages.patch there
(a line `TRACE <stage> <time>` on stderr at each stage when PODTUNE_TRACE is set: nothing else changes), runs one
untimed and RUNS timed `podtune run` of the tiny recipe against the RunPod emulator (the same setup as
bench_pod.py's warm runs), and prints each stage's time since the command started, per run and the medians. The
pod's side comes from its own files: the warm start's start time and `pipeline_done`. If the patch no longer
applies, the code it marks has moved: update the patch (`git diff` of the marks in a worktree).
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench import bench_pod as bp  # noqa: E402
from tests.doubles.runpod_emulator import RunPodEmulator  # noqa: E402


def traced_runs(code: Path, runs: int) -> list[list[tuple[str, float]]]:
    out: list[list[tuple[str, float]]] = []
    with tempfile.TemporaryDirectory(prefix="podtune-trace-") as name:
        tmp = Path(name)
        with RunPodEmulator(state_dir=tmp / "runpod", boot_delay_s=0.3, pod_env_extra={"PATH": bp.POD_PATH}) as emu:
            rec = bp.recipe(tmp / "r", provider="runpod")
            env = bp._env(tmp / "home", emu)
            env.update(PODTUNE_CPU_PROBE="off", PYTHONPATH=str(code), PODTUNE_TRACE="1")
            cmd = [bp.PODTUNE, "run", str(rec), "--yes"]
            subprocess.run(cmd, env=env, cwd=code, capture_output=True, check=True, timeout=600)  # rents, fills caches
            for i in range(runs):
                started = time.time()
                done = subprocess.run(cmd, env=env, cwd=code, capture_output=True, text=True, check=True, timeout=600)
                ended = time.time()
                run_id, _, pod_id, _ = bp.runs_in(tmp / "home")[-1]
                run_dir = bp.pod_run_dir(emu, pod_id, run_id)
                evs = bp.events(run_dir / "events.jsonl")
                info = json.loads((run_dir / "run.json").read_text())
                pod_python, _ = bp.pod_side_start(run_dir, info, bp.first(evs, "pipeline_start"))
                marks = [(line.split()[1], float(line.split()[2]) - started) for line in done.stderr.splitlines()
                         if line.startswith("TRACE ")]
                marks += [("pod_python_started", pod_python - started), ("launched", info["launched_at"] - started),
                          ("pipeline_done", bp.first(evs, "pipeline_done")["ts"] - started), ("exited", ended - started)]
                marks.sort(key=lambda m: m[1])
                out.append(marks)
                print(f"run {i + 1}/{runs}: " + ", ".join(f"{k} {t:.3f}" for k, t in marks), file=sys.stderr)
                emu.wait_status(pod_id, "EXITED", 30)
    return out


def medians(runs: list[list[tuple[str, float]]]) -> list[tuple[str, float]]:
    """Each stage's median time, in the order of the first run; request marks are numbered by their order."""
    def numbered(marks):
        seen: dict[str, int] = {}
        named = []
        for k, t in marks:
            seen[k] = seen.get(k, 0) + 1
            named.append((k if seen[k] == 1 else f"{k}#{seen[k]}", t))
        return named
    per = [dict(numbered(r)) for r in runs]
    order = [k for k, _ in numbered(runs[0])]
    return [(k, statistics.median(p[k] for p in per if k in p)) for k in order]


def main(runs: int) -> None:
    with tempfile.TemporaryDirectory(prefix="podtune-trace-code-") as name:
        code = Path(name) / "code"
        subprocess.run(["git", "worktree", "add", "--detach", "-q", str(code), "HEAD"], cwd=REPO, check=True)
        try:
            subprocess.run(["git", "apply", str(REPO / "bench" / "trace_stages.patch")], cwd=code, check=True)
            result = traced_runs(code, runs)
        finally:
            subprocess.run(["git", "worktree", "remove", "--force", str(code)], cwd=REPO, check=False)
    print(f"median of {runs} warm emulator runs, seconds since `podtune run` started (+ since the stage before):")
    previous = 0.0
    for stage, t in medians(result):
        print(f"  {t:7.3f}  (+{t - previous:.3f})  {stage}")
        previous = t


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 5)
