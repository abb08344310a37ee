"""Training data: load the recipe's records, render each into one training text, tokenize, split off eval."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Callable

from . import datacheck
from .events import RunPaths
from .recipe import Recipe

LLAMA3_BOS = "<|begin_of_text|>"
LLAMA3_EOT = "<|eot_id|>"


def local_data_path(recipe: Recipe, run_dir: Path) -> Path:
    """Where the orchestrator uploaded a local data file: `run_dir/data/<basename>` (the laptop path means nothing here)."""
    return RunPaths(Path(run_dir)).data / Path(recipe.dataset.source).name


def load_records(recipe: Recipe, run_dir: Path, token: str | None):
    """The recipe's dataset split as a `datasets.Dataset` (split slicing such as `train[:10%]` works for local files too)."""
    from datasets import load_dataset

    spec = recipe.dataset
    if spec.is_local:
        path = local_data_path(recipe, run_dir)
        if not path.is_file():
            raise FileNotFoundError(
                f"data file {path} is missing; the orchestrator uploads `{spec.source}` there (run `podtune run` again)"
            )
        if not _starts_with_content(path):  # `datasets` answers an empty file with a bare StopIteration
            raise datacheck.DataError(f"data file {spec.source} is empty", "put records in it: there is nothing to train on")
        # The json builder names the single split `train`, so `train[:10%]` slices it like a Hub split.
        return load_dataset("json", data_files=str(path), split=spec.split, cache_dir=datasets_cache())
    # The cache lives under HF_HOME (on the volume), so a resumed pod does not download again.
    return load_dataset(spec.source, split=spec.split, token=token, cache_dir=datasets_cache())


def _starts_with_content(path: Path) -> bool:
    with open(path, "rb") as f:
        return bool(f.read(65536).strip())


def datasets_cache() -> str:
    """HF_DATASETS_CACHE or $HF_HOME/datasets, read now: `datasets` fixes its default when first imported."""
    if os.environ.get("HF_DATASETS_CACHE"):
        return os.environ["HF_DATASETS_CACHE"]
    home = os.environ.get("HF_HOME") or str(Path.home() / ".cache" / "huggingface")
    return str(Path(home) / "datasets")


def render(recipe: Recipe, tokenizer) -> Callable[[dict[str, Any]], str]:
    """A function turning one record into its training text, exactly as the recipe's format says."""
    spec = recipe.dataset
    eos = tokenizer.eos_token if spec.append_eos else ""
    if spec.format == "text":
        return lambda rec: rec[spec.text_column] + eos
    field = _alpaca_getter(recipe)
    if spec.format == "alpaca":
        return lambda rec: spec.prompt_template.format(
            instruction=field(rec, "instruction"), input=field(rec, "input"), output=field(rec, "output")
        ) + eos

    # chat: the template closes every turn itself (<|eot_id|>, or EOS in the tokenizer's template), so no extra EOS.
    def chat(rec: dict[str, Any]) -> str:
        user = field(rec, "instruction")
        if field(rec, "input"):
            user += "\n\n" + field(rec, "input")
        messages = _messages(recipe, user) + [{"role": "assistant", "content": field(rec, "output")}]
        return _chat_text(recipe, tokenizer, messages, add_generation_prompt=False)

    return chat


def render_prompt(recipe: Recipe, tokenizer, prompt: str) -> str:
    """An eval prompt as the model saw prompts in training: chat recipes wrap it in the template, others use it as is."""
    if recipe.dataset.format != "chat":
        return prompt
    return _chat_text(recipe, tokenizer, _messages(recipe, prompt), add_generation_prompt=True)


def stop_token_ids(recipe: Recipe, tokenizer) -> list[int]:
    """Token ids that end an answer: EOS, plus <|eot_id|> for Llama-3 chat when the vocabulary has it."""
    ids = [tokenizer.eos_token_id] if tokenizer.eos_token_id is not None else []
    if recipe.dataset.format == "chat" and recipe.dataset.chat_template == "llama3":
        eot = tokenizer.convert_tokens_to_ids(LLAMA3_EOT)
        if isinstance(eot, int) and eot != tokenizer.unk_token_id and eot not in ids:
            ids.append(eot)
    return ids


def prepare(recipe: Recipe, tokenizer, run_dir: Path, token: str | None, max_length: int | None = None):
    """(train, eval or None) datasets with `text` and `input_ids` columns, ready for SFTTrainer.

    Raises datacheck.DataError before anything trains when the data does not fit the recipe (missing or empty
    columns, an empty split, records mostly longer than `max_length`)."""
    records = load_records(recipe, run_dir, token)
    where = f"dataset {recipe.dataset.source} [{recipe.dataset.split}]"
    datacheck.check_columns(recipe, records.column_names, where)
    text_of = render(recipe, tokenizer)
    datacheck.check_records(recipe, _head(records), where, text_of)
    texts = records.map(lambda rec: {"text": text_of(rec)}, remove_columns=records.column_names, desc="Rendering")
    train, evals = split_eval(texts, recipe.dataset.eval_fraction, recipe.training.seed)
    train = tokenize(train, tokenizer)
    if max_length:
        head = train.select(range(min(len(train), datacheck.SAMPLE)))
        datacheck.check_lengths(recipe, [len(ids) for ids in head["input_ids"]], max_length, head[0]["text"], where)
    return train, (tokenize(evals, tokenizer) if evals is not None else None)


def _head(records) -> list[dict[str, Any]]:
    return records.select(range(min(len(records), datacheck.SAMPLE))).to_list()


def split_eval(dataset, fraction: float, seed: int):
    """Hold out `fraction` of the records (at least one) for evaluation, reproducibly for a given seed."""
    if fraction <= 0 or len(dataset) < 2:
        return dataset, None
    n_eval = max(1, round(len(dataset) * fraction))
    parts = dataset.train_test_split(test_size=n_eval, seed=seed, shuffle=True)
    return parts["train"], parts["test"]


def tokenize(dataset, tokenizer):
    """Add `input_ids`. Done here rather than in trl, which would always append EOS and could add a second BOS."""
    bos = tokenizer.bos_token

    def encode(rec: dict[str, Any]) -> dict[str, list[int]]:
        # A rendered chat (or a `<s>[INST]` text) already starts with BOS; adding another skews the model.
        add_special = not (bos and rec["text"].startswith(bos))
        # verbose=False: over-long records are expected here; trl truncates or packs them to max_length.
        return {"input_ids": tokenizer(rec["text"], add_special_tokens=add_special, verbose=False)["input_ids"]}

    return dataset.map(encode, desc="Tokenizing")


def _alpaca_getter(recipe: Recipe) -> Callable[[dict[str, Any], str], str]:
    columns: dict[str, str] = {str(k): v for k, v in recipe.dataset.columns.items()}

    def field(rec: dict[str, Any], role: str) -> str:
        value = rec.get(columns.get(role, role))
        return "" if value is None else str(value)

    return field


def _messages(recipe: Recipe, user: str) -> list[dict[str, str]]:
    system = recipe.dataset.system_prompt
    return ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": user}]


def _chat_text(recipe: Recipe, tokenizer, messages: list[dict[str, str]], *, add_generation_prompt: bool) -> str:
    if recipe.dataset.chat_template == "llama3":
        return llama3_chat(messages, add_generation_prompt=add_generation_prompt)
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=add_generation_prompt)


def llama3_chat(messages: list[dict[str, str]], *, add_generation_prompt: bool = False) -> str:
    """The Llama-3 header template as text, whatever the tokenizer (contents trimmed, as Meta's template does)."""
    parts = [LLAMA3_BOS]
    for m in messages:
        parts.append(f"<|start_header_id|>{m['role']}<|end_header_id|>\n\n{m['content'].strip()}{LLAMA3_EOT}")
    if add_generation_prompt:
        parts.append("<|start_header_id|>assistant<|end_header_id|>\n\n")
    return "".join(parts)
