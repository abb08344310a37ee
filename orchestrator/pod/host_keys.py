"""podtune's own known_hosts: each pod's SSH host key, pinned by pod id (see ssh_transport.py for why).

No paramiko here: a run reads and writes these before it waits for a pod, and paramiko takes 0.1 s to import.
"""

from __future__ import annotations

import base64
import hashlib
import json
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import SSHError

if TYPE_CHECKING:
    import paramiko


def fingerprint(key_type: str, key_b64: str) -> str:
    """OpenSSH's SHA256 fingerprint, as `ssh-keygen -lf` and RunPod's pod log print it."""
    try:
        digest = hashlib.sha256(base64.b64decode(key_b64, validate=True)).digest()
    except ValueError:  # a hand-edited line: say so rather than fail
        return f"{key_type} (unreadable key)"
    return f"{key_type} SHA256:{base64.b64encode(digest).decode().rstrip('=')}"


class HostKeyStore:
    """podtune's own known_hosts: `<pod id> <key type> <base64>` per line; expected re-keys in a JSON file beside it."""

    def __init__(self, path: Path):
        self.path = path
        self.expected_path = path.with_name(path.name + ".expected.json")

    def _entries(self) -> dict[str, tuple[str, str]]:
        entries = {}
        if self.path.exists():
            for line in self.path.read_text().splitlines():
                parts = line.split()
                if len(parts) == 3:
                    entries[parts[0]] = (parts[1], parts[2])
        return entries

    def _write(self, entries: dict[str, tuple[str, str]]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(self.path.name + ".tmp")
        tmp.write_text("".join(f"{label} {kind} {b64}\n" for label, (kind, b64) in entries.items()))
        tmp.replace(self.path)

    def _expected(self) -> dict[str, str]:
        try:
            data = json.loads(self.expected_path.read_text())
        except (FileNotFoundError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}

    def expect_new_key(self, label: str, reason: str) -> None:
        """The next connection to `label` may show a new host key, for this reason (said to the user when it does)."""
        expected = self._expected()
        expected[label] = reason
        self.expected_path.parent.mkdir(parents=True, exist_ok=True)
        self.expected_path.write_text(json.dumps(expected))

    def clear_expectation(self, label: str) -> str | None:
        """Drop an expected re-key (used up, or the resume failed); returns its reason."""
        expected = self._expected()
        reason = expected.pop(label, None)
        if reason is not None:
            self.expected_path.write_text(json.dumps(expected))
        return reason

    def openssh_lines(self, label: str, host: str, port: int) -> list[str]:
        """The pinned key in OpenSSH's known_hosts format, for handing a session to the `ssh` client."""
        known = self._entries().get(label)
        return [f"[{host}]:{port} {known[0]} {known[1]}"] if known else []

    def check_or_record(self, label: str, key: paramiko.PKey) -> str | None:
        """Pin on first contact; refuse a changed key unless one was expected. Returns a notice to show, if any."""
        entries = self._entries()
        known = entries.get(label)
        offered = (key.get_name(), key.get_base64())
        if known == offered:
            self.clear_expectation(label)
            return None
        if known is None:
            entries[label] = offered
            self._write(entries)
            self.clear_expectation(label)
            return None
        now, was = fingerprint(*offered), fingerprint(*known)
        reason = self.clear_expectation(label)
        if reason is None:
            raise SSHError(
                f"the host key of pod {label} changed since podtune last connected: it was {was}, now {now}. "
                "Refusing to connect: someone else may be answering on its address",
                f"if the machine was restarted or rebuilt outside podtune (a RunPod image makes new host keys on "
                f"every start), check {now} against it (RunPod: the pod's log in the console), then delete the line "
                f"starting with '{label} ' from {self.path}",
            )
        entries[label] = offered
        self._write(entries)
        return f"pod {label} has a new host key {now} (was {was}): {reason}"
