"""Before any work, every credential the recipe's provider and outputs need is listed at once, with where to get it."""

from __future__ import annotations

import pytest

from orchestrator.credentials import CredentialsError, missing, require
from orchestrator.run import load_recipe_or_fail
from tests.conftest import REPO


def tiny(**compute):
    recipe = load_recipe_or_fail(REPO / "recipes" / "tiny-cpu.yaml")
    return recipe.model_copy(update={"compute": recipe.compute.model_copy(update=compute)}) if compute else recipe


def test_a_local_run_of_the_tiny_recipe_needs_nothing():
    assert missing(tiny(), "local") == []
    require(tiny(), "local")


def test_runpod_asks_for_its_api_key_and_is_satisfied_by_it(monkeypatch):
    (what, how), = missing(tiny(), "runpod")
    assert what == "a RunPod API key (provider runpod)" and "export RUNPOD_API_KEY=" in how and "--provider local" in how
    monkeypatch.setenv("RUNPOD_API_KEY", "rpa_TESTKEY")
    assert missing(tiny(), "runpod") == []


def test_ssh_asks_for_the_private_key_the_recipe_names(tmp_path):
    from remote.recipe import SshHostSpec

    key = tmp_path / "id_ed25519"
    recipe = tiny(provider="ssh", ssh=SshHostSpec(host="gpu.example.com", key_path=str(key)))
    (what, how), = missing(recipe, "ssh")
    assert what == f"the SSH private key {key} (compute.ssh.key_path)" and "compute.ssh.key_path" in how
    key.write_text("a key\n")
    assert missing(recipe, "ssh") == []


def test_every_gap_is_reported_in_one_error(monkeypatch):
    recipe = tiny().model_copy(update={"output": tiny().output.model_copy(update={"hub_repo": "alice/tiny"})})
    with pytest.raises(CredentialsError) as caught:
        require(recipe, "runpod")
    assert caught.value.message.startswith("2 credential(s) missing:")
    assert "RUNPOD_API_KEY" in caught.value.message and "HF_TOKEN" in caught.value.message


def test_an_unknown_provider_adds_no_credential_of_its_own():
    """The provider is refused by name (with the known ones) when it is built, right after this check."""
    assert missing(tiny(), "azure") == []
