"""remote.push against the Hub emulator, in process: byte-equal upload, real numbers in the card, retries, no token leaks."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pytest

from remote import hub_retry, push
from remote.events import EventLog, read_events
from tests.doubles.hub_emulator import HubEmulator, HubToken, HubUser, patch_huggingface_hub
from tests.recipes import recipe_variant

CANARY = "hf_CANARY" + "x7Q2mZp4Lw9Rt3Vb8Nc1Kd6Hy5Fg0Js2"  # shaped like a real token: redactors must catch it
READ = "hf_alice_read_token_0123456789abcdef"
REPO_ID = "alice/tiny-tuned"
LOSSES = [3.1234 - 0.0611 * i for i in range(24)]  # steps 1..24, final 1.7181


@pytest.fixture
def hub(tmp_path, monkeypatch):
    emu = HubEmulator(users=[HubUser("alice", orgs=["acme"])],
                      tokens=[HubToken(CANARY, "alice", "write"), HubToken(READ, "alice", "read")]).start()
    patch_huggingface_hub(monkeypatch, emu, tmp_path / "hf_home")
    monkeypatch.setattr(hub_retry, "BASE_DELAY_S", 0.05)  # same policy, shorter waits
    yield emu
    emu.stop()


def recipe_for(**output: object):
    return recipe_variant({f"output.{k}": v for k, v in {"hub_repo": REPO_ID, **output}.items()})


@pytest.fixture
def run_dir(tmp_path, tiny_dir) -> Path:
    """A run directory as the train and merge phases leave it: merged/, adapter/, events.jsonl, run.json."""
    run = tmp_path / "runs" / "tiny-cpu-20260101-1200"
    shutil.copytree(tiny_dir, run / "merged")
    (run / "adapter").mkdir()
    (run / "adapter" / "adapter_config.json").write_text('{"r": 8, "lora_alpha": 16}')
    (run / "adapter" / "adapter_model.safetensors").write_bytes(b"\x08\x00" + bytes(range(256)) * 40)
    log = EventLog(run)
    for step, loss in enumerate(LOSSES, 1):
        log.emit("step", step=step, total_steps=24, loss=round(loss, 5))
    log.emit("train_done", first_loss=round(LOSSES[0], 5), final_loss=round(LOSSES[-1], 5), steps=24,
             train_seconds=754.2, tokens=98304, peak_mem_mb=5123.4)
    log.emit("merge_done", dtype="bfloat16", samples=[
        {"prompt": "Translate to Korean: good morning", "base": "morning good the", "tuned": "좋은 아침"},
    ])
    (run / "run.json").write_text(json.dumps({"run_id": run.name, "usd_per_hour": 0.44, "gpu_type": "NVIDIA A40",
                                              "gpu_count": 1, "podtune_version": "0.1.0", "launched_at": 1.0}))
    return run


def _run(run_dir: Path, recipe, token: str = CANARY) -> dict:
    return push.run(run_dir, recipe, EventLog(run_dir), token=token)


def _kinds(run_dir: Path) -> list[str]:
    return [e["kind"] for e in read_events(run_dir / "events.jsonl")[0]]


def test_push_uploads_the_merged_model_byte_for_byte_with_a_card_of_real_numbers(hub, run_dir):
    result = _run(run_dir, recipe_for())

    repo = hub.repo(REPO_ID)
    assert repo.private and result["verified"] and result["commit"] == repo.sha
    merged = {p.name: p.read_bytes() for p in (run_dir / "merged").iterdir()}
    assert set(repo.files) == set(merged) | {"README.md", ".gitattributes"}
    for name, data in merged.items():
        assert hub.file_bytes(REPO_ID, name) == data, name
    assert "model.safetensors" in repo.head.lfs_paths
    assert result["files"] == len(merged) + 1 and result["url"] == f"{hub.url}/{REPO_ID}"

    card = hub.file_bytes(REPO_ID, "README.md").decode()
    front = card.split("---\n")[1]
    assert "podtune" in front and "qlora" in front and "library_name: transformers" in front
    assert "base_model" not in front  # builtin:tiny-llama is no Hub id
    assert "3.1234 → 1.7181" in card and "| steps | 24 |" in card and "| 24 | 1.7181 |" in card
    assert "12m 34s" in card and "$0.440/h" in card and f"${754.2 / 3600 * 0.44:.4f}" in card
    assert "좋은 아침" in card and "morning good the" in card and "podtune 0.1.0" in card
    assert "r: 8" in card and "hub_repo: alice/tiny-tuned" in card  # the recipe, as YAML

    done = [e for e in read_events(run_dir / "events.jsonl")[0] if e["kind"] == "push_done"]
    assert len(done) == 1 and done[0]["commit"] == repo.sha and done[0]["verified"] is True
    saved = json.loads((run_dir / "push.json").read_text())
    assert saved["commit"] == repo.sha and saved["bytes"] == result["bytes"]
    assert not (run_dir / push.STAGING).exists()


def test_commit_failing_twice_is_retried_and_verified(hub, run_dir):
    hub.fail_next(2, 500, path_contains="/commit/")
    result = _run(run_dir, recipe_for())
    assert result["verified"] and result["retries"] == 2
    commits = [s for m, p, s in hub.requests if p.endswith("/commit/main")]
    assert commits == [500, 500, 200]
    assert _kinds(run_dir).count("push_retry") == 2


def test_a_commit_whose_answer_is_lost_is_not_sent_again(hub, run_dir):
    hub.truncate_next(1, path_contains="/commit/")  # the commit lands, the answer is cut in half
    result = _run(run_dir, recipe_for())
    commits = [s for m, p, s in hub.requests if p.endswith("/commit/main")]
    assert commits == [0]  # one commit POST, never re-sent
    assert len(hub.repo(REPO_ID).commits) == 2  # the repo's initial commit and ours
    assert result["verified"] and result["commit"] == hub.repo(REPO_ID).sha


def test_dropped_connections_and_a_stalled_commit_end_verified(hub, run_dir, monkeypatch):
    monkeypatch.setattr(hub_retry, "READ_TIMEOUT_S", 1.0)
    hub.drop_next(1, path_contains="/lfs-upload/")  # mid-upload: the client retries LFS itself
    hub.drop_next(1, path_contains="/commit/")  # never answered, never landed: podtune re-sends
    hub.stall_next(1, seconds=3, path_contains="/commit/")  # times out here, lands later on the Hub
    result = _run(run_dir, recipe_for())
    assert result["verified"] and result["retries"] == 2
    assert [s for m, p, s in hub.requests if p.endswith("/commit/main")][:1] == [0]


def test_a_commit_failing_for_good_says_how_to_retry_and_leaks_nothing(hub, run_dir):
    hub.fail_next(100, 503, path_contains="/commit/")
    with pytest.raises(push.PushError) as err:
        _run(run_dir, recipe_for())
    message = str(err.value)
    assert "podtune push tiny-cpu-20260101-1200" in message and "HTTP 503" in message and CANARY not in message
    assert f"after {hub_retry.ATTEMPTS} attempts" in message
    assert [s for m, p, s in hub.requests if p.endswith("/commit/main")] == [503] * hub_retry.ATTEMPTS
    assert "push_done" not in _kinds(run_dir) and not (run_dir / "push.json").exists()

    hub.clear_faults()  # `podtune push RUN` later: the same call, now verified
    assert _run(run_dir, recipe_for())["verified"]


def test_a_read_token_is_refused_with_a_hint_and_without_the_token(hub, run_dir):
    hub.add_model(REPO_ID, {"config.json": b"{}"}, private=True)  # exists: create_repo "succeeds" for a read token
    with pytest.raises(push.PushError) as err:
        _run(run_dir, recipe_for(), token=READ)
    assert "write token" in str(err.value) and READ not in str(err.value)
    assert [p for m, p, s in hub.requests if "/commit/" in p] == []


def test_the_token_appears_in_no_file_the_push_writes(hub, run_dir):
    hub.fail_next(1, 502, path_contains="/commit/")
    _run(run_dir, recipe_for())
    for path in run_dir.rglob("*"):
        if path.is_file():
            assert CANARY.encode() not in path.read_bytes(), path
    for path, data in hub.repo(REPO_ID).files.items():
        assert CANARY.encode() not in data, path


def test_the_card_masks_a_token_even_when_a_sample_answer_holds_it(hub, run_dir):
    EventLog(run_dir).emit("merge_done", dtype="float32",
                           samples=[{"prompt": "leak?", "base": f"token {CANARY}", "tuned": "none"}])
    _run(run_dir, recipe_for())
    card = hub.file_bytes(REPO_ID, "README.md").decode()
    assert CANARY not in card and "token ***" in card


def test_stale_weights_of_an_earlier_push_are_deleted_and_the_adapter_pushed(hub, run_dir):
    hub.add_model(REPO_ID, {"model-00001-of-00002.safetensors": b"old" * 100, "model.safetensors.index.json": b"{}",
                            "notes.txt": b"kept"}, private=True)
    result = _run(run_dir, recipe_for(push_adapter=True))
    files = hub.repo(REPO_ID).files
    assert "model-00001-of-00002.safetensors" not in files and "model.safetensors.index.json" not in files
    assert files["notes.txt"] == b"kept"  # not ours to delete
    assert files["adapter/adapter_model.safetensors"] == (run_dir / "adapter" / "adapter_model.safetensors").read_bytes()
    assert result["deleted"] == ["model-00001-of-00002.safetensors", "model.safetensors.index.json"]


def test_mismatches_name_every_difference(run_dir):
    local = push.digest(run_dir / "merged")

    class Entry:
        def __init__(self, size, blob_id, lfs=None):
            self.size, self.blob_id, self.lfs = size, blob_id, lfs

    class Lfs:
        def __init__(self, sha256):
            self.sha256 = sha256

    remote = {p: Entry(f.size, f.git_sha1()) for p, f in local.items()}
    assert push.mismatches(local, remote) == []
    # A tree entry of an LFS/Xet file without its `lfs` field: its oid is the pointer's git id, which pins the sha256.
    remote["model.safetensors"] = Entry(local["model.safetensors"].size, local["model.safetensors"].pointer_sha1())
    assert push.mismatches(local, remote) == []
    cfg, weights = local["config.json"], local["model.safetensors"]
    remote["config.json"] = Entry(cfg.size, "0" * 40)
    remote["model.safetensors"] = Entry(weights.size, "x", Lfs(hashlib.sha256(b"other").hexdigest()))
    del remote["tokenizer.json"]
    remote["old.safetensors"] = Entry(1, "y")
    problems = push.mismatches(local, remote, ["old.safetensors"])
    assert len(problems) == 4 and any(p.startswith("tokenizer.json: missing") for p in problems)


def test_push_refuses_an_existing_public_repo_when_the_recipe_wants_private(hub, run_dir):
    hub.add_model(REPO_ID, {"config.json": b"{}"}, private=False)
    before = hub.repo(REPO_ID).sha
    with pytest.raises(push.PushError, match="is public but output.private is true"):
        _run(run_dir, recipe_for())
    assert hub.repo(REPO_ID).sha == before and not hub.repo(REPO_ID).private
    assert not (run_dir / "push.json").exists()


def test_push_json_records_the_repos_real_visibility(hub, run_dir):
    hub.add_model(REPO_ID, {"config.json": b"{}"}, private=True)
    result = _run(run_dir, recipe_for(private=False))
    assert result["private"] is True
    assert json.loads((run_dir / "push.json").read_text())["private"] is True


def test_the_pipeline_removes_the_token_right_after_the_push(hub, run_dir, monkeypatch):
    import sys

    from remote import pipeline
    from remote.recipe import dump_recipe

    monkeypatch.setattr(sys, "stdout", sys.stdout)  # the pipeline wraps both in a redactor: undone after the test
    monkeypatch.setattr(sys, "stderr", sys.stderr)
    (run_dir / "recipe.yaml").write_text(dump_recipe(recipe_for()))
    token_file = run_dir.parent / "secrets" / "hf_token"
    token_file.parent.mkdir(mode=0o700)
    token_file.write_text(CANARY)
    seen_during_push = []
    real_push = push.run
    monkeypatch.setattr(push, "run", lambda *a, **k: (seen_during_push.append(token_file.exists()), real_push(*a, **k))[1])

    assert pipeline.run(run_dir, str(token_file), ("push",)) == 0
    assert seen_during_push == [True] and not token_file.exists()
    assert "push_done" in _kinds(run_dir)
