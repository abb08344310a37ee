"""Upload only what changed: compare (size, sha256) manifests, one round trip to learn the pod's side."""

from __future__ import annotations

import hashlib
import io
import json
import shlex
import time
import zlib
from dataclasses import dataclass, field
from pathlib import Path

from .transport import Transport

# Runs on the pod with its own python: hashes the files the laptop asks about (only those whose size matches).
_REMOTE_MANIFEST = """
import hashlib, json, os, sys
want = json.load(sys.stdin)
out = {}
for path, asked in want.items():
    size, mtime = (asked, None) if isinstance(asked, int) else asked
    try:
        st = os.stat(path)
    except OSError:
        continue
    actual = st.st_size
    if actual != size:
        out[path] = [actual, None]
        continue
    if mtime is not None and abs(st.st_mtime - mtime) < 1e-6:
        out[path] = [actual, "="]  # same size and mtime as the laptop's file, which sync itself set: unchanged
        continue
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    out[path] = [actual, digest.hexdigest()]
print(json.dumps(out))
"""

# One round trip for both: the manifest answer, then (same command, same channel) the changed small files as
# one gzip tar stream, unpacked by tar as it arrives. EOF right after the manifest: nothing to unpack.
_REMOTE_SYNC = _REMOTE_MANIFEST.replace("want = json.load(sys.stdin)", "want = json.loads(sys.stdin.buffer.readline())") + """
sys.stdout.flush()
import subprocess
stream = sys.stdin.buffer
chunk = stream.read1(1 << 20)
if chunk:
    tar = subprocess.Popen(["tar", "-xzf", "-", "-C", "/"], stdin=subprocess.PIPE)
    while chunk:
        tar.stdin.write(chunk)
        chunk = stream.read1(1 << 20)
    tar.stdin.close()
    sys.exit(tar.wait())
"""


def _is_cache(path: Path) -> bool:
    return "__pycache__" in path.parts or path.suffix in (".pyc", ".pyo")


@dataclass(frozen=True)
class FileEntry:
    local: Path
    remote: str  # absolute pod path
    size: int
    sha256: str  # "" until needed: tree_entries leaves it to digest(), a re-sync by mtime never needs it
    mode: int = 0o644
    mtime: float = 0.0  # given to the pod's copy, so an unchanged file is known without hashing it (as rsync)

    def digest(self) -> str:
        return self.sha256 or sha256_file(self.local)


@dataclass
class SyncResult:
    uploaded: list[str] = field(default_factory=list)
    unchanged: int = 0
    bytes_sent: int = 0


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def entry(local: Path, remote: str) -> FileEntry:
    st = local.stat()
    return FileEntry(local=local, remote=remote, size=st.st_size, sha256=sha256_file(local), mtime=st.st_mtime)


def tree_entries(local_root: Path, remote_root: str) -> list[FileEntry]:
    """Every file under local_root (bytecode caches skipped), mapped under remote_root.

    A symlink is followed only when it stays inside local_root: a link to ~/.ssh placed in the tree is never sent."""
    root = local_root.resolve()
    entries = []
    for path in sorted(local_root.rglob("*")):
        if path.is_file() and not _is_cache(path) and path.resolve().is_relative_to(root):
            rel = path.relative_to(local_root).as_posix()
            st = path.stat()
            entries.append(FileEntry(local=path, remote=f"{remote_root.rstrip('/')}/{rel}", size=st.st_size,
                                     sha256="", mtime=st.st_mtime))
    return entries


def remote_manifest(transport: Transport, python: str, entries: list[FileEntry]) -> dict[str, tuple[int, str | None]]:
    want = json.dumps(_asked(entries)).encode()
    # -S: no site-packages to scan (the script needs only the standard library): a third of the round trip.
    result = transport.exec(f"{shlex.quote(python)} -S -c {shlex.quote(_REMOTE_MANIFEST)}", stdin=want, timeout_s=120)
    result.check("reading the pod's file manifest")
    return {path: (size, digest) for path, (size, digest) in json.loads(result.stdout).items()}


# Small files travel together as one tar stream over one channel: per-file SFTP round trips made a cold sync
# of a 500-file package 7x slower than rsync (bench/bench_sync.py). Big files go one by one over SFTP.
SMALL_FILE = 4 << 20
TAR_BATCH = 64 << 20


def sync(transport: Transport, python: str, entries: list[FileEntry]) -> SyncResult:
    """Upload the entries whose size or sha256 differ on the pod; return what was sent."""
    stream = getattr(transport, "stream", None)
    if stream is None:
        return _sync_in_two_trips(transport, python, entries)
    # -S: no site-packages to scan (the script needs only the standard library).
    session = stream(f"{shlex.quote(python)} -S -c {shlex.quote(_REMOTE_SYNC)}", timeout_s=600)
    session.send(json.dumps(_asked(entries)).encode() + b"\n")
    line = session.readline()
    try:
        theirs = {path: (size, digest) for path, (size, digest) in json.loads(line).items()}
    except ValueError:
        session.finish().check("reading the pod's file manifest")
        raise
    changed = [e for e in entries if not _same(theirs.get(e.remote), e)]
    small = [e for e in changed if e.size <= SMALL_FILE]
    if small:
        _stream_tar(session.send, small)
    session.finish().check(f"unpacking {len(small)} synced files on the pod")
    for e in changed:
        if e.size > SMALL_FILE:
            transport.put_file(e.local, e.remote, e.mode)
    return SyncResult(uploaded=[e.remote for e in changed], unchanged=len(entries) - len(changed),
                      bytes_sent=sum(e.size for e in changed))


def _asked(entries: list[FileEntry]) -> dict[str, list[float] | int]:
    return {e.remote: [e.size, e.mtime] if e.mtime else e.size for e in entries}


def _same(theirs: tuple[int, str | None] | None, e: FileEntry) -> bool:
    """The pod's copy matches: same size and sha256, or same size and the mtime sync gave it ("=")."""
    return theirs is not None and theirs[0] == e.size and theirs[1] is not None and (
        theirs[1] == "=" or theirs[1] == e.digest())


class _GzipSender:
    """A file-like sink: gzip (level 1: the CPU is the bottleneck on a fast link) and send in 256 kB pieces, so
    compressing, sending and unpacking on the pod overlap."""

    def __init__(self, send):
        self.send = send
        self.zip = zlib.compressobj(1, zlib.DEFLATED, 31)
        self.pending = bytearray()

    def write(self, data: bytes) -> int:
        self.pending += self.zip.compress(data)
        if len(self.pending) >= 256 << 10:
            self.send(bytes(self.pending))
            self.pending.clear()
        return len(data)

    def close(self) -> None:
        self.pending += self.zip.flush()
        self.send(bytes(self.pending))
        self.pending.clear()


def _stream_tar(send, batch: list[FileEntry]) -> None:
    import tarfile  # here: a warm re-run sends nothing, and its launch need not wait for the import

    sink = _GzipSender(send)
    now = time.time()
    with tarfile.open(fileobj=sink, mode="w|") as tar:  # type: ignore[call-overload]  # a write-only sink
        for e in batch:
            info = tarfile.TarInfo(e.remote.lstrip("/"))
            info.size, info.mode, info.mtime = e.size, e.mode, e.mtime or now
            with open(e.local, "rb") as fh:
                tar.addfile(info, fh)
    sink.close()


def _sync_in_two_trips(transport: Transport, python: str, entries: list[FileEntry]) -> SyncResult:
    """For a transport without conversations: the manifest, then the changed files."""
    theirs = remote_manifest(transport, python, entries)
    changed = [e for e in entries if not _same(theirs.get(e.remote), e)]
    result = SyncResult(unchanged=len(entries) - len(changed))
    small = [e for e in changed if e.size <= SMALL_FILE]
    for batch in _batches(small if len(small) > 1 else []):
        _send_tar(transport, batch)
    for e in changed:
        if not (len(small) > 1 and e.size <= SMALL_FILE):
            transport.put_file(e.local, e.remote, e.mode)
    result.uploaded = [e.remote for e in changed]
    result.bytes_sent = sum(e.size for e in changed)
    return result


def _batches(entries: list[FileEntry]) -> list[list[FileEntry]]:
    batches: list[list[FileEntry]] = []
    size = TAR_BATCH
    for e in entries:
        if size + e.size > TAR_BATCH:
            batches.append([])
            size = 0
        batches[-1].append(e)
        size += e.size
    return batches


def _send_tar(transport: Transport, batch: list[FileEntry]) -> None:
    import tarfile

    buffer = io.BytesIO()
    now = time.time()
    with tarfile.open(fileobj=buffer, mode="w:gz", compresslevel=3) as tar:
        for e in batch:
            info = tarfile.TarInfo(e.remote.lstrip("/"))
            info.size, info.mode, info.mtime = e.size, e.mode, e.mtime or now
            with open(e.local, "rb") as fh:
                tar.addfile(info, fh)
    transport.exec("tar -xzf - -C /", stdin=buffer.getvalue(), timeout_s=600).check(
        f"unpacking {len(batch)} synced files on the pod")
