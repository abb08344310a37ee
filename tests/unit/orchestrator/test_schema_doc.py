"""`podtune schema --markdown` documents every field; docs/recipe.md is its current output."""

from __future__ import annotations

import subprocess

from pydantic import BaseModel

from orchestrator.schema_doc import markdown
from remote.recipe import Recipe
from tests.conftest import REPO, env_without_secrets


def _all_fields(model: type[BaseModel], prefix: str = "") -> list[str]:
    from orchestrator.schema_doc import _section

    names = []
    for name, field in model.model_fields.items():
        names.append(prefix + name)
        inner = _section(field.annotation)
        if inner is not None:
            names += _all_fields(inner, f"{prefix}{name}.")
    return names


def test_every_field_is_documented_with_default_and_description():
    text = markdown()
    rows = {line.split("|")[1].strip().strip("`"): line for line in text.splitlines() if line.startswith("| `")}
    for name in _all_fields(Recipe):
        assert name in rows, name
    assert "| `training.learning_rate` | float, > 0, < 1 | `0.0002` | Peak learning rate. |" in text
    assert "| `dataset.source` | str | **required** |" in text
    assert "| `compute.ssh.port` | int, ≥ 1, ≤ 65535 | `22` | SSH port. |" in text


def test_docs_recipe_md_is_up_to_date():
    assert (REPO / "docs" / "recipe.md").read_text(encoding="utf-8") == markdown(), (
        "docs/recipe.md is stale: run `podtune schema --markdown > docs/recipe.md`")


def test_cli_prints_it_and_json_stays(podtune_bin):
    out = subprocess.run([podtune_bin, "schema", "--markdown"], capture_output=True, text=True, timeout=60,
                         env=env_without_secrets(), cwd=REPO)
    assert out.returncode == 0 and out.stdout == markdown()
    raw = subprocess.run([podtune_bin, "schema"], capture_output=True, text=True, timeout=60, env=env_without_secrets())
    assert raw.returncode == 0 and raw.stdout.lstrip().startswith("{") and '"properties"' in raw.stdout
