"""A pod podtune resumes may come back with new SSH host keys (stock RunPod images make them at every start):
podtune says so, with the new fingerprint and why, instead of trusting it silently or refusing the run."""

from __future__ import annotations

import subprocess

from tests.e2e.conftest import runpod_env, runpod_recipe
from tests.e2e.helpers import podtune, runs_in


def test_a_resumed_pod_with_new_host_keys_is_reported_with_its_fingerprint(tmp_path, runpod_emu):
    home = tmp_path / "home"
    recipe = runpod_recipe(tmp_path, steps=3)
    first = podtune("run", str(recipe), "--yes", home=home, env=runpod_env(runpod_emu), timeout=300)
    ((_, _, pod_id),) = runs_in(home)
    assert "pinned the SSH host key of pod" in " ".join(first.stdout.split())
    assert runpod_emu.wait_status(pod_id, "EXITED", 10)
    host_key = runpod_emu.pods[pod_id].dir / "sshd" / "ssh_host_ed25519_key"
    old = subprocess.run(["ssh-keygen", "-lf", f"{host_key}.pub"], capture_output=True, text=True).stdout.split()[1]
    for path in (host_key, host_key.with_name(host_key.name + ".pub")):
        path.unlink()  # the container disk is fresh after a stop: the image makes new keys when it starts

    again = podtune("run", str(recipe), "--yes", home=home, env=runpod_env(runpod_emu), timeout=300)

    said = " ".join(again.stdout.split())
    new = subprocess.run(["ssh-keygen", "-lf", f"{host_key}.pub"], capture_output=True, text=True).stdout.split()[1]
    assert new != old and f"pod {pod_id} has a new host key" in said
    assert new in said and old in said and "podtune resumed this pod" in said
    assert [status for _, status, _ in runs_in(home)] == ["succeeded", "succeeded"]
