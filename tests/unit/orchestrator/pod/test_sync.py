"""Sync by manifest: the first sync uploads everything, a second uploads nothing, a change uploads one file."""

from __future__ import annotations

import sys

import pytest

from orchestrator.pod.sync import sync, tree_entries
from orchestrator.pod.transport import LocalTransport


def test_sync_uploads_only_what_changed(tmp_path):
    src = tmp_path / "src"
    (src / "pkg" / "__pycache__").mkdir(parents=True)
    (src / "pkg" / "a.py").write_text("a = 1\n")
    (src / "pkg" / "b.py").write_text("b = 2\n")
    (src / "pkg" / "__pycache__" / "a.cpython-311.pyc").write_bytes(b"junk")
    pod = tmp_path / "pod"
    transport = LocalTransport()

    first = sync(transport, sys.executable, tree_entries(src, str(pod / "code")))
    assert sorted(p.rsplit("/", 1)[1] for p in first.uploaded) == ["a.py", "b.py"]
    assert (pod / "code" / "pkg" / "b.py").read_text() == "b = 2\n"
    assert not (pod / "code" / "pkg" / "__pycache__").exists()

    second = sync(transport, sys.executable, tree_entries(src, str(pod / "code")))
    assert second.uploaded == [] and second.unchanged == 2 and second.bytes_sent == 0

    (src / "pkg" / "b.py").write_text("b = 3\n")  # same size, different content: caught by sha256
    third = sync(transport, sys.executable, tree_entries(src, str(pod / "code")))
    assert [p.rsplit("/", 1)[1] for p in third.uploaded] == ["b.py"]
    assert (pod / "code" / "pkg" / "b.py").read_text() == "b = 3\n"


def test_file_edited_on_the_pod_is_restored(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    (src / "x.py").write_text("x = 1\n")
    transport = LocalTransport()
    sync(transport, sys.executable, tree_entries(src, str(tmp_path / "pod")))
    (tmp_path / "pod" / "x.py").write_text("x = 1  # edited by hand on the pod\n")
    again = sync(transport, sys.executable, tree_entries(src, str(tmp_path / "pod")))
    assert len(again.uploaded) == 1 and (tmp_path / "pod" / "x.py").read_text() == "x = 1\n"


def test_over_ssh_one_conversation_carries_the_manifest_and_the_files(tmp_path):
    """The manifest and the upload share one channel: a cold sync sends everything, a warm one nothing."""
    from pathlib import Path

    from orchestrator.pod.ssh_transport import SSHTransport
    from tests.doubles.sshd import generate_keypair, start_sshd, stop_sshd

    src = tmp_path / "src"
    for i in range(40):
        (src / f"p{i % 3}").mkdir(parents=True, exist_ok=True)
        (src / f"p{i % 3}" / f"m{i}.py").write_text(f"value = {i}\n" * (i + 1))
    (src / "big.bin").write_bytes(bytes(range(256)) * (5 << 12))  # over SMALL_FILE: SFTP, not the tar stream
    key, public = generate_keypair(tmp_path / "key")
    pod = start_sshd(state_dir=tmp_path / "sshd", workspace=tmp_path / "ws", authorized_keys=[public],
                     env={"PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin"}, isolate_workspace=False)
    try:
        t = SSHTransport(host="127.0.0.1", port=pod.port, user="root", key_path=key, pin_label="p",
                         known_hosts=tmp_path / "kh").connect()
        dest = tmp_path / "dest"
        cold = sync(t, sys.executable, tree_entries(src, str(dest)))
        assert len(cold.uploaded) == 41 and cold.unchanged == 0
        assert all((dest / p.relative_to(src)).read_bytes() == p.read_bytes() for p in src.rglob("*") if p.is_file())
        warm = sync(t, sys.executable, tree_entries(src, str(dest)))
        assert warm.uploaded == [] and warm.unchanged == 41
        (src / "p1" / "m1.py").write_text("changed\n")
        third = sync(t, sys.executable, tree_entries(src, str(dest)))
        assert [p.rsplit("/", 1)[1] for p in third.uploaded] == ["m1.py"]
        assert (dest / "p1" / "m1.py").read_text() == "changed\n"
        t.close()
    finally:
        stop_sshd(pod)


def test_an_unchanged_file_is_known_by_size_and_mtime_without_hashing_it(tmp_path):
    """The pod's copy gets the laptop file's mtime; a re-sync trusts (size, mtime) like rsync, and hashes otherwise."""
    import json
    import shlex

    from orchestrator.pod.sync import _REMOTE_MANIFEST, entry

    src = tmp_path / "src"
    src.mkdir()
    for name in ("a.py", "b.py"):
        (src / name).write_text(f"{name}\n")
    sync(LocalTransport(), sys.executable, tree_entries(src, str(tmp_path / "pod")))
    assert (tmp_path / "pod" / "a.py").stat().st_mtime == pytest.approx((src / "a.py").stat().st_mtime, abs=1e-6)
    entries = [entry(src / n, str(tmp_path / "pod" / n)) for n in ("a.py", "b.py")]
    import os

    os.utime(tmp_path / "pod" / "b.py", (1, 1))  # touched on the pod: hashed, and found equal
    asked = json.dumps({e.remote: [e.size, e.mtime] for e in entries}).encode()
    answer = LocalTransport().exec(f"{sys.executable} -S -c {shlex.quote(_REMOTE_MANIFEST)}", stdin=asked).stdout
    theirs = json.loads(answer)
    assert theirs[entries[0].remote] == [entries[0].size, "="]
    assert theirs[entries[1].remote] == [entries[1].size, entries[1].sha256]
    assert sync(LocalTransport(), sys.executable, tree_entries(src, str(tmp_path / "pod"))).uploaded == []
