"""The RunPod provider against the REST v2 emulator, which checks every request and answer against RunPod's
own OpenAPI document (tests/doubles/runpod-v2-pods.openapi.json)."""

from __future__ import annotations

import time

import pytest

from orchestrator.errors import CapacityError, ConfigError, ProviderError
from orchestrator.providers import PodSpec, PodState
from orchestrator.providers.runpod import RunPodProvider
from tests.doubles.openapi_contract import Contract
from tests.doubles.runpod_emulator import RunPodEmulator

RTX_3090 = "NVIDIA GeForce RTX 3090"
A5000 = "NVIDIA RTX A5000"


@pytest.fixture()
def emu(tmp_path, monkeypatch):
    with RunPodEmulator(state_dir=tmp_path / "rp", boot_delay_s=0.1) as e:
        monkeypatch.setenv("RUNPOD_API_BASE_URL", e.url)
        yield e
        # Whatever a test did, podtune never sent anything outside the contract and the emulator never answered
        # outside it; and no GraphQL request left the laptop.
        assert e.request_violations == [] and e.contract_violations == []
        assert e.graphql_requests == []


def spec(name: str = "podtune-t", gpus: tuple[str, ...] = (RTX_3090,), cloud: str = "secure") -> PodSpec:
    return PodSpec(name=name, recipe_name="t", gpu_types=gpus, gpu_count=1, volume_gb=50, container_disk_gb=20,
                   image="runpod/pytorch:2.8.0-py3.11-cuda12.8.1-cudnn-devel-ubuntu22.04",
                   public_key="ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBq podtune", cloud=cloud)


def creates(emu: RunPodEmulator) -> list[dict]:
    return [r for r in emu.requests if r.get("op") == "createPod"]


def test_create_sends_the_documented_body_and_maps_the_pod(emu):
    pod = RunPodProvider(emu.api_key).create(spec())
    (request,) = creates(emu)
    assert request["body"] == {
        "name": "podtune-t", "image": spec().image, "cloud": "SECURE", "gpu": {"id": RTX_3090, "count": 1},
        "mounts": {"persistent": {"size": 50, "path": "/workspace"}}, "disk": 20, "ports": ["22/tcp"],
        "env": {"PUBLIC_KEY": spec().public_key},
    }
    assert pod.state == PodState.PENDING and pod.gpu_type == RTX_3090 and pod.volume_gb == 50
    assert pod.workspace == "/workspace" and pod.cost_per_hr == pytest.approx(0.43)


def test_the_create_body_validates_against_the_openapi_document():
    body = RunPodProvider("key", base_url="http://127.0.0.1:9")._create_body(spec(), RTX_3090)
    contract = Contract()
    assert contract.validate_schema("CreatePodRequest", body) == []
    # and the check can fail: a field the document does not declare is named
    errors = contract.validate_schema("CreatePodRequest", {**body, "volumeInGb": 50})
    assert errors and any("volumeInGb" in e for e in errors)


def test_an_undeclared_field_is_refused_with_422_and_called_a_podtune_bug(emu, monkeypatch):
    provider = RunPodProvider(emu.api_key)
    original = provider._create_body
    monkeypatch.setattr(provider, "_create_body", lambda s, g: {**original(s, g), "supportPublicIp": True})
    with pytest.raises(ProviderError) as err:
        provider.create(spec())
    assert "422" in err.value.message and "supportPublicIp" in err.value.message
    assert "podtune bug" in (err.value.hint or "")
    assert emu.pods == {}
    emu.request_violations.clear()  # this one was on purpose


def test_catalog_gives_price_per_cloud_and_stock(emu):
    emu.no_gpu_free = {RTX_3090}
    offers = {o.gpu_type: o for o in RunPodProvider(emu.api_key).offers(1, "community")}
    assert offers[RTX_3090].available is False and offers[RTX_3090].stock == "NONE"
    assert offers[A5000].available and offers[A5000].usd_per_hour == pytest.approx(0.16)
    assert dict(offers[A5000].prices) == {"secure": pytest.approx(0.27), "community": pytest.approx(0.16)}
    listed = [r for r in emu.requests if r.get("op") == "listGpuTypes"]
    assert listed and listed[0]["query"].get("cloud") in (["COMMUNITY"], "COMMUNITY")


def test_capacity_gone_between_plan_and_create_moves_to_the_next_type(emu):
    emu.no_gpu_free = {RTX_3090}
    pod = RunPodProvider(emu.api_key).create(spec(gpus=(RTX_3090, A5000)))
    assert pod.gpu_type == A5000 and len(emu.pods) == 1


def test_no_type_free_is_a_capacity_error_and_rents_nothing(emu):
    emu.no_gpu_free = {RTX_3090, A5000}
    with pytest.raises(CapacityError) as err:
        RunPodProvider(emu.api_key).create(spec(gpus=(RTX_3090, A5000)))
    assert "no longer any instances" in err.value.message and emu.pods == {}


def test_a_lost_create_answer_finds_the_pod_by_name_and_never_rents_twice(emu):
    emu.lose_create_response_next()
    pod = RunPodProvider(emu.api_key).create(spec())
    assert list(emu.pods) == [pod.id] and len(creates(emu)) == 1


def test_a_5xx_with_a_json_body_on_a_read_is_retried(emu):
    provider = RunPodProvider(emu.api_key)
    pod = provider.create(spec())
    emu.fail_next(2, 503, op="getPod", body="json")
    assert provider.get(pod.id) is not None


def test_429_waits_as_long_as_retry_after_says(emu):
    provider = RunPodProvider(emu.api_key)
    emu.rate_limit_next(1, retry_after_s=1)
    started = time.monotonic()
    assert provider.find("nobody") is None
    assert time.monotonic() - started >= 0.9


def test_402_says_the_balance_is_too_low(emu):
    emu.balance_usd = 0
    with pytest.raises(ProviderError) as err:
        RunPodProvider(emu.api_key).create(spec())
    assert "balance" in err.value.message and "add funds" in (err.value.hint or "")
    assert emu.pods == {}


def test_a_wrong_key_is_a_config_error(emu):
    with pytest.raises(ConfigError, match="API key"):
        RunPodProvider("rpa_wrong", base_url=emu.url).offers()


def test_a_stop_or_a_resume_is_one_request_and_a_refused_one_is_judged_by_the_pods_status(emu):
    provider = RunPodProvider(emu.api_key)
    pod = provider.create(spec())
    assert emu.wait_ready(pod.id, 30)
    booted = emu.pods[pod.id].runtime_started_at
    assert provider.start(pod.id).state == PodState.RUNNING  # already running: refused (409), left as it is
    assert emu.pods[pod.id].runtime_started_at == booted
    before = len(emu.requests)
    provider.stop(pod.id)
    assert [r["op"] for r in emu.requests[before:]] == ["podAction"]  # the bill stops after one round trip
    assert emu.wait_status(pod.id, "EXITED", 10)
    provider.stop(pod.id)  # stopping a stopped pod is a no-op, not an error
    before = len(emu.requests)
    started = provider.start(pod.id)
    assert [r["op"] for r in emu.requests[before:]] == ["podAction"]
    assert started.state in (PodState.PENDING, PodState.RUNNING)
    provider.terminate(pod.id)
    assert provider.get(pod.id) is None
    provider.terminate(pod.id)  # already gone: fine
    with pytest.raises(ProviderError, match="no longer exists"):
        provider.start(pod.id)


def test_a_locked_pod_that_refuses_the_stop_is_an_error_that_says_it_still_bills(emu):
    provider = RunPodProvider(emu.api_key)
    pod = provider.create(spec())
    assert emu.wait_ready(pod.id, 30)
    emu.pods[pod.id].locked = True
    with pytest.raises(ProviderError) as err:
        provider.stop(pod.id)
    assert f"RunPod will not stop pod {pod.id} now" in err.value.message
    assert "still billing" in (err.value.hint or "")
    assert emu.pods[pod.id].status == "RUNNING"


def test_the_connection_that_found_the_pod_answering_is_the_session(emu):
    """One TCP connection and one sshd session per connect: a separate readiness probe cost a round trip more,
    and left an aborted connection in the pod's sshd log on every run."""
    from dataclasses import replace

    from orchestrator.ssh_keys import ensure_keypair

    provider = RunPodProvider(emu.api_key)
    pod = provider.create(replace(spec(), public_key=ensure_keypair()[1]))
    assert emu.wait_ready(pod.id, 30)
    log = emu.pods[pod.id].ssh.log_path
    seen = len(log.read_text())
    transport = provider.connect(provider.get(pod.id), timeout_s=30)
    try:
        assert transport.exec("echo hi").stdout == "hi\n"
    finally:
        transport.close()
    time.sleep(0.2)  # sshd's log line for the closed session
    after = log.read_text()[seen:]
    assert after.count("Accepted publickey") == 1, after
    assert "kex_exchange_identification" not in after, after


def test_a_pod_in_error_fails_the_wait_at_once(emu):
    provider = RunPodProvider(emu.api_key)
    emu.pod_error_next = True
    pod = provider.create(spec())
    started = time.monotonic()
    with pytest.raises(ProviderError, match="ERROR"):
        provider.connect(pod, timeout_s=60)
    assert time.monotonic() - started < 20


def test_billing_reports_what_the_emulator_billed(emu):
    provider = RunPodProvider(emu.api_key)
    pod = provider.create(spec())
    assert emu.wait_ready(pod.id, 30)
    time.sleep(1.0)
    provider.stop(pod.id)
    assert emu.wait_status(pod.id, "EXITED", 10)
    bill = provider.billed(pod.id, time.time() - 3600, time.time() + 60)
    assert bill is not None and bill.usd == pytest.approx(emu.billed_usd(pod.id), rel=0.05)
    assert bill.gpu_usd > 0 and bill.storage_usd > 0


def test_self_stop_command_quotes_the_mount_path():
    from orchestrator.providers import Pod

    pod = Pod(id="p", name="n", provider="runpod", state=PodState.RUNNING, workspace="/work space;rm -rf /")
    command = RunPodProvider("k", base_url="http://127.0.0.1:9").self_stop_command(pod)
    assert command is not None and command.startswith("cd '/work space;rm -rf /")


def test_stopping_a_pod_in_error_says_it_must_be_deleted(emu):
    provider = RunPodProvider(emu.api_key)
    emu.pod_error_next = True
    pod = provider.create(spec())
    assert emu.wait_status(pod.id, "ERROR", 20)
    with pytest.raises(ProviderError) as err:
        provider.stop(pod.id)
    assert "ERROR" in err.value.message and f"podtune stop --pod {pod.id} --terminate" in err.value.hint
