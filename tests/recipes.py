"""Recipe variants for tests: a change to the parsed recipe, validated by the real loader, never an edit of YAML text.

`text.replace("max_steps: 30", ...)` silently does nothing once the recipe is reformatted, and the test then runs
something else than it says. Here each change names a field by its dotted path (`"training.max_steps"`); a path the
recipe schema does not have raises KeyError, so a typo or a renamed field fails the test that uses it.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel

from remote.recipe import Recipe, parse_recipe
from tests.conftest import REPO

TINY = REPO / "recipes" / "tiny-cpu.yaml"


def _model_in(annotation: Any) -> type[BaseModel] | None:
    """The recipe section a field holds (`ComputeSpec` for `ssh: SshHostSpec | None`), or None for a plain value."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in getattr(annotation, "__args__", ()) or ():
        if found := _model_in(arg):
            return found
    return None


def _set(data: dict[str, Any], path: str, value: Any) -> None:
    keys = path.split(".")
    model: type[BaseModel] | None = Recipe
    node = data
    for depth, key in enumerate(keys):
        field = model.model_fields.get(key) if model else None
        if field is None:
            raise KeyError(f"{path!r}: the recipe has no field {'.'.join(keys[:depth + 1])!r}")
        if depth == len(keys) - 1:
            node[key] = value
            return
        if not isinstance(node.get(key), dict):
            node[key] = {}  # a section the base recipe leaves to its defaults
        node, model = node[key], _model_in(field.annotation)


def variant_text(changes: Mapping[str, Any], *, base: Path = TINY) -> str:
    """The base recipe's YAML with each `"section.field": value` of `changes` set."""
    data = yaml.safe_load(base.read_text(encoding="utf-8"))
    for path, value in changes.items():
        _set(data, path, value)
    return yaml.safe_dump(data, allow_unicode=True, sort_keys=False)


def recipe_variant(changes: Mapping[str, Any], *, base: Path = TINY) -> Recipe:
    """The base recipe with `changes` applied, validated as `podtune` validates a recipe file."""
    return parse_recipe(variant_text(changes, base=base), source=f"{base.name} with {dict(changes)}")


def write_recipe_variant(dest: Path, changes: Mapping[str, Any], *, base: Path = TINY, validate: bool = True) -> Path:
    """Write the variant to `dest` for a test that hands a file to the CLI; returns `dest`.

    A local dataset is relative to the recipe's folder: the caller puts the data beside `dest` if the test trains.
    `validate=False` is for a variant meant to be refused (the test is about the error)."""
    text = variant_text(changes, base=base)
    if validate:
        parse_recipe(text, source=str(dest))
    dest.parent.mkdir(parents=True, exist_ok=True)
    dest.write_text(text, encoding="utf-8")
    return dest
