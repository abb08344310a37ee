"""SSH round trips: podtune's connection (TCP_NODELAY) against the same connection with Nagle's algorithm on, as
paramiko leaves it, on one private OpenSSH sshd on loopback, alternating.

- handshake: SSHTransport.connect() (TCP, key exchange, host-key pin check, public-key auth);
- a short command (`true`), and a command that is sent stdin (`cat`, 4 KB: how the warm start's script and the
  launch's arguments travel), each over its own exec channel, as every pod command runs;
- an SFTP read of a 1 KB file.

On loopback a held packet waits for the pod's delayed ACK (~40 ms); on a real network it waits a round trip.
"""

from __future__ import annotations

import json
import socket
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench.common import summary  # noqa: E402
from orchestrator.pod import ssh_transport  # noqa: E402
from orchestrator.pod.ssh_transport import SSHTransport  # noqa: E402
from tests.doubles.sshd import generate_keypair, start_sshd, stop_sshd  # noqa: E402

SIDES = ("no_delay", "nagle")


def _nagle_socket(host: str, port: int, timeout_s: float) -> socket.socket:
    return socket.create_connection((host, port), timeout=timeout_s)  # paramiko's own: Nagle on


def _timed(fn: Callable[[], object]) -> float:
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


def main(repeats: int = 15) -> dict:
    with tempfile.TemporaryDirectory(prefix="podtune-bench-ssh-") as name:
        tmp = Path(name)
        key, public = generate_keypair(tmp / "client" / "id_ed25519")
        # An emulated pod's sshd: its own /workspace (and not this machine's root shell start-up files).
        sshd = start_sshd(state_dir=tmp / "sshd", workspace=tmp / "ws", authorized_keys=[public], env={})
        real_socket = ssh_transport._no_delay_socket
        try:
            def connect(side: str) -> SSHTransport:
                ssh_transport._no_delay_socket = real_socket if side == "no_delay" else _nagle_socket  # type: ignore[assignment]
                try:
                    return SSHTransport(host="127.0.0.1", port=sshd.port, user="root", key_path=key, pin_label="bench",
                                        known_hosts=tmp / "known_hosts").connect()
                finally:
                    ssh_transport._no_delay_socket = real_socket  # type: ignore[assignment]

            times: dict[str, dict[str, list[float]]] = {s: {"handshake": [], "command": [], "command_stdin": [],
                                                            "sftp_read": []} for s in SIDES}
            transports = {side: connect(side) for side in SIDES}
            sample = "/workspace/sample"
            transports["no_delay"].write_bytes(sample, b"x" * 1024)
            time.sleep(0.5)  # both SFTP channels open (they open on a thread at connect)
            for i in range(repeats):
                for side in (SIDES if i % 2 == 0 else SIDES[::-1]):
                    t = transports[side]
                    times[side]["command"].append(_timed(lambda: t.exec("true").check("true")))
                    times[side]["command_stdin"].append(_timed(lambda: t.exec("cat", stdin=b"y" * 4096).check("cat")))
                    times[side]["sftp_read"].append(_timed(lambda: t.read_bytes(sample)))
                    fresh: list[SSHTransport] = []
                    times[side]["handshake"].append(_timed(lambda: fresh.append(connect(side))))
                    fresh[0].close()
            for t in transports.values():
                t.close()
        finally:
            stop_sshd(sshd)
    out: dict = {"repeats": repeats}
    for what in times["nagle"]:
        ms = {side: summary(v * 1000 for v in times[side][what]) for side in SIDES}
        out[what] = {"ms": ms, "ratio": ms["no_delay"]["median"] / ms["nagle"]["median"]}
    return out


if __name__ == "__main__":
    print(json.dumps(main(int(sys.argv[1]) if len(sys.argv) > 1 else 15), indent=1))
