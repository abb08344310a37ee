"""`builtin:tiny-llama` is the same bytes on every build, and its corpus travels with remote/."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from remote.tiny import CORPUS, TINY_VERSION, build_tiny_model, corpus_text, ensure_tiny_model

RECIPES = Path(__file__).resolve().parents[3] / "recipes"


def sha256(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_two_builds_are_byte_identical(tmp_path, tiny_dir):
    other = tmp_path / "second"
    build_tiny_model(other)
    for name in ("model.safetensors", "tokenizer.json", "config.json"):
        assert sha256(tiny_dir / name) == sha256(other / name), name


def test_ensure_builds_once_and_leaves_no_temp_dirs(tmp_path, monkeypatch):
    first = ensure_tiny_model(tmp_path)
    assert first == tmp_path / "podtune" / TINY_VERSION
    stamp = (first / "model.safetensors").stat().st_mtime_ns
    # A second call (another process, a resumed pod) reuses the directory without rebuilding.
    monkeypatch.setattr("remote.tiny.build_tiny_model", lambda out: (_ for _ in ()).throw(AssertionError("rebuilt")))
    assert ensure_tiny_model(tmp_path) == first
    assert (first / "model.safetensors").stat().st_mtime_ns == stamp
    assert [p.name for p in (tmp_path / "podtune").iterdir()] == [TINY_VERSION]


def test_losing_the_race_keeps_the_winner(tmp_path, monkeypatch):
    final = tmp_path / "podtune" / TINY_VERSION

    def build_while_another_wins(out):
        build_tiny_model(out)
        build_tiny_model(final)  # the other process renames its copy into place first

    monkeypatch.setattr("remote.tiny.build_tiny_model", build_while_another_wins)
    assert ensure_tiny_model(tmp_path) == final
    assert (final / "config.json").exists()
    assert [p.name for p in (tmp_path / "podtune").iterdir()] == [TINY_VERSION]


def test_tiny_model_shape_and_tokenizer(tiny_dir, tiny_tokenizer):
    config = json.loads((tiny_dir / "config.json").read_text())
    assert config["architectures"] == ["LlamaForCausalLM"]
    assert (config["hidden_size"], config["num_hidden_layers"], config["num_attention_heads"]) == (64, 2, 4)
    assert (config["vocab_size"], config["max_position_embeddings"]) == (512, 256)
    tok = tiny_tokenizer
    assert (tok.bos_token, tok.eos_token, tok.pad_token, tok.unk_token) == ("<s>", "</s>", "<pad>", "<unk>")
    assert len(tok) == 512 and tok.chat_template
    text = "### instruction:\n서울은 대한민국의 수도입니다. Hello!"
    ids = tok(text)["input_ids"]
    assert ids[0] == tok.bos_token_id and tok.decode(ids, skip_special_tokens=True) == text


def test_corpus_is_derived_from_the_shipped_data():
    records = [json.loads(line) for line in (RECIPES / "data" / "tiny-instructions.jsonl").read_text().splitlines()]
    # Regenerate with: CORPUS.write_text(corpus_text(records)) after editing the jsonl (and bump TINY_VERSION).
    assert CORPUS.read_text(encoding="utf-8") == corpus_text(records)
