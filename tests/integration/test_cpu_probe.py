"""The CPU probe for real: the pod-side pipeline on the tiny model, timed part by part from its own events."""

from __future__ import annotations

from orchestrator.planning.calibrate import run_probe


def test_the_probe_measures_a_rate_and_each_fixed_cost():
    result = run_probe(steps=6)
    assert result["steps"] == 6 and result["tokens"] > 0 and result["tokens_per_s"] > 0
    for key in ("train_start_s", "train_setup_s", "import_s", "download_s", "merge_s", "setup_s"):
        assert 0 <= result[key] < 120, (key, result)
    # Started as a run starts the pod's Python (remote/warm.py): every library is imported before the pipeline's
    # first event, so the plan puts them where a run's report does (download), not in the model load.
    assert result["import_s"] > result["train_setup_s"], result
