"""Follows a growing pod file by byte offset: a dropped connection resumes without losing or repeating a line."""

from __future__ import annotations

import socket
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from remote.events import EventKind, RunPaths, parse_event_lines

from . import remote_job
from .errors import SSHError
from .transport import Transport

# What a broken SSH/SFTP channel raises, beyond podtune's own SSHError. ssh_transport turns paramiko's own
# errors into SSHError, so this module does not import paramiko (0.07 s before anything reached the pod).
CONNECTION_ERRORS: tuple[type[BaseException], ...] = (SSHError, EOFError, ConnectionError, socket.error, TimeoutError)


class OffsetReader:
    """Reads only complete lines past `offset`; reconnects (bounded) when the channel drops."""

    def __init__(self, transport: Transport, path: str, offset: int = 0,
                 reconnect: Callable[[], Transport] | None = None, max_reconnects: int = 30):
        self.transport = transport
        self.path = path
        self.offset = offset
        self.reconnect = reconnect
        self.reconnects_left = max_reconnects
        self.attempt = 0

    def read_new(self) -> bytes:
        try:
            chunk = self.transport.read_bytes(self.path, self.offset)
        except FileNotFoundError:
            return b""
        except CONNECTION_ERRORS:
            self._reconnect()
            return b""
        end = chunk.rfind(b"\n") + 1
        self.offset += end
        return chunk[:end]

    def _reconnect(self) -> None:
        """New connection with backoff; PodStopped (from `reconnect`) ends the wait at once."""
        while True:
            if self.reconnect is None or self.reconnects_left <= 0:
                raise SSHError(f"lost the connection to the pod while reading {self.path}",
                               "re-attach later: podtune logs -f")
            self.reconnects_left -= 1
            self.attempt += 1
            try:
                self.transport.close()
            except Exception:  # the old channel is already broken; closing it is best effort
                pass
            time.sleep(min(0.25 * 2 ** (self.attempt - 1), 10.0))
            try:
                self.transport = self.reconnect()
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
        deadline = time.monotonic() + timeout_s
        last_check = 0.0
        while time.monotonic() < deadline:
            if on_poll:  # e.g. the trainer's raw log, read between events
                on_poll()
            chunk = self.reader.read_new()
            if chunk:
                done = self._consume(chunk, on_event, on_offset)
                if done is not None:
                    return done
                continue
            if time.monotonic() - last_check >= max(poll_s * 2, 1.0):
                last_check = time.monotonic()
                outcome = self._check_process()
                if outcome is not None:
                    # The last events may have landed after our previous read: take them before giving up.
                    done = self._consume(self.reader.read_new(), on_event, on_offset)
                    return done if done is not None else outcome
            time.sleep(poll_s)
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
