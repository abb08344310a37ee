"""Follows a growing pod file as a stream (tail -F over the open connection), by byte offset: a dropped
connection resumes without losing or repeating a line."""

from __future__ import annotations

import shlex
import socket
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from remote.events import EventKind, RunPaths, parse_event_lines

from . import remote_job
from ..errors import SSHError
from .transport import Session, Transport

# What a broken SSH/SFTP channel raises, beyond podtune's own SSHError. ssh_transport turns paramiko's own
# errors into SSHError, so this module does not import paramiko (0.07 s before anything reached the pod).
CONNECTION_ERRORS: tuple[type[BaseException], ...] = (SSHError, EOFError, ConnectionError, socket.error, TimeoutError)


def check_every_s(poll_s: float) -> float:
    """How often a follower proves it is attached and asks whether the job ended: about every 2 s."""
    return min(max(poll_s * 2, 1.0), 2.0)


# tail -F's notices that the file it follows was cut, swapped or recreated: what it prints next is no longer at our
# offset, so the stream is restarted there instead.
_CUT_OR_SWAPPED = (b"truncated", b"replaced", b"appeared", b"inaccessible")


def tail_command(path: str, offset: int) -> str:
    """A shell command that prints its pid, then every byte of `path` from `offset` on as it is written.

    tail -F follows the file across a rename or a re-creation; `--pid` ends it when the SSH session that started
    it is gone. It is started only once the file exists and reaches `offset`: on a missing file tail falls back to
    polling once a second, and a file shorter than `offset` it would take as truncated and print from its start.
    `-s` is the poll interval where inotify is not used (a network volume, a missing file) and how often --pid is
    checked."""
    quoted = shlex.quote(path)
    ready = f"[ -e {quoted} ]" + ("" if offset == 0 else f' && [ "$(wc -c < {quoted})" -ge {offset} ]')
    # The wait ends with the SSH session too (its sshd is $PPID), so no shell is left waiting on the pod.
    return (f'echo "$$"; until {ready}; do kill -0 "$PPID" 2>/dev/null || exit 1; sleep 0.05; done; '
            f'exec tail --pid="$PPID" -s 0.05 -c +{offset + 1} -F -- {quoted}')


class OffsetReader:
    """Streams a pod file from byte `offset` over one `tail -F` on the open connection; hands out only complete
    lines, so `offset` always sits at a line start. A dropped connection reconnects (bounded) and the stream
    restarts at `offset`: nothing is lost or repeated. close() ends the tail."""

    def __init__(self, transport: Transport, path: str, offset: int = 0,
                 reconnect: Callable[[], Transport] | None = None, max_reconnects: int = 30):
        self._transport = transport
        self.path = path
        self.offset = offset
        self.reconnect = reconnect
        self.reconnects_left = max_reconnects
        self.attempt = 0
        self._session: Session | None = None
        self._pid: int | None = None  # the pod-side tail's, from the stream's first line
        self._head = b""  # the stream's bytes before its pid line is complete
        self._partial = b""  # bytes past `offset` that do not end a line yet
        self._err = b""  # the start of a stderr line from the tail, not yet whole
        self._said = b""  # what the tail last wrote to stderr, for an error message

    @property
    def transport(self) -> Transport:
        return self._transport

    @transport.setter
    def transport(self, transport: Transport) -> None:
        """Ride on another connection (a follower reconnected): the stream restarts there at `offset`."""
        if transport is not self._transport:
            self._close_stream()
            self._transport = transport

    def read_new(self, timeout_s: float = 0.0) -> bytes:
        """The complete lines written past `offset`, waiting up to timeout_s for the first; b"" when none came."""
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                if self._session is None:
                    self._session = self._transport.stream(tail_command(self.path, self.offset), timeout_s=600)
                data = self._session.read_available(max(deadline - time.monotonic(), 0.0))
                self._err += self._session.read_stderr_available()
            except CONNECTION_ERRORS:
                self._reconnect()
                data = b""
            said, _, self._err = self._err.rpartition(b"\n")
            if said:
                self._said = said[-500:]
            if any(notice in said for notice in _CUT_OR_SWAPPED):
                # Drops what came after the notice too (the new file from its start): read again from `offset`.
                # Bytes delivered by an earlier call before the notice reached us are the one gap this leaves.
                self._close_stream()
                data = b""
            # A notice half-arrived: hold the bytes until it is whole (tail writes it before the new file's bytes).
            lines = self._take_lines(data, hold=bool(self._err))
            if lines or time.monotonic() >= deadline:
                return lines

    def read_rest(self) -> bytes:
        """Everything complete past `offset` now, in one read of the file (the job has ended): no waiting."""
        self._close_stream()
        while True:
            try:
                chunk = self._transport.read_bytes(self.path, self.offset)
            except FileNotFoundError:
                return b""
            except CONNECTION_ERRORS:
                self._reconnect()
                continue
            end = chunk.rfind(b"\n") + 1
            self.offset += end
            return chunk[:end]

    def close(self) -> None:
        self._close_stream()

    def __enter__(self) -> OffsetReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _take_lines(self, data: bytes, hold: bool = False) -> bytes:
        if self._pid is None:
            self._head += data
            if b"\n" not in self._head:
                return b""
            pid, _, data = self._head.partition(b"\n")
            self._pid = int(pid) if pid.strip().isdigit() else 0
            self._head = b""
        self._partial += data
        end = 0 if hold else self._partial.rfind(b"\n") + 1
        lines, self._partial = self._partial[:end], self._partial[end:]
        self.offset += end
        return lines

    def _close_stream(self) -> None:
        """End the tail (best effort: on a dead connection, --pid ends it with its SSH session)."""
        session, pid = self._session, self._pid
        self._session, self._pid, self._head, self._partial, self._err = None, None, b"", b"", b""
        if session is None:
            return
        if pid:
            try:
                self._transport.exec(f"kill {pid} 2>/dev/null; true", timeout_s=10)
            except Exception:  # the connection is gone, and the tail with it
                pass
        try:
            session.kill()
        except Exception:  # an already broken channel: closed either way
            pass

    def _reconnect(self) -> None:
        """New connection with backoff; PodStopped (from `reconnect`) ends the wait at once."""
        self._close_stream()
        while True:
            if self.reconnect is None or self.reconnects_left <= 0:
                said = self._said.decode("utf-8", "replace").strip()
                raise SSHError(f"lost the connection to the pod while reading {self.path}"
                               + (f" ({said})" if said else ""), "re-attach later: podtune logs -f")
            self.reconnects_left -= 1
            self.attempt += 1
            try:
                self._transport.close()
            except Exception:  # the old channel is already broken; closing it is best effort
                pass
            time.sleep(min(0.25 * 2 ** (self.attempt - 1), 10.0))
            try:
                self._transport = self.reconnect()
                self.attempt = 0
                return
            except CONNECTION_ERRORS:
                continue


class EventFollower:
    """Streams events.jsonl until the pipeline reports it is done, or its process is gone."""

    def __init__(self, transport: Transport, run_dir: str, offset: int, local_copy: Path,
                 reconnect: Callable[[], Transport] | None = None):
        self.run_dir = run_dir
        self.reader = OffsetReader(transport, str(RunPaths.on_pod(run_dir).events), offset, reconnect)
        self.local_copy = local_copy

    @property
    def transport(self) -> Transport:
        return self.reader.transport

    def follow(self, on_event: Callable[[dict[str, Any]], None], *, poll_s: float = 1.0,
               on_offset: Callable[[int], None] | None = None, timeout_s: float = 14 * 24 * 3600,
               on_poll: Callable[[], None] | None = None) -> dict[str, Any]:
        """Each event as soon as the pod writes it. Every check_every_s(poll_s) the watchdog's heartbeat and a
        look at the job's processes; on_poll (e.g. the trainer's raw log) at least every poll_s."""
        deadline = time.monotonic() + timeout_s
        check_every = check_every_s(poll_s)
        next_check = time.monotonic()
        try:
            while time.monotonic() < deadline:
                if on_poll:
                    on_poll()
                if time.monotonic() >= next_check:
                    next_check = time.monotonic() + check_every
                    outcome = self._check_process()
                    if outcome is not None:
                        # The last events may have landed after the stream's last bytes: read to the file's end.
                        done = self._consume(self.reader.read_rest(), on_event, on_offset)
                        return done if done is not None else outcome
                wait = min(next_check, deadline) - time.monotonic()
                if on_poll:
                    wait = min(wait, poll_s)
                done = self._consume(self.reader.read_new(timeout_s=max(wait, 0.0)), on_event, on_offset)
                if done is not None:
                    return done
        finally:
            self.reader.close()
        return {"ok": False, "error": f"gave up following after {timeout_s:.0f}s"}

    def _consume(self, chunk: bytes, on_event, on_offset) -> dict[str, Any] | None:
        if not chunk:
            return None
        with open(self.local_copy, "ab") as fh:
            fh.write(chunk)
        if on_offset:
            on_offset(self.reader.offset)
        events, _ = parse_event_lines(chunk)
        for event in events:
            on_event(event)
            if event.get("kind") == EventKind.PIPELINE_DONE:
                return event
        return None

    def _check_process(self) -> dict[str, Any] | None:
        """Heartbeat for the watchdog; and an outcome when the job ended without saying so."""
        try:
            remote_job.touch_heartbeat(self.transport, self.run_dir)
            code = remote_job.exit_code(self.transport, self.run_dir)
            alive = code is None and remote_job.is_alive(self.transport, self.run_dir)
        except CONNECTION_ERRORS:
            self.reader._reconnect()
            return None
        if code is None and alive:
            return None
        if code is None:
            return {"ok": False, "interrupted": True, "error": "the job's processes are gone (killed or pod restarted)"}
        return {"ok": code == 0, "error": None if code == 0 else f"the job exited with code {code}"}
