"""Stopping a run's process groups on the pod (remote_job.kill), against real processes through a local shell."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

from orchestrator.pod import remote_job
from orchestrator.pod.transport import LocalTransport
from remote.events import PID, WATCHDOG_PID

IGNORES_TERM = "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); print('ready', flush=True); time.sleep(60)"


def _group(code: str) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-c", code], start_new_session=True, stdout=subprocess.PIPE)
    assert proc.stdout is not None and proc.stdout.readline().strip() == b"ready"  # its signal handler is set
    return proc


def test_a_group_that_honours_sigterm_ends_without_waiting_out_the_grace(tmp_path: Path):
    job = _group("import time; print('ready', flush=True); time.sleep(60)")
    (tmp_path / PID).write_text(str(job.pid))
    started = time.monotonic()
    stopped = remote_job.kill(LocalTransport(), str(tmp_path), grace_s=20)
    assert job.wait(5) == -15  # SIGTERM: the trainer's chance to save a checkpoint
    assert stopped == [PID]  # no watchdog pid file: nothing else to stop
    assert time.monotonic() - started < 5


def test_a_group_that_ignores_sigterm_is_killed_after_the_grace(tmp_path: Path):
    job, watchdog = _group(IGNORES_TERM), _group(IGNORES_TERM)
    (tmp_path / PID).write_text(str(job.pid))
    (tmp_path / WATCHDOG_PID).write_text(f"{watchdog.pid}\n")
    started = time.monotonic()
    stopped = remote_job.kill(LocalTransport(), str(tmp_path), grace_s=0.5)
    assert job.wait(5) == -9 and watchdog.wait(5) == -9
    assert stopped == [PID, WATCHDOG_PID]
    assert 1.0 <= time.monotonic() - started < 10  # each group had its grace


def test_pid_files_that_are_gone_or_garbled_or_dead_stop_nothing(tmp_path: Path):
    ended = subprocess.Popen(["true"], start_new_session=True)
    ended.wait()
    (tmp_path / PID).write_text(str(ended.pid))
    (tmp_path / WATCHDOG_PID).write_text("1; touch pwned")
    assert remote_job.kill(LocalTransport(), str(tmp_path), grace_s=5) == []
    assert not (tmp_path / "pwned").exists() and not Path("pwned").exists()


def test_launch_tells_where_this_launchs_events_begin(tmp_path: Path):
    """An earlier attempt's events stay in events.jsonl: the launch reports the size they take, so neither the
    laptop's view nor the report mixes them with this attempt's."""
    from remote.events import EVENTS, WorkspacePaths

    layout = WorkspacePaths.on_pod(str(tmp_path))
    run_dir = layout.run("r1").root
    Path(str(layout.code)).mkdir(parents=True)
    sizes: list[int] = []
    # `true` stands in for python: nothing is started for real, the command around it is what is under test.
    remote_job.launch(LocalTransport(), layout, "r1", "true", token_file=None, on_events_size=sizes.append)
    Path(str(run_dir / EVENTS)).write_text('{"kind": "pipeline_done"}\n')
    remote_job.launch(LocalTransport(), layout, "r1", "true", token_file=None, on_events_size=sizes.append)
    assert sizes == [0, len('{"kind": "pipeline_done"}\n')]


def test_a_detached_kill_returns_at_once_and_still_ends_the_groups(tmp_path: Path):
    job, watchdog = _group(IGNORES_TERM), _group(IGNORES_TERM)
    (tmp_path / PID).write_text(str(job.pid))
    (tmp_path / WATCHDOG_PID).write_text(str(watchdog.pid))
    assert remote_job.kill(LocalTransport(), str(tmp_path), grace_s=3, detach=True) == []
    assert job.poll() is None  # returned within the grace: nothing waited on the groups
    assert job.wait(15) == -9 and watchdog.wait(15) == -9  # the script on the pod ran on by itself


def test_is_alive_follows_the_job_until_it_has_ended(tmp_path: Path):
    job = _group("import time; print('ready', flush=True); time.sleep(60)")
    (tmp_path / PID).write_text(str(job.pid))
    assert remote_job.is_alive(LocalTransport(), str(tmp_path))
    job.kill()
    job.wait(5)
    assert not remote_job.is_alive(LocalTransport(), str(tmp_path))
    (tmp_path / PID).unlink()
    assert not remote_job.is_alive(LocalTransport(), str(tmp_path))  # never started
