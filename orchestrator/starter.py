"""`podtune init`: a commented starter recipe from a few answers, valid before it is written.

Every field written carries its description from the schema (remote/recipe.py) as a comment, so the file
explains itself and the comments cannot drift from what `podtune schema` says.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from remote.recipe import BUILTIN_TINY, Recipe, RecipeError, parse_recipe

from .errors import ConfigError, PodtuneError
from .providers import PROVIDERS, provider_class

TINY_TEMPLATE = "### instruction:\n{instruction}\n\n### input:\n{input}\n\n### output:\n{output}"


@dataclass
class Answers:
    base: str = BUILTIN_TINY
    dataset: str = ""
    format: str = "alpaca"
    hub_repo: str | None = None
    provider: str | None = None  # None: local for the built-in model, else runpod
    gpu: str | None = None


def recipe_name(path: Path) -> str:
    """The file's stem as a recipe name (lowercase letters, digits, `-`, `.`)."""
    name = re.sub(r"[^a-z0-9.-]+", "-", path.stem.lower()).strip("-.")[:40]
    return name or "my-recipe"


def sections(a: Answers, name: str) -> list[tuple[str, list[tuple[str, Any]]]]:
    """(section, [(field, value)]) in the order they are written; None drops the section's name only."""
    tiny = a.base == BUILTIN_TINY
    provider = a.provider or ("local" if tiny else "runpod")
    dataset: list[tuple[str, Any]] = [("source", a.dataset), ("format", a.format)]
    if not a.dataset.endswith((".json", ".jsonl")):
        dataset.append(("split", "train[:10%]"))  # a first run on a tenth: cheap, and under max_usd below
    if a.format == "text":
        dataset.append(("text_column", "text"))
    if a.format == "alpaca":
        dataset.append(("prompt_template", TINY_TEMPLATE))
    dataset += [("append_eos", a.format != "chat"), ("eval_fraction", 0.0)]
    if tiny:  # the shipped demo's schedule: seconds on a CPU
        training: list[tuple[str, Any]] = [("max_steps", 30), ("batch_size", 4), ("grad_accum", 1), ("learning_rate", 1e-2),
                    ("gradient_checkpointing", False), ("packing", True), ("max_seq_length", 128)]
    else:  # seed A's schedule (QLoRA on a 7B model, one GPU)
        training = [("epochs", 1), ("batch_size", 4), ("grad_accum", 2), ("learning_rate", 2e-4),
                    ("gradient_checkpointing", True), ("packing", True), ("max_seq_length", 2048)]
    training += [("optimizer", "paged_adamw_32bit"), ("lr_scheduler", "cosine"), ("warmup_ratio", 0.03),
                 ("max_grad_norm", 0.3), ("logging_steps", 5), ("save_strategy", "epoch"), ("seed", 42)]
    own = provider_class(provider).starter_compute(a.gpu) if provider in PROVIDERS else []  # schema names a typo
    compute: list[tuple[str, Any]] = [("provider", provider), *own,
                                      ("max_hours", 1.0 if tiny else 24.0), ("stall_minutes", 15.0)]
    data_name = Path(a.dataset).name if a.dataset.endswith((".json", ".jsonl")) else a.dataset
    example = "Translate to Korean: good morning"
    prompt = TINY_TEMPLATE.format(instruction=example, input="", output="") if a.format == "alpaca" else example
    return [
        ("", [("name", name), ("description", f"{a.base} fine-tuned on {data_name}")]),
        ("model", [("base", a.base)]),
        ("dataset", dataset),
        ("quantization", [("load_in_4bit", True), ("quant_type", "nf4"), ("double_quant", True),
                          ("compute_dtype", "auto")]),
        ("lora", [("r", 8 if tiny else 64), ("alpha", 16), ("dropout", 0.05 if tiny else 0.1),
                  ("target_modules", "all-linear")]),
        ("training", training),
        ("eval", [("prompts", [prompt]), ("max_new_tokens", 16 if tiny else 256), ("temperature", 0.0 if tiny else 0.7)]),
        ("output", [("hub_repo", a.hub_repo), ("private", True)]),
        ("compute", compute),
    ]


def render(a: Answers, name: str) -> str:
    out = ["# Starter recipe written by `podtune init`. Every field is explained by the comment above it;",
           "# `podtune schema` lists all the others. Next: podtune validate FILE && podtune plan FILE", ""]
    for section, fields in sections(a, name):
        model: type[BaseModel] = Recipe
        indent = ""
        if section:
            info = Recipe.model_fields[section]
            out += [f"# {info.description}", f"{section}:"]
            model, indent = _model_of(info.annotation), "  "
        for key, value in fields:
            out.append(f"{indent}# {model.model_fields[key].description}")
            out += _field(indent, key, value, _model_of(model.model_fields[key].annotation, optional=True))
        out.append("")
    return "\n".join(out)


def _field(indent: str, key: str, value: Any, inner: type[BaseModel] | None) -> list[str]:
    if isinstance(value, dict) and inner is not None:
        lines = [f"{indent}{key}:"]
        for k, v in value.items():
            lines += [f"{indent}  # {inner.model_fields[k].description}", f"{indent}  {k}: {_scalar(v)}"]
        return lines
    return [f"{indent}{key}: {_scalar(value)}"]


def _scalar(value: Any) -> str:
    """A YAML value: JSON for strings, lists and null (a YAML subset), floats always with a dot (YAML 1.1)."""
    if isinstance(value, float):
        return f"{value:.1e}" if 0 < abs(value) < 1e-3 else repr(value)
    return json.dumps(value, ensure_ascii=False)


def _model_of(annotation: Any, optional: bool = False) -> Any:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in getattr(annotation, "__args__", ()) or ():
        if isinstance(arg, type) and issubclass(arg, BaseModel):
            return arg
    return None if optional else Recipe


def refuse_existing(path: Path) -> None:
    if path.exists():
        raise PodtuneError(f"{path} already exists; podtune init never overwrites a file",
                           "give another path (podtune init my-recipe.yaml ...) or move that file away")


def write(path: Path, a: Answers) -> Recipe:
    """Write the starter recipe at `path` (never over an existing file); the schema checks it first."""
    refuse_existing(path)
    if not a.dataset:
        raise ConfigError("no dataset given", "pass --dataset (a Hub id such as heegyu/open-korean-instructions, "
                                              "or a local .jsonl file)")
    if a.dataset.endswith((".json", ".jsonl")) and Path(a.dataset).exists():
        # The recipe names local data relative to itself, and only inside its own folder (a shared recipe must
        # never reach other files on a laptop).
        data, folder = Path(a.dataset).resolve(), path.resolve().parent
        if not data.is_relative_to(folder):
            raise ConfigError(
                f"--dataset {a.dataset} is outside the folder the recipe goes to ({folder}); a recipe may only name "
                "data beside it",
                f"write the recipe next to the data (podtune init {data.parent / path.name}), copy the data into "
                f"{folder}, or keep the recipe here and give the data at run time: podtune run {path} --data {data}")
        a.dataset = os.path.relpath(data, folder)
    text = render(a, recipe_name(path))
    try:
        recipe = parse_recipe(text, source=str(path))
    except RecipeError as exc:  # a flag the schema refuses: name the field, write nothing
        raise ConfigError("these answers do not make a valid recipe: "
                          + "; ".join(f"{where}: {msg}" for where, msg in exc.problems),
                          "change the flag that sets that field (see `podtune init --help`)") from None
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "x", encoding="utf-8") as fh:  # "x": a file that appeared meanwhile is not overwritten
        fh.write(text)
    return recipe


def main(path: Path, answers: Answers, ui, *, ask: bool) -> Recipe:
    """`podtune init`: refuse an existing file first (before any question), ask if told to, write, say what next."""
    refuse_existing(path)
    if ask:
        import typer

        answers = ask_for(answers, lambda text, default: typer.prompt(text, default=default))
    recipe = write(path, answers)
    ui.info(f"wrote {path} (recipe {recipe.name}); every field is explained by the comment above it")
    if recipe.dataset.is_local and not (path.parent / recipe.dataset.source).exists():
        ui.warn(f"{recipe.dataset.source} does not exist yet (relative to {path.parent}); put your data there")
    ui.info(f"next: podtune validate {path} && podtune plan {path}")
    return recipe


def ask_for(a: Answers, prompt) -> Answers:
    """Fill the answers a person did not give as flags, one question each (`prompt(text, default)`)."""
    a.base = prompt("Base model (Hub id, or builtin:tiny-llama to try podtune on this CPU)", a.base)
    shipped = "recipes/data/tiny-instructions.jsonl"  # there when run from a podtune checkout
    default_data = a.dataset or (shipped if a.base == BUILTIN_TINY and Path(shipped).is_file() else "")
    a.dataset = prompt("Dataset (Hub id, or a local .jsonl file)", default_data or None)
    a.format = prompt("Record format: alpaca (instruction/input/output), text (one column), chat", a.format)
    a.hub_repo = prompt("Hub repo to push to (user/name; empty: keep it on the volume)", a.hub_repo or "") or None
    a.provider = prompt("Where to train: local, runpod or ssh",
                        a.provider or ("local" if a.base == BUILTIN_TINY else "runpod"))
    if a.provider in PROVIDERS and provider_class(a.provider).rents:  # a rented pod is one GPU type of many
        a.gpu = prompt("GPU type (empty: the cheapest that fits), e.g. NVIDIA GeForce RTX 3090", a.gpu or "") or None
    return a
