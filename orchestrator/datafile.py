"""The laptop's look at a local data file before renting: do its records fit the recipe's format?

Reads only the first records with the json module (never `datasets`), then runs the same checks the pod runs."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from remote.datacheck import SAMPLE, DataError, check_columns, check_records, preview
from remote.recipe import Recipe

from .errors import ConfigError


def check_local_data(recipe: Recipe, path: Path) -> None:
    """ConfigError naming the column (and showing one record as rendered) when the file cannot train this recipe."""
    where = f"dataset.source {recipe.dataset.source}"
    records = _first_records(path, where)
    columns: dict[str, None] = {}
    for rec in records:  # in first-seen order: the listing in a message reads like the file
        columns.update(dict.fromkeys(rec))
    try:
        if records:
            check_columns(recipe, columns, where)
        check_records(recipe, records, where, lambda rec: preview(recipe, rec))
    except DataError as exc:
        raise ConfigError(exc.message, exc.hint) from None


def _first_records(path: Path, where: str) -> list[dict[str, Any]]:
    """Up to SAMPLE records, each checked to be an object; a JSON array file is read whole, as `datasets` will."""
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read(4096).lstrip()
            f.seek(0)
            if text.startswith("["):  # one JSON array (seed D's file)
                items = json.load(f)
                numbered = [(f"item {i}", r) for i, r in enumerate(items[:SAMPLE], 1)]
            else:
                numbered = _jsonl(f, where)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{where} is not valid JSON: {exc.msg} at line {exc.lineno}",
                          "write one JSON array of records, or one JSON object per line (.jsonl)") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{where} is not UTF-8 text", "save the file as UTF-8 JSON / JSON Lines") from None
    for at, record in numbered:
        if not isinstance(record, dict):
            raise ConfigError(f"{where}: {at} is not a JSON object (a record with named fields)",
                              'each record is an object such as {"instruction": ..., "input": ..., "output": ...}')
    return [record for _, record in numbered]


def _jsonl(f, where: str) -> list[tuple[str, Any]]:
    records: list[tuple[str, Any]] = []
    for number, text in enumerate(f, 1):
        if not text.strip():
            continue
        try:
            records.append((f"line {number}", json.loads(text)))
        except json.JSONDecodeError as exc:
            raise ConfigError(f"{where}: line {number} is not valid JSON ({exc.msg})",
                              "one JSON object per line (.jsonl); fix or remove that line") from None
        if len(records) >= SAMPLE:
            break
    return records
