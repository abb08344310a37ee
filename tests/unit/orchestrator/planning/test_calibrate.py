"""The CPU plan calibrates itself: a probe measured once per machine, cached in PODTUNE_HOME, used by the plan."""

from __future__ import annotations

import json

import pytest

from orchestrator.planning import calibrate
from orchestrator.planning.plan import make_plan
from orchestrator.providers.local import LocalProvider
from orchestrator.run import load_recipe_or_fail, local_data_files
from tests.conftest import REPO

RESULT = {"tokens_per_s": 1000.0, "train_start_s": 0.5, "train_setup_s": 2.0, "import_s": 3.0, "download_s": 1.0,
          "merge_s": 0.8, "setup_s": 0.3, "steps": 12, "tokens": 5000}


@pytest.fixture()
def probe_on(monkeypatch):
    monkeypatch.setenv(calibrate.PROBE_ENV, "on")


def counting_probe(calls: list):
    def probe():
        calls.append(1)
        return dict(RESULT)
    return probe


def test_measured_once_then_cached_per_machine(probe_on):
    calls: list = []
    first = calibrate.cpu_calibration(probe=counting_probe(calls))
    second = calibrate.cpu_calibration(probe=counting_probe(calls))
    assert len(calls) == 1 and first["tokens_per_s"] == second["tokens_per_s"] == 1000.0
    stored = json.loads(calibrate.cache_path().read_text())
    (entry,) = stored["entries"].values()
    assert entry["key"] == calibrate.machine_key() and entry["key"]["cpus"] >= 1 and "torch" in entry["key"]


def test_another_machine_or_library_release_is_measured_again(probe_on):
    key = calibrate.machine_key()
    calibrate.save(key, RESULT)
    assert calibrate.load(key) is not None
    assert calibrate.load({**key, "cpus": key["cpus"] + 1}) is None
    assert calibrate.load({**key, "torch": "0.0.1"}) is None


def test_a_day_old_measurement_is_measured_again(probe_on):
    key = calibrate.machine_key()
    calibrate.save(key, RESULT, now=1_000_000.0)
    assert calibrate.load(key, now=1_000_000.0 + 3600) is not None
    assert calibrate.load(key, now=1_000_000.0 + calibrate.MAX_AGE_S + 1) is None
    calls: list = []
    calibrate.cpu_calibration(probe=counting_probe(calls))  # the stale entry is replaced
    assert calls == [1]


def test_a_failed_probe_falls_back_to_the_table_and_says_so(probe_on):
    said: list[str] = []

    def broken():
        raise RuntimeError("no torch here")

    assert calibrate.cpu_calibration(say=said.append, probe=broken) is None
    assert any("probe failed" in line for line in said) and not calibrate.cache_path().exists()


def test_turned_off_means_no_probe():
    assert calibrate.cpu_calibration(probe=lambda: pytest.fail("probed")) is None  # the suite's default


def test_summarize_separates_the_steady_rate_from_fixed_costs():
    ev = [{"kind": "pipeline_start", "ts": 102.0},
          {"kind": "phase_start", "phase": "download", "ts": 102.0}, {"kind": "phase_end", "phase": "download", "ts": 103.0},
          {"kind": "phase_start", "phase": "train", "ts": 103.0}]
    # A checkpoint after step 5 (1 s): a fixed cost, not a slower rate.
    ev += [{"kind": "step", "step": i, "tokens": 500 * i, "ts": 104.5 + 0.5 * i + (1.0 if i > 5 else 0.0)}
           for i in range(1, 11)]
    ev += [{"kind": "train_done", "train_seconds": 7.5, "ts": 110.6}, {"kind": "phase_end", "phase": "train", "ts": 111.0},
           {"kind": "phase_start", "phase": "merge", "ts": 111.0}, {"kind": "phase_end", "phase": "merge", "ts": 112.0},
           {"kind": "pipeline_done", "ts": 112.0}]
    out = calibrate.summarize(ev, spawned=100.0, ended=113.0, setup_s=0.2, save_steps=5)
    assert out["tokens_per_s"] == 1000.0  # 500 tokens a step, 0.5 s each step but the checkpoint's
    assert out["train_start_s"] == pytest.approx(2.5)  # 7.5 s of train() minus 5,000 tokens at 1,000 tok/s
    assert out["train_setup_s"] == pytest.approx(0.5) and out["import_s"] == pytest.approx(2.0)
    assert out["download_s"] == pytest.approx(1.0) and out["merge_s"] == pytest.approx(1.0)
    assert out["exit_s"] == pytest.approx(1.0)


def test_slow_steps_that_wrote_no_checkpoint_count_in_the_rate():
    """A run pays for its slow steps (load on a shared CPU): the rate is the steady steps' mean, not their median."""
    times = [0.5] * 9
    times[2] = times[7] = 1.5  # two slow steps; the checkpoint (after step 5) is 2 s
    times[4] = 2.0
    ev = [{"kind": "pipeline_start", "ts": 100.0}, {"kind": "phase_start", "phase": "download", "ts": 100.0},
          {"kind": "phase_end", "phase": "download", "ts": 100.0}, {"kind": "phase_start", "phase": "train", "ts": 100.0}]
    ts = 101.0
    ev.append({"kind": "step", "step": 1, "tokens": 500, "ts": ts})
    for i, dt in enumerate(times, start=2):
        ts += dt
        ev.append({"kind": "step", "step": i, "tokens": 500 * i, "ts": ts})
    ev += [{"kind": "train_done", "train_seconds": ts - 100.0, "ts": ts}, {"kind": "phase_end", "phase": "train", "ts": ts},
           {"kind": "phase_start", "phase": "merge", "ts": ts}, {"kind": "phase_end", "phase": "merge", "ts": ts},
           {"kind": "pipeline_done", "ts": ts}]
    out = calibrate.summarize(ev, spawned=99.0, ended=ts, setup_s=0.1, save_steps=5)
    assert out["tokens_per_s"] == pytest.approx(500 / 0.75, abs=0.1)  # 8 steady steps: six of 0.5 s, two of 1.5 s
    # What the probe's training took is what the figures give back: fixed part + tokens at the steady rate.
    assert out["train_start_s"] + 5000 / out["tokens_per_s"] == pytest.approx(ts - 100.0, abs=0.01)


def test_the_local_plan_uses_the_measurement_not_the_table(probe_on, monkeypatch):
    path = REPO / "recipes" / "tiny-cpu.yaml"
    recipe = load_recipe_or_fail(path)
    calibrate.save(calibrate.machine_key(), RESULT)
    plan = make_plan(recipe, LocalProvider(), data_files=local_data_files(recipe, path), token=None)
    est = plan.estimate
    assert est["calibrated"] and est["tokens_per_s"] == 1000.0 and "measured on this CPU" in est["throughput_source"]
    assert est["train_tokens_s"] == pytest.approx(est["tokens"] / 1000.0 + 0.5, abs=0.1)
    p = est["phases"]
    assert p["download"] == pytest.approx(1.0 + 3.0, abs=0.1) and p["setup"] == pytest.approx(0.3, abs=0.1)
    assert p["train"] == pytest.approx(2.0 + est["tokens"] / 1000.0 + 0.5, abs=0.1)
    assert p["merge"] == pytest.approx(0.8, abs=0.1)
    assert any("measured on this CPU" in line for line in est["lines"])


def test_a_gpu_plan_never_uses_the_cpu_measurement(probe_on):
    from orchestrator.planning.plan import build_plan
    from tests.unit.orchestrator.planning.test_estimate import OFFERS

    recipe = load_recipe_or_fail(REPO / "recipes" / "llama2-ko.yaml")
    plan = build_plan(recipe, "runpod", OFFERS, data_files=[], calibration={**RESULT, "measured_at": 0})
    assert not plan.estimate["calibrated"] and plan.estimate["throughput_kind"] == "calibrated"
