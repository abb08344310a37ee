"""The watchdog against real processes and signals: each limit stops the pipeline's group and runs the self-stop."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from remote.watchdog import group_alive

REPO = Path(__file__).resolve().parents[3]

# A stand-in for `python -m remote pipeline`: appends events the way EventLog does, saves a "checkpoint" on
# SIGTERM like the trainer, and behaves according to its mode.
FAKE_PIPELINE = textwrap.dedent(
    """
    import json, signal, sys, time
    from pathlib import Path

    run_dir, mode = Path(sys.argv[1]), sys.argv[2]

    def emit(kind, **fields):
        with open(run_dir / "events.jsonl", "a") as fh:
            fh.write(json.dumps({"ts": time.time(), "kind": kind, **fields}) + "\\n")

    def on_term(signum, frame):
        (run_dir / "checkpoint-saved").write_text("yes")
        emit("interrupted", reason="SIGTERM")
        sys.exit(143)

    if mode != "ignore_term":
        signal.signal(signal.SIGTERM, on_term)
    else:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    emit("pipeline_start")
    if mode == "quiet_download":  # a long download emits nothing: that is not a stall
        emit("phase_start", phase="download")
        time.sleep(4.5)
        emit("phase_end", phase="download", ok=True)
        sys.exit(0)
    emit("phase_start", phase="train")
    step = 0
    while True:
        step += 1
        if mode == "stall" and step > 3:
            time.sleep(3600)
        if mode in ("finish", "slow_exit") and step > 3:
            emit("phase_end", phase="train", ok=True)
            emit("pipeline_done", ok=True)
            if mode == "slow_exit":  # an interpreter that takes its time to tear down after the last event
                time.sleep(60)
            sys.exit(0)
        emit("step", step=step, loss=1.0 / step)
        time.sleep(0.2)
    """
)


class Run:
    """One run directory with a fake pipeline and the real watchdog, both as detached process groups."""

    def __init__(self, root: Path):
        self.dir = root / "run"
        self.dir.mkdir()
        self.marker = root / "stopped"
        self.procs: list[subprocess.Popen] = []

    def info(self, **overrides) -> None:
        info = {
            "run_id": "t-1", "usd_per_hour": 0.29, "storage_usd_per_hour": 0.014, "max_hours": 1.0, "max_usd": None,
            "stall_minutes": 15, "idle_after_finish_s": 0, "launched_at": time.time(), "stop_grace_s": 10,
            "self_stop_command": f"echo self-stop ran; touch {self.marker}",
        }
        info.update(overrides)
        (self.dir / "run.json").write_text(json.dumps(info))

    def start_pipeline(self, mode: str) -> int:
        script = self.dir.parent / "fake_pipeline.py"
        script.write_text(FAKE_PIPELINE)
        # As remote_job.launch does: sh -c "python ...; echo $? > exit_code" leading its own session.
        command = f"{sys.executable} {script} {self.dir} {mode}; echo $? > {self.dir}/exit_code"
        proc = subprocess.Popen(["sh", "-c", command], start_new_session=True, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
        self.procs.append(proc)
        (self.dir / "pid").write_text(f"{proc.pid}\n")
        self.pipeline = proc
        return proc.pid

    def start_watchdog(self) -> subprocess.Popen:
        # -S: no site-packages, so every test also proves the watchdog needs nothing but the standard library
        # (it must stop the bill even when the training environment is broken).
        self.watchdog = subprocess.Popen(
            [sys.executable, "-S", "-m", "remote", "watchdog", "--run-dir", str(self.dir)], cwd=REPO,
            stdout=open(self.dir / "watchdog.log", "ab"), stderr=subprocess.STDOUT, start_new_session=True,
        )
        self.procs.append(self.watchdog)
        return self.watchdog

    def events(self, kind: str) -> list[dict]:
        try:
            lines = (self.dir / "events.jsonl").read_text().splitlines()
        except FileNotFoundError:
            return []
        return [e for e in map(json.loads, lines) if e.get("kind") == kind]

    def wait_watchdog(self, timeout: float) -> int:
        try:
            return self.watchdog.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            pytest.fail(f"watchdog still running after {timeout}s; log:\n{(self.dir / 'watchdog.log').read_text()}")

    def status(self) -> dict:
        return json.loads((self.dir / "watchdog.json").read_text())

    def cleanup(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                try:
                    os.killpg(proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            proc.wait(timeout=10)


@pytest.fixture
def run(tmp_path):
    r = Run(tmp_path)
    yield r
    r.cleanup()


def assert_stopped_by(run: Run, reason: str) -> dict:
    stops = run.events("watchdog_stop")
    assert [s["reason"] for s in stops] == [reason], (run.dir / "watchdog.log").read_text()
    assert run.marker.exists(), "the self-stop command did not run"
    status = run.status()
    assert status["state"] == "stopped" and status["decision"]["reason"] == reason
    return stops[0]


def test_max_usd_stops_the_pipeline_group_keeps_a_checkpoint_and_self_stops(run):
    # $3600/h is $1/s: a $2 limit is reached two seconds after launch, mid-training.
    run.info(usd_per_hour=3600.0, storage_usd_per_hour=0.0, max_usd=2.0)
    pgid = run.start_pipeline("step")
    run.start_watchdog()
    assert run.wait_watchdog(15) == 0
    stop = assert_stopped_by(run, "max_usd")
    assert stop["limit"] == 2.0 and 2.0 <= stop["value"] < 6.0
    assert not group_alive(pgid)
    assert (run.dir / "checkpoint-saved").exists(), "SIGTERM first, so the trainer can save"
    assert run.status()["decision"]["pipeline"] == "terminated"


def test_max_hours_stops_the_pod(run):
    run.info(max_hours=2.0 / 3600)  # two seconds
    pgid = run.start_pipeline("step")
    run.start_watchdog()
    assert run.wait_watchdog(15) == 0
    stop = assert_stopped_by(run, "max_hours")
    assert stop["value"] >= stop["limit"]
    assert not group_alive(pgid)


def test_a_stalled_trainer_is_stopped(run):
    run.info(stall_minutes=0.05)  # 3 s without a new event in phase train
    pgid = run.start_pipeline("stall")
    run.start_watchdog()
    started = time.time()
    assert run.wait_watchdog(20) == 0
    stop = assert_stopped_by(run, "stall")
    assert stop["value"] >= 3.0 and time.time() - started < 15
    assert not group_alive(pgid)
    assert (run.dir / "checkpoint-saved").exists()


def test_a_quiet_download_is_not_a_stall(run):
    run.info(stall_minutes=0.05)  # the download phase emits nothing for 4.5 s, beyond the 3 s train stall limit
    run.start_pipeline("quiet_download")
    run.start_watchdog()
    assert run.wait_watchdog(20) == 0
    stop = assert_stopped_by(run, "idle_after_finish")
    assert "laptop gone" in stop["detail"]


def test_sigkill_after_the_grace_period_when_sigterm_is_ignored(run):
    run.info(max_hours=1.0 / 3600, stop_grace_s=1)
    pgid = run.start_pipeline("ignore_term")
    run.start_watchdog()
    assert run.wait_watchdog(15) == 0
    assert_stopped_by(run, "max_hours")
    assert run.status()["decision"]["pipeline"] == "killed"
    deadline = time.time() + 5
    while group_alive(pgid) and time.time() < deadline:
        time.sleep(0.1)
    assert not group_alive(pgid)


def test_finish_with_the_laptop_gone_self_stops_within_two_seconds(run):
    run.info()
    run.start_pipeline("finish")
    run.start_watchdog()
    deadline = time.time() + 15
    while not (run.dir / "exit_code").exists() and time.time() < deadline:
        time.sleep(0.05)
    finished = time.time()
    assert run.wait_watchdog(10) == 0
    assert run.marker.exists() and run.marker.stat().st_mtime - finished < 2.0
    assert_stopped_by(run, "idle_after_finish")


def test_the_work_ends_at_the_pipelines_last_event_not_at_its_exit(run):
    run.info()
    run.start_pipeline("slow_exit")
    run.start_watchdog()
    deadline = time.time() + 15
    while not run.events("pipeline_done") and time.time() < deadline:
        time.sleep(0.05)
    done = time.time()
    assert run.wait_watchdog(10) == 0
    assert run.marker.exists() and run.marker.stat().st_mtime - done < 2.0
    assert run.pipeline.poll() is None, "the watchdog waited for the interpreter to exit"
    assert_stopped_by(run, "idle_after_finish")


def test_an_earlier_launchs_last_event_does_not_end_this_one(run):
    run.info()
    with open(run.dir / "events.jsonl", "w") as fh:  # `podtune push RUN` relaunches into the same run dir
        for kind in ("pipeline_start", "pipeline_done"):
            fh.write(json.dumps({"ts": time.time() - 60, "kind": kind}) + "\n")
    run.start_watchdog()
    time.sleep(0.5)
    run.start_pipeline("run")
    time.sleep(3)
    assert not run.marker.exists() and run.watchdog.poll() is None
    assert run.status()["state"] == "watching"


def test_finish_with_the_laptop_attached_waits_until_its_heartbeat_goes_stale(run):
    run.info()
    heartbeat = run.dir / "laptop_heartbeat"
    heartbeat.write_text(str(time.time()))
    run.start_pipeline("finish")
    run.start_watchdog()
    while not (run.dir / "exit_code").exists():
        heartbeat.write_text(str(time.time()))
        time.sleep(0.2)
    # The laptop keeps beating for 3 s after the finish: the watchdog leaves the stop to it.
    until = time.time() + 3
    while time.time() < until:
        heartbeat.write_text(str(time.time()))
        time.sleep(0.5)
        assert not run.marker.exists(), "stopped the pod while the laptop was attached"
    assert run.watchdog.poll() is None
    assert run.status()["state"] == "finished"
    # The laptop goes away (closed lid): within the freshness window + a poll, the pod stops itself.
    gone = time.time()
    assert run.wait_watchdog(15) == 0
    assert run.marker.exists() and run.marker.stat().st_mtime - gone < 8.0
    assert_stopped_by(run, "idle_after_finish")


def test_without_a_self_stop_command_the_watchdog_just_exits_after_finish(run):
    run.info(self_stop_command=None)
    run.start_pipeline("finish")
    run.start_watchdog()
    assert run.wait_watchdog(15) == 0
    assert not run.marker.exists() and run.events("watchdog_stop") == []
    assert run.status()["state"] == "finished"


def test_missing_run_info_exits_2(tmp_path):
    out = subprocess.run([sys.executable, "-S", "-m", "remote", "watchdog", "--run-dir", str(tmp_path)], cwd=REPO,
                         capture_output=True, text=True, timeout=30)
    assert out.returncode == 2 and "run.json" in out.stdout


def test_the_token_is_removed_when_a_job_without_self_stop_ends(run):
    """local/ssh providers: the job ends through the watchdog's exit path; the token must not stay behind."""
    token = run.dir.parent / "secrets" / "t-1.hf_token"
    token.parent.mkdir(mode=0o700)
    token.write_text("hf_secret")
    run.info(self_stop_command=None, secret_files=[str(token)])
    run.start_pipeline("finish")
    run.start_watchdog()
    assert run.wait_watchdog(15) == 0
    assert not token.exists()


def test_the_token_is_removed_when_the_watchdog_is_told_to_stop(run):
    token = run.dir.parent / "secrets" / "t-1.hf_token"
    token.parent.mkdir(mode=0o700)
    token.write_text("hf_secret")
    run.info(secret_files=[str(token)])
    run.start_pipeline("steps")
    watchdog = run.start_watchdog()
    time.sleep(1.5)
    os.killpg(watchdog.pid, signal.SIGTERM)  # what `podtune stop` does to the watchdog's group
    run.wait_watchdog(15)
    assert not token.exists()
