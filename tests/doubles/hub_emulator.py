"""An offline emulator of the Hugging Face Hub HTTP API, faithful to what huggingface_hub 2.4.0 sends.

See /work/shared/HUB.md for the protocol it follows. Two stdlib HTTP servers on 127.0.0.1:

* the *Hub* (``emu.url``): the REST API, the git-LFS batch/verify endpoints and ``/resolve`` downloads;
* a *CDN / object store* on a second port (``emu.cdn_url``): presigned LFS upload URLs (like S3) and the
  targets of the ``302`` redirects that ``/resolve`` answers for LFS files (like the Hub's CDN). Being another
  origin, the real client neither follows the HEAD redirect nor sends its token there; the CDN refuses any
  request that carries an ``Authorization`` header, as S3 does with presigned URLs.

Usage (see tests/doubles/test_hub_emulator.py)::

    with HubEmulator(users=[HubUser("alice", orgs=["acme"])],
                     tokens=[HubToken("hf_alice_write", "alice", "write")]) as emu:
        api = HfApi(endpoint=emu.url, token="hf_alice_write")

Set ``HF_HUB_DISABLE_XET=1`` (or patch ``huggingface_hub.constants.HF_HUB_DISABLE_XET = True``): Xet is not
emulated. Only ``namespace/name`` repo ids are routed; model and dataset repos are supported, spaces are not.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import html
import json
import math
import os
import re
import secrets
import socket
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from fnmatch import fnmatchcase
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, quote, unquote, urlsplit

__all__ = [
    "DEFAULT_GITATTRIBUTES",
    "EmulatedCommit",
    "EmulatedRepo",
    "HubEmulator",
    "HubToken",
    "HubUser",
    "RequestRecord",
    "git_blob_sha1",
    "lfs_pointer",
    "patch_huggingface_hub",
]

# What the real Hub puts in `.gitattributes` in the initial commit of a new model/dataset repo.
DEFAULT_GITATTRIBUTES = (
    "".join(
        f"{pattern} filter=lfs diff=lfs merge=lfs -text\n"
        for pattern in (
            "*.7z", "*.arrow", "*.bin", "*.bz2", "*.ckpt", "*.ftz", "*.gz", "*.h5", "*.joblib", "*.lfs.*",
            "*.mlmodel", "*.model", "*.msgpack", "*.npy", "*.npz", "*.onnx", "*.ot", "*.parquet", "*.pb",
            "*.pickle", "*.pkl", "*.pt", "*.pth", "*.rar", "*.safetensors", "saved_model/**/*", "*.tar.*",
            "*.tar", "*.tflite", "*.tgz", "*.wasm", "*.xz", "*.zip", "*.zst", "*tfevents*",
        )
    )
).encode()

MAX_REGULAR_FILE_SIZE = 10 * 1024 * 1024  # larger files must go through LFS (the Hub's "10 MiB" rule)
LFS_POINTER_VERSION = "https://git-lfs.github.com/spec/v1"
_INVALID_TOKEN_MSG = "Invalid credentials in Authorization header"
_SHA256_RE = re.compile(r"^[0-9a-f]{64}$")
_COMMIT_RE = re.compile(r"^[0-9a-f]{40}$")
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,95}$")
_REPO_TYPES = ("model", "dataset")
_URL_PREFIX = {"model": "", "dataset": "datasets/"}


# --------------------------------------------------------------------------------------------------------------------
# Public data model
# --------------------------------------------------------------------------------------------------------------------
@dataclass
class HubUser:
    name: str
    orgs: list[str] = field(default_factory=list)
    fullname: str | None = None
    email: str | None = None


@dataclass
class HubToken:
    value: str
    user: str
    role: str = "write"  # "read" | "write"


@dataclass(frozen=True)
class RequestRecord:
    """One request as the emulator saw it. ``status`` 0 means the connection was dropped on purpose."""

    server: str  # "hub" | "cdn"
    method: str
    path: str  # as sent, without the query string
    query: str
    status: int
    authorization: bool  # an Authorization header was present
    user_agent: str


def git_blob_sha1(data: bytes) -> str:
    """The git object id of a blob (what the Hub calls a regular file's oid / blobId / ETag)."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def lfs_pointer(sha256_hex: str, size: int) -> bytes:
    return f"version {LFS_POINTER_VERSION}\noid sha256:{sha256_hex}\nsize {size}\n".encode()


@dataclass(frozen=True)
class _Blob:
    data: bytes
    lfs: bool
    sha256: str
    blob_id: str  # git sha1 of the content (regular) or of the pointer file (LFS)

    @classmethod
    def make(cls, data: bytes, lfs: bool) -> _Blob:
        sha = hashlib.sha256(data).hexdigest()
        blob_id = git_blob_sha1(lfs_pointer(sha, len(data)) if lfs else data)
        return cls(data=data, lfs=lfs, sha256=sha, blob_id=blob_id)

    @property
    def size(self) -> int:
        return len(self.data)

    @property
    def pointer_size(self) -> int:
        return len(lfs_pointer(self.sha256, len(self.data)))


@dataclass
class EmulatedCommit:
    id: str
    message: str
    description: str
    parent: str | None
    blobs: dict[str, _Blob]
    date: datetime

    @property
    def files(self) -> dict[str, bytes]:
        return {path: blob.data for path, blob in self.blobs.items()}

    @property
    def lfs_paths(self) -> set[str]:
        return {path for path, blob in self.blobs.items() if blob.lfs}


@dataclass
class EmulatedRepo:
    repo_id: str
    repo_type: str  # "model" | "dataset"
    private: bool
    gated: bool | str  # False | "auto" | "manual"
    commits: list[EmulatedCommit] = field(default_factory=list)
    lfs_objects: dict[str, bytes] = field(default_factory=dict)  # sha256 -> content, this repo's LFS storage
    created_at: datetime = field(default_factory=lambda: datetime.now(timezone.utc))

    @property
    def namespace(self) -> str:
        return self.repo_id.split("/", 1)[0]

    @property
    def head(self) -> EmulatedCommit:
        return self.commits[-1]

    @property
    def sha(self) -> str:
        return self.head.id

    @property
    def files(self) -> dict[str, bytes]:
        return self.head.files

    def commit_for(self, rev: str) -> EmulatedCommit | None:
        if rev in ("main", "refs/heads/main"):
            return self.head
        if _COMMIT_RE.match(rev):
            for commit in self.commits:
                if commit.id == rev:
                    return commit
        return None


# --------------------------------------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------------------------------------
class _Resp:
    __slots__ = ("status", "body", "headers", "close")

    def __init__(self, status: int, body: bytes = b"", headers: dict[str, str] | None = None, close: bool = False):
        self.status = status
        self.body = body
        self.headers = dict(headers or {})
        self.close = close


def _json(status: int, obj: Any, headers: dict[str, str] | None = None) -> _Resp:
    h = {"Content-Type": "application/json; charset=utf-8"}
    h.update(headers or {})
    return _Resp(status, json.dumps(obj).encode(), h)


def _error(status: int, message: str, code: str | None = None, extra: dict | None = None,
           headers: dict[str, str] | None = None) -> _Resp:
    h = {"X-Error-Message": message}
    if code:
        h["X-Error-Code"] = code
    h.update(headers or {})
    body = {"error": message}
    body.update(extra or {})
    return _json(status, body, h)


def _iso(dt: datetime) -> str:
    return dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{dt.microsecond // 1000:03d}Z"


def _gitattributes_lfs_patterns(content: bytes | None) -> list[str]:
    patterns = []
    for line in (content or b"").decode("utf-8", "replace").splitlines():
        parts = line.split()
        if len(parts) >= 2 and not parts[0].startswith("#") and "filter=lfs" in parts[1:]:
            patterns.append(parts[0])
    return patterns


def _path_matches(pattern: str, path: str) -> bool:
    """Approximate gitattributes / gitignore matching (enough for the Hub's default patterns)."""
    pattern = pattern.rstrip("/")
    if "/" not in pattern:  # matches the basename at any depth
        return fnmatchcase(path.rsplit("/", 1)[-1], pattern)
    pattern = pattern.lstrip("/")
    if "**" in pattern:
        regex = re.escape(pattern).replace(r"\*\*/", "(?:.*/)?").replace(r"\*\*", ".*").replace(r"\*", "[^/]*")
        return re.fullmatch(regex, path) is not None
    return fnmatchcase(path, pattern)


def _git_tree_ids(blobs: dict[str, _Blob]) -> dict[str, str]:
    """Real git tree object ids for every directory ("" is the root)."""
    children: dict[str, dict[str, tuple[str, str]]] = {"": {}}
    for path in blobs:
        parts = path.split("/")
        for i in range(1, len(parts)):
            children.setdefault("/".join(parts[:i]), {})
    ids: dict[str, str] = {}

    def tree_id(directory: str) -> str:
        entries: dict[str, tuple[str, str]] = {}
        prefix = f"{directory}/" if directory else ""
        for path, blob in blobs.items():
            if path.startswith(prefix) and "/" not in path[len(prefix):]:
                entries[path[len(prefix):]] = ("100644", blob.blob_id)
        for sub in children:
            if sub and sub.startswith(prefix) and "/" not in sub[len(prefix):]:
                entries[sub[len(prefix):]] = ("40000", tree_id(sub))
        body = b"".join(
            f"{mode} {name}".encode() + b"\0" + bytes.fromhex(sha)
            for name, (mode, sha) in sorted(entries.items(), key=lambda kv: kv[0] + ("/" if kv[1][0] == "40000" else ""))
        )
        ids[directory] = hashlib.sha1(b"tree %d\0" % len(body) + body).hexdigest()
        return ids[directory]

    tree_id("")
    return ids


def _validate_path(path: Any) -> str | None:
    if not isinstance(path, str) or not path or path.startswith("/") or path.endswith("/"):
        return f"Invalid path: {path!r}"
    parts = path.split("/")
    if any(p in ("", ".", "..") for p in parts) or parts[0] == ".git" or len(path) > 1000:
        return f"Invalid path: {path!r}"
    return None


@dataclass
class _Fault:
    kind: str  # "fail" | "drop" | "stall" | "truncate"
    remaining: int
    path_contains: str | None
    method: str | None
    status: int = 500
    html: bool = False
    headers: dict[str, str] = field(default_factory=dict)
    message: str | None = None
    seconds: float = 0.0

    def matches(self, method: str, raw_path: str) -> bool:
        return (self.method is None or self.method.upper() == method) and (
            self.path_contains is None or self.path_contains in raw_path
        )


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 64

    def __init__(self, emu: HubEmulator, role: str):
        self.emu = emu
        self.role = role
        self.conns: set[socket.socket] = set()
        self.conns_lock = threading.Lock()
        super().__init__(("127.0.0.1", 0), _Handler)

    def close_connections(self) -> None:
        with self.conns_lock:
            conns = list(self.conns)
        for conn in conns:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "HubEmulator/1.0"
    sys_version = ""
    timeout = 60  # idle keep-alive connections end after this
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - silence stderr
        pass

    def setup(self) -> None:
        super().setup()
        with self.server.conns_lock:
            self.server.conns.add(self.connection)

    def finish(self) -> None:
        with self.server.conns_lock:
            self.server.conns.discard(self.connection)
        try:
            super().finish()
        except OSError:
            pass

    def do_GET(self) -> None:
        self.server.emu._handle(self)

    do_HEAD = do_POST = do_PUT = do_DELETE = do_PATCH = do_OPTIONS = do_GET


# --------------------------------------------------------------------------------------------------------------------
# The emulator
# --------------------------------------------------------------------------------------------------------------------
class HubEmulator:
    """Offline Hugging Face Hub. Thread-safe; all state lives in memory and is bounded."""

    def __init__(
        self,
        *,
        users: Iterable[HubUser],
        tokens: Iterable[HubToken],
        gated: dict[str, set[str]] | None = None,
        tree_page_size: int = 1000,
        lfs_multipart_chunk_size: int | None = None,
        max_body_bytes: int = 256 * 1024 * 1024,
        max_storage_bytes: int = 1024 * 1024 * 1024,
        max_log: int = 10_000,
        max_repos: int = 1000,
    ):
        self.users: dict[str, HubUser] = {u.name: u for u in users}
        self.tokens: dict[str, HubToken] = {t.value: t for t in tokens}
        self.gated: dict[str, set[str]] = {k: set(v) for k, v in (gated or {}).items()}
        self.repos: dict[str, EmulatedRepo] = {}  # repo_id for models, "datasets/<repo_id>" for datasets
        self.requests: list[tuple[str, str, int]] = []
        self.records: list[RequestRecord] = []
        self.tree_page_size = max(1, int(tree_page_size))
        self.lfs_multipart_chunk_size = lfs_multipart_chunk_size
        self.max_body_bytes = max_body_bytes
        self.max_storage_bytes = max_storage_bytes
        self.max_log = max_log
        self.max_repos = max_repos
        self._lock = threading.RLock()
        self._faults: list[_Fault] = []
        self._parts: dict[tuple[str, str], dict[int, bytes]] = {}
        self._secret = secrets.token_bytes(32)
        self._stopping = threading.Event()
        self._commit_counter = 0
        self._hub: _Server | None = None
        self._cdn: _Server | None = None
        self._threads: list[threading.Thread] = []
        self.url = ""
        self.cdn_url = ""

    # ---------------------------------------------------------------- lifecycle
    def start(self) -> HubEmulator:
        if self._hub is not None:
            return self
        self._stopping.clear()
        self._hub = _Server(self, "hub")
        self._cdn = _Server(self, "cdn")
        self.url = f"http://127.0.0.1:{self._hub.server_address[1]}"
        self.cdn_url = f"http://127.0.0.1:{self._cdn.server_address[1]}"
        for srv in (self._hub, self._cdn):
            t = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05},
                                 name=f"hub-emulator-{srv.role}", daemon=True)
            t.start()
            self._threads.append(t)
        return self

    def stop(self) -> None:
        self._stopping.set()
        for srv in (self._hub, self._cdn):
            if srv is not None:
                srv.shutdown()
                srv.server_close()
                srv.close_connections()
        for t in self._threads:
            t.join(timeout=5)
        self._threads.clear()
        self._hub = self._cdn = None

    def __enter__(self) -> HubEmulator:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    # ---------------------------------------------------------------- test-facing API
    def client_env(self, hf_home: str | os.PathLike[str]) -> dict[str, str]:
        """Environment for a *subprocess* that runs the real client against this emulator (set before import)."""
        return {
            "HF_ENDPOINT": self.url,
            "HF_HOME": os.fspath(hf_home),
            "HF_HUB_DISABLE_XET": "1",
            "HF_HUB_DISABLE_TELEMETRY": "1",
            "HF_HUB_DISABLE_PROGRESS_BARS": "1",
        }

    def add_model(self, repo_id: str, files: dict[str, bytes], *, gated: bool | str = False,
                  private: bool = False, message: str = "Upload model") -> str:
        """Create (or update) a model repo holding ``files``; returns the new head commit sha."""
        return self._add_repo("model", repo_id, files, gated=gated, private=private, message=message)

    def add_dataset(self, repo_id: str, files: dict[str, bytes], *, gated: bool | str = False,
                    private: bool = False, message: str = "Upload dataset") -> str:
        return self._add_repo("dataset", repo_id, files, gated=gated, private=private, message=message)

    def _add_repo(self, repo_type: str, repo_id: str, files: dict[str, bytes], *, gated: bool | str,
                  private: bool, message: str) -> str:
        if repo_id.count("/") != 1:
            raise ValueError("repo_id must be 'namespace/name'")
        for path in files:
            if err := _validate_path(path):
                raise ValueError(err)
        gated_value: bool | str = ("manual" if gated is True else gated) or (
            "manual" if repo_id in self.gated else False)
        with self._lock:
            repo = self._get_repo(repo_type, repo_id)
            if repo is None:
                repo = self._create_repo(repo_type, repo_id, private=private)
            repo.private = private
            repo.gated = gated_value
            blobs = dict(repo.head.blobs)
            attrs = files.get(".gitattributes", blobs[".gitattributes"].data if ".gitattributes" in blobs else b"")
            patterns = _gitattributes_lfs_patterns(attrs)
            for path, data in files.items():
                data = bytes(data)
                lfs = self._should_be_lfs(path, len(data), data[:512], patterns)
                if lfs:
                    repo.lfs_objects[hashlib.sha256(data).hexdigest()] = data
                blobs[path] = _Blob.make(data, lfs)
            return self._append_commit(repo, blobs, message, "").id

    def grant_access(self, repo_id: str, user: str) -> None:
        with self._lock:
            self.gated.setdefault(repo_id, set()).add(user)

    def revoke_token(self, value: str) -> None:
        with self._lock:
            self.tokens.pop(value, None)

    def file_bytes(self, repo_id: str, path: str, *, repo_type: str = "model") -> bytes:
        with self._lock:
            repo = self._get_repo(repo_type, repo_id)
            if repo is None:
                raise KeyError(repo_id)
            return repo.head.blobs[path].data

    def repo(self, repo_id: str, *, repo_type: str = "model") -> EmulatedRepo:
        with self._lock:
            repo = self._get_repo(repo_type, repo_id)
            if repo is None:
                raise KeyError(repo_id)
            return repo

    def fail_next(self, n: int = 1, status: int = 500, path_contains: str | None = None, *,
                  method: str | None = None, html: bool = False, headers: dict[str, str] | None = None,
                  message: str | None = None) -> None:
        """Answer the next ``n`` matching requests with ``status`` (JSON error body, or an HTML page if ``html``).

        ``path_contains`` is matched against the raw request target (path and query), on both servers.
        ``headers`` are added to the response (e.g. ``{"Retry-After": "0"}``, ``{"X-Error-Code": "GatedRepo"}``).
        """
        with self._lock:
            self._faults.append(_Fault("fail", n, path_contains, method, status=status, html=html,
                                       headers=dict(headers or {}), message=message))

    def drop_next(self, n: int = 1, path_contains: str | None = None, *, method: str | None = None) -> None:
        """On the next ``n`` matching requests, read at most half of the body, then close the socket unanswered."""
        with self._lock:
            self._faults.append(_Fault("drop", n, path_contains, method))

    def truncate_next(self, n: int = 1, path_contains: str | None = None, *, method: str | None = None) -> None:
        """Answer the next ``n`` matching requests with full headers but only half of the body, then close."""
        with self._lock:
            self._faults.append(_Fault("truncate", n, path_contains, method))

    def stall_next(self, n: int = 1, seconds: float = 5.0, path_contains: str | None = None, *,
                   method: str | None = None) -> None:
        """Delay the answer to the next ``n`` matching requests by ``seconds`` (max 300), e.g. to hit timeouts."""
        with self._lock:
            self._faults.append(_Fault("stall", n, path_contains, method, seconds=min(float(seconds), 300.0)))

    def clear_faults(self) -> None:
        with self._lock:
            self._faults.clear()

    def clear_log(self) -> None:
        with self._lock:
            self.requests.clear()
            self.records.clear()

    # ---------------------------------------------------------------- state helpers (lock held)
    @staticmethod
    def _key(repo_type: str, repo_id: str) -> str:
        return f"{_URL_PREFIX[repo_type]}{repo_id}"

    def _get_repo(self, repo_type: str, repo_id: str) -> EmulatedRepo | None:
        return self.repos.get(self._key(repo_type, repo_id))

    def _create_repo(self, repo_type: str, repo_id: str, *, private: bool) -> EmulatedRepo:
        repo = EmulatedRepo(repo_id=repo_id, repo_type=repo_type, private=private,
                            gated="manual" if repo_id in self.gated else False)
        self.repos[self._key(repo_type, repo_id)] = repo
        self._append_commit(repo, {".gitattributes": _Blob.make(DEFAULT_GITATTRIBUTES, False)}, "initial commit", "")
        return repo

    def _append_commit(self, repo: EmulatedRepo, blobs: dict[str, _Blob], message: str,
                       description: str) -> EmulatedCommit:
        self._commit_counter += 1
        parent = repo.commits[-1].id if repo.commits else None
        tree = _git_tree_ids(blobs)[""]
        oid = hashlib.sha1(
            f"tree {tree}\nparent {parent}\n{self._commit_counter}\n{time.time_ns()}\n\n{message}".encode()
        ).hexdigest()
        commit = EmulatedCommit(id=oid, message=message, description=description, parent=parent, blobs=blobs,
                                date=datetime.now(timezone.utc))
        repo.commits.append(commit)
        return commit

    def _stored_bytes(self) -> int:
        total = 0
        for repo in self.repos.values():
            total += sum(len(v) for v in repo.lfs_objects.values())
            total += sum(b.size for b in repo.head.blobs.values() if not b.lfs)
        total += sum(len(part) for parts in self._parts.values() for part in parts.values())
        return total

    @staticmethod
    def _should_be_lfs(path: str, size: int, sample: bytes, patterns: list[str]) -> bool:
        if size == 0:
            return False
        if size > MAX_REGULAR_FILE_SIZE or b"\0" in sample:
            return True
        return any(_path_matches(p, path) for p in patterns)

    def _member(self, user: str | None, namespace: str) -> bool:
        if user is None:
            return False
        u = self.users.get(user)
        return u is not None and (namespace == u.name or namespace in u.orgs)

    def _can_read(self, tok: HubToken | None, repo: EmulatedRepo) -> bool:
        return not repo.private or (tok is not None and self._member(tok.user, repo.namespace))

    def _can_download(self, tok: HubToken | None, repo: EmulatedRepo) -> bool:
        if not self._can_read(tok, repo):
            return False
        if not repo.gated:
            return True
        return tok is not None and (self._member(tok.user, repo.namespace) or tok.user in self.gated.get(repo.repo_id, ()))

    def _sign(self, *parts: str) -> str:
        return hmac.new(self._secret, "\n".join(parts).encode(), hashlib.sha256).hexdigest()[:32]

    def _log(self, server: str, method: str, raw_path: str, status: int, headers: Any) -> None:
        split = urlsplit(raw_path)
        with self._lock:
            self.requests.append((method, split.path, status))
            self.records.append(RequestRecord(
                server=server, method=method, path=split.path, query=split.query, status=status,
                authorization=headers.get("Authorization") is not None,
                user_agent=headers.get("User-Agent", "")))
            if len(self.requests) > self.max_log:
                del self.requests[: len(self.requests) - self.max_log]
            if len(self.records) > self.max_log:
                del self.records[: len(self.records) - self.max_log]

    def _take_fault(self, method: str, raw_path: str,
                    kinds: tuple[str, ...] = ("fail", "drop", "stall", "truncate")) -> _Fault | None:
        with self._lock:
            for fault in self._faults:
                if fault.kind in kinds and fault.remaining > 0 and fault.matches(method, raw_path):
                    fault.remaining -= 1
                    if fault.remaining <= 0:
                        self._faults.remove(fault)
                    return fault
        return None

    # ---------------------------------------------------------------- HTTP plumbing
    def _handle(self, h: _Handler) -> None:
        method = h.command
        raw_path = h.path
        role = h.server.role
        try:
            length, chunked, bad = self._body_framing(h)
            fault = self._take_fault(method, raw_path)
            if fault is not None and fault.kind == "stall":
                self._stopping.wait(fault.seconds)
                fault = self._take_fault(method, raw_path, kinds=("fail", "drop", "truncate"))
            if fault is not None and fault.kind == "drop":
                self._log(role, method, raw_path, 0, h.headers)
                h.close_connection = True
                if length:
                    self._read_exact(h, min(length // 2, 1024 * 1024))
                h.connection.shutdown(socket.SHUT_RDWR)
                return
            if bad is not None:
                self._log(role, method, raw_path, bad.status, h.headers)
                self._send(h, bad, method)
                return
            body = self._read_chunked(h) if chunked else self._read_exact(h, length)
            if body is None:  # chunked body over the limit
                resp = _error(413, "Request body too large")
                resp.close = True
            elif fault is not None and fault.kind == "fail":
                resp = self._fault_response(fault)
            else:
                try:
                    resp = self._route(role, method, raw_path, h.headers, body)
                except Exception as exc:  # noqa: BLE001 - an emulator bug must surface as a 500, not a hang
                    resp = _error(500, f"Hub emulator internal error: {type(exc).__name__}: {exc}")
            truncate = fault is not None and fault.kind == "truncate"
            # log before answering, so that a test sees the entry as soon as the client has its response
            self._log(role, method, raw_path, 0 if truncate else resp.status, h.headers)
            self._send(h, resp, method, truncate=truncate)
        except (ConnectionError, socket.timeout, OSError):
            h.close_connection = True

    def _body_framing(self, h: _Handler) -> tuple[int, bool, _Resp | None]:
        te = (h.headers.get("Transfer-Encoding") or "").lower()
        if "chunked" in te:
            return 0, True, None
        cl = h.headers.get("Content-Length")
        if cl is None:
            return 0, False, None
        try:
            length = int(cl)
            if length < 0:
                raise ValueError
        except ValueError:
            resp = _error(400, "Invalid Content-Length")
            resp.close = True
            return 0, False, resp
        if length > self.max_body_bytes:
            resp = _error(413, f"Request body too large ({length} > {self.max_body_bytes} bytes)")
            resp.close = True  # the body is never read; the connection cannot be reused
            return 0, False, resp
        return length, False, None

    @staticmethod
    def _read_exact(h: _Handler, n: int) -> bytes:
        chunks = []
        remaining = n
        while remaining > 0:
            chunk = h.rfile.read(min(remaining, 1024 * 1024))
            if not chunk:
                raise ConnectionError("client closed the connection mid-body")
            chunks.append(chunk)
            remaining -= len(chunk)
        return b"".join(chunks)

    def _read_chunked(self, h: _Handler) -> bytes | None:
        out = bytearray()
        while True:
            line = h.rfile.readline(1024)
            if not line:
                raise ConnectionError("client closed the connection mid-body")
            size = int(line.split(b";", 1)[0].strip() or b"0", 16)
            if size == 0:
                while h.rfile.readline(1024) not in (b"\r\n", b"\n", b""):
                    pass
                return bytes(out)
            if len(out) + size > self.max_body_bytes:
                h.close_connection = True
                return None
            out += self._read_exact(h, size)
            h.rfile.readline(1024)

    @staticmethod
    def _fault_response(fault: _Fault) -> _Resp:
        reason = {500: "Internal Server Error", 502: "Bad Gateway", 503: "Service Unavailable",
                  504: "Gateway Timeout", 429: "Too Many Requests"}.get(fault.status, "Error")
        message = fault.message or f"{fault.status} {reason} (injected by HubEmulator)"
        if fault.html:
            page = (f"<!DOCTYPE html><html><head><title>{fault.status} {html.escape(reason)}</title></head>"
                    f"<body><h1>{html.escape(message)}</h1></body></html>").encode()
            return _Resp(fault.status, page, {"Content-Type": "text/html; charset=utf-8", **fault.headers})
        return _error(fault.status, message, headers=fault.headers)

    def _send(self, h: _Handler, resp: _Resp, method: str, truncate: bool = False) -> None:
        h.send_response(resp.status)
        headers = {"X-Request-Id": f"Root=1-{secrets.token_hex(4)}-{secrets.token_hex(12)}"}
        headers.update(resp.headers)
        headers["Content-Length"] = str(len(resp.body)) if "Content-Length" not in resp.headers else resp.headers[
            "Content-Length"]
        if resp.close:
            headers["Connection"] = "close"
            h.close_connection = True
        for k, v in headers.items():
            h.send_header(k, v)
        h.end_headers()
        if truncate:
            if method != "HEAD":
                h.wfile.write(resp.body[: len(resp.body) // 2])
            h.wfile.flush()
            h.close_connection = True
            h.connection.shutdown(socket.SHUT_RDWR)
            return
        if method != "HEAD" and resp.body:
            h.wfile.write(resp.body)
        h.wfile.flush()

    # ---------------------------------------------------------------- routing
    def _auth(self, headers: Any) -> tuple[HubToken | None, _Resp | None]:
        value = headers.get("Authorization")
        if value is None:
            return None, None
        scheme, _, token = value.partition(" ")
        with self._lock:
            tok = self.tokens.get(token.strip()) if scheme.lower() == "bearer" else None
            if tok is None or tok.user not in self.users:
                return None, _error(401, _INVALID_TOKEN_MSG)
        return tok, None

    def _route(self, role: str, method: str, raw_path: str, headers: Any, body: bytes) -> _Resp:
        split = urlsplit(raw_path)
        path = split.path
        query = parse_qs(split.query, keep_blank_values=True)
        if role == "cdn":
            if headers.get("Authorization") is not None:
                # S3 / CloudFront refuse presigned URLs that also carry another auth mechanism.
                return _Resp(400, b"<?xml version=\"1.0\" encoding=\"UTF-8\"?><Error><Code>InvalidArgument</Code>"
                                  b"<Message>Only one auth mechanism allowed</Message></Error>",
                             {"Content-Type": "application/xml"})
            return self._route_cdn(method, path, query, headers, body)

        tok, err = self._auth(headers)
        if err is not None:
            return err

        if path == "/api/whoami-v2" and method == "GET":
            return self._whoami(tok)
        if path == "/api/agent-harnesses" and method == "GET":
            return _json(200, {"standardEnvVars": [], "harnesses": {}})
        if path == "/api/repos/create" and method == "POST":
            return self._create(tok, body)
        if path == "/api/repos/delete" and method == "DELETE":
            return self._delete(tok, body)
        if path == "/api/validate-yaml" and method == "POST":
            return self._validate_yaml(body)

        m = re.match(r"^/api/(models|datasets)/([^/]+)/([^/]+)(/.*)?$", path)
        if m:
            repo_type = m.group(1)[:-1]
            repo_id = f"{unquote(m.group(2))}/{unquote(m.group(3))}"
            return self._repo_api(tok, method, repo_type, repo_id, m.group(4) or "", query, headers, body, path)

        m = re.match(r"^/(datasets/)?([^/]+)/([^/]+)\.git/info/lfs/(objects/batch|objects/verify|complete_multipart/"
                     r"[0-9a-f]{64})$", path)
        if m and method == "POST":
            repo_type = "dataset" if m.group(1) else "model"
            repo_id = f"{unquote(m.group(2))}/{unquote(m.group(3))}"
            return self._lfs(tok, repo_type, repo_id, m.group(4), query, body)

        m = re.match(r"^/(datasets/)?([^/]+)/([^/]+)/resolve/([^/]+)/(.+)$", path)
        if m and method in ("GET", "HEAD"):
            repo_type = "dataset" if m.group(1) else "model"
            repo_id = f"{unquote(m.group(2))}/{unquote(m.group(3))}"
            return self._resolve(tok, method, repo_type, repo_id, unquote(m.group(4)), unquote(m.group(5)), headers)

        return _error(404, f"Not found (the Hub emulator has no route for {method} {path})")

    def _not_found(self, tok: HubToken | None) -> _Resp:
        if tok is None:
            return _error(401, "Repository not found", "RepoNotFound")
        return _error(404, "Repository not found", "RepoNotFound")

    def _visible_repo(self, tok: HubToken | None, repo_type: str, repo_id: str) -> tuple[EmulatedRepo | None, _Resp | None]:
        repo = self._get_repo(repo_type, repo_id)
        if repo is None or not self._can_read(tok, repo):
            return None, self._not_found(tok)
        return repo, None

    def _writable_repo(self, tok: HubToken | None, repo_type: str, repo_id: str) -> tuple[EmulatedRepo | None, _Resp | None]:
        repo, err = self._visible_repo(tok, repo_type, repo_id)
        if err is not None:
            return None, err
        assert repo is not None
        if tok is None:
            return None, _error(401, "You must be authenticated to write to this repository")
        if tok.role != "write" or not self._member(tok.user, repo.namespace):
            return None, _error(403, f"You don't have the rights to write to {repo_type} {repo_id}: "
                                     f"a write token of {repo.namespace!r} or one of its members is needed")
        return repo, None

    def _revision(self, repo: EmulatedRepo, rev: str) -> tuple[EmulatedCommit | None, _Resp | None]:
        commit = repo.commit_for(rev)
        if commit is None:
            return None, _error(404, f"Invalid rev id: {rev}", "RevisionNotFound")
        return commit, None

    # ---------------------------------------------------------------- account
    def _whoami(self, tok: HubToken | None) -> _Resp:
        if tok is None:
            return _error(401, "Invalid username or password.")
        with self._lock:
            user = self.users[tok.user]
            return _json(200, {
                "type": "user",
                "id": hashlib.sha1(user.name.encode()).hexdigest()[:24],
                "name": user.name,
                "fullname": user.fullname or user.name,
                "email": user.email or f"{user.name}@example.invalid",
                "emailVerified": True,
                "canPay": False,
                "isPro": False,
                "periodEnd": None,
                "avatarUrl": "/avatars/default.svg",
                "orgs": [{"type": "org", "name": org, "fullname": org, "id": hashlib.sha1(org.encode()).hexdigest()[:24],
                          "roleInOrg": "write", "isEnterprise": False} for org in user.orgs],
                "auth": {"type": "access_token", "accessToken": {"displayName": f"{tok.role}-token",
                                                                 "role": tok.role, "createdAt": "2025-01-01T00:00:00.000Z"}},
            })

    def _create(self, tok: HubToken | None, body: bytes) -> _Resp:
        try:
            payload = json.loads(body or b"{}")
            assert isinstance(payload, dict)
        except (ValueError, AssertionError):
            return _error(400, "Invalid JSON body")
        if tok is None:
            return _error(401, "Invalid username or password.")
        repo_type = payload.get("type") or "model"
        if repo_type not in _REPO_TYPES:
            return _error(400, f"Repo type {repo_type!r} is not emulated (only model and dataset)")
        name = payload.get("name")
        namespace = payload.get("organization") or tok.user
        if not isinstance(name, str) or not _NAME_RE.match(name) or not isinstance(namespace, str):
            return _error(400, "Invalid repo name")
        visibility = payload.get("visibility")
        private = visibility == "private" if visibility is not None else bool(payload.get("private", False))
        repo_id = f"{namespace}/{name}"
        url = f"{self.url}/{_URL_PREFIX[repo_type]}{repo_id}"
        with self._lock:
            if tok.role != "write":
                return _error(403, "You don't have the rights to create a repo: this token is read-only")
            if not self._member(tok.user, namespace):
                return _error(403, f"You don't have the rights to create a {repo_type} under the namespace "
                                   f"\"{namespace}\"")
            if self._get_repo(repo_type, repo_id) is None and len(self.repos) >= self.max_repos:
                return _error(403, f"Hub emulator repo limit reached ({self.max_repos})")
            if self._get_repo(repo_type, repo_id) is not None:
                return _json(409, {"error": f"You already created this {repo_type} repo", "url": url},
                             {"X-Error-Message": f"You already created this {repo_type} repo"})
            repo = self._create_repo(repo_type, repo_id, private=private)
            return _json(200, {"url": url, "name": repo_id, "id": repo.sha[:24]})

    def _delete(self, tok: HubToken | None, body: bytes) -> _Resp:
        try:
            payload = json.loads(body or b"{}")
            assert isinstance(payload, dict)
        except (ValueError, AssertionError):
            return _error(400, "Invalid JSON body")
        if tok is None:
            return _error(401, "Invalid username or password.")
        repo_type = payload.get("type") or "model"
        repo_id = f"{payload.get('organization') or tok.user}/{payload.get('name')}"
        with self._lock:
            if repo_type not in _REPO_TYPES:
                return self._not_found(tok)
            repo, err = self._writable_repo(tok, repo_type, repo_id)
            if err is not None:
                return err
            del self.repos[self._key(repo_type, repo_id)]
        return _Resp(200, b"", {"Content-Type": "text/plain"})

    @staticmethod
    def _validate_yaml(body: bytes) -> _Resp:
        try:
            payload = json.loads(body or b"{}")
            content = payload["content"]
            assert isinstance(content, str)
        except (ValueError, KeyError, AssertionError, TypeError):
            return _json(400, {"errors": [{"message": "Invalid request body"}]})
        m = re.match(r"^\s*---\s*\n(.*?)\n---\s*(\n|$)", content, re.S)
        if m:
            try:
                import yaml  # pyyaml is a podtune dependency
            except ImportError:  # pragma: no cover
                return _json(200, {"errors": [], "warnings": []})
            try:
                meta = yaml.safe_load(m.group(1))
            except yaml.YAMLError as exc:
                return _json(400, {"errors": [{"message": f"Invalid YAML in README.md metadata: {exc}"}]})
            if meta is not None and not isinstance(meta, dict):
                return _json(400, {"errors": [{"message": "README.md metadata must be a YAML mapping"}]})
        return _json(200, {"errors": [], "warnings": []})

    # ---------------------------------------------------------------- /api/{models,datasets}/{id}/...
    def _repo_api(self, tok: HubToken | None, method: str, repo_type: str, repo_id: str, rest: str,
                  query: dict[str, list[str]], headers: Any, body: bytes, path: str) -> _Resp:
        with self._lock:
            if rest in ("", "/") and method == "GET":
                return self._info(tok, repo_type, repo_id, "main", query)
            m = re.match(r"^/revision/([^/]+)$", rest)
            if m and method == "GET":
                return self._info(tok, repo_type, repo_id, unquote(m.group(1)), query)
            m = re.match(r"^/tree/([^/]+)(/.*)?$", rest)
            if m and method == "GET":
                return self._tree(tok, repo_type, repo_id, unquote(m.group(1)),
                                  unquote((m.group(2) or "").strip("/")), query, path)
            m = re.match(r"^/paths-info/([^/]+)$", rest)
            if m and method == "POST":
                return self._paths_info(tok, repo_type, repo_id, unquote(m.group(1)), headers, body)
            m = re.match(r"^/preupload/([^/]+)$", rest)
            if m and method == "POST":
                return self._preupload(tok, repo_type, repo_id, unquote(m.group(1)), body)
            m = re.match(r"^/commit/([^/]+)$", rest)
            if m and method == "POST":
                return self._commit(tok, repo_type, repo_id, unquote(m.group(1)), query, body)
            if rest in ("/auth-check", "/auth-check/write") and method == "GET":
                return self._auth_check(tok, repo_type, repo_id, write=rest.endswith("/write"))
            if rest.startswith("/xet-write-token/") or rest.startswith("/xet-read-token/"):
                return _error(404, "Xet is not emulated: set HF_HUB_DISABLE_XET=1 before using the Hub emulator")
            if rest == "/settings" and method == "PUT":
                return self._settings(tok, repo_type, repo_id, body)
        return _error(404, f"Not found (the Hub emulator has no route for {method} {path})")

    def _sibling(self, path: str, blob: _Blob, blobs: bool) -> dict:
        entry: dict[str, Any] = {"rfilename": path}
        if blobs:
            entry["size"] = blob.size
            entry["blobId"] = blob.blob_id
            if blob.lfs:
                entry["lfs"] = {"sha256": blob.sha256, "size": blob.size, "pointerSize": blob.pointer_size}
        return entry

    def _info(self, tok: HubToken | None, repo_type: str, repo_id: str, rev: str, query: dict) -> _Resp:
        repo, err = self._visible_repo(tok, repo_type, repo_id)
        if err is not None:
            return err
        assert repo is not None
        commit, err = self._revision(repo, rev)
        if err is not None:
            return err
        assert commit is not None
        blobs = query.get("blobs", ["false"])[-1].lower() in ("1", "true")
        info: dict[str, Any] = {
            "_id": hashlib.sha1(repo.repo_id.encode()).hexdigest()[:24],
            "id": repo.repo_id,
            "author": repo.namespace,
            "sha": commit.id,
            "lastModified": _iso(commit.date),
            "createdAt": _iso(repo.created_at),
            "private": repo.private,
            "gated": repo.gated,
            "disabled": False,
            "downloads": 0,
            "likes": 0,
            "tags": [],
            "cardData": _card_data(commit.blobs.get("README.md")),
            "siblings": [self._sibling(p, b, blobs) for p, b in sorted(commit.blobs.items())],
            "usedStorage": sum(b.size for b in commit.blobs.values()),
        }
        if repo_type == "model":
            info["modelId"] = repo.repo_id
            info["spaces"] = []
        else:
            info["description"] = ""
        return _json(200, info)

    def _tree_entry(self, path: str, blob: _Blob) -> dict:
        entry: dict[str, Any] = {"type": "file", "oid": blob.blob_id, "size": blob.size, "path": path}
        if blob.lfs:
            entry["lfs"] = {"oid": blob.sha256, "size": blob.size, "pointerSize": blob.pointer_size}
        return entry

    def _tree(self, tok: HubToken | None, repo_type: str, repo_id: str, rev: str, sub: str, query: dict,
              path: str) -> _Resp:
        repo, err = self._visible_repo(tok, repo_type, repo_id)
        if err is not None:
            return err
        assert repo is not None
        commit, err = self._revision(repo, rev)
        if err is not None:
            return err
        assert commit is not None
        recursive = query.get("recursive", ["false"])[-1].lower() in ("1", "true")
        tree_ids = _git_tree_ids(commit.blobs)
        if sub and sub not in tree_ids:
            if sub in commit.blobs:  # the real Hub lists a file path as itself
                entries = [self._tree_entry(sub, commit.blobs[sub])]
                return _json(200, entries)
            return _error(404, f"Entry not found: {sub}", "EntryNotFound", headers={"X-Repo-Commit": commit.id})
        prefix = f"{sub}/" if sub else ""
        dirs = [d for d in tree_ids if d and d.startswith(prefix) and (recursive or "/" not in d[len(prefix):])]
        files = [p for p in commit.blobs if p.startswith(prefix) and (recursive or "/" not in p[len(prefix):])]
        entries = [{"type": "directory", "oid": tree_ids[d], "size": 0, "path": d} for d in sorted(dirs)]
        entries += [self._tree_entry(p, commit.blobs[p]) for p in sorted(files)]
        try:
            cursor = max(0, int(query.get("cursor", ["0"])[-1]))
        except ValueError:
            return _error(400, "Invalid cursor")
        page = entries[cursor: cursor + self.tree_page_size]
        headers = {}
        if cursor + self.tree_page_size < len(entries):
            params = f"recursive={'true' if recursive else 'false'}&expand=false&cursor={cursor + self.tree_page_size}"
            headers["Link"] = f'<{self.url}{path}?{params}>; rel="next"'
        return _json(200, page, headers)

    def _paths_info(self, tok: HubToken | None, repo_type: str, repo_id: str, rev: str, headers: Any,
                    body: bytes) -> _Resp:
        repo, err = self._visible_repo(tok, repo_type, repo_id)
        if err is not None:
            return err
        assert repo is not None
        commit, err = self._revision(repo, rev)
        if err is not None:
            return err
        assert commit is not None
        ctype = (headers.get("Content-Type") or "").lower()
        if "json" in ctype:
            try:
                paths = json.loads(body).get("paths", [])
            except (ValueError, AttributeError):
                return _error(400, "Invalid JSON body")
        else:
            paths = parse_qs(body.decode("utf-8", "replace"), keep_blank_values=True).get("paths", [])
        tree_ids = _git_tree_ids(commit.blobs)
        out = []
        for p in paths if isinstance(paths, list) else []:
            p = str(p).strip("/")
            if p in commit.blobs:
                out.append(self._tree_entry(p, commit.blobs[p]))
            elif p in tree_ids and p:
                out.append({"type": "directory", "oid": tree_ids[p], "size": 0, "path": p})
        return _json(200, out)

    def _preupload(self, tok: HubToken | None, repo_type: str, repo_id: str, rev: str, body: bytes) -> _Resp:
        repo, err = self._writable_repo(tok, repo_type, repo_id)
        if err is not None:
            return err
        assert repo is not None
        commit, err = self._revision(repo, rev)
        if err is not None:
            return err
        assert commit is not None
        try:
            payload = json.loads(body)
            files = payload["files"]
            assert isinstance(files, list) and len(files) <= 1000
        except (ValueError, KeyError, AssertionError, TypeError):
            return _error(400, "Invalid preupload payload: expected {\"files\": [{\"path\", \"sample\", \"size\"}]}")
        attrs = commit.blobs.get(".gitattributes")
        patterns = _gitattributes_lfs_patterns(attrs.data if attrs else None)
        ignore_src = payload.get("gitIgnore")
        if ignore_src is None and ".gitignore" in commit.blobs:
            ignore_src = commit.blobs[".gitignore"].data.decode("utf-8", "replace")
        ignores = [ln.strip() for ln in (ignore_src or "").splitlines() if ln.strip() and not ln.startswith("#")]
        out = []
        for f in files:
            try:
                path, size = f["path"], int(f["size"])
                sample = base64.b64decode(f.get("sample", ""), validate=False)
            except (KeyError, TypeError, ValueError):
                return _error(400, f"Invalid preupload entry: {f!r}")
            if e := _validate_path(path):
                return _error(400, e)
            lfs = self._should_be_lfs(path, size, sample, patterns)
            existing = commit.blobs.get(path)
            oid = None
            if existing is not None:
                oid = existing.sha256 if existing.lfs else existing.blob_id
            out.append({"path": path, "uploadMode": "lfs" if lfs else "regular",
                        "shouldIgnore": any(_path_matches(p, path) for p in ignores), "oid": oid})
        return _json(200, {"files": out, "commitOid": commit.id})

    def _commit(self, tok: HubToken | None, repo_type: str, repo_id: str, rev: str, query: dict,
                body: bytes) -> _Resp:
        repo, err = self._writable_repo(tok, repo_type, repo_id)
        if err is not None:
            return err
        assert repo is not None
        commit, err = self._revision(repo, rev)
        if err is not None:
            return err
        assert commit is not None
        if query.get("create_pr", ["0"])[-1] not in ("0", "", "false"):
            return _error(501, "create_pr is not emulated by the Hub emulator")
        if commit is not repo.head:
            return _error(400, f"Cannot commit to {rev}: not a branch")
        try:
            lines = [json.loads(ln) for ln in body.decode("utf-8").splitlines() if ln.strip()]
        except (UnicodeDecodeError, ValueError):
            return _error(400, "Invalid NDJSON commit payload")
        if not lines or not isinstance(lines[0], dict) or lines[0].get("key") != "header":
            return _error(400, "The first line of a commit payload must be the header")
        header = lines[0].get("value") or {}
        summary = header.get("summary")
        if not isinstance(summary, str) or not summary.strip():
            return _error(400, "Commit summary is required")
        parent = header.get("parentCommit")
        if parent is not None and parent != repo.sha:
            return _error(412, "A commit has happened since. Please refresh and try again.")
        blobs = dict(commit.blobs)
        attrs = blobs.get(".gitattributes")
        for line in lines[1:]:
            if not isinstance(line, dict) or not isinstance(line.get("value"), dict):
                return _error(400, f"Invalid commit operation: {line!r}")
            key, value = line.get("key"), line["value"]
            path = value.get("path")
            if key in ("file", "lfsFile", "deletedFile") and (e := _validate_path(path)):
                return _error(400, e)
            if key == "file":
                if value.get("encoding") != "base64" or not isinstance(value.get("content"), str):
                    return _error(400, f"Invalid file operation for {path}: base64 content expected")
                try:
                    data = base64.b64decode(value["content"], validate=True)
                except ValueError:
                    return _error(400, f"Invalid base64 content for {path}")
                if path == ".gitattributes":
                    attrs = _Blob.make(data, False)
                patterns = _gitattributes_lfs_patterns(attrs.data if attrs else None)
                if len(data) > MAX_REGULAR_FILE_SIZE:
                    return _error(400, "Your push was rejected because it contains files larger than 10 MiB. "
                                       "Please use https://git-lfs.github.com/ to store large files.")
                if data and (b"\0" in data[:8000] or any(_path_matches(p, path) for p in patterns)):
                    return _error(400, "Your push was rejected because it contains binary files. "
                                       "Please use https://git-lfs.github.com/ to store binary files.")
                blobs[path] = _Blob.make(data, False)
            elif key == "lfsFile":
                oid = value.get("oid")
                if value.get("algo", "sha256") != "sha256" or not isinstance(oid, str) or not _SHA256_RE.match(oid):
                    return _error(400, f"Invalid lfsFile operation for {path}")
                data = repo.lfs_objects.get(oid)
                if data is None:
                    return _error(400, "Your push was rejected because an LFS pointer pointed to a file that "
                                       f"does not exist. For instance: {path} (oid {oid})")
                if value.get("size") is not None and value["size"] != len(data):
                    return _error(400, f"LFS pointer size mismatch for {path}")
                blobs[path] = _Blob.make(data, True)
            elif key == "deletedFile":
                if path not in blobs:
                    return _error(404, f"A file with this name doesn't exist: {path}", "EntryNotFound")
                del blobs[path]
            elif key == "deletedFolder":
                folder = str(path or "").strip("/")
                doomed = [p for p in blobs if p.startswith(folder + "/")] if folder else []
                if not doomed:
                    return _error(404, f"A folder with this name doesn't exist: {path}", "EntryNotFound")
                for p in doomed:
                    del blobs[p]
            else:
                return _error(400, f"Unknown commit operation key: {key!r}")
        new_regular = sum(b.size for p, b in blobs.items() if not b.lfs and commit.blobs.get(p) is not b)
        if self._stored_bytes() + new_regular > self.max_storage_bytes:
            return _error(413, "Hub emulator storage limit reached")
        new = self._append_commit(repo, blobs, summary, str(header.get("description") or ""))
        commit_url = f"{self.url}/{_URL_PREFIX[repo_type]}{repo_id}/commit/{new.id}"
        return _json(200, {"success": True, "commitOid": new.id, "commitUrl": commit_url, "hookOutput": ""})

    def _auth_check(self, tok: HubToken | None, repo_type: str, repo_id: str, *, write: bool) -> _Resp:
        repo, err = self._visible_repo(tok, repo_type, repo_id)
        if err is not None:
            return err
        assert repo is not None
        if write:
            _, err = self._writable_repo(tok, repo_type, repo_id)
            return err or _json(200, {})
        if not self._can_download(tok, repo):
            return self._gated_error(tok, repo)
        return _json(200, {})

    def _settings(self, tok: HubToken | None, repo_type: str, repo_id: str, body: bytes) -> _Resp:
        repo, err = self._writable_repo(tok, repo_type, repo_id)
        if err is not None:
            return err
        assert repo is not None
        try:
            payload = json.loads(body or b"{}")
        except ValueError:
            return _error(400, "Invalid JSON body")
        if "private" in payload:
            repo.private = bool(payload["private"])
        if "gated" in payload:
            repo.gated = payload["gated"] if payload["gated"] in ("auto", "manual") else False
        return _json(200, {})

    def _gated_error(self, tok: HubToken | None, repo: EmulatedRepo) -> _Resp:
        kind = "model" if repo.repo_type == "model" else repo.repo_type
        if tok is None:
            return _error(401, f"Access to {kind} {repo.repo_id} is restricted. You must have access to it and be "
                               "authenticated to access it. Please log in.", "GatedRepo")
        return _error(403, f"Access to {kind} {repo.repo_id} is restricted and you are not in the authorized list. "
                           f"Visit https://huggingface.co/{_URL_PREFIX[repo.repo_type]}{repo.repo_id} to ask for access.",
                      "GatedRepo")

    # ---------------------------------------------------------------- git-LFS
    def _lfs(self, tok: HubToken | None, repo_type: str, repo_id: str, action: str, query: dict,
             body: bytes) -> _Resp:
        lfs_headers = {"Content-Type": "application/vnd.git-lfs+json"}
        with self._lock:
            if action.startswith("complete_multipart/"):
                return self._complete_multipart(repo_type, repo_id, action.split("/", 1)[1], query, body)
            repo, err = self._writable_repo(tok, repo_type, repo_id)
            if err is not None:
                return err
            assert repo is not None
            try:
                payload = json.loads(body)
                assert isinstance(payload, dict)
            except (ValueError, AssertionError):
                return _error(400, "Invalid JSON body")
            if action == "objects/verify":
                oid, size = payload.get("oid"), payload.get("size")
                data = repo.lfs_objects.get(oid) if isinstance(oid, str) else None
                if data is None:
                    return _error(404, f"Object {oid} not found")
                if size != len(data):
                    return _error(422, f"Object {oid} size mismatch: {size} != {len(data)}")
                return _json(200, {"success": True}, lfs_headers)
            # objects/batch
            if payload.get("operation") != "upload":
                return _error(422, "Only the upload operation is emulated")
            objects = payload.get("objects")
            if not isinstance(objects, list) or len(objects) > 1000:
                return _error(422, "Invalid objects list")
            transfers = payload.get("transfers") or ["basic"]
            out = []
            for obj in objects:
                oid, size = obj.get("oid") if isinstance(obj, dict) else None, obj.get("size") if isinstance(obj, dict) else None
                if not isinstance(oid, str) or not _SHA256_RE.match(oid) or not isinstance(size, int) or size < 0:
                    out.append({"oid": str(oid), "size": size if isinstance(size, int) else 0,
                                "error": {"code": 422, "message": "Invalid oid or size"}})
                    continue
                entry: dict[str, Any] = {"oid": oid, "size": size, "authenticated": True}
                if oid in repo.lfs_objects:
                    out.append(entry)  # already stored: no actions
                    continue
                if size > self.max_body_bytes and not (self.lfs_multipart_chunk_size and "multipart" in transfers):
                    out.append({"oid": oid, "size": size,
                                "error": {"code": 422, "message": "Object too large for the Hub emulator"}})
                    continue
                prefix = _URL_PREFIX[repo_type]
                sig = self._sign("upload", repo_type, repo_id, oid, str(size))
                verify = {"href": f"{self.url}/{prefix}{repo_id}.git/info/lfs/objects/verify", "header": {}}
                chunk = self.lfs_multipart_chunk_size
                if chunk and "multipart" in transfers and size > chunk:
                    n_parts = math.ceil(size / chunk)
                    header = {"chunk_size": str(chunk)}
                    for i in range(1, n_parts + 1):
                        psig = self._sign("part", repo_type, repo_id, oid, str(size), str(i))
                        header[str(i)] = (f"{self.cdn_url}/lfs-part/{repo_type}/{quote(repo_id)}/{oid}/{i}"
                                          f"?size={size}&sig={psig}")
                    upload = {"href": f"{self.url}/{prefix}{repo_id}.git/info/lfs/complete_multipart/{oid}"
                                      f"?size={size}&sig={sig}", "header": header}
                else:
                    upload = {"href": f"{self.cdn_url}/lfs-upload/{repo_type}/{quote(repo_id)}/{oid}"
                                      f"?size={size}&sig={sig}"}
                entry["actions"] = {"upload": upload, "verify": verify}
                out.append(entry)
            chosen = "multipart" if any("chunk_size" in (o.get("actions", {}).get("upload", {}).get("header") or {})
                                        for o in out) else "basic"
            return _json(200, {"transfer": chosen, "objects": out, "hash_algo": "sha256"}, lfs_headers)

    def _complete_multipart(self, repo_type: str, repo_id: str, oid: str, query: dict, body: bytes) -> _Resp:
        size_s, sig = query.get("size", [""])[-1], query.get("sig", [""])[-1]
        if not hmac.compare_digest(sig, self._sign("upload", repo_type, repo_id, oid, size_s)):
            return _error(403, "Invalid signature")
        repo = self._get_repo(repo_type, repo_id)
        if repo is None:
            return _error(404, "Repository not found", "RepoNotFound")
        try:
            payload = json.loads(body)
            parts = payload["parts"]
            assert payload.get("oid") == oid and isinstance(parts, list)
        except (ValueError, KeyError, AssertionError, TypeError):
            return _error(400, "Invalid completion payload")
        stored = self._parts.get((self._key(repo_type, repo_id), oid), {})
        data = bytearray()
        for i, part in enumerate(parts, start=1):
            if part.get("partNumber") != i or i not in stored:
                return _error(400, f"Missing or out-of-order part {i}")
            if part.get("etag") != f'"{hashlib.md5(stored[i]).hexdigest()}"':
                return _error(400, f"ETag mismatch for part {i}")
            data += stored[i]
        if len(data) != int(size_s) or hashlib.sha256(data).hexdigest() != oid:
            return _error(400, "Assembled object does not match its oid/size")
        repo.lfs_objects[oid] = bytes(data)
        self._parts.pop((self._key(repo_type, repo_id), oid), None)
        return _json(200, {"success": True})

    def _route_cdn(self, method: str, path: str, query: dict, headers: Any, body: bytes) -> _Resp:
        m = re.match(r"^/lfs-(upload|part|cdn)/(model|dataset)/([^/]+/[^/]+)/([0-9a-f]{64})(?:/(\d+))?$",
                     unquote(path))
        if not m:
            return _Resp(404, b"<Error><Code>NoSuchKey</Code></Error>", {"Content-Type": "application/xml"})
        kind, repo_type, repo_id, oid, part = m.groups()
        size_s, sig = query.get("size", [""])[-1], query.get("sig", [""])[-1]
        forbidden = _Resp(403, b"<Error><Code>SignatureDoesNotMatch</Code></Error>", {"Content-Type": "application/xml"})
        with self._lock:
            repo = self._get_repo(repo_type, repo_id)
            if kind == "upload" and method == "PUT":
                if not hmac.compare_digest(sig, self._sign("upload", repo_type, repo_id, oid, size_s)):
                    return forbidden
                if repo is None:
                    return _Resp(404, b"<Error><Code>NoSuchBucket</Code></Error>", {"Content-Type": "application/xml"})
                if len(body) != int(size_s) or hashlib.sha256(body).hexdigest() != oid:
                    return _Resp(400, b"<Error><Code>BadDigest</Code><Message>The sha256 you specified did not "
                                      b"match what we received.</Message></Error>", {"Content-Type": "application/xml"})
                if oid not in repo.lfs_objects and self._stored_bytes() + len(body) > self.max_storage_bytes:
                    return _Resp(507, b"<Error><Code>QuotaExceeded</Code></Error>", {"Content-Type": "application/xml"})
                repo.lfs_objects[oid] = body
                return _Resp(200, b"", {"ETag": f'"{hashlib.md5(body).hexdigest()}"'})
            if kind == "part" and method == "PUT" and part:
                if not hmac.compare_digest(sig, self._sign("part", repo_type, repo_id, oid, size_s, part)):
                    return forbidden
                chunk = self.lfs_multipart_chunk_size or 0
                n_parts = math.ceil(int(size_s) / chunk) if chunk else 0
                expected = min(chunk, int(size_s) - chunk * (int(part) - 1)) if chunk else -1
                if repo is None or not 1 <= int(part) <= n_parts or len(body) != expected:
                    return _Resp(400, b"<Error><Code>InvalidPart</Code></Error>", {"Content-Type": "application/xml"})
                if self._stored_bytes() + len(body) > self.max_storage_bytes:
                    return _Resp(507, b"<Error><Code>QuotaExceeded</Code></Error>", {"Content-Type": "application/xml"})
                self._parts.setdefault((self._key(repo_type, repo_id), oid), {})[int(part)] = body
                return _Resp(200, b"", {"ETag": f'"{hashlib.md5(body).hexdigest()}"'})
            if kind == "cdn" and method in ("GET", "HEAD"):
                if not hmac.compare_digest(sig, self._sign("cdn", repo_type, repo_id, oid)):
                    return forbidden
                data = repo.lfs_objects.get(oid) if repo is not None else None
                if data is None:
                    return _Resp(404, b"<Error><Code>NoSuchKey</Code></Error>", {"Content-Type": "application/xml"})
                filename = query.get("filename", ["file"])[-1]
                extra = {"ETag": f'"{oid}"', "Content-Type": "application/octet-stream",
                         "Content-Disposition": f"attachment; filename*=UTF-8''{quote(filename)}; "
                                                f"filename=\"{filename}\";"}
                return self._ranged(data, headers, extra)
        return _Resp(405, b"<Error><Code>MethodNotAllowed</Code></Error>", {"Content-Type": "application/xml"})

    @staticmethod
    def _ranged(data: bytes, headers: Any, extra: dict[str, str]) -> _Resp:
        extra = {"Accept-Ranges": "bytes", **extra}
        rng = headers.get("Range")
        if rng:
            m = re.fullmatch(r"\s*bytes=(\d*)-(\d*)\s*", rng)
            if m and (m.group(1) or m.group(2)):
                if m.group(1):
                    start = int(m.group(1))
                    end = int(m.group(2)) if m.group(2) else len(data) - 1
                else:  # suffix range
                    start, end = max(0, len(data) - int(m.group(2))), len(data) - 1
                end = min(end, len(data) - 1)
                if start >= len(data) or start > end:
                    return _Resp(416, b"", {**extra, "Content-Range": f"bytes */{len(data)}"})
                return _Resp(206, data[start: end + 1], {**extra, "Content-Range": f"bytes {start}-{end}/{len(data)}"})
        return _Resp(200, data, extra)

    # ---------------------------------------------------------------- /resolve
    def _resolve(self, tok: HubToken | None, method: str, repo_type: str, repo_id: str, rev: str, path: str,
                 headers: Any) -> _Resp:
        with self._lock:
            repo, err = self._visible_repo(tok, repo_type, repo_id)
            if err is not None:
                return err
            assert repo is not None
            if not self._can_download(tok, repo):
                return self._gated_error(tok, repo)
            commit, err = self._revision(repo, rev)
            if err is not None:
                return err
            assert commit is not None
            blob = commit.blobs.get(path)
            if blob is None:
                return _error(404, "Entry not found", "EntryNotFound", headers={"X-Repo-Commit": commit.id})
            common = {"X-Repo-Commit": commit.id, "Accept-Ranges": "bytes", "Vary": "Origin, Accept"}
            if blob.lfs:
                sig = self._sign("cdn", repo_type, repo_id, blob.sha256)
                filename = path.rsplit("/", 1)[-1]
                location = (f"{self.cdn_url}/lfs-cdn/{repo_type}/{quote(repo_id)}/{blob.sha256}"
                            f"?filename={quote(filename)}&sig={sig}")
                body = f"Found. Redirecting to {location}".encode()
                return _Resp(302, body, {**common, "Location": location, "Content-Type": "text/plain; charset=utf-8",
                                         "ETag": f'"{blob.sha256}"', "X-Linked-Etag": f'"{blob.sha256}"',
                                         "X-Linked-Size": str(blob.size)})
            return self._ranged(blob.data, headers, {**common, "ETag": f'"{blob.blob_id}"',
                                                     "Content-Type": "text/plain; charset=utf-8"})


def patch_huggingface_hub(monkeypatch: Any, emu: HubEmulator, hf_home: str | os.PathLike[str]) -> None:
    """Point an *already imported* huggingface_hub at ``emu`` for this test (pytest ``monkeypatch``).

    huggingface_hub reads most settings into ``huggingface_hub.constants`` at import time, so setting environment
    variables inside a test is not enough once it has been imported. This patches those constants (endpoint, Xet
    off, telemetry off, progress bars off, HF_HOME / cache / token paths under ``hf_home``) and the matching
    environment variables (for subprocesses), and removes ``HF_TOKEN`` so no real token is picked up. Prefer
    ``HfApi(endpoint=emu.url, token=...)`` and ``endpoint=emu.url`` on the download helpers anyway: the
    module-level ``huggingface_hub.whoami`` & co. are bound to an ``HfApi`` created at import.
    """
    from huggingface_hub import constants

    home = os.fspath(hf_home)
    os.makedirs(home, exist_ok=True)
    for key, value in emu.client_env(home).items():
        monkeypatch.setenv(key, value)
    for key in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_TOKEN_PATH",
                "HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE", "HF_XET_CACHE"):
        monkeypatch.delenv(key, raising=False)
    patches = {
        # both or neither: hf_hub_url() builds from the template and swaps in `endpoint=` only when the template
        # starts with constants.ENDPOINT; patching ENDPOINT alone sends downloads to https://huggingface.co.
        "ENDPOINT": emu.url,
        "HUGGINGFACE_CO_URL_TEMPLATE": emu.url + "/{repo_id}/resolve/{revision}/{filename}",
        "HF_HUB_DISABLE_XET": True,
        "HF_HUB_DISABLE_TELEMETRY": True,
        "HF_HUB_DISABLE_PROGRESS_BARS": True,
        "HF_HUB_OFFLINE": False,
        "HF_HOME": home,
        "HF_HUB_CACHE": os.path.join(home, "hub"),
        "HF_TOKEN_PATH": os.path.join(home, "token"),
        "HF_STORED_TOKENS_PATH": os.path.join(home, "stored_tokens"),
        "AGENT_HARNESSES_PATH": os.path.join(home, ".agent_harnesses.json"),
        "HF_XET_CACHE": os.path.join(home, "xet"),
        "HF_ASSETS_CACHE": os.path.join(home, "assets"),
    }
    for name, value in patches.items():
        if hasattr(constants, name):
            monkeypatch.setattr(constants, name, value)
    try:  # utils.tqdm copied the constant at import
        from huggingface_hub.utils import tqdm as hf_tqdm

        monkeypatch.setattr(hf_tqdm, "HF_HUB_DISABLE_PROGRESS_BARS", True, raising=False)
    except ImportError:  # pragma: no cover
        pass


def _card_data(readme: _Blob | None) -> dict | None:
    """The README's YAML front matter, as the real Hub serves it in cardData (e.g. a dataset's features)."""
    import yaml

    text = readme.data.decode("utf-8", "replace") if readme is not None else ""
    if not text.startswith("---\n") or "\n---" not in text[4:]:
        return None
    loaded = yaml.safe_load(text[4:text.index("\n---", 4)])
    return loaded if isinstance(loaded, dict) else None
