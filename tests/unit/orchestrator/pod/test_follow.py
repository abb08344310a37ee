"""Following a pod file as a stream (tail -F): prompt delivery, byte offsets kept across drops, no tail left behind."""

from __future__ import annotations

import json
import os
import subprocess
import threading
import time
from pathlib import Path

import pytest

from orchestrator.errors import SSHError
from orchestrator.pod.follow import EventFollower, OffsetReader
from orchestrator.paths import known_hosts_path
from orchestrator.pod.ssh_transport import SSHTransport
from orchestrator.pod.transport import LocalTransport
from remote.events import EventKind, RunPaths
from tests.doubles.sshd import generate_keypair, start_sshd, stop_sshd


def tails_following(path: Path) -> list[int]:
    """Pids of processes (on this machine: laptop and loopback pod alike) that follow `path`: a tail, or the
    shell waiting to start one."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:  # it ended while we looked
            continue
        if b"tail" in cmdline and str(path).encode() in cmdline:
            found.append(int(entry.name))
    return found


def wait_gone(path: Path, within_s: float = 10) -> list[int]:
    deadline = time.monotonic() + within_s
    while tails_following(path) and time.monotonic() < deadline:
        time.sleep(0.05)
    return tails_following(path)


def read_lines(reader: OffsetReader, count: int, within_s: float = 20) -> list[bytes]:
    got: list[bytes] = []
    deadline = time.monotonic() + within_s
    while len(got) < count and time.monotonic() < deadline:
        got += reader.read_new(timeout_s=0.5).splitlines(keepends=True)
    return got


class KillableLocal(LocalTransport):
    """The local 'pod', keeping its streams so a test can cut one as a dropped connection would."""

    def __init__(self):
        super().__init__()
        self.sessions: list = []

    def stream(self, command: str, *, timeout_s: float = 600):
        session = super().stream(command, timeout_s=timeout_s)
        self.sessions.append(session)
        return session


def test_only_complete_lines_are_delivered_and_the_offset_counts_their_bytes(tmp_path):
    log = tmp_path / "train.log"
    log.write_bytes(b"one\ntw")
    with OffsetReader(LocalTransport(), str(log)) as reader:
        assert read_lines(reader, 1) == [b"one\n"]
        assert reader.offset == 4
        assert reader.read_new(timeout_s=0.3) == b""  # "tw" is not a line yet
        with open(log, "ab") as fh:
            fh.write(b"o\nthree\n")
        assert read_lines(reader, 2) == [b"two\n", b"three\n"]
        assert reader.offset == len(b"one\ntwo\nthree\n")


def test_a_reader_starts_at_its_offset(tmp_path):
    log = tmp_path / "train.log"
    log.write_bytes(b"seen\nnew\n")
    with OffsetReader(LocalTransport(), str(log), offset=5) as reader:
        assert read_lines(reader, 1) == [b"new\n"]


def test_a_file_that_does_not_exist_yet_is_waited_for(tmp_path):
    log = tmp_path / "later" / "train.log"
    with OffsetReader(LocalTransport(), str(log)) as reader:
        assert reader.read_new(timeout_s=0.3) == b""
        log.parent.mkdir()
        log.write_bytes(b"first\n")
        assert read_lines(reader, 1) == [b"first\n"]


def test_a_replaced_file_continues_at_the_offset(tmp_path):
    """A restarted run's events file holds the old lines and goes on: each line is still shown once."""
    log = tmp_path / "events.jsonl"
    log.write_bytes(b"a\nb\n")
    with OffsetReader(LocalTransport(), str(log)) as reader:
        assert read_lines(reader, 2) == [b"a\n", b"b\n"]
        tmp = tmp_path / "events.tmp"
        tmp.write_bytes(b"a\nb\nc\n")
        os.replace(tmp, log)
        assert read_lines(reader, 1) == [b"c\n"]
        with open(log, "ab") as fh:
            fh.write(b"d\n")
        assert read_lines(reader, 1) == [b"d\n"]


def test_a_truncated_file_is_read_again_only_past_the_offset(tmp_path):
    log = tmp_path / "train.log"
    log.write_bytes(b"1111\n2222\n")
    with OffsetReader(LocalTransport(), str(log)) as reader:
        assert len(read_lines(reader, 2)) == 2
        log.write_bytes(b"x\n")  # cut below the offset: nothing of it is ours yet
        assert reader.read_new(timeout_s=1.0) == b""
        with open(log, "ab") as fh:
            fh.write(b"yyyyyyy\nzzzz\n")  # past byte 10 again
        assert read_lines(reader, 1) == [b"zzzz\n"]


def test_a_dropped_stream_resumes_at_the_offset_without_losing_or_repeating_a_line(tmp_path):
    log = tmp_path / "train.log"
    pod = KillableLocal()
    reconnects: list[int] = []

    def reconnect():
        reconnects.append(1)
        return pod

    written = [f"line {i:04d} {'x' * (i % 37)}\n".encode() for i in range(300)]

    def write():
        with open(log, "ab") as fh:
            for line in written:
                fh.write(line[:5])  # half a line on disk at times: the drop may land inside it
                fh.flush()
                fh.write(line[5:])
                fh.flush()
                time.sleep(0.003)

    writer = threading.Thread(target=write)
    reader = OffsetReader(pod, str(log), reconnect=reconnect)
    try:
        writer.start()
        got = read_lines(reader, 60)
        for _ in range(3):  # cut the stream mid-file, three times
            pod.sessions[-1].proc.kill()
            got += read_lines(reader, 40)
        writer.join(30)
        got += read_lines(reader, len(written) - len(got))
    finally:
        reader.close()
    assert len(reconnects) == 3
    assert got == written
    assert reader.offset == sum(len(line) for line in written)


def test_without_a_way_to_reconnect_a_drop_is_an_error_that_says_what_to_do(tmp_path):
    log = tmp_path / "train.log"
    log.write_bytes(b"a\n")
    pod = KillableLocal()
    with OffsetReader(pod, str(log)) as reader:
        assert read_lines(reader, 1) == [b"a\n"]
        pod.sessions[-1].proc.kill()
        with pytest.raises(SSHError) as err:
            read_lines(reader, 1)
    assert "lost the connection to the pod while reading" in err.value.message
    assert "podtune logs -f" in (err.value.hint or "")


def test_closing_a_reader_leaves_no_tail_running(tmp_path):
    log = tmp_path / "train.log"
    log.write_bytes(b"a\n")
    reader = OffsetReader(LocalTransport(), str(log))
    assert read_lines(reader, 1) == [b"a\n"]
    assert tails_following(log)
    reader.close()
    assert wait_gone(log) == []


def _live_job(run_dir: Path) -> subprocess.Popen:
    """A job that runs until killed, recorded as the pod records it (its pid file)."""
    job = subprocess.Popen(["sleep", "120"])
    RunPaths(run_dir).pid.write_text(f"{job.pid}\n")
    return job


def test_an_event_arrives_as_it_is_written_not_after_a_poll_interval(tmp_path):
    """With poll_s at a minute, each step still shows within a second: the follower waits on the stream, not a
    sleep. And the watchdog's heartbeat still comes every couple of seconds."""
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    paths = RunPaths(run_dir)
    job = _live_job(run_dir)
    written: dict[int, float] = {}
    arrived: dict[int, float] = {}

    def write_events():
        time.sleep(0.5)
        with open(paths.events, "a") as fh:
            for step in range(1, 7):
                written[step] = time.monotonic()
                fh.write(json.dumps({"kind": EventKind.STEP, "step": step}) + "\n")
                fh.flush()
                time.sleep(0.25)
            time.sleep(2.5)  # long enough for a heartbeat while the follower waits
            fh.write(json.dumps({"kind": EventKind.PIPELINE_DONE, "ok": True}) + "\n")

    def on_event(event):
        if event.get("kind") == EventKind.STEP:
            arrived[event["step"]] = time.monotonic()

    writer = threading.Thread(target=write_events)
    writer.start()
    try:
        follower = EventFollower(LocalTransport(), str(run_dir), 0, tmp_path / "events.copy")
        done = follower.follow(on_event, poll_s=60, timeout_s=60)
    finally:
        writer.join(30)
        job.kill()
        job.wait()
    assert done.get("kind") == EventKind.PIPELINE_DONE
    assert sorted(arrived) == list(range(1, 7))
    late = {step: round(arrived[step] - written[step], 3) for step in arrived if arrived[step] - written[step] > 1.0}
    assert not late, f"steps shown late (s): {late}"
    assert paths.heartbeat.exists()
    assert (tmp_path / "events.copy").read_bytes() == paths.events.read_bytes()
    assert wait_gone(paths.events) == []


def test_a_job_that_ended_without_saying_so_ends_the_follow_with_every_event_it_wrote(tmp_path):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    paths = RunPaths(run_dir)
    job = _live_job(run_dir)
    paths.events.write_text(json.dumps({"kind": EventKind.STEP, "step": 1}) + "\n")
    seen: list[dict] = []

    def die_after_a_last_event():
        time.sleep(0.5)
        with open(paths.events, "a") as fh:
            fh.write(json.dumps({"kind": EventKind.STEP, "step": 2}) + "\n")
        job.kill()
        job.wait()

    killer = threading.Thread(target=die_after_a_last_event)
    killer.start()
    follower = EventFollower(LocalTransport(), str(run_dir), 0, tmp_path / "events.copy")
    outcome = follower.follow(seen.append, poll_s=0.5, timeout_s=30)
    killer.join(10)
    assert outcome["ok"] is False and outcome.get("interrupted")
    assert [e["step"] for e in seen] == [1, 2]
    assert wait_gone(paths.events) == []


@pytest.fixture
def ssh_pod(tmp_path):
    key, public = generate_keypair(tmp_path / "client" / "id_ed25519")
    pod = start_sshd(state_dir=tmp_path / "sshd", workspace=tmp_path / "ws", authorized_keys=[public], env={},
                     isolate_workspace=False)

    def connect() -> SSHTransport:
        return SSHTransport(host="127.0.0.1", port=pod.port, user="root", key_path=key, pin_label="pod-follow",
                            known_hosts=known_hosts_path(), connect_timeout_s=10).connect()

    try:
        yield connect
    finally:
        stop_sshd(pod)


def test_over_ssh_a_line_arrives_promptly_and_no_tail_survives_the_reader(tmp_path, ssh_pod):
    log = tmp_path / "train.log"
    log.write_bytes(b"before\n")
    transport = ssh_pod()
    try:
        reader = OffsetReader(transport, str(log))
        assert read_lines(reader, 1) == [b"before\n"]
        with open(log, "ab") as fh:
            fh.write(b"now\n")
        started = time.monotonic()
        assert read_lines(reader, 1, within_s=10) == [b"now\n"]
        assert time.monotonic() - started < 2.0
        assert tails_following(log), "the pod-side tail should be running while the reader follows"
        reader.close()
        assert wait_gone(log) == []
    finally:
        transport.close()


def test_over_ssh_a_dropped_connection_resumes_the_stream_at_the_offset(tmp_path, ssh_pod):
    log = tmp_path / "train.log"
    log.write_bytes(b"".join(f"old {i}\n".encode() for i in range(5)))
    first = ssh_pod()
    connections = [first]

    def reconnect():
        connections.append(ssh_pod())
        return connections[-1]

    reader = OffsetReader(first, str(log), reconnect=reconnect)
    try:
        assert len(read_lines(reader, 5)) == 5
        first.client.get_transport().sock.close()  # the network drops under the stream
        with open(log, "ab") as fh:
            fh.write(b"new 1\nnew 2\n")
        assert read_lines(reader, 2) == [b"new 1\n", b"new 2\n"]
        assert len(connections) == 2
    finally:
        reader.close()
        for transport in connections:
            transport.close()
    assert wait_gone(log) == []


def test_over_ssh_a_reader_waiting_for_a_missing_file_leaves_nothing_behind_when_the_connection_drops(
        tmp_path, ssh_pod):
    log = tmp_path / "not-yet" / "train.log"
    transport = ssh_pod()
    reader = OffsetReader(transport, str(log))
    try:
        assert reader.read_new(timeout_s=0.5) == b""
        assert tails_following(log), "the pod-side wait for the file should be running"
        transport.client.get_transport().sock.close()  # the laptop vanishes; nobody closes the reader
        assert wait_gone(log) == []
    finally:
        transport.close()
