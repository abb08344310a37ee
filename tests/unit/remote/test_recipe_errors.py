"""Schema errors point at the YAML line, and an emptied section says what it needs (not pydantic's class names)."""

from __future__ import annotations

import pytest

from remote.recipe import RecipeError, parse_recipe

RECIPE = """\
name: x
model:
dataset:
  source: a.jsonl
  format: alpaca
training:
  max_steps: 3
  learning_rate: -1
compute:
  provider: local
  gpu_types: ["ok", "b$"]
"""


def _error(text: str) -> RecipeError:
    with pytest.raises(RecipeError) as info:
        parse_recipe(text, source="r.yaml")
    return info.value


def test_each_problem_names_its_line():
    err = _error(RECIPE)
    assert err.lines == {"model": 2, "training.learning_rate": 8, "compute.gpu_types": 11}
    assert "  training.learning_rate (line 8): Input should be greater than 0" in str(err)


def test_an_emptied_section_says_what_it_needs():
    err = _error(RECIPE)
    message = dict(err.problems)["model"]
    assert "is empty; it needs at least: base" in message and "ModelSpec" not in str(err)


def test_a_section_that_is_not_a_mapping_says_so():
    err = _error(RECIPE.replace("model:\n", "model: llama\n"))
    assert "must be a mapping of fields, not 'llama'" in dict(err.problems)["model"] and "ModelSpec" not in str(err)


def test_a_missing_field_points_at_its_section_and_an_unknown_one_at_itself():
    err = _error(RECIPE.replace("model:\n", "model:\n  bsae: a/b\n"))
    assert err.lines["model.base"] == 2 and err.lines["model.bsae"] == 3
    assert "did you mean 'base'" in dict(err.problems)["model.bsae"]
