"""Sync by manifest: the first sync uploads everything, a second uploads nothing, a change uploads one file."""

from __future__ import annotations

import sys

from orchestrator.sync import sync, tree_entries
from orchestrator.transport import LocalTransport


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
