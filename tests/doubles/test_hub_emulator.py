"""The Hub emulator, driven by the real huggingface_hub client (2.4.0, httpx2 stack).

Every test points the already-imported client at a fresh emulator through `patch_huggingface_hub` (constants
are read at import) and always passes `endpoint=emu.url` / `HfApi(endpoint=emu.url)`.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from .hub_emulator import HubEmulator, HubToken, HubUser, git_blob_sha1, patch_huggingface_hub

hf = pytest.importorskip("huggingface_hub")
from huggingface_hub import HfApi, hf_hub_download, snapshot_download  # noqa: E402
from huggingface_hub.errors import (  # noqa: E402
    GatedRepoError,
    HfHubHTTPError,
    RemoteEntryNotFoundError,
    RepositoryNotFoundError,
    RevisionNotFoundError,
)

ALICE_W, ALICE_R, BOB_W = "hf_alice_write", "hf_alice_read", "hf_bob_write"
README = "---\nlicense: apache-2.0\ntags:\n- podtune\n---\n# tiny model\n"


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("model")
    (d / "README.md").write_text(README)
    (d / "config.json").write_text(json.dumps({"model_type": "llama", "hidden_size": 8}))
    (d / "tokenizer.json").write_text(json.dumps({"version": "1.0", "model": {"vocab": {"a": 0}}}))
    # > 10 MB so that it must take the LFS path whatever its name
    (d / "model.safetensors").write_bytes(os.urandom(10 * 1024 * 1024 + 12345))
    return d


def _make(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, **kwargs) -> HubEmulator:
    emu = HubEmulator(
        users=[HubUser("alice", orgs=["acme"]), HubUser("bob")],
        tokens=[HubToken(ALICE_W, "alice", "write"), HubToken(ALICE_R, "alice", "read"),
                HubToken(BOB_W, "bob", "write")],
        **kwargs,
    ).start()
    patch_huggingface_hub(monkeypatch, emu, tmp_path / "hf_home")
    return emu


@pytest.fixture
def emu(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    emu = _make(tmp_path, monkeypatch)
    yield emu
    emu.stop()


def _sha256(p: Path) -> str:
    return hashlib.sha256(p.read_bytes()).hexdigest()


def _upload(api: HfApi, model_dir: Path, repo_id: str, msg: str = "push model"):
    return api.upload_folder(folder_path=str(model_dir), repo_id=repo_id, commit_message=msg)


# ---------------------------------------------------------------------------------------------------------- auth
def test_whoami_ok_and_bad_or_revoked_token(emu: HubEmulator) -> None:
    me = HfApi(endpoint=emu.url, token=ALICE_W).whoami()
    assert me["name"] == "alice"
    assert [o["name"] for o in me["orgs"]] == ["acme"]
    assert me["auth"]["accessToken"]["role"] == "write"
    assert HfApi(endpoint=emu.url, token=ALICE_R).whoami()["auth"]["accessToken"]["role"] == "read"

    with pytest.raises(HfHubHTTPError, match="Invalid user token") as exc:
        HfApi(endpoint=emu.url, token="hf_nope").whoami()
    assert exc.value.response.status_code == 401

    emu.revoke_token(BOB_W)
    with pytest.raises(HfHubHTTPError) as exc:
        HfApi(endpoint=emu.url, token=BOB_W).whoami()
    assert exc.value.response.status_code == 401
    assert ("GET", "/api/whoami-v2", 401) in emu.requests


def test_create_repo_private_exist_ok_and_permissions(emu: HubEmulator) -> None:
    api = HfApi(endpoint=emu.url, token=ALICE_W)
    url = api.create_repo("alice/tiny", private=True)
    assert url == f"{emu.url}/alice/tiny" and url.repo_id == "alice/tiny"
    assert api.create_repo("alice/tiny", private=True, exist_ok=True) == url  # 409 with JSON url
    with pytest.raises(HfHubHTTPError) as exc:
        api.create_repo("alice/tiny", private=True)
    assert exc.value.response.status_code == 409
    repo = emu.repos["alice/tiny"]
    assert repo.private and list(repo.files) == [".gitattributes"]  # the Hub's initial commit
    assert api.create_repo("acme/org-model").repo_id == "acme/org-model"  # an org of alice

    # read token: cannot create (403), nor write into another namespace
    with pytest.raises(HfHubHTTPError, match="403 Forbidden") as exc:
        HfApi(endpoint=emu.url, token=ALICE_R).create_repo("alice/other")
    assert exc.value.response.status_code == 403
    with pytest.raises(HfHubHTTPError) as exc:
        api.create_repo("bob/stolen")
    assert exc.value.response.status_code == 403
    assert "alice/other" not in emu.repos and "bob/stolen" not in emu.repos
    # a read token with exist_ok=True on an existing repo "succeeds" (the client falls back to repo_info on 403):
    # check write access with auth_check(write=True) instead
    assert HfApi(endpoint=emu.url, token=ALICE_R).create_repo("alice/tiny", exist_ok=True) == url
    with pytest.raises(HfHubHTTPError) as exc:
        HfApi(endpoint=emu.url, token=ALICE_R).auth_check("alice/tiny", write=True)
    assert exc.value.response.status_code == 403
    assert HfApi(endpoint=emu.url, token=ALICE_W).auth_check("alice/tiny", write=True) is None

    # private repo: invisible to others (404 authenticated, 401 anonymous), visible to its owner's read token
    for token in (BOB_W, False):
        with pytest.raises(RepositoryNotFoundError) as exc:
            HfApi(endpoint=emu.url, token=token).model_info("alice/tiny")
        assert not isinstance(exc.value, GatedRepoError)
        assert exc.value.response.status_code == (404 if token else 401)
    assert HfApi(endpoint=emu.url, token=ALICE_R).model_info("alice/tiny").private is True
    assert api.repo_exists("alice/tiny") and not HfApi(endpoint=emu.url, token=BOB_W).repo_exists("alice/tiny")


# ---------------------------------------------------------------------------------------------------------- upload
def test_upload_folder_lfs_and_regular_then_noop(emu: HubEmulator, model_dir: Path) -> None:
    api = HfApi(endpoint=emu.url, token=ALICE_W)
    api.create_repo("alice/tiny", private=True)
    emu.clear_log()
    info = _upload(api, model_dir, "alice/tiny")
    assert info.oid == emu.repos["alice/tiny"].sha and info.commit_url.endswith(f"/alice/tiny/commit/{info.oid}")
    sent = [(m, p.split("/")[-1] if "lfs-upload" in p else p, s) for m, p, s in emu.requests]
    oid = _sha256(model_dir / "model.safetensors")
    assert sent == [
        ("POST", "/api/validate-yaml", 200),
        ("POST", "/api/validate-yaml", 200),
        ("POST", "/api/models/alice/tiny/preupload/main", 200),
        ("POST", "/alice/tiny.git/info/lfs/objects/batch", 200),
        ("PUT", oid, 200),
        ("POST", "/alice/tiny.git/info/lfs/objects/verify", 200),
        ("POST", "/api/models/alice/tiny/commit/main", 200),
    ]
    put = next(r for r in emu.records if r.method == "PUT")
    assert put.server == "cdn" and not put.authorization  # the token never reaches the object store

    repo = emu.repos["alice/tiny"]
    for name in ("README.md", "config.json", "tokenizer.json", "model.safetensors"):
        assert emu.file_bytes("alice/tiny", name) == (model_dir / name).read_bytes()
    assert repo.head.lfs_paths == {"model.safetensors"}
    assert repo.head.message == "push model"

    # tree listing and files metadata: sizes, blob sha1 and LFS sha256 equal to the local files
    tree = {f.path: f for f in api.list_repo_tree("alice/tiny", recursive=True)}
    siblings = {s.rfilename: s for s in api.model_info("alice/tiny", files_metadata=True).siblings}
    for name in ("README.md", "config.json", "tokenizer.json", "model.safetensors"):
        local = model_dir / name
        for entry in (tree[name], siblings[name]):
            assert entry.size == local.stat().st_size
        if name == "model.safetensors":
            assert tree[name].lfs.sha256 == siblings[name].lfs.sha256 == oid
            assert tree[name].lfs.size == local.stat().st_size and tree[name].lfs.pointer_size > 100
        else:
            assert tree[name].lfs is None and siblings[name].lfs is None
            assert tree[name].blob_id == siblings[name].blob_id == git_blob_sha1(local.read_bytes())
    paths = api.get_paths_info("alice/tiny", ["config.json", "model.safetensors", "missing.txt"])
    assert sorted(p.path for p in paths) == ["config.json", "model.safetensors"]
    assert sorted(api.list_repo_files("alice/tiny")) == sorted([".gitattributes", *(p.name for p in model_dir.iterdir())])

    # identical second upload: the real client skips the commit and returns the current head
    n_commits = len(repo.commits)
    emu.clear_log()
    again = _upload(api, model_dir, "alice/tiny", "same again")
    assert again.oid == info.oid and len(repo.commits) == n_commits
    assert ("GET", "/api/models/alice/tiny/revision/main", 200) in emu.requests
    assert not any("/commit/" in p or m == "PUT" for m, p, _ in emu.requests)

    # one small change: one new commit, the LFS object is not uploaded again
    changed = model_dir.parent / "changed"
    changed.mkdir()
    for p in model_dir.iterdir():
        (changed / p.name).write_bytes(p.read_bytes())
    (changed / "config.json").write_text('{"model_type": "llama", "hidden_size": 16}')
    emu.clear_log()
    third = _upload(api, changed, "alice/tiny", "bigger")
    assert third.oid != info.oid and len(repo.commits) == n_commits + 1
    assert emu.file_bytes("alice/tiny", "config.json") == (changed / "config.json").read_bytes()
    assert not any(m == "PUT" for m, _, _ in emu.requests)
    # old revisions stay addressable by sha
    assert api.model_info("alice/tiny", revision=info.oid).sha == info.oid


def test_read_token_and_foreign_namespace_cannot_upload(emu: HubEmulator, model_dir: Path) -> None:
    HfApi(endpoint=emu.url, token=ALICE_W).create_repo("alice/tiny")
    with pytest.raises(HfHubHTTPError) as exc:
        _upload(HfApi(endpoint=emu.url, token=ALICE_R), model_dir, "alice/tiny")
    assert exc.value.response.status_code == 403
    with pytest.raises(HfHubHTTPError) as exc:
        _upload(HfApi(endpoint=emu.url, token=BOB_W), model_dir, "alice/tiny")
    assert exc.value.response.status_code == 403
    assert list(emu.repos["alice/tiny"].files) == [".gitattributes"]


def test_invalid_readme_metadata_is_refused(emu: HubEmulator, tmp_path: Path) -> None:
    api = HfApi(endpoint=emu.url, token=ALICE_W)
    api.create_repo("alice/tiny")
    d = tmp_path / "bad"
    d.mkdir()
    (d / "README.md").write_text("---\nlicense: [unclosed\n---\nhi\n")
    with pytest.raises(ValueError, match="Invalid metadata in README.md"):
        _upload(api, d, "alice/tiny")


def test_delete_parent_commit_and_regular_binary_rule(emu: HubEmulator) -> None:
    from huggingface_hub import CommitOperationAdd

    api = HfApi(endpoint=emu.url, token=ALICE_W)
    api.create_repo("alice/tiny")
    first = api.upload_file(path_or_fileobj=b"a", path_in_repo="old.txt", repo_id="alice/tiny")
    api.upload_file(path_or_fileobj=b"b", path_in_repo="new.txt", repo_id="alice/tiny")
    api.delete_file("old.txt", repo_id="alice/tiny")
    assert sorted(emu.repos["alice/tiny"].files) == [".gitattributes", "new.txt"]
    with pytest.raises(RemoteEntryNotFoundError):
        api.delete_file("old.txt", repo_id="alice/tiny")
    with pytest.raises(HfHubHTTPError) as exc:  # stale parent commit
        api.create_commit("alice/tiny", [CommitOperationAdd("x.txt", b"x")], commit_message="x",
                          parent_commit=first.oid)
    assert exc.value.response.status_code == 412

    # a client that skips preupload and commits a binary file inline is refused, as on the Hub
    line = {"key": "file", "value": {"content": "AAEC", "path": "w.bin", "encoding": "base64"}}
    body = (json.dumps({"key": "header", "value": {"summary": "raw"}}) + "\n" + json.dumps(line) + "\n").encode()
    req = urllib.request.Request(f"{emu.url}/api/models/alice/tiny/commit/main", data=body, method="POST",
                                 headers={"Authorization": f"Bearer {ALICE_W}",
                                          "Content-Type": "application/x-ndjson"})
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(req, timeout=10)
    assert err.value.code == 400 and "binary files" in err.value.headers["X-Error-Message"]


def test_tree_pagination_follows_link_header(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    emu = _make(tmp_path, monkeypatch, tree_page_size=2)
    try:
        files = {f"data/part-{i}.txt": f"{i}".encode() for i in range(5)}
        emu.add_model("alice/paged", files)
        api = HfApi(endpoint=emu.url, token=ALICE_W)
        assert sorted(api.list_repo_files("alice/paged")) == sorted([".gitattributes", *files])
        pages = [p for m, p, _ in emu.requests if "/tree/" in p]
        assert len(pages) >= 3
        top = list(api.list_repo_tree("alice/paged"))
        assert {t.path for t in top} == {".gitattributes", "data"}
        assert sorted(t.path for t in api.list_repo_tree("alice/paged", path_in_repo="data")) == sorted(files)
    finally:
        emu.stop()


# ---------------------------------------------------------------------------------------------------------- faults
def test_5xx_on_preupload_and_lfs_batch_are_retried_by_the_client(emu: HubEmulator, model_dir: Path) -> None:
    api = HfApi(endpoint=emu.url, token=ALICE_W)
    api.create_repo("alice/tiny")
    emu.fail_next(2, 500, "/preupload/")
    emu.fail_next(1, 503, "/info/lfs/objects/batch", html=True)
    t0 = time.monotonic()
    info = _upload(api, model_dir, "alice/tiny")
    assert info.oid == emu.repos["alice/tiny"].sha
    assert [s for m, p, s in emu.requests if "/preupload/" in p] == [500, 500, 200]
    assert [s for m, p, s in emu.requests if p.endswith("/objects/batch")] == [503, 200]
    assert time.monotonic() - t0 >= 3  # http_backoff slept 1 s + 2 s, then 1 s
    assert emu.file_bytes("alice/tiny", "model.safetensors") == (model_dir / "model.safetensors").read_bytes()


def test_5xx_on_commit_is_not_retried(emu: HubEmulator, model_dir: Path) -> None:
    api = HfApi(endpoint=emu.url, token=ALICE_W)
    api.create_repo("alice/tiny")
    emu.fail_next(1, 500, "/commit/")
    with pytest.raises(HfHubHTTPError) as exc:
        _upload(api, model_dir, "alice/tiny")
    assert exc.value.response.status_code == 500
    assert [s for m, p, s in emu.requests if "/commit/" in p] == [500]
    assert list(emu.repos["alice/tiny"].files) == [".gitattributes"]
    # the LFS object is already stored: podtune's own retry only re-sends preupload/batch/commit
    emu.clear_log()
    _upload(api, model_dir, "alice/tiny")
    assert not any(m == "PUT" for m, _, _ in emu.requests)
    assert "model.safetensors" in emu.repos["alice/tiny"].files


def test_dropped_lfs_put_is_retried_by_the_client(emu: HubEmulator, model_dir: Path) -> None:
    api = HfApi(endpoint=emu.url, token=ALICE_W)
    api.create_repo("alice/tiny")
    emu.drop_next(1, "/lfs-upload/")
    _upload(api, model_dir, "alice/tiny")
    assert [s for m, p, s in emu.requests if m == "PUT"] == [0, 200]
    assert emu.file_bytes("alice/tiny", "model.safetensors") == (model_dir / "model.safetensors").read_bytes()


def test_dropped_commit_raises_a_raw_transport_error(emu: HubEmulator, model_dir: Path) -> None:
    import httpx2

    api = HfApi(endpoint=emu.url, token=ALICE_W)
    api.create_repo("alice/tiny")
    emu.drop_next(1, "/commit/")
    with pytest.raises(httpx2.RemoteProtocolError):
        _upload(api, model_dir, "alice/tiny")


def test_multipart_lfs_upload(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, model_dir: Path) -> None:
    emu = _make(tmp_path, monkeypatch, lfs_multipart_chunk_size=4 * 1024 * 1024)
    try:
        api = HfApi(endpoint=emu.url, token=ALICE_W)
        api.create_repo("alice/tiny")
        _upload(api, model_dir, "alice/tiny")
        parts = [r for r in emu.records if "/lfs-part/" in r.path]
        assert len(parts) == 3 and all(r.status == 200 and not r.authorization for r in parts)
        assert any("complete_multipart" in p and s == 200 for _, p, s in emu.requests)
        assert emu.file_bytes("alice/tiny", "model.safetensors") == (model_dir / "model.safetensors").read_bytes()
    finally:
        emu.stop()


def test_stall_hits_the_callers_timeout(emu: HubEmulator) -> None:
    import httpx2

    emu.add_model("alice/tiny", {"config.json": b"{}"})
    emu.stall_next(1, 3.0, "/api/models/alice/tiny")
    with pytest.raises(httpx2.TimeoutException):
        HfApi(endpoint=emu.url, token=ALICE_W).model_info("alice/tiny", timeout=0.5)


# ---------------------------------------------------------------------------------------------------------- downloads
def test_download_served_model(emu: HubEmulator, tmp_path: Path) -> None:
    weights = os.urandom(3 * 1024 * 1024)
    files = {"config.json": b'{"model_type": "llama"}', "model.safetensors": weights, "tok/tokenizer.json": b"{}"}
    sha = emu.add_model("podtune/tiny-llama", files)
    cache = tmp_path / "cache"

    p = hf_hub_download("podtune/tiny-llama", "model.safetensors", endpoint=emu.url, token=False, cache_dir=cache)
    assert Path(p).read_bytes() == weights and f"/snapshots/{sha}/" in p
    cdn = [r for r in emu.records if r.server == "cdn"]
    assert cdn and all(not r.authorization for r in cdn)  # 302 to the CDN; the token is not forwarded
    assert ("HEAD", "/podtune/tiny-llama/resolve/main/model.safetensors", 302) in emu.requests

    snap = snapshot_download("podtune/tiny-llama", endpoint=emu.url, token=ALICE_W, cache_dir=cache)
    for name, data in files.items():
        assert (Path(snap) / name).read_bytes() == data
    assert (Path(snap) / ".gitattributes").exists()

    # an interrupted CDN download is retried by http_get (with a Range header only once a whole 10 MB chunk
    # has been written, so here it starts over: 200)
    emu.truncate_next(1, "/lfs-cdn/", method="GET")
    p2 = hf_hub_download("podtune/tiny-llama", "model.safetensors", endpoint=emu.url, cache_dir=tmp_path / "c2")
    assert Path(p2).read_bytes() == weights
    assert [s for m, p, s in emu.requests if "/lfs-cdn/" in p][-2:] == [0, 200]

    with pytest.raises(RemoteEntryNotFoundError):
        hf_hub_download("podtune/tiny-llama", "nope.bin", endpoint=emu.url, cache_dir=cache)
    with pytest.raises(RevisionNotFoundError):
        hf_hub_download("podtune/tiny-llama", "config.json", revision="0" * 40, endpoint=emu.url,
                        cache_dir=tmp_path / "c3")


def test_gated_model_needs_access(emu: HubEmulator, tmp_path: Path) -> None:
    emu.add_model("meta/llama", {"config.json": b"{}", "model.safetensors": b"\0" * 1000}, gated=True)
    bob = HfApi(endpoint=emu.url, token=BOB_W)
    info = bob.model_info("meta/llama")  # metadata stays public
    assert info.gated == "manual" and {s.rfilename for s in info.siblings} >= {"config.json"}

    with pytest.raises(GatedRepoError) as exc:
        bob.auth_check("meta/llama")
    assert exc.value.response.status_code == 403
    with pytest.raises(GatedRepoError):
        hf_hub_download("meta/llama", "config.json", endpoint=emu.url, token=BOB_W, cache_dir=tmp_path / "c")
    with pytest.raises(GatedRepoError) as exc:  # anonymous: 401 + GatedRepo
        hf_hub_download("meta/llama", "config.json", endpoint=emu.url, token=False, cache_dir=tmp_path / "c")
    assert exc.value.response.status_code == 401

    emu.grant_access("meta/llama", "bob")
    assert bob.auth_check("meta/llama") is None
    p = snapshot_download("meta/llama", endpoint=emu.url, token=BOB_W, cache_dir=tmp_path / "c")
    assert (Path(p) / "model.safetensors").read_bytes() == b"\0" * 1000


def test_gated_from_constructor_and_private_downloads(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    emu = _make(tmp_path, monkeypatch, gated={"meta/llama": {"alice"}})
    try:
        emu.add_model("meta/llama", {"config.json": b"{}"})
        emu.add_model("alice/secret", {"config.json": b"{}"}, private=True)
        assert HfApi(endpoint=emu.url, token=ALICE_R).auth_check("meta/llama") is None
        with pytest.raises(GatedRepoError):
            HfApi(endpoint=emu.url, token=BOB_W).auth_check("meta/llama")
        with pytest.raises(RepositoryNotFoundError) as exc:
            hf_hub_download("alice/secret", "config.json", endpoint=emu.url, token=BOB_W, cache_dir=tmp_path / "c")
        assert not isinstance(exc.value, GatedRepoError)
        assert hf_hub_download("alice/secret", "config.json", endpoint=emu.url, token=ALICE_R,
                               cache_dir=tmp_path / "c")
        with pytest.raises(HfHubHTTPError) as exc:  # an unknown token is refused everywhere
            hf_hub_download("meta/llama", "config.json", endpoint=emu.url, token="hf_bad", cache_dir=tmp_path / "d")
        assert exc.value.response.status_code == 401
    finally:
        emu.stop()


def test_cdn_refuses_a_forwarded_token(emu: HubEmulator) -> None:
    emu.add_model("alice/tiny", {"model.safetensors": b"weights"})
    req = urllib.request.Request(f"{emu.url}/alice/tiny/resolve/main/model.safetensors", method="HEAD")
    opener = urllib.request.build_opener(type("NoRedirect", (urllib.request.HTTPRedirectHandler,),
                                              {"redirect_request": lambda *a, **k: None}))
    with pytest.raises(urllib.error.HTTPError) as err:
        opener.open(req, timeout=10)
    location = err.value.headers["Location"]
    assert err.value.code == 302 and location.startswith(emu.cdn_url)
    assert err.value.headers["X-Linked-Size"] == "7"
    with urllib.request.urlopen(location, timeout=10) as r:
        assert r.read() == b"weights"
    with urllib.request.urlopen(urllib.request.Request(location, headers={"Range": "bytes=3-"}), timeout=10) as r:
        assert r.status == 206 and r.read() == b"ghts" and r.headers["Content-Range"] == "bytes 3-6/7"
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(urllib.request.Request(location, headers={"Authorization": "Bearer x"}), timeout=10)
    assert err.value.code == 400


def test_dataset_repo(emu: HubEmulator, tmp_path: Path) -> None:
    emu.add_dataset("acme/chat", {"train.jsonl": b'{"q": "hi", "a": "yo"}\n'})
    p = hf_hub_download("acme/chat", "train.jsonl", repo_type="dataset", endpoint=emu.url, cache_dir=tmp_path)
    assert Path(p).read_bytes() == b'{"q": "hi", "a": "yo"}\n'
    assert HfApi(endpoint=emu.url).list_repo_files("acme/chat", repo_type="dataset") == [".gitattributes", "train.jsonl"]


def test_subprocess_client_with_env_and_token_file(emu: HubEmulator, tmp_path: Path) -> None:
    """The pod's path: env set before huggingface_hub is imported, token in $HF_HOME/token (0600)."""
    import subprocess
    import sys

    emu.add_model("meta/llama", {"config.json": b'{"x": 1}'}, gated=True)
    emu.grant_access("meta/llama", "bob")
    home = tmp_path / "pod_hf"
    home.mkdir()
    (home / "token").write_text(BOB_W)
    (home / "token").chmod(0o600)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "HUGGING"))}
    env.update(emu.client_env(home))
    code = (
        "from huggingface_hub import snapshot_download, whoami\n"
        "print(whoami()['name'])\n"
        "print(open(snapshot_download('meta/llama') + '/config.json').read())\n"
    )
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["bob", '{"x":', "1}"]
    assert (home / "hub" / "models--meta--llama").is_dir()
