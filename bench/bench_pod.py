"""What a user waits on, against the RunPod v2 emulator (real sshd pods) and the local provider.

Every figure comes from one real `podtune run` (the installed console script, a fresh subprocess) of the tiny
recipe, and the emulator's own billing intervals, or the pod's own event timestamps (same machine, same clock):

- billed after the work ends: the end of the pod's billing interval minus the `pipeline_done` event's time,
  with the laptop attached, and with the laptop SIGKILLed mid-training (the pod's watchdog stops it).
- warm run -> first training step: `podtune run` started -> the first `step` event, on a pod that already ran
  this recipe (stopped, resumed). The pod-side part (the pipeline's interpreter, imports, model load, data,
  trainer, first step: launch -> first step) is reported beside it.
- control-plane overhead: `podtune run` wall time against the pod-side pipeline command run directly, on the
  same warm caches, alternating; on the emulator and on the local provider.
- log latency: a `step` event's time on the pod -> its line printed by `podtune logs -f` (the live view, from the
  events) and by `podtune logs -f --raw` (the trainer's train.log), against `tail -F` of train.log over one OpenSSH
  connection to the same pod, all following the same run.
"""

from __future__ import annotations

import json
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from contextlib import closing
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench.common import percentile, summary, user_env  # noqa: E402
from remote.events import RunPaths  # noqa: E402
from tests.doubles.runpod_emulator import RunPodEmulator  # noqa: E402

PODTUNE = str(Path(sys.executable).parent / "podtune")
VENV_BIN = str(Path(sys.executable).parent)
POD_PATH = f"{VENV_BIN}:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
LOSS_LINE = re.compile(r"""['"]loss['"]""")


def _env(home: Path, emu: RunPodEmulator | None = None) -> dict[str, str]:
    env = user_env("HF_", "RUNPOD_", "HUGGING")
    # This checkout's code, whichever checkout the installed console script was made from.
    env.update(PODTUNE_HOME=str(home), HF_HUB_OFFLINE="1", COLUMNS="200", PYTHONUNBUFFERED="1", PYTHONPATH=str(REPO))
    if emu is not None:
        env.update(RUNPOD_API_KEY=emu.api_key, RUNPOD_API_BASE_URL=emu.url)
    return env


def recipe(folder: Path, *, provider: str, steps: int = 30) -> Path:
    text = (REPO / "recipes" / "tiny-cpu.yaml").read_text()
    (folder / "data").mkdir(parents=True, exist_ok=True)
    shutil.copy(REPO / "recipes" / "data" / "tiny-instructions.jsonl", folder / "data" / "tiny-instructions.jsonl")
    text = text.replace("max_steps: 30", f"max_steps: {steps}")
    if provider == "runpod":
        text = text.replace("  provider: local\n", '  provider: runpod\n  gpu_types: ["NVIDIA GeForce RTX 3090"]\n')
    path = folder / f"tiny-{provider}-{steps}.yaml"
    path.write_text(text)
    return path


def runs_in(home: Path) -> list[tuple[str, str, str | None, str | None]]:
    if not (home / "state.db").exists():
        return []
    with closing(sqlite3.connect(home / "state.db")) as db:
        try:
            return db.execute("SELECT id, status, pod_id, remote_dir FROM runs ORDER BY created_at, rowid").fetchall()
        except sqlite3.OperationalError:
            return []


def events(path: Path) -> list[dict]:
    if not path.exists():
        return []
    out = []
    for line in path.read_text().splitlines():
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:
            pass
    return out


def first(evs: list[dict], kind: str) -> dict | None:
    return next((e for e in evs if e.get("kind") == kind), None)


def podtune_run(recipe_path: Path, env: dict[str, str], timeout: float = 600) -> tuple[float, float, str]:
    """(started, ended, stdout) of one `podtune run --yes`."""
    started = time.time()
    out = subprocess.run([PODTUNE, "run", str(recipe_path), "--yes"], cwd=REPO, env=env, capture_output=True,
                         text=True, timeout=timeout)
    ended = time.time()
    if out.returncode != 0:
        raise RuntimeError(f"podtune run failed:\n{out.stdout[-3000:]}\n{out.stderr[-3000:]}")
    return started, ended, out.stdout


def pod_side_start(run_dir: Path, info: dict, pipeline_start: dict) -> tuple[float, float]:
    """When the pod's Python for this run started, and when its imports were done: the warm start's own times
    (remote/warm.py, started ahead of the launch) when it took the job, else the launch and `pipeline_start`."""
    went = RunPaths(run_dir).warm.went
    if went.exists():
        times = json.loads(went.read_text())
        return times["started_at"], times["imported_at"]
    return info["launched_at"], pipeline_start["ts"]


def pod_run_dir(emu: RunPodEmulator, pod_id: str, run_id: str) -> Path:
    return emu.pods[pod_id].workspace / "runs" / run_id


def direct_pipeline(code_dir: Path, hf_home: Path, recipe_path: Path, runs: Path, tag: str) -> float:
    """The pod-side pipeline command itself, as remote_job.launch runs it, on the same caches: its wall time."""
    run_dir = runs / f"direct-{tag}"
    (run_dir / "data").mkdir(parents=True)
    shutil.copy(REPO / "recipes" / "data" / "tiny-instructions.jsonl", run_dir / "data" / "tiny-instructions.jsonl")
    from remote.recipe import dump_recipe, load_recipe

    (run_dir / "recipe.yaml").write_text(dump_recipe(load_recipe(recipe_path)))
    env = user_env("HF_", "RUNPOD_", "HUGGING")
    env.update(HF_HOME=str(hf_home), PYTHONPATH=str(code_dir), PYTHONUNBUFFERED="1", HF_HUB_DISABLE_TELEMETRY="1",
               HF_HUB_DISABLE_PROGRESS_BARS="1", TOKENIZERS_PARALLELISM="false", HF_HUB_OFFLINE="1")
    started = time.time()
    out = subprocess.run([sys.executable, "-u", "-m", "remote", "pipeline", "--run-dir", str(run_dir),
                          "--phases", "download,train,merge,push"], cwd=code_dir, env=env, capture_output=True,
                         text=True, timeout=600)
    took = time.time() - started
    if out.returncode != 0:
        raise RuntimeError(f"direct pipeline failed:\n{out.stderr[-3000:]}")
    return took


# ---- emulator ------------------------------------------------------------------------------------------------
def warm_runs(emu: RunPodEmulator, home: Path, folder: Path, repeats: int) -> dict:
    rec = recipe(folder, provider="runpod")
    env = _env(home, emu)
    podtune_run(rec, env)  # the first run rents the pod and fills its caches; it is not counted
    rows = []
    for i in range(repeats):
        started, ended, stdout = podtune_run(rec, env)
        run_id, status, pod_id, _ = runs_in(home)[-1]
        assert status == "succeeded" and "resumed stopped pod" in stdout, stdout[-2000:]
        run_dir = pod_run_dir(emu, pod_id, run_id)
        evs = events(run_dir / "events.jsonl")
        info = json.loads((run_dir / "run.json").read_text())
        done, step, start = first(evs, "pipeline_done"), first(evs, "step"), first(evs, "pipeline_start")
        assert emu.wait_status(pod_id, "EXITED", 30)
        billed_end = emu.pods[pod_id].intervals[-1].end
        summary_file = home / "runs" / run_id / "summary.json"
        phases = {p["phase"]: p["seconds"] for p in json.loads(summary_file.read_text())["phases"]}
        pod_started, imported = pod_side_start(run_dir, info, start)
        rows.append({
            "wall_s": ended - started,
            "first_step_s": step["ts"] - started,
            "pod_import_load_s": step["ts"] - pod_started,  # interpreter + imports + load + first step
            "pod_import_s": imported - pod_started,
            "warm_start": RunPaths(run_dir).warm.went.exists(),
            "control_plane_to_launch_s": info["launched_at"] - started,
            "billed_after_done_s": billed_end - done["ts"],
            "after_done_s": ended - done["ts"],  # noticing the end, stop, report, exit
            "phases": phases,
        })
        # The pod-side pipeline command run directly on the same warm volume, alternating with podtune.
        ws = emu.pods[pod_id].workspace
        rows[-1]["direct_s"] = direct_pipeline(ws / "podtune", ws / "hf", rec, folder / "direct", f"emu{i}")
        print(f"emulator warm run {i + 1}/{repeats}: wall {rows[-1]['wall_s']:.1f} s, direct "
              f"{rows[-1]['direct_s']:.1f} s, first step {rows[-1]['first_step_s']:.1f} s, billed after done "
              f"{rows[-1]['billed_after_done_s']:.2f} s", file=sys.stderr)
    return {"runs": rows}


def killed_runs(emu: RunPodEmulator, home: Path, folder: Path, repeats: int) -> list[dict]:
    rec = recipe(folder, provider="runpod", steps=150)  # the laptop dies long before the end (heartbeat stale)
    env = _env(home, emu)
    rows = []
    for i in range(repeats):
        before = len(runs_in(home))
        laptop = subprocess.Popen([PODTUNE, "run", str(rec), "--yes"], cwd=REPO, env=env,
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            deadline = time.time() + 300
            while time.time() < deadline:
                rows_now = runs_in(home)
                if len(rows_now) > before and rows_now[-1][2] and rows_now[-1][3]:
                    run_id, _, pod_id, _ = rows_now[-1]
                    if sum(e.get("kind") == "step" for e in events(pod_run_dir(emu, pod_id, run_id) / "events.jsonl")) >= 3:
                        break
                time.sleep(0.05)
            else:
                raise RuntimeError("no training steps within 300 s")
            laptop.send_signal(signal.SIGKILL)
            laptop.wait(10)
        finally:
            if laptop.poll() is None:
                laptop.kill()
        assert emu.wait_status(pod_id, "EXITED", 120), "the pod did not stop itself"
        evs = events(pod_run_dir(emu, pod_id, run_id) / "events.jsonl")
        done = first(evs, "pipeline_done")
        rows.append({"billed_after_done_s": emu.pods[pod_id].intervals[-1].end - done["ts"],
                     "self_stopped": first(evs, "self_stopped") is not None})
        print(f"emulator killed laptop {i + 1}/{repeats}: billed after done {rows[-1]['billed_after_done_s']:.2f} s",
              file=sys.stderr)
    return rows


class LineClock:
    """Reads a subprocess's stdout on a thread; keeps (arrival time, line) of each line."""

    def __init__(self, proc: subprocess.Popen):
        self.proc = proc
        self.lines: list[tuple[float, str]] = []
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self) -> None:
        for raw in iter(self.proc.stdout.readline, b""):
            self.lines.append((time.time(), raw.decode("utf-8", "replace")))


STEP_LINE = re.compile(r"\bstep (\d+)/\d+")

FOLLOWERS = ("podtune_logs_f", "podtune_logs_f_raw", "tail_F_ssh")


def log_latency(emu: RunPodEmulator, home: Path, folder: Path, repeats: int) -> dict:
    """Per detached run: `podtune logs -f` (the live view, a line per `step` event), `podtune logs -f --raw` and
    `tail -F` over OpenSSH (both following train.log), side by side on the same run."""
    rec = recipe(folder, provider="runpod", steps=150)
    env = _env(home, emu)
    key = home / "id_ed25519"
    per_run = []
    for i in range(repeats):
        subprocess.run([PODTUNE, "run", str(rec), "--yes", "--detach"], cwd=REPO, env=env, check=True,
                       capture_output=True, timeout=300)
        run_id, _, pod_id, remote_dir = runs_in(home)[-1]
        port = emu.ssh_port(pod_id)
        procs = {
            "podtune_logs_f": [PODTUNE, "logs", "-f", run_id],
            "podtune_logs_f_raw": [PODTUNE, "logs", "-f", "--raw", run_id],
            "tail_F_ssh": ["ssh", "-i", str(key), "-p", str(port), "-o", "StrictHostKeyChecking=no",
                           "-o", "UserKnownHostsFile=/dev/null", "-o", "LogLevel=ERROR", "root@127.0.0.1",
                           f"tail -n +1 -F {remote_dir}/train.log"],
        }
        followers = {name: subprocess.Popen(argv, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
                     for name, argv in procs.items()}
        clocks = {name: LineClock(proc) for name, proc in followers.items()}
        run_dir = pod_run_dir(emu, pod_id, run_id)
        deadline = time.time() + 300
        while first(events(run_dir / "events.jsonl"), "train_done") is None and time.time() < deadline:
            time.sleep(0.2)
        time.sleep(3)  # the last lines reach every follower
        steps = [e for e in events(run_dir / "events.jsonl") if e.get("kind") == "step"]
        out = {}
        for name, clock in clocks.items():
            if name == "podtune_logs_f":  # one line per step event, naming its step
                at = {int(m.group(1)): t for t, line in clock.lines if (m := STEP_LINE.search(line))}
                lat = [at[e["step"]] - e["ts"] for e in steps if e.get("step") in at]
                got = len(at)
            else:  # the trainer's loss lines in train.log, in step order
                arrivals = [t for t, line in clock.lines if LOSS_LINE.search(line) and "train_loss" not in line]
                lat = [t - e["ts"] for t, e in zip(arrivals, steps)]
                got = len(arrivals)
            out[name] = {"p50": percentile(lat, 50), "p95": percentile(lat, 95), "max": max(lat) if lat else None,
                         "lines": got, "steps": len(steps)}
        followers["tail_F_ssh"].kill()
        followers["tail_F_ssh"].wait(10)
        for name in ("podtune_logs_f", "podtune_logs_f_raw"):
            followers[name].wait(120)
        emu.wait_status(pod_id, "EXITED", 120)
        per_run.append(out)
        print(f"log latency {i + 1}/{repeats}: " + ", ".join(f"{k} p50 {v['p50']:.3f} s p95 {v['p95']:.3f} s"
                                                            for k, v in out.items()), file=sys.stderr)
    return {name: {"p50": summary(r[name]["p50"] for r in per_run), "p95": summary(r[name]["p95"] for r in per_run),
                   "runs": [r[name] for r in per_run]} for name in FOLLOWERS}


def emulator(repeats: int = 3) -> dict:
    with tempfile.TemporaryDirectory(prefix="podtune-bench-pod-") as name:
        tmp = Path(name)
        with RunPodEmulator(state_dir=tmp / "runpod", boot_delay_s=0.3, pod_env_extra={"PATH": POD_PATH}) as emu:
            warm = warm_runs(emu, tmp / "home", tmp / "warm", repeats)
            killed = killed_runs(emu, tmp / "home", tmp / "killed", repeats)
            logs = log_latency(emu, tmp / "home", tmp / "logs", repeats)
    rows = warm["runs"]
    return {
        "repeats": repeats,
        "wall_s": summary(r["wall_s"] for r in rows),
        "direct_s": summary(r["direct_s"] for r in rows),
        "overhead_ratio": summary(r["wall_s"] / r["direct_s"] for r in rows),
        "first_step_s": summary(r["first_step_s"] for r in rows),
        "pod_import_load_s": summary(r["pod_import_load_s"] for r in rows),
        "pod_import_s": summary(r["pod_import_s"] for r in rows),
        "control_plane_to_launch_s": summary(r["control_plane_to_launch_s"] for r in rows),
        "after_done_s": summary(r["after_done_s"] for r in rows),
        "billed_after_done_attached_s": summary(r["billed_after_done_s"] for r in rows),
        "billed_after_done_killed_s": summary(r["billed_after_done_s"] for r in killed),
        "phases_s": {p: summary(r["phases"].get(p, 0.0) for r in rows) for p in rows[0]["phases"]},
        "log_latency": logs,
        "warm_runs": rows, "killed_runs": killed,
    }


# ---- local provider --------------------------------------------------------------------------------------------
def local(repeats: int = 3) -> dict:
    with tempfile.TemporaryDirectory(prefix="podtune-bench-local-") as name:
        tmp = Path(name)
        home = tmp / "home"
        rec = recipe(tmp / "r", provider="local")
        env = _env(home)
        podtune_run(rec, env)  # builds the tiny model and measures the CPU once (both cached): not counted
        ws = home / "local" / "workspace"
        rows = []
        for i in range(repeats):
            started, ended, _ = podtune_run(rec, env)
            run_id = runs_in(home)[-1][0]
            phases = {p["phase"]: p["seconds"] for p in
                      json.loads((home / "runs" / run_id / "summary.json").read_text())["phases"]}
            run_dir = ws / "runs" / run_id
            launched = json.loads((run_dir / "run.json").read_text())["launched_at"]
            done = first(events(run_dir / "events.jsonl"), "pipeline_done")
            direct = direct_pipeline(REPO, ws / "hf", rec, tmp / "direct", f"local{i}")
            rows.append({"wall_s": ended - started, "direct_s": direct, "phases": phases,
                         "before_launch_s": launched - started,  # CLI start, plan, sync, setup
                         "after_done_s": ended - done["ts"]})  # noticing the end, stop, report, exit
            print(f"local run {i + 1}/{repeats}: wall {rows[-1]['wall_s']:.1f} s, direct {direct:.1f} s",
                  file=sys.stderr)
    return {
        "repeats": repeats,
        "wall_s": summary(r["wall_s"] for r in rows), "direct_s": summary(r["direct_s"] for r in rows),
        "overhead_ratio": summary(r["wall_s"] / r["direct_s"] for r in rows),
        "before_launch_s": summary(r["before_launch_s"] for r in rows),
        "after_done_s": summary(r["after_done_s"] for r in rows),
        "phases_s": {p: summary(r["phases"].get(p, 0.0) for r in rows) for p in rows[0]["phases"]},
        "runs": rows,
    }


def log_latency_only(repeats: int = 3) -> dict:
    """Just the log latency row (a few minutes), for work on following."""
    with tempfile.TemporaryDirectory(prefix="podtune-bench-logs-") as name:
        tmp = Path(name)
        with RunPodEmulator(state_dir=tmp / "runpod", boot_delay_s=0.3, pod_env_extra={"PATH": POD_PATH}) as emu:
            return {"repeats": repeats, "log_latency": log_latency(emu, tmp / "home", tmp / "logs", repeats)}


def main(repeats: int = 3) -> dict:
    return {"emulator": emulator(repeats), "local": local(repeats)}


if __name__ == "__main__":
    which = sys.argv[1] if len(sys.argv) > 1 else "all"
    n = int(sys.argv[2]) if len(sys.argv) > 2 else 3
    if which in ("-h", "--help"):
        print("usage: bench_pod.py [all|emulator|local|logs] [repeats]  (logs: only the log latency row)")
        sys.exit(0)
    result = {"all": main, "emulator": emulator, "local": local, "logs": log_latency_only}[which](n)
    print(json.dumps(result, indent=1, default=str))
