"""The protocol module: run.json as RunInfo, and the enums keeping the strings already on volumes and in DBs."""

from __future__ import annotations

import json
from pathlib import Path

from remote.events import EventKind, EventLog, Phase, RunInfo, read_events


def test_run_info_round_trips_and_reads_what_older_or_newer_launches_wrote():
    info = RunInfo(run_id="r-1", max_hours=2.0, max_usd=None, secret_files=("/w/.podtune-secrets/r-1",))
    assert RunInfo.from_json(info.to_json()) == info
    assert json.loads(info.to_json())["secret_files"] == ["/w/.podtune-secrets/r-1"]  # a JSON list, as before
    # null reads as unset; a field this version does not know is ignored
    assert RunInfo.from_json('{"run_id": "r-2", "max_hours": null, "from_the_future": 1}') == RunInfo(run_id="r-2")


def test_an_event_kind_is_written_as_its_plain_string(tmp_path: Path):
    log = EventLog(tmp_path)
    log.emit(EventKind.STEP, step=1)
    log.phase_start(Phase.TRAIN)
    raw = (tmp_path / "events.jsonl").read_text().splitlines()
    assert [json.loads(line)["kind"] for line in raw] == ["step", "phase_start"]
    assert json.loads(raw[1])["phase"] == "train"
    events, _ = read_events(tmp_path / "events.jsonl")
    assert events[0]["kind"] == EventKind.STEP and type(events[0]["kind"]) is str
