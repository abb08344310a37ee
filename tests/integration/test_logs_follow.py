"""`podtune logs -f` over real SSH: every line exactly once, across a connection killed mid-stream."""

from __future__ import annotations

import io
import os
import signal
import sys
import threading
import time
from pathlib import Path

from rich.console import Console

from orchestrator import manage
from orchestrator.state import RunRecord, State
from orchestrator.ui import UI
from remote.events import WorkspacePaths
from tests.doubles.sshd import _children, generate_keypair, start_sshd, stop_sshd
from tests.recipes import write_recipe_variant

LINES = 400

WRITER = """
import sys, time
path, done = sys.argv[1], sys.argv[2]
with open(path, "a") as fh:
    for i in range(1, {n} + 1):
        fh.write(f"line {{i:04d}} " + "x" * (i % 37) + "\\n")
        fh.flush()
        time.sleep(0.01)
open(done, "w").write("0\\n")
""".format(n=LINES)


class CountingUI(UI):
    def __init__(self):
        self.buffer = io.StringIO()
        super().__init__(Console(file=self.buffer, width=300, force_terminal=False))


def test_logs_follow_survives_a_dropped_connection(tmp_path):
    key, public = generate_keypair(tmp_path / "key")
    workspace = tmp_path / "ws"
    pod = start_sshd(state_dir=tmp_path / "sshd", workspace=workspace, authorized_keys=[public],
                     env={"PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin"}, isolate_workspace=False)
    try:
        recipe = write_recipe_variant(tmp_path / "r.yaml", {"compute.provider": "ssh", "compute.ssh": {
            "host": "127.0.0.1", "port": pod.port, "key_path": str(key), "workspace": str(workspace)}})
        run_dir = WorkspacePaths(workspace).run("logs-test").root
        run_dir.mkdir(parents=True)
        state = State()
        state.add_run(RunRecord("logs-test", "tiny-cpu", str(recipe), "ssh", "running", created_at=time.time(),
                                pod_id=f"ssh-127.0.0.1-{pod.port}", remote_dir=str(run_dir)))
        ui = CountingUI()

        # The job writes its log on the host, independent of any SSH connection.
        writer = __import__("subprocess").Popen(
            [sys.executable, "-c", WRITER, str(run_dir / "train.log"), str(run_dir / "exit_code")])

        killed: list[int] = []

        def drop_connections():
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline and ui.buffer.getvalue().count("\n") < LINES // 4:
                time.sleep(0.02)
            for child in _children(pod.pid):  # each child of the listener serves one connection
                os.kill(child, signal.SIGKILL)
                killed.append(child)

        killer = threading.Thread(target=drop_connections)
        killer.start()
        manage.logs(state, ui, "logs-test", follow=True, poll_s=0.05, timeout_s=120, raw=True)
        killer.join(5)
        writer.wait(30)

        shown = [line for line in ui.buffer.getvalue().splitlines() if line.startswith("line ")]
        written = (run_dir / "train.log").read_text().splitlines()
        assert len(written) == LINES
        assert killed, "the connection was never dropped"
        assert pod.log_path.read_text().count("Accepted publickey") >= 2  # it reconnected
        assert shown == written  # each line once, in order, nothing lost at the drop
    finally:
        stop_sshd(pod)


def test_logs_of_unknown_run_is_a_clear_error():
    import pytest

    from orchestrator.errors import PodtuneError

    with pytest.raises(PodtuneError, match="no run"):
        manage.logs(State(), CountingUI(), "does-not-exist", follow=False)
