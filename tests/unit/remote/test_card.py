"""The model card publishes what the run did, never where it ran from: no ssh host, user, key or local path."""

from __future__ import annotations

from remote import card
from tests.recipes import recipe_variant

PRIVATE = ("gpu-box.corp.internal", "alice-admin", "/home/alice/.ssh/id_lab", "/scratch/alice/ws", "customer-exports/")


def test_the_card_leaves_out_compute_ssh_and_local_data_paths():
    recipe = recipe_variant({
        "dataset.source": "customer-exports/tiny.jsonl", "compute.provider": "ssh",
        "compute.ssh": {"host": "gpu-box.corp.internal", "user": "alice-admin", "key_path": "/home/alice/.ssh/id_lab",
                        "workspace": "/scratch/alice/ws"},
    })
    facts = {"losses": [(1, 2.0), (2, 1.5)], "train": {}, "merge": {}, "run": {}}
    rendered = card.render(recipe, facts, repo_id="alice/tiny-tuned")
    assert [p for p in PRIVATE if p in rendered] == []
    assert "tiny.jsonl" in rendered and "learning rate" in rendered
