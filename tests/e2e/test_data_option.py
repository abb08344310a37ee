"""`podtune run RECIPE --data FILE`: data kept outside the recipe's folder reaches the pod because the user named it."""

from __future__ import annotations

import json
import shutil

from tests.conftest import REPO
from tests.e2e.helpers import events, podtune, runs_in
from tests.recipes import write_recipe_variant


def test_data_given_on_the_command_line_is_what_the_pod_trains_on(tmp_path):
    home = tmp_path / "home"
    mine = tmp_path / "my-datasets" / "persona.jsonl"
    mine.parent.mkdir()
    shutil.copy(REPO / "recipes" / "data" / "tiny-instructions.jsonl", mine)
    recipe = write_recipe_variant(tmp_path / "shared" / "tiny.yaml", {"training.max_steps": 3, "training.save_steps": 3})

    out = podtune("run", str(recipe), "--data", str(mine), "--yes", home=home)

    ((run_id, status, _),) = runs_in(home)
    run_dir = home / "local" / "workspace" / "runs" / run_id
    assert status == "succeeded" and str(mine) in " ".join(out.stdout.split())
    assert (run_dir / "data" / "persona.jsonl").read_bytes() == mine.read_bytes()
    assert "source: persona.jsonl" in (run_dir / "recipe.yaml").read_text()  # the laptop path stays on the laptop
    assert not (run_dir / "data" / "tiny-instructions.jsonl").exists()
    assert any(e["kind"] == "train_done" for e in events(run_dir / "events.jsonl"))
    assert json.loads((home / "runs" / run_id / "summary.json").read_text())["steps"] == 3
