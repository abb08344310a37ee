"""orchestrator.planning.hub.check_access against the Hub emulator: what `plan` refuses before anything is rented."""

from __future__ import annotations

import pytest

from orchestrator.errors import HubError
from orchestrator.planning.hub import check_access
from orchestrator.planning.plan import check_hub
from remote import hub_retry
from tests.doubles.hub_emulator import HubEmulator, HubToken, HubUser, patch_huggingface_hub
from tests.recipes import recipe_variant

WRITE = "hf_alice_write_0123456789abcdefghij"
READ = "hf_alice_read_0123456789abcdefghijk"
BAD = "hf_REVOKED_0123456789abcdefghijklmn"
LLAMA = "meta-llama/Llama-2-7b-hf"


@pytest.fixture
def hub(tmp_path, monkeypatch):
    emu = HubEmulator(users=[HubUser("alice", orgs=["acme"]), HubUser("bob"), HubUser("meta-llama")],
                      tokens=[HubToken(WRITE, "alice", "write"), HubToken(READ, "alice", "read")]).start()
    emu.add_model(LLAMA, {"config.json": b'{"model_type": "llama"}'}, gated="manual")
    patch_huggingface_hub(monkeypatch, emu, tmp_path / "hf_home")
    monkeypatch.setattr(hub_retry, "BASE_DELAY_S", 0.05)
    yield emu
    emu.stop()


def recipe(hub_repo: str | None = "alice/tiny-tuned", base: str = "builtin:tiny-llama"):
    return recipe_variant({"model.base": base, "output.hub_repo": hub_repo})


def refused(r, token) -> HubError:
    with pytest.raises(HubError) as err:
        check_access(r, token)
    text = f"{err.value.message} {err.value.hint}"
    assert token is None or token not in text
    return err.value


def test_a_write_token_may_push_to_its_user_and_its_orgs(hub):
    assert check_access(recipe(), WRITE) == ["Hub: writing to alice/tiny-tuned as alice (token role write; new private repo)"]
    assert "new private repo" in check_access(recipe("acme/tiny-tuned"), WRITE)[0]
    hub.add_model("alice/tiny-tuned", {"config.json": b"{}"}, private=True)
    assert "existing repo, write access checked" in check_access(recipe(), WRITE)[0]


def test_a_read_token_is_refused_naming_write_access(hub):
    err = refused(recipe(), READ)
    assert "token cannot write to alice" in err.message and "https://huggingface.co/settings/tokens" in err.hint
    hub.add_model("alice/tiny-tuned", {"config.json": b"{}"}, private=True)  # existing: create would "succeed"
    assert "token cannot write to alice" in refused(recipe(), READ).message


def test_a_foreign_namespace_is_refused(hub):
    err = refused(recipe("bob/tiny-tuned"), WRITE)
    assert "token cannot write to bob" in err.message and "alice/tiny-tuned" in err.hint


def test_a_gated_base_without_access_is_refused_with_the_licence_url(hub):
    err = refused(recipe(None, LLAMA), WRITE)
    assert "gated" in err.message and f"https://huggingface.co/{LLAMA}" in err.hint
    assert "accept the licence" in err.hint and "run again" in err.hint
    anonymous = refused(recipe(None, LLAMA), None)
    assert "no Hub token" in anonymous.message and "HF_TOKEN" in anonymous.hint

    hub.grant_access(LLAMA, "alice")
    assert check_access(recipe(None, LLAMA), WRITE) == [f"Hub: base model {LLAMA} readable"]
    assert len(check_hub(recipe("alice/ko", LLAMA), WRITE)) == 2


def test_a_missing_base_is_refused(hub):
    assert "was not found" in refused(recipe(None, "nobody/nothing"), WRITE).message


def test_an_invalid_token_is_refused_without_showing_it(hub):
    err = refused(recipe(), BAD)
    assert err.message == "the Hub token is invalid or revoked" and "settings/tokens" in err.hint


def test_transient_hub_errors_are_retried_then_reported(hub):
    hub.fail_next(2, 503, path_contains="/whoami")
    assert check_access(recipe(), WRITE)
    hub.fail_next(50, 502, path_contains="/auth-check")
    err = refused(recipe(), WRITE)
    assert "did not answer" in err.message and "HTTP 502" in err.message


def test_plan_refuses_an_existing_public_repo_unless_the_recipe_says_private_false(hub):
    hub.add_model("alice/tiny-tuned", {"config.json": b"{}"}, private=False)
    err = refused(recipe(), WRITE)
    assert "alice/tiny-tuned exists and is public" in err.message and "output.private: false" in err.hint
    public = recipe().model_copy(update={"output": recipe().output.model_copy(update={"private": False})})
    assert "public" in check_access(public, WRITE)[0]
