"""Two checkouts side by side on the control-plane rows: `podtune run` of the tiny recipe and the pod-side
pipeline command run directly, alternating run by run (the order flipped each round), on one machine and, for
the RunPod rows, one emulator. What a change to the control plane buys, measured against the code before it:

    python bench/ab_pod.py local|emulator ROUNDS BASE_CHECKOUT   (e.g. `git archive BASE | tar -x -C /tmp/base`)

Per run: wall, direct, their ratio, before launch (start -> run.json's launched_at), after `pipeline_done` (its
event -> the CLI's exit), first training step. The CPU probe is off in both (the plan is not what is compared).
"""

from __future__ import annotations

import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

NEW = Path(__file__).resolve().parent.parent
BASE = Path(sys.argv[3]).resolve() if len(sys.argv) > 3 else NEW
sys.path.insert(0, str(NEW))

from bench import bench_pod as bp  # noqa: E402
from tests.doubles.runpod_emulator import RunPodEmulator  # noqa: E402

PODTUNE = bp.PODTUNE

def env_for(repo: Path, home: Path, emu: RunPodEmulator | None = None) -> dict[str, str]:
    e = bp._env(home, emu)
    e.update(PYTHONPATH=str(repo), PODTUNE_CPU_PROBE="off")
    return e

def run(repo: Path, rec: Path, env: dict[str, str]) -> tuple[float, float, str]:
    started = time.time()
    out = subprocess.run([PODTUNE, "run", str(rec), "--yes"], cwd=repo, env=env, capture_output=True, text=True,
                         timeout=600)
    if out.returncode != 0:
        raise RuntimeError(out.stdout[-2000:] + out.stderr[-2000:])
    return started, time.time(), out.stdout


def main(kind: str, rounds: int) -> None:
    tmp = Path(tempfile.mkdtemp(prefix=f"ab-{kind}-"))
    emu_cm = (RunPodEmulator(state_dir=tmp / "runpod", boot_delay_s=0.3, pod_env_extra={"PATH": bp.POD_PATH})
              if kind == "emulator" else None)
    emu = emu_cm.__enter__() if emu_cm else None
    try:
        setup: dict[str, tuple[Path, Path, Path, dict[str, str]]] = {}
        for name, repo in (("base", BASE), ("new", NEW)):
            home = tmp / name / "home"
            rec = bp.recipe(tmp / name / "r", provider="runpod" if emu else "local")
            if emu:  # distinct pod names per version
                rec.write_text(rec.read_text().replace("name: tiny-cpu", f"name: tiny-{name}"))
            env = env_for(repo, home, emu)
            run(repo, rec, env)  # warm-up: model built, pod rented, caches filled (not counted)
            setup[name] = (repo, home, rec, env)
        rows: dict[str, list[dict[str, float]]] = {"base": [], "new": []}
        for i in range(rounds):
            order = ("base", "new") if i % 2 == 0 else ("new", "base")
            for name in order:
                repo, home, rec, env = setup[name]
                s, e, out = run(repo, rec, env)
                run_id, status, pod_id, _ = bp.runs_in(home)[-1]
                if emu:
                    rd = bp.pod_run_dir(emu, pod_id, run_id)
                    ws = emu.pods[pod_id].workspace
                    code, hf = ws / "podtune", ws / "hf"
                else:
                    ws = home / "local" / "workspace"
                    rd, code, hf = ws / "runs" / run_id, repo, ws / "hf"
                evs = bp.events(rd / "events.jsonl")
                info = json.loads((rd / "run.json").read_text())
                done, step = bp.first(evs, "pipeline_done"), bp.first(evs, "step")
                d = bp.direct_pipeline(code, hf, rec, tmp / name / "direct", f"{i}")
                row = {"wall": e - s, "direct": d, "ratio": (e - s) / d, "before_launch": info["launched_at"] - s,
                       "after_done": e - done["ts"], "first_step": step["ts"] - s,
                       "pod_import_load": step["ts"] - bp.pod_side_start(rd, info, bp.first(evs, "pipeline_start"))[0]}
                if emu and emu.wait_status(pod_id, "EXITED", 30):  # GPU billed after the work ended, attached
                    row["billed_after_done"] = emu.pods[pod_id].intervals[-1].end - done["ts"]
                rows[name].append(row)
                print(f"round {i + 1} {name}: " + " ".join(f"{k} {v:.3f}" for k, v in row.items()), file=sys.stderr,
                      flush=True)
        out = {name: {k: {"median": statistics.median(r[k] for r in rs), "min": min(r[k] for r in rs),
                          "max": max(r[k] for r in rs)} for k in rs[0]} for name, rs in rows.items()}
        print(json.dumps({"kind": kind, "rounds": rounds, "summary": out, "rows": rows}, indent=1))
    finally:
        if emu_cm:
            emu_cm.__exit__(None, None, None)
        shutil.rmtree(tmp, ignore_errors=True)

if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]))
