"""Does the data fit the recipe? Checks both sides run: the laptop on a local file's first records before renting,
the pod on the loaded split before training. Bad data must fail loudly: an alpaca recipe over records without
`instruction`/`output` would otherwise train on empty templates and report success.

Imports only the recipe (the laptop uses it, and must not load `datasets`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from .recipe import Recipe

SAMPLE = 1000  # records checked; enough to see a pattern, cheap on any dataset
EMPTY_SHARE = 0.5  # refuse when more than this share of records lacks a required field
TRUNCATED_SHARE = 0.5  # refuse when more than this share would be cut at max_length (without packing)
EXAMPLE_CHARS = 400


class DataError(ValueError):
    """Data the recipe cannot train on: `message` names the column or the problem, `hint` the fix."""

    def __init__(self, message: str, hint: str):
        super().__init__(f"{message}; {hint}")
        self.message = message
        self.hint = hint


def required_columns(recipe: Recipe) -> dict[str, str]:
    """Role -> the column it reads. `input` is optional (many alpaca sets omit it) unless the recipe renames it."""
    spec = recipe.dataset
    if spec.format == "text":
        return {"text": spec.text_column}
    columns = {str(role): col for role, col in spec.columns.items()}
    needed = {role: columns.get(role, role) for role in ("instruction", "output")}
    if "input" in columns:
        needed["input"] = columns["input"]
    return needed


def check_columns(recipe: Recipe, columns: Iterable[str], where: str) -> None:
    """DataError naming every required column `where` lacks, with the columns it has and how to map them."""
    have = list(columns)
    spec = recipe.dataset
    missing = {role: col for role, col in required_columns(recipe).items() if col not in have}
    if not missing:
        return
    listing = ", ".join(have) or "none"
    named = ", ".join(f"'{col}'" + (f" (the {spec.format} format's {role})" if role != col else "")
                      for role, col in missing.items())
    noun = "column" if len(missing) == 1 else "columns"
    message = f"{where} has no {noun} {named}; dataset.format is {spec.format}, its columns are: {listing}"
    if spec.format == "text":
        hint = f"set dataset.text_column to one of: {listing}" if have else "check dataset.source"
    else:
        example = ", ".join(f"{role}: <column>" for role in missing)
        hint = f"map them in dataset.columns, e.g. columns: {{{example}}} with <column> one of: {listing}"
    raise DataError(message, hint)


def check_records(recipe: Recipe, records: Sequence[Mapping[str, Any]], where: str,
                  render: Callable[[Any], str]) -> None:
    """DataError for an empty split, or for records whose required fields are mostly empty."""
    if not records:
        raise DataError(f"{where} has no records (dataset.split is {recipe.dataset.split!r})",
                        "check dataset.split and the file: there is nothing to train on")
    for role, column in required_columns(recipe).items():
        empty = [r for r in records if not str(r.get(column) if r.get(column) is not None else "").strip()]
        if len(empty) > EMPTY_SHARE * len(records):
            raise DataError(
                f"{where}: {len(empty)} of the first {len(records)} records have an empty '{column}'"
                + (f" (the {role})" if role != column else "") + f"; one renders as:\n{example(render(empty[0]))}",
                "fill that column, or point dataset.columns / dataset.text_column at the column that holds it")


def check_lengths(recipe: Recipe, lengths: list[int], max_length: int, render_first: str, where: str) -> None:
    """DataError when most records are longer than max_length and would lose their ends (their answers)."""
    if recipe.training.packing or not lengths:
        return  # packing cuts the concatenated stream, not each record: nothing is lost per record
    cut = sum(n > max_length for n in lengths)
    if cut > TRUNCATED_SHARE * len(lengths):
        raise DataError(
            f"{where}: {cut} of the first {len(lengths)} records are longer than {max_length} tokens and would be "
            f"truncated (the answer at their end lost); the first renders as:\n{example(render_first)}",
            "raise training.max_seq_length, turn on training.packing, or check dataset.format / prompt_template")


def preview(recipe: Recipe, record: Mapping[str, Any]) -> str:
    """A record rendered as the pod would (minus the tokenizer's EOS and chat markup): what a person can judge."""
    spec = recipe.dataset
    if spec.format == "text":
        return str(record.get(spec.text_column) or "")
    columns = {str(role): col for role, col in spec.columns.items()}

    def field(role: str) -> str:
        value = record.get(columns.get(role, role))
        return "" if value is None else str(value)

    if spec.format == "alpaca":
        return spec.prompt_template.format(instruction=field("instruction"), input=field("input"), output=field("output"))
    user = field("instruction") + (f"\n\n{field('input')}" if field("input") else "")
    return f"user: {user}\nassistant: {field('output')}"


def example(text: str) -> str:
    shown = text if len(text) <= EXAMPLE_CHARS else text[:EXAMPLE_CHARS] + " …"
    return "\n".join(f"    | {line}" for line in shown.splitlines() or [""])
