"""What the laptop's copy of a run says about its end, launch by launch (a resumed run has several)."""

from __future__ import annotations

import json

from orchestrator.pod import retrieve


def _write(path, *events):
    with open(path, "a") as fh:
        for e in events:
            fh.write(json.dumps(e) + "\n")
    return path.stat().st_size


def test_an_earlier_attempts_end_does_not_pass_for_the_latest_launchs(tmp_path):
    size = _write(tmp_path / "events.jsonl", {"ts": 1, "kind": "pipeline_start"}, {"ts": 2, "kind": "watchdog_stop"},
                  {"ts": 3, "kind": "self_stopped"})
    (tmp_path / "train.log").write_text("first attempt\n")
    assert retrieve.has_end(tmp_path) and retrieve.stopped_at(retrieve.launch_events(tmp_path)) == 3

    retrieve.mark_launch(tmp_path, size)  # podtune resume
    assert not (tmp_path / "train.log").exists()  # a stale copy would be shown as this attempt's log
    assert not retrieve.has_end(tmp_path) and retrieve.launch_events(tmp_path) == []

    _write(tmp_path / "events.jsonl", {"ts": 10, "kind": "pipeline_start"}, {"ts": 11, "kind": "pipeline_done", "ok": True})
    (tmp_path / "train.log").write_text("second attempt\n")
    assert retrieve.has_end(tmp_path) and [e["ts"] for e in retrieve.launch_events(tmp_path)] == [10, 11]
    assert retrieve.stopped_at(retrieve.launch_events(tmp_path)) is None


def test_no_log_copy_means_the_end_is_not_known_yet(tmp_path):
    _write(tmp_path / "events.jsonl", {"ts": 1, "kind": "pipeline_done", "ok": True})
    assert not retrieve.has_end(tmp_path)


def test_the_price_of_a_brief_start_is_two_minutes_of_the_pods_rate():
    assert retrieve.brief_price(0.43) == 0.43 * 120 / 3600
