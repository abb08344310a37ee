"""The laptop files a run uploads as training data, and a readable check of each one.

Recipes are shared like axolotl configs, so a recipe may only name data inside its own folder (symlinks
followed); data kept anywhere else is given by the person running podtune (`--data PATH`), never by the recipe.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from remote.datacheck import SAMPLE, DataError, check_columns, check_records, preview
from remote.recipe import LOCAL_DATA_SUFFIXES, Recipe

from ..errors import ConfigError

ELSEWHERE_HINT = "put the file in the recipe's folder, or give it on the command line: podtune run RECIPE --data PATH"


def recipe_data_files(recipe: Recipe, recipe_path: Path) -> list[Path]:
    """The recipe's own local data file, resolved; refused when it leads out of the recipe's folder."""
    if not recipe.dataset.is_local:
        return []
    folder = recipe_path.resolve().parent
    path = (folder / recipe.dataset.source).resolve()
    if not path.is_relative_to(folder):
        raise ConfigError(
            f"dataset.source: {recipe.dataset.source} leads out of the recipe's folder {folder} (to {path}); "
            "a recipe may only name data beside it", ELSEWHERE_HINT)
    if not path.is_file():
        raise ConfigError(f"dataset.source: {recipe.dataset.source} not found (looked at {path})",
                          "local data paths are relative to the recipe file")
    return [path]


def given_data_file(path: Path) -> Path:
    """A data file named on the command line: any readable .json/.jsonl file the user chose."""
    resolved = path.expanduser().resolve()
    if not resolved.is_file():
        raise ConfigError(f"--data {path}: no such file", "give the path of a .json or .jsonl data file")
    if not resolved.name.endswith(LOCAL_DATA_SUFFIXES):
        raise ConfigError(f"--data {path}: the file name must end in .json or .jsonl",
                          "convert the data to JSON Lines (one JSON object per line) and name it *.jsonl")
    return resolved


def with_data(recipe: Recipe, path: Path) -> Recipe:
    """The recipe as the pod sees it when data came from --data: the source is the file's name, nothing more."""
    return recipe.model_copy(update={"dataset": recipe.dataset.model_copy(update={"source": path.name})})


def read_records(path: Path) -> list[Any]:
    """The records of a .json or .jsonl file; ConfigError naming the file and line of the first bad one."""
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[:exc.start].count(b"\n") + 1
        raise _bad(path, line, "is not UTF-8 text") from None
    if path.suffix == ".jsonl":
        records = []
        for number, line_text in enumerate(text.splitlines(), 1):
            if line_text.strip():
                records.append(_parse(path, line_text, number))
                _need_object(path, records[-1], number)
        return records
    data = _parse(path, text, 1)
    if isinstance(data, dict) and isinstance(data.get("data"), list):
        data = data["data"]
    if not isinstance(data, list):
        raise ConfigError(f"{path}: a .json data file holds a list of records (or {{\"data\": [...]}})",
                          "or write one JSON object per line and name the file *.jsonl")
    for index, record in enumerate(data, 1):
        _need_object(path, record, None, index)
    return data


def _parse(path: Path, text: str, line: int) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        where = line + exc.lineno - 1
        raise _bad(path, where, f"is not valid JSON ({exc.msg}, column {exc.colno})") from None


def _need_object(path: Path, record: Any, line: int | None, index: int | None = None) -> None:
    if not isinstance(record, dict):
        where = f"line {line}" if line is not None else f"record {index}"
        raise ConfigError(f"{path}, {where}: a record must be a JSON object, not {type(record).__name__}",
                          "each record is an object such as {\"instruction\": ..., \"output\": ...}")


def _bad(path: Path, line: int, what: str) -> ConfigError:
    return ConfigError(f"{path}, line {line}: {what}",
                       "data files are JSON Lines (one JSON object per line, *.jsonl) or a JSON list (*.json)")


def check_fits_recipe(recipe: Recipe, path: Path) -> None:
    """ConfigError naming the column (and showing one record as rendered) when the file cannot train this recipe:
    the pod's own checks, run on the laptop before anything is rented."""
    where = f"dataset.source {recipe.dataset.source}"
    records = read_records(path)[:SAMPLE]
    columns: dict[str, None] = {}
    for rec in records:  # in first-seen order: the listing in a message reads like the file
        columns.update(dict.fromkeys(rec))
    try:
        if records:
            check_columns(recipe, columns, where)
        check_records(recipe, records, where, lambda rec: preview(recipe, rec))
    except DataError as exc:
        raise ConfigError(exc.message, exc.hint) from None
