"""The model card publishes what the run did, never where it ran from: no ssh host, user, key or local path."""

from __future__ import annotations

from remote import card
from remote.recipe import parse_recipe
from tests.conftest import REPO

PRIVATE = ("gpu-box.corp.internal", "alice-admin", "/home/alice/.ssh/id_lab", "/scratch/alice/ws", "customer-exports/")


def test_the_card_leaves_out_compute_ssh_and_local_data_paths():
    text = (REPO / "recipes" / "tiny-cpu.yaml").read_text()
    text = text.replace("source: data/tiny-instructions.jsonl", "source: customer-exports/tiny.jsonl")
    text = text.replace("  provider: local\n", "  provider: ssh\n  ssh:\n    host: gpu-box.corp.internal\n"
                        "    user: alice-admin\n    key_path: /home/alice/.ssh/id_lab\n"
                        "    workspace: /scratch/alice/ws\n")
    recipe = parse_recipe(text)
    facts = {"losses": [(1, 2.0), (2, 1.5)], "train": {}, "merge": {}, "run": {}}
    rendered = card.render(recipe, facts, repo_id="alice/tiny-tuned")
    assert [p for p in PRIVATE if p in rendered] == []
    assert "tiny.jsonl" in rendered and "learning rate" in rendered
