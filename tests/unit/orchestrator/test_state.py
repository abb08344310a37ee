"""State DB: migrations apply once, runs/phases/pods round-trip, billing intervals open and close."""

from __future__ import annotations

import time

from orchestrator.state import MIGRATIONS, PodRecord, RunRecord, State


def test_migrations_apply_once_on_a_fresh_db():
    state = State(":memory:")
    applied = [r[0] for r in state.db.execute("SELECT name FROM _podtune_migrations")]
    assert applied == [m.__name__ for m in MIGRATIONS]
    from orchestrator.state import migrate

    migrate(state.db)  # a second pass changes nothing
    assert len(list(state.db.execute("SELECT name FROM _podtune_migrations"))) == len(MIGRATIONS)


def test_run_phases_and_latest(tmp_path):
    state = State(tmp_path / "s.db")
    state.add_run(RunRecord("a-1", "a", "/r.yaml", "local", "running", created_at=1.0, estimate={"total_usd": 1}))
    state.add_run(RunRecord("b-1", "b", "/r.yaml", "local", "running", created_at=2.0))
    state.phase_started("a-1", "train", at=10.0)
    state.phase_ended("a-1", "train", ok=True, at=25.0)
    state.update_run("a-1", status="succeeded", summary={"final_loss": 1.5})
    assert state.latest_run().id == "b-1"
    run = state.get_run("a-1")
    assert run.status == "succeeded" and run.summary == {"final_loss": 1.5} and run.estimate == {"total_usd": 1}
    assert [(p["phase"], p["ended_at"] - p["started_at"], p["ok"]) for p in state.phases("a-1")] == [("train", 15.0, 1)]
    assert run.phase == "train"
    assert state.run_ids_like("a-") == ["a-1"]


def test_update_run_sets_only_the_fields_given_and_none_clears_one(tmp_path):
    import pytest

    state = State(tmp_path / "s.db")
    state.add_run(RunRecord("a-1", "a", "/r.yaml", "local", "running", created_at=1.0))
    state.update_run("a-1", status="failed", ended_at=5.0, message="boom")
    state.update_run("a-1", events_offset=42)
    run = state.get_run("a-1")
    assert (run.status, run.ended_at, run.message, run.events_offset) == ("failed", 5.0, "boom", 42)
    state.update_run("a-1", status="provisioning", ended_at=None, message=None)  # as resume does
    run = state.get_run("a-1")
    assert (run.status, run.ended_at, run.message, run.events_offset) == ("provisioning", None, None, 42)
    with pytest.raises(TypeError):  # a name is no longer turned into a SQL column
        state.update_run("a-1", **{"status = 'x', id": "y"})


def test_statuses_are_stored_as_the_strings_older_podtunes_wrote_and_read_back_typed(tmp_path):
    from orchestrator.providers import PodState
    from orchestrator.state import RunStatus

    state = State(tmp_path / "s.db")
    state.add_run(RunRecord("a-1", "a", "/r.yaml", "local", RunStatus.PROVISIONING, created_at=1.0))
    state.update_run("a-1", status=RunStatus.DETACHED)
    state.upsert_pod(PodRecord("p1", "runpod", "podtune-x", PodState.PENDING, created_at=1.0))
    state.set_pod_status("p1", PodState.STOPPED)
    assert state.db.execute("SELECT status, typeof(status) FROM runs").fetchone()[:] == ("detached", "text")
    assert state.db.execute("SELECT status, typeof(status) FROM pods").fetchone()[:] == ("EXITED", "text")
    assert state.get_run("a-1").status is RunStatus.DETACHED and state.get_pod("p1").status is PodState.STOPPED


def test_pod_intervals_follow_status_changes(tmp_path):
    state = State(tmp_path / "s.db")
    state.upsert_pod(PodRecord("p1", "runpod", "podtune-x", "RUNNING", created_at=time.time(), cost_per_hr=0.29))
    state.set_pod_status("p1", "RUNNING", at=100.0)
    state.set_pod_status("p1", "RUNNING", at=150.0)  # already running: no second interval
    state.set_pod_status("p1", "EXITED", at=200.0)
    state.set_pod_status("p1", "RUNNING", at=300.0)
    state.set_pod_status("p1", "TERMINATED", at=360.0)
    assert state.pod_intervals("p1") == [(100.0, 200.0), (300.0, 360.0)]
    pod = state.get_pod("p1")
    assert pod.status == "TERMINATED" and pod.terminated_at == 360.0


def test_the_state_db_and_podtune_home_are_private_to_the_user(isolated_home):
    import stat

    state = State()
    state.add_run(RunRecord("a-1", "a", "/r.yaml", "local", "running", created_at=1.0))
    assert stat.S_IMODE(isolated_home.stat().st_mode) == 0o700
    for name in ("state.db", "state.db-wal", "state.db-shm"):
        if (isolated_home / name).exists():
            assert stat.S_IMODE((isolated_home / name).stat().st_mode) == 0o600, name


def test_an_error_message_quoting_a_token_is_stored_redacted(tmp_path, monkeypatch):
    token = "hf_" + "Stored0Secret1Token2Value3xyz"
    monkeypatch.setenv("HF_TOKEN", token)
    state = State(tmp_path / "s.db")
    state.add_run(RunRecord("a-1", "a", "/r.yaml", "local", "running", created_at=1.0))
    state.update_run("a-1", status="failed", message=f"download failed: 401 for Bearer {token}")
    state.close()
    assert token.encode() not in (tmp_path / "s.db").read_bytes()
    assert "download failed: 401" in State(tmp_path / "s.db").get_run("a-1").message
