"""Sync benchmark: podtune's manifest sync vs `rsync -az` over the same loopback sshd, side by side.

A synthetic 501-file, ~7.4 MB Python-like package (the anchor in NOTES-VERIFIED.md), synced cold and then
unchanged; each measurement includes a fresh SSH handshake (paramiko for podtune, OpenSSH for rsync) and the
listing/hashing of the local tree, as a real `podtune run` pays them.
"""

from __future__ import annotations

import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench.common import summary  # noqa: E402  (after sys.path)
from orchestrator.pod.ssh_transport import SSHTransport  # noqa: E402
from orchestrator.pod.sync import sync, tree_entries  # noqa: E402
from tests.doubles.sshd import generate_keypair, start_sshd, stop_sshd  # noqa: E402

FILES, TOTAL_BYTES = 501, 7_400_000


def make_package(root: Path) -> None:
    rng = random.Random(7)
    words = [w.encode() for w in "def class return import self value items for in if else yield lambda".split()]
    per_file = TOTAL_BYTES // FILES
    for i in range(FILES):
        path = root / f"pkg{i % 20}" / f"module_{i}.py"
        path.parent.mkdir(parents=True, exist_ok=True)
        body = b" ".join(rng.choice(words) for _ in range(per_file // 5))
        path.write_bytes(body[:per_file] + b"\n")


def podtune_sync(src: Path, dest: str, port: int, key: Path, known: Path) -> float:
    start = time.perf_counter()
    t = SSHTransport(host="127.0.0.1", port=port, user="root", key_path=key, pin_label="bench", known_hosts=known)
    t.connect()
    sync(t, sys.executable, tree_entries(src, dest))
    t.close()
    return time.perf_counter() - start


def rsync(src: Path, dest: str, port: int, key: Path) -> float:
    start = time.perf_counter()
    ssh = f"ssh -i {key} -p {port} -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o LogLevel=ERROR"
    subprocess.run(["rsync", "-az", "-e", ssh, f"{src}/", f"root@127.0.0.1:{dest}/"], check=True)
    return time.perf_counter() - start


def main(repeats: int = 3) -> dict:
    if not shutil.which("rsync"):
        raise SystemExit("rsync is not installed: apt-get install -y rsync")
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        src = tmp / "src"
        make_package(src)
        key, public = generate_keypair(tmp / "key")
        pod = start_sshd(state_dir=tmp / "sshd", workspace=tmp / "ws", authorized_keys=[public],
                         env={"PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin"}, isolate_workspace=False)
        results: dict[str, list[float]] = {k: [] for k in ("podtune_cold", "podtune_warm", "rsync_cold", "rsync_warm")}
        try:
            for i in range(repeats):
                # Interleaved, so machine noise hits both tools alike.
                results["podtune_cold"].append(podtune_sync(src, str(tmp / f"p{i}"), pod.port, key, tmp / "kh"))
                results["rsync_cold"].append(rsync(src, str(tmp / f"r{i}"), pod.port, key))
                results["podtune_warm"].append(podtune_sync(src, str(tmp / f"p{i}"), pod.port, key, tmp / "kh"))
                results["rsync_warm"].append(rsync(src, str(tmp / f"r{i}"), pod.port, key))
        finally:
            stop_sshd(pod)
    med = {k: statistics.median(v) for k, v in results.items()}
    pairs = {kind: [p / r for p, r in zip(results[f"podtune_{kind}"], results[f"rsync_{kind}"])]
             for kind in ("cold", "warm")}
    return {
        "files": FILES, "bytes": TOTAL_BYTES, "repeats": repeats, "median_s": med,
        **{k: summary(v) for k, v in results.items()},
        "ratio_cold": med["podtune_cold"] / med["rsync_cold"], "ratio_warm": med["podtune_warm"] / med["rsync_warm"],
        "ratio_cold_pairs": summary(pairs["cold"]), "ratio_warm_pairs": summary(pairs["warm"]),
    }


if __name__ == "__main__":
    import json

    print(json.dumps(main(), indent=1))
