"""Each dataset format renders exactly as the seed workflows did; local files load, slice and split."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest

from remote.data import load_records, prepare, render, render_prompt, split_eval, tokenize
from remote.recipe import load_recipe

RECIPES = Path(__file__).resolve().parents[3] / "recipes"

# Seed C's prompt, copied from SEEDS.md with its positional placeholders.
SEED_C_PROMPT = (
    "아래에는 작업을 설명하는 지시 사항과 추가적인 컨텍스트를 제공하는 입력이 있습니다. 요청을 적절하게 완료하는 응답을 작성하세요.\n"
    "\n"
    "### instruction:\n"
    "{}\n"
    "\n"
    "### input:\n"
    "{}\n"
    "\n"
    "### output:\n"
    "{}"
)
IRONMAN_SYSTEM = (
    "당신은 아이언맨 토니 스타크입니다. 토니 스타크의 말투로 답변해야 합니다. 토니 스타크의 말투를 반영하려면 재치, "
    "자신감, 직설적 표현, 기술적 언급 등을 포함하는 것이 좋습니다. 모든 말은 한국어로 작성합니다."
)
RECORD = {"instruction": "피보나치 수열을 설명해 주세요.", "input": "", "output": "앞의 두 수를 더해 다음 수를 만드는 수열입니다."}


def _recipe(name: str, **dataset):
    recipe = load_recipe(RECIPES / f"{name}.yaml")
    return recipe.model_copy(update={"dataset": recipe.dataset.model_copy(update=dataset)}) if dataset else recipe


def test_alpaca_renders_seed_c_prompt_plus_eos(tiny_tokenizer):
    text = render(_recipe("llama3.1-ko-safe"), tiny_tokenizer)(RECORD)
    assert text == SEED_C_PROMPT.format(RECORD["instruction"], "", RECORD["output"]) + "</s>"


def test_alpaca_uses_column_renames(tiny_tokenizer):
    recipe = _recipe("llama3.1-ko-safe", columns={"instruction": "question", "output": "answer"})
    text = render(recipe, tiny_tokenizer)({"question": "1+1?", "answer": "2"})  # no input column at all
    assert text == SEED_C_PROMPT.format("1+1?", "", "2") + "</s>"


def test_llama3_chat_with_ironman_system_prompt(tiny_tokenizer):
    recipe = _recipe("ironman-persona")
    assert recipe.dataset.system_prompt == IRONMAN_SYSTEM
    record = {"instruction": "자기소개 좀 해줘.", "input": "짧게", "output": "토니 스타크입니다."}
    expected = (
        "<|begin_of_text|>"
        f"<|start_header_id|>system<|end_header_id|>\n\n{IRONMAN_SYSTEM}<|eot_id|>"
        "<|start_header_id|>user<|end_header_id|>\n\n자기소개 좀 해줘.\n\n짧게<|eot_id|>"
        "<|start_header_id|>assistant<|end_header_id|>\n\n토니 스타크입니다.<|eot_id|>"
    )
    # The tiny tokenizer has a template of its own: llama3 must not use it.
    assert render(recipe, tiny_tokenizer)(record) == expected
    prompt = render_prompt(recipe, tiny_tokenizer, "자기소개 좀 해줘.")
    assert prompt == expected.split("자기소개 좀 해줘.")[0] + (
        "자기소개 좀 해줘.<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n"
    )


def test_chat_with_tokenizer_template(tiny_tokenizer):
    recipe = _recipe("ironman-persona", chat_template="tokenizer", system_prompt=None)
    text = render(recipe, tiny_tokenizer)({"instruction": "hi", "input": "", "output": "hello"})
    assert text == tiny_tokenizer.apply_chat_template(
        [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}], tokenize=False
    )


def test_text_format_appends_eos_only_when_asked(tiny_tokenizer):
    seed_a = _recipe("llama2-ko")
    row = {"text": "<usr> 안녕?\n<bot> 안녕하세요."}
    assert render(seed_a, tiny_tokenizer)(row) == row["text"]  # seed A trains on the column as is
    with_eos = _recipe("llama2-ko", append_eos=True)
    assert render(with_eos, tiny_tokenizer)(row) == row["text"] + "</s>"


def test_non_chat_prompts_are_used_as_written(tiny_tokenizer):
    recipe = _recipe("tiny-cpu")
    assert render_prompt(recipe, tiny_tokenizer, recipe.eval.prompts[0]) == recipe.eval.prompts[0]


def test_tokenize_adds_one_bos_and_keeps_eos(tiny_tokenizer):
    from datasets import Dataset

    ds = tokenize(Dataset.from_list([{"text": "hello</s>"}, {"text": "<s>already</s>"}]), tiny_tokenizer)
    for ids in ds["input_ids"]:
        assert ids[0] == tiny_tokenizer.bos_token_id and ids[1] != tiny_tokenizer.bos_token_id
        assert ids[-1] == tiny_tokenizer.eos_token_id


@pytest.fixture
def run_dir(tmp_path):
    data = tmp_path / "run" / "data"
    data.mkdir(parents=True)
    lines = [json.dumps({"instruction": f"q{i}", "input": "", "output": f"a{i}"}) for i in range(50)]
    (data / "tiny-instructions.jsonl").write_text("\n".join(lines) + "\n")
    return tmp_path / "run"


@pytest.mark.parametrize(
    ("split", "first", "count"), [("train", "q0", 50), ("train[:10%]", "q0", 5), ("train[10:20]", "q10", 10), ("train[-20%:]", "q40", 10)]
)
def test_local_split_slicing(run_dir, split, first, count):
    # The recipe names the laptop path; on the pod the file is run_dir/data/<basename>.
    records = load_records(_recipe("tiny-cpu", split=split), run_dir, None)
    assert len(records) == count and records[0]["instruction"] == first


def test_local_json_array_file(tmp_path):
    (tmp_path / "data").mkdir()
    shutil.copy(RECIPES / "data" / "ironman-persona.json", tmp_path / "data")
    records = load_records(_recipe("ironman-persona"), tmp_path, None)
    assert len(records) == 30 and set(records.column_names) == {"instruction", "input", "output"}


def test_missing_local_file_says_where_it_looked(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"data/tiny-instructions.jsonl is missing"):
        load_records(_recipe("tiny-cpu"), tmp_path, None)


def test_eval_split_is_seeded_and_disjoint(run_dir, tiny_tokenizer):
    recipe = _recipe("tiny-cpu", eval_fraction=0.1)
    train, evals = prepare(recipe, tiny_tokenizer, run_dir, None)
    again_train, again_evals = prepare(recipe, tiny_tokenizer, run_dir, None)
    assert (len(train), len(evals)) == (45, 5)
    assert evals["text"] == again_evals["text"]
    assert not set(evals["text"]) & set(train["text"])
    assert {"text", "input_ids"} <= set(train.column_names)
    assert split_eval(train, 0.0, 1)[1] is None


def test_shipped_tiny_data_is_mixed_and_sensible():
    records = [json.loads(line) for line in (RECIPES / "data" / "tiny-instructions.jsonl").read_text().splitlines()]
    assert 300 <= len(records) <= 500
    assert all(set(r) == {"instruction", "input", "output"} and r["output"] for r in records)
    korean = sum(bool(re.search("[가-힣]", r["instruction"] + r["input"])) for r in records)
    assert 0.3 < korean / len(records) < 0.7
    # Every arithmetic answer is right.
    ops = {"plus": "+", "minus": "-", "times": "*", "+": "+", "-": "-", "×": "*", "더하기": "+", "빼기": "-", "곱하기": "*"}
    pattern = re.compile(r"(\d+) (plus|minus|times|\+|-|×|더하기|빼기|곱하기) (\d+)")
    checked = 0
    for r in records:
        m = pattern.search(r["instruction"] + " " + r["input"])
        if m:
            a, op, b = int(m[1]), ops[m[2]], int(m[3])
            result = {"+": a + b, "-": a - b, "*": a * b}[op]
            assert re.findall(r"\d+", r["output"])[-1] == str(result), r  # the answer is the last number
            checked += 1
    assert checked >= 60


def test_shipped_persona_data():
    records = json.loads((RECIPES / "data" / "ironman-persona.json").read_text())
    assert 25 <= len(records) <= 40
    assert all(re.search("[가-힣]", r["output"]) for r in records)
