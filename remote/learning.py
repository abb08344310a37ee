"""Did the tuned model learn the training data? A check a person can read next to the sample answers.

For each eval prompt, an answer "follows the training data" when it reproduces the data's template markers
(the fixed lines of `dataset.prompt_template`, e.g. `### input:`) or is close to the data's own answer for
that prompt. `overlap` (share of the answer's character trigrams found in the training texts) says in which
direction an answer moved without a yes/no threshold. Computed on the pod, where the data is.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable
from typing import Any

from .recipe import Recipe

MAX_RECORDS = 20_000  # enough to know the data's answers and trigrams; a 1M-row Hub dataset is not read whole
SIMILAR = 0.6  # difflib ratio from which an answer counts as the data's answer
PLACEHOLDER = re.compile(r"\{(?:instruction|input|output)\}")


def template_markers(recipe: Recipe) -> list[str]:
    """The template's fixed lines (`### instruction:`, `### output:`); none for text and chat data."""
    if recipe.dataset.format != "alpaca":
        return []
    lines = (line.strip() for part in PLACEHOLDER.split(recipe.dataset.prompt_template) for line in part.splitlines())
    return sorted({line for line in lines if len(line) >= 3})


def trigrams(text: str) -> set[str]:
    return {text[i:i + 3] for i in range(len(text) - 2)}


def assess(recipe: Recipe, records: Iterable[dict[str, Any]], samples: list[dict[str, str]]) -> dict[str, Any]:
    """{"samples": [{"tuned": {...}, "base": {...}}], "tuned_follow": n, "base_follow": n, "of": n, "line": str}.

    Only samples with something to compare against count in `of`: template markers (alpaca), or records whose
    prompt is the sample's (alpaca) or whose text starts with it (text, e.g. seed A's `<usr> ... <bot>`)."""
    spec = recipe.dataset
    markers = template_markers(recipe)
    prompts = [s["prompt"].strip() for s in samples]
    answers: dict[str, list[str]] = {p: [] for p in prompts}
    seen: set[str] = set()
    to_text = _plain_renderer(recipe)
    columns: dict[str, str] = {str(k): v for k, v in spec.columns.items()}
    for i, rec in enumerate(records):
        if i >= MAX_RECORDS:
            break
        if spec.format == "alpaca":
            get = lambda role: str(rec.get(columns.get(role) or role) or "")  # noqa: B023 - used at once
            prompt = spec.prompt_template.format(instruction=get("instruction"), input=get("input"), output="")
            if prompt.strip() in answers:
                answers[prompt.strip()].append(get("output"))
            text = prompt + get("output")
        else:
            text = to_text(rec)
            for p in prompts:
                if p and text.startswith(p):
                    answers[p].append(text[len(p):])
        seen |= trigrams(text)
    results = []
    for p, s in zip(prompts, samples):
        if markers or answers[p]:
            results.append({side: _judge(s[side], markers, answers[p], seen) for side in ("base", "tuned")})
    out = {
        "markers": markers,
        "samples": results,
        "tuned_follow": sum(r["tuned"]["follows"] for r in results),
        "base_follow": sum(r["base"]["follows"] for r in results),
        "of": len(results),
    }
    out["line"] = summary_line(out)
    return out


def _judge(answer: str, markers: list[str], refs: list[str], seen: set[str]) -> dict[str, Any]:
    text = answer.strip()
    similar = max((difflib.SequenceMatcher(None, text, ref.strip()).ratio() for ref in refs), default=0.0)
    uses_markers = [m for m in markers if m in text]
    grams = trigrams(text)
    return {
        "follows": bool(uses_markers) or similar >= SIMILAR,
        "markers": uses_markers,
        "answer_similarity": round(similar, 3),
        "overlap": round(len(grams & seen) / len(grams), 3) if grams else 0.0,
    }


def _plain_renderer(recipe: Recipe):
    """Text and chat records as plain text (no tokenizer here: the chat template's role tags are left out)."""
    spec = recipe.dataset
    if spec.format == "text":
        return lambda rec: str(rec.get(spec.text_column) or "")
    return lambda rec: "\n".join(str(rec.get(spec.columns.get(r, r)) or "") for r in ("instruction", "input", "output"))


def summary_line(learning: dict[str, Any] | None) -> str | None:
    """One line for the report: `tuned answer follows the training data's format: yes (base: no)`."""
    if not learning or not learning.get("of"):
        return None
    n, tuned, base = learning["of"], learning["tuned_follow"], learning["base_follow"]
    what = "format" if learning.get("markers") else "answers"
    if n == 1:
        return f"tuned answer follows the training data's {what}: {'yes' if tuned else 'no'} (base: {'yes' if base else 'no'})"
    return f"tuned answers follow the training data's {what}: {tuned} of {n} (base: {base} of {n})"
