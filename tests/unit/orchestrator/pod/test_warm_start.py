"""The pod's Python started ahead of the launch (remote/warm.py through remote_job.start_warm): the launch hands it
the job, or cancels it and starts the job the ordinary way. Real processes through a local shell; a stand-in
`remote` package in the workspace's code folder plays the job, and `json` is what is imported ahead (torch would
take seconds)."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import pytest

from orchestrator.pod import remote_job
from orchestrator.pod.transport import LocalTransport
from remote.events import WorkspacePaths
from tests.e2e.helpers import process_alive, wait_for

# The job: says where it runs and with what, and leaves one line per start in a tally outside the run folder.
JOB = """
import json, os, sys
from pathlib import Path
if sys.argv[1] == "watchdog":
    sys.exit(0)
run_dir = Path(sys.argv[sys.argv.index("--run-dir") + 1])
print("job output", flush=True)
with open(run_dir.parent.parent / "tally", "a") as tally:
    tally.write(json.dumps({"parent": os.getppid(), "argv": sys.argv[1:], "cwd": os.getcwd()}) + "\\n")
sys.exit(7)
"""


@pytest.fixture
def workspace(tmp_path: Path) -> WorkspacePaths:
    layout = WorkspacePaths.on_pod(str(tmp_path))
    package = Path(str(layout.code)) / "remote"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "__main__.py").write_text(JOB)
    return layout


def _wait(predicate, timeout_s: float = 20) -> None:
    wait_for(predicate, timeout_s, "the processes under test", interval=0.02)


def _tally(layout: WorkspacePaths) -> list[dict]:
    path = Path(str(layout.root)) / "tally"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def _exit_code(layout: WorkspacePaths, run_id: str) -> str:
    path = Path(str(layout.run(run_id).exit_code))
    _wait(path.exists)
    return path.read_text().strip()


def test_the_launch_hands_the_job_to_the_python_started_ahead(workspace):
    transport = LocalTransport()
    # An import that prints, and is still running at launch: what it printed leads the job's train.log.
    (Path(str(workspace.code)) / "noisy_import.py").write_text(
        "import time\nprint('imported ahead', flush=True)\ntime.sleep(0.5)\n")
    warm = remote_job.start_warm(transport, workspace, "r1", sys.executable, "key", imports="json,noisy_import")
    assert warm.python == sys.executable
    paths = workspace.run("r1")
    warm_pid = int(Path(str(paths.warm.pid)).read_text())
    took = remote_job.launch(transport, workspace, "r1", sys.executable, token_file="/dev/shm/t", phases="train",
                             warm=warm, requirements_key="key")
    assert took
    assert Path(str(paths.log)).exists()  # from the launch on, as ever: `tail -F` can follow it at once
    assert _exit_code(workspace, "r1") == "7"  # the job's own exit code, recorded as the cold start records it
    [job] = _tally(workspace)
    assert job["argv"] == ["pipeline", "--run-dir", str(paths.root), "--token-file", "/dev/shm/t", "--phases", "train"]
    assert job["cwd"] == str(workspace.code)
    assert job["parent"] == warm_pid  # run by the process started ahead, not a new one
    assert int(Path(str(paths.pid)).read_text()) == warm_pid  # stop and follow find the job where they always do
    log = Path(str(paths.log)).read_text()
    assert log.index("imported ahead") < log.index("job output")
    went = json.loads(Path(str(paths.warm.went)).read_text())
    assert went["started_at"] <= went["imported_at"] <= went["went_at"]
    # The next warm start with these requirements guesses the python this launch used.
    assert Path(str(workspace.last_python("key"))).read_text() == sys.executable


def test_a_warm_start_on_another_python_is_cancelled_and_the_job_starts_once(workspace, tmp_path):
    other = tmp_path / "other-python"
    other.symlink_to(sys.executable)
    transport = LocalTransport()
    warm = remote_job.start_warm(transport, workspace, "r1", str(other), "key", imports="json")
    warm_pid = int(Path(str(workspace.run("r1").warm.pid)).read_text())
    took = remote_job.launch(transport, workspace, "r1", sys.executable, token_file=None, warm=warm)
    assert not took
    assert _exit_code(workspace, "r1") == "7"
    _wait(lambda: not process_alive(warm_pid))
    assert len(_tally(workspace)) == 1


def test_a_warm_start_that_gave_up_leaves_the_job_to_the_launch(workspace, monkeypatch):
    monkeypatch.setattr(remote_job, "WARM_WAIT_S", 0.2)
    transport = LocalTransport()
    warm = remote_job.start_warm(transport, workspace, "r1", sys.executable, "key", imports="json")
    warm_pid = int(Path(str(workspace.run("r1").warm.pid)).read_text())
    _wait(lambda: not process_alive(warm_pid))  # nobody claimed it in time
    assert not Path(str(workspace.run("r1").exit_code)).exists()  # giving up is not the run's end
    assert not remote_job.launch(transport, workspace, "r1", sys.executable, token_file=None, warm=warm)
    assert _exit_code(workspace, "r1") == "7"
    assert len(_tally(workspace)) == 1


def test_a_failed_start_cancels_the_warm_start(workspace):
    transport = LocalTransport()
    # A module that sleeps at import (on the code's path) stands in for torch: the cancel must not wait for it.
    (Path(str(workspace.code)) / "slow_import.py").write_text("import time\ntime.sleep(60)\n")
    remote_job.start_warm(transport, workspace, "r1", sys.executable, "key", imports="slow_import")
    warm_pid = int(Path(str(workspace.run("r1").warm.pid)).read_text())
    assert process_alive(warm_pid)
    remote_job.cancel_warm(transport, workspace, "r1")
    _wait(lambda: not process_alive(warm_pid), timeout_s=10)
    assert _tally(workspace) == [] and not Path(str(workspace.run("r1").exit_code)).exists()


def test_the_warm_start_remembers_which_python_setup_chose(workspace, tmp_path):
    venv_python = tmp_path / "venv-python"
    venv_python.symlink_to(sys.executable)
    remembered = Path(str(workspace.last_python("key")))
    remembered.parent.mkdir(parents=True)
    remembered.write_text(str(venv_python))
    assert remote_job.start_warm(LocalTransport(), workspace, "r1", "/usr/bin/python3", "key",
                                 imports="json").python == str(venv_python)
    remote_job.cancel_warm(LocalTransport(), workspace, "r1")
    remembered.write_text("/no/such/python")  # a venv since deleted: the pod's own python
    assert remote_job.start_warm(LocalTransport(), workspace, "r2", sys.executable, "key",
                                 imports="json").python == sys.executable
    remote_job.cancel_warm(LocalTransport(), workspace, "r2")


def test_podtune_stop_before_the_launch_ends_the_warm_start_too(workspace):
    """`podtune stop` while the laptop is still syncing: nothing is left importing on the pod."""
    (Path(str(workspace.code)) / "slow_import.py").write_text("import time\ntime.sleep(60)\n")
    remote_job.start_warm(LocalTransport(), workspace, "r1", sys.executable, "key", imports="slow_import")
    warm_pid = int(Path(str(workspace.run("r1").warm.pid)).read_text())
    remote_job.kill(LocalTransport(), str(workspace.run("r1").root), grace_s=5)
    _wait(lambda: not process_alive(warm_pid), timeout_s=10)


def test_a_second_start_of_the_same_run_ends_the_first_warm_start_so_the_job_runs_once(workspace):
    """A resume after a start whose clean-up failed: the earlier warm start must not take the new launch's job."""
    transport = LocalTransport()
    remote_job.start_warm(transport, workspace, "r1", sys.executable, "key", imports="json")
    first = int(Path(str(workspace.run("r1").warm.pid)).read_text())
    warm = remote_job.start_warm(transport, workspace, "r1", sys.executable, "key", imports="json")
    _wait(lambda: not process_alive(first), timeout_s=10)
    assert remote_job.launch(transport, workspace, "r1", sys.executable, token_file=None, warm=warm)
    assert _exit_code(workspace, "r1") == "7"
    time.sleep(0.3)  # a second taker, were there one, would have run by now
    assert len(_tally(workspace)) == 1


def test_only_a_job_that_trains_or_merges_starts_ahead():
    """A push alone imports no training library: a warm start would only make it wait for torch."""
    assert remote_job.warm_worth_it("download,train,merge,push") and remote_job.warm_worth_it("merge,push")
    assert not remote_job.warm_worth_it("push")
