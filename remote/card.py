"""The model card (README.md) pushed with a run: Hub metadata plus what the run really did, from its own records."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

from .events import EventKind, RunPaths, read_events
from .recipe import Recipe, dump_recipe

LOSS_ROWS = 20  # the loss table keeps first, last and evenly spaced steps between: a card, not a log


def run_facts(run_dir: Path) -> dict[str, Any]:
    """The numbers a card needs: loss per step, train_done, merge_done and run.json (last record of each wins)."""
    paths = RunPaths(Path(run_dir))
    events, _ = read_events(paths.events)
    losses: dict[int, float] = {}
    train: dict[str, Any] = {}
    merge: dict[str, Any] = {}
    for e in events:
        kind = e.get("kind")
        if kind == EventKind.STEP and e.get("loss") is not None and e.get("step") is not None:
            losses[int(e["step"])] = float(e["loss"])  # a resumed run logs some steps again; the later one counts
        elif kind == EventKind.TRAIN_DONE:
            train = e
        elif kind == EventKind.MERGE_DONE:
            merge = e
    try:
        info = json.loads(paths.run_info.read_text(encoding="utf-8"))
    except (FileNotFoundError, json.JSONDecodeError):
        info = {}
    return {"losses": sorted(losses.items()), "train": train, "merge": merge, "run": info}


def loss_rows(losses: list[tuple[int, float]], limit: int = LOSS_ROWS) -> list[tuple[int, float]]:
    if len(losses) <= limit:
        return losses
    picks = {round(i * (len(losses) - 1) / (limit - 1)) for i in range(limit)}
    return [losses[i] for i in sorted(picks)]


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    seconds = int(round(seconds))
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}h {m:02d}m {s:02d}s" if h else (f"{m}m {s:02d}s" if m else f"{s}s")


def _num(value: Any, fmt: str = ".4f") -> str:
    return format(value, fmt) if isinstance(value, (int, float)) and not isinstance(value, bool) else "-"


def metadata(recipe: Recipe, license_id: str | None = None) -> dict[str, Any]:
    method = "qlora" if recipe.quantization.load_in_4bit else "lora"
    meta: dict[str, Any] = {}
    if not recipe.model.is_builtin:
        meta["base_model"] = recipe.model.base
    if not recipe.dataset.is_local:
        meta["datasets"] = [recipe.dataset.source]
    meta["library_name"] = "transformers"
    meta["pipeline_tag"] = "text-generation"
    meta["tags"] = ["podtune", method, "peft", "fine-tuned"]
    if license_id:
        meta["license"] = license_id
    return meta


def public_view(recipe: Recipe) -> Recipe:
    """The recipe as a card may publish it: no compute.ssh (host, user, key and folder paths), no local data path."""
    dataset = recipe.dataset
    if dataset.is_local:
        dataset = dataset.model_copy(update={"source": Path(dataset.source).name})
    return recipe.model_copy(update={"dataset": dataset, "compute": recipe.compute.model_copy(update={"ssh": None})})


def render(recipe: Recipe, facts: dict[str, Any], *, repo_id: str, license_id: str | None = None) -> str:
    """README.md text: YAML front matter, then training facts, loss curve, samples, settings and the recipe."""
    recipe = public_view(recipe)
    train, merge, run = facts["train"], facts["merge"], facts["run"]
    losses: list[tuple[int, float]] = facts["losses"]
    first = train.get("first_loss", losses[0][1] if losses else None)
    final = train.get("final_loss", losses[-1][1] if losses else None)
    steps = train.get("steps") or (losses[-1][0] if losses else None)
    seconds = train.get("train_seconds")
    rate = run.get("usd_per_hour")
    cost = seconds / 3600 * rate if isinstance(seconds, (int, float)) and isinstance(rate, (int, float)) else None
    version = run.get("podtune_version") or "unknown"
    method = "QLoRA (4-bit)" if recipe.quantization.load_in_4bit else "LoRA"
    base = recipe.model.base
    base_link = base if recipe.model.is_builtin else f"[{base}](https://huggingface.co/{base})"
    gpu = run.get("gpu_type") or "-"
    if run.get("gpu_count", 1) and run.get("gpu_count", 1) > 1:
        gpu = f"{run['gpu_count']}x {gpu}"

    out = ["---", yaml.safe_dump(metadata(recipe, license_id), allow_unicode=True, sort_keys=False).strip(), "---", ""]
    out += [f"# {repo_id.split('/', 1)[1]}", ""]
    if recipe.description:
        out += [recipe.description, ""]
    out += [f"{base_link} fine-tuned with {method} on `{recipe.dataset.source}` (split `{recipe.dataset.split}`, "
            f"format `{recipe.dataset.format}`), merged into the base weights ({merge.get('dtype', '-')}). "
            f"Made with podtune {version}.", ""]
    out += ["## Training", "", "| | |", "|---|---|",
            f"| steps | {steps if steps is not None else '-'} |",
            f"| loss (first → final) | {_num(first)} → {_num(final)} |",
            f"| tokens | {_num(train.get('tokens'), ',d') if isinstance(train.get('tokens'), int) else '-'} |",
            f"| training time | {_duration(seconds)} |",
            f"| GPU | {gpu} at ${_num(rate, '.3f')}/h |",
            f"| training cost | ${_num(cost, '.4f')} |",
            f"| peak memory | {_num(train.get('peak_mem_mb'), ',.0f')} MB |",
            f"| podtune | {version} |", ""]
    if losses:
        out += ["## Loss curve", "", "| step | loss |", "|---:|---:|"]
        out += [f"| {step} | {loss:.4f} |" for step, loss in loss_rows(losses)]
        out += [""]
    samples = merge.get("samples") or []
    if samples:
        out += ["## Sample answers (base vs tuned)", ""]
        for i, s in enumerate(samples, 1):
            out += [f"### Prompt {i}", "", _fence(s.get("prompt", "")), "", "**Base model:**", "",
                    _fence(s.get("base", "")), "", "**Tuned model:**", "", _fence(s.get("tuned", "")), ""]
    q, lora, t = recipe.quantization, recipe.lora, recipe.training
    out += ["## LoRA and quantization", "", "| | |", "|---|---|",
            f"| LoRA rank / alpha / dropout | {lora.r} / {lora.alpha} / {lora.dropout} |",
            f"| target modules | {lora.target_modules if isinstance(lora.target_modules, str) else ', '.join(lora.target_modules)} |",
            f"| 4-bit | {q.load_in_4bit} ({q.quant_type}, double quant {q.double_quant}) |",
            f"| learning rate / schedule | {t.learning_rate} / {t.lr_scheduler} |",
            f"| batch size x grad accum | {t.batch_size} x {t.grad_accum} |",
            f"| max steps / epochs | {t.max_steps or '-'} / {t.epochs or '-'} |", ""]
    out += ["## Recipe", "", "```yaml", dump_recipe(recipe).rstrip(), "```", ""]
    return "\n".join(out)


def _fence(text: str) -> str:
    # A sample may itself contain backticks; a longer fence keeps it inside its block.
    text = str(text)
    fence = "```"
    while fence in text:
        fence += "`"
    return f"{fence}text\n{text.strip()}\n{fence}"
