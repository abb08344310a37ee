"""`plan` checks a Hub dataset's columns from its card (metadata only, no data download) against the recipe."""

from __future__ import annotations

import pytest

from orchestrator.errors import ConfigError, HubError
from orchestrator.planning.hub import check_access
from remote import hub_retry
from tests.doubles.hub_emulator import HubEmulator, HubToken, HubUser, patch_huggingface_hub
from tests.recipes import recipe_variant

TOKEN = "hf_" + "d" * 34


def _card(features: list[str], splits: dict[str, int]) -> bytes:
    lines = ["---", "dataset_info:", "  features:"]
    lines += [f"  - name: {f}\n    dtype: string" for f in features]
    lines += ["  splits:"] + [f"  - name: {s}\n    num_examples: {n}" for s, n in splits.items()]
    return ("\n".join(lines + ["---", "# a dataset", ""])).encode()


@pytest.fixture()
def hub(tmp_path, monkeypatch):
    emu = HubEmulator(users=[HubUser("alice"), HubUser("kor")], tokens=[HubToken(TOKEN, "alice", "read")]).start()
    emu.add_dataset("kor/qa", {"README.md": _card(["question", "answer"], {"train": 100}),
                               "data/train.jsonl": b'{"question": "q", "answer": "a"}\n'})
    emu.add_dataset("kor/alpaca", {"README.md": _card(["instruction", "input", "output"], {"train": 100, "test": 0}),
                                   "data/train.jsonl": b"{}\n"})
    emu.add_dataset("kor/nocard", {"data/train.jsonl": b"{}\n"})
    patch_huggingface_hub(monkeypatch, emu, tmp_path / "hf_home")
    monkeypatch.setattr(hub_retry, "BASE_DELAY_S", 0.05)
    yield emu
    emu.stop()


def _recipe(source: str, split: str = "train", columns: dict[str, str] | None = None):
    return recipe_variant({"dataset.source": source, "dataset.split": split,
                           **({"dataset.columns": columns} if columns else {})})


def test_alpaca_over_question_answer_card_is_refused_naming_the_columns(hub):
    with pytest.raises(ConfigError) as err:
        check_access(_recipe("kor/qa"), TOKEN)
    assert "kor/qa (per its dataset card) has no columns 'instruction'" in err.value.message
    assert "question, answer" in err.value.message and "dataset.columns" in err.value.hint


def test_matching_card_passes_and_says_so(hub):
    assert check_access(_recipe("kor/alpaca", "train[:10%]"), TOKEN) == [
        "Hub: dataset kor/alpaca has the columns alpaca needs (instruction, input, output)"]
    mapped = _recipe("kor/qa", columns={"instruction": "question", "output": "answer"})
    assert "has the columns" in check_access(mapped, None)[0]


def test_unknown_or_empty_split_is_refused(hub):
    with pytest.raises(ConfigError, match="has no split 'validation'; its splits are: train, test"):
        check_access(_recipe("kor/alpaca", "validation"), TOKEN)
    with pytest.raises(ConfigError, match="split 'test' has no records"):
        check_access(_recipe("kor/alpaca", "test"), TOKEN)


def test_no_card_leaves_it_to_the_pod_and_a_missing_dataset_is_named(hub):
    assert "the pod checks them before training" in check_access(_recipe("kor/nocard"), TOKEN)[0]
    with pytest.raises(HubError, match="dataset kor/nope was not found"):
        check_access(_recipe("kor/nope"), TOKEN)
