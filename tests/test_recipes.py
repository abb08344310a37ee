"""The tests' recipe-variant helper: a change lands in the validated recipe, a wrong path or value fails loudly."""

from __future__ import annotations

import pytest

from remote.recipe import RecipeError, load_recipe
from tests.recipes import TINY, recipe_variant, write_recipe_variant


def test_a_change_shows_up_in_the_validated_recipe_and_nothing_else_moves():
    base = load_recipe(TINY)
    changed = recipe_variant({"training.max_steps": 3, "output.hub_repo": "alice/tiny"})
    assert (changed.training.max_steps, changed.output.hub_repo) == (3, "alice/tiny")
    assert changed.model_copy(update={"training": base.training, "output": base.output}) == base
    assert changed.training.model_copy(update={"max_steps": 30}) == base.training


def test_a_section_the_base_leaves_to_its_defaults_can_be_given():
    changed = recipe_variant({"compute.provider": "ssh", "compute.ssh.host": "gpu-box", "compute.ssh.port": 2222})
    assert changed.compute.ssh is not None and (changed.compute.ssh.host, changed.compute.ssh.port) == ("gpu-box", 2222)


@pytest.mark.parametrize("path", ["training.max_step", "trainig.max_steps", "training.max_steps.value", "nmae"])
def test_a_path_the_recipe_does_not_have_fails_naming_it(path):
    with pytest.raises(KeyError, match="the recipe has no field"):
        recipe_variant({path: 3})


def test_a_bad_value_is_refused_by_the_real_loader():
    with pytest.raises(RecipeError, match="training.learning_rate"):
        recipe_variant({"training.learning_rate": -1})


def test_a_written_variant_reads_back_and_a_refused_one_is_written_only_when_asked(tmp_path):
    path = write_recipe_variant(tmp_path / "sub" / "r.yaml", {"compute.max_hours": 720})
    assert load_recipe(path) == recipe_variant({"compute.max_hours": 720})
    with pytest.raises(RecipeError):
        write_recipe_variant(tmp_path / "bad.yaml", {"training.learning_rate": -1})
    assert not (tmp_path / "bad.yaml").exists()
    bad = write_recipe_variant(tmp_path / "bad.yaml", {"training.learning_rate": -1}, validate=False)
    with pytest.raises(RecipeError, match="training.learning_rate"):
        load_recipe(bad)
