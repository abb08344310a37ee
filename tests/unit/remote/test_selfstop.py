"""The pod stops its own billing with its pod-scoped key: REST v2 /action first, GraphQL podStop as the fallback."""

from __future__ import annotations

import pytest

from orchestrator.providers import PodSpec
from orchestrator.providers.runpod import RunPodProvider
from remote import selfstop
from tests.doubles.runpod_emulator import RunPodEmulator


@pytest.fixture()
def pod(tmp_path, monkeypatch):
    with RunPodEmulator(state_dir=tmp_path / "rp", boot_delay_s=0.1) as emu:
        created = RunPodProvider(emu.api_key, base_url=emu.url).create(PodSpec(
            name="podtune-selfstop", recipe_name="t", gpu_types=("NVIDIA GeForce RTX 3090",), gpu_count=1,
            volume_gb=20, container_disk_gb=10, image="runpod/pytorch:2.8.0", public_key="ssh-ed25519 AAAA x"))
        assert emu.wait_ready(created.id, 30)
        # What RunPod puts in the pod's environment: its id and a key that may only stop this pod.
        monkeypatch.setenv("RUNPOD_POD_ID", created.id)
        monkeypatch.setenv("RUNPOD_API_KEY", emu.pod(created.id).api_key)
        monkeypatch.setenv("RUNPOD_API_BASE_URL", emu.url)
        yield emu, created.id


def test_the_pod_stops_itself_through_rest_v2(pod, capsys):
    emu, pod_id = pod
    assert selfstop.stop_runpod(attempts=2, timeout_s=10)
    assert emu.wait_status(pod_id, "EXITED", 10)
    assert f"stopped {pod_id} via v2 /action" in capsys.readouterr().out
    assert emu.graphql_requests == [] and emu.request_violations == []


def test_graphql_podstop_is_the_fallback_when_v2_refuses_the_pod_key(pod, capsys):
    emu, pod_id = pod
    emu.pod_keys_on_v2 = False
    assert selfstop.stop_runpod(attempts=2, timeout_s=10)
    assert emu.wait_status(pod_id, "EXITED", 10)
    assert "via GraphQL podStop" in capsys.readouterr().out and len(emu.graphql_requests) == 1


def test_with_both_paths_closed_it_fails_and_says_why(pod, capsys, monkeypatch):
    emu, pod_id = pod
    emu.pod_keys_on_v2, emu.graphql_gone = False, True
    monkeypatch.setattr(selfstop.time, "sleep", lambda s: None)
    assert not selfstop.stop_runpod(attempts=3, timeout_s=10)
    out = capsys.readouterr().out
    assert "v2 /action answered 403" in out and "GraphQL podStop refused" in out
    assert emu.pods[pod_id].desired_status == "RUNNING"


def test_the_watchdog_records_which_path_stopped_the_pod():
    from remote.watchdog import run_self_stop

    ok, attempts, path = run_self_stop("echo 'selfstop: stopped pod_x via v2 /action'", attempts=1)
    assert (ok, attempts, path) == (True, 1, "v2 /action")
    assert run_self_stop("exit 3", attempts=1, backoff_s=0)[:2] == (False, 1)
