"""`podtune init`: a starter recipe from flags or from a few questions, that validates and plans."""

from __future__ import annotations

import os
import pty
import select
import shutil
import subprocess
import sys
import time
from pathlib import Path

from remote.recipe import load_recipe
from tests.conftest import REPO, env_without_secrets
from tests.e2e.helpers import podtune

DATA = REPO / "recipes" / "data" / "tiny-instructions.jsonl"


def data_in(folder: Path) -> Path:
    """The shipped data copied into a folder of the test's own (a recipe may only name data beside it)."""
    (folder / "data").mkdir(parents=True, exist_ok=True)
    return Path(shutil.copy(DATA, folder / "data" / DATA.name))


def test_flags_write_a_commented_recipe_that_validates_and_plans(tmp_path):
    path = tmp_path / "recipes" / "My Tiny.yaml"
    data = data_in(path.parent)
    out = podtune("init", str(path), "--dataset", str(data), home=tmp_path / "home")
    assert f"wrote {path}" in out.stdout and "podtune validate" in out.stdout
    text = path.read_text()
    # Each field carries the schema's own description as its comment.
    assert "# LoRA rank.\n  r: 8" in text and "# Where to train.\n  provider: \"local\"" in text
    recipe = load_recipe(path)
    assert recipe.name == "my-tiny" and recipe.model.base == "builtin:tiny-llama"
    assert recipe.dataset.source == "data/tiny-instructions.jsonl"  # relative to the recipe, as documented
    assert "ok (my-tiny)" in podtune("validate", str(path), home=tmp_path / "home").stdout
    assert "plan: my-tiny on local" in podtune("plan", str(path), home=tmp_path / "home").stdout


def test_flags_for_a_runpod_hub_recipe(tmp_path):
    path = tmp_path / "ko.yaml"
    podtune("init", str(path), "--base", "meta-llama/Llama-2-7b-hf", "--dataset", "heegyu/open-korean-instructions",
            "--format", "text", "--hub-repo", "alice/llama2-ko", "--gpu", "NVIDIA GeForce RTX 3090",
            home=tmp_path / "home")
    recipe = load_recipe(path)
    assert (recipe.compute.provider, recipe.compute.gpu_types, recipe.output.hub_repo) == (
        "runpod", ["NVIDIA GeForce RTX 3090"], "alice/llama2-ko")
    assert recipe.dataset.format == "text" and recipe.compute.max_usd == 10.0
    assert "ok (ko)" in podtune("validate", str(path), home=tmp_path / "home").stdout


def test_data_outside_the_recipes_folder_is_refused_with_the_ways_on(tmp_path):
    path = tmp_path / "elsewhere" / "r.yaml"
    out = podtune("init", str(path), "--dataset", str(DATA), home=tmp_path / "home", check=False)
    assert out.returncode == 2 and "outside the folder" in out.stderr and "--data" in out.stderr
    assert not path.exists()


def test_an_existing_file_is_never_overwritten(tmp_path):
    path = tmp_path / "mine.yaml"
    path.write_text("my own work\n")
    out = podtune("init", str(path), "--dataset", str(DATA), home=tmp_path / "home", check=False)
    assert out.returncode == 1 and "already exists" in out.stderr and "Traceback" not in out.stderr
    assert path.read_text() == "my own work\n"


def test_a_bad_flag_names_the_field_and_writes_nothing(tmp_path):
    path = tmp_path / "bad.yaml"
    out = podtune("init", str(path), "--dataset", str(data_in(tmp_path)), "--hub-repo", "not a repo", home=tmp_path / "home",
                  check=False)
    assert out.returncode == 2 and "output.hub_repo" in out.stderr and not path.exists()
    out = podtune("init", str(path), home=tmp_path / "home", check=False)  # no terminal, no --dataset
    assert out.returncode == 2 and "--dataset" in out.stderr and not path.exists()


def test_on_a_terminal_it_asks(tmp_path):
    path = tmp_path / "asked.yaml"
    answers = ["", str(data_in(tmp_path)), "", "alice/tiny", ""]  # base, dataset, format, hub repo, provider
    env = env_without_secrets(PODTUNE_HOME=str(tmp_path / "home"), COLUMNS="200")
    leader, follower = pty.openpty()
    proc = subprocess.Popen([str(Path(sys.executable).parent / "podtune"), "init", str(path)], cwd=REPO, env=env,
                            stdin=follower, stdout=follower, stderr=follower, close_fds=True)
    os.close(follower)
    seen, deadline = b"", time.monotonic() + 60
    try:
        while proc.poll() is None or select.select([leader], [], [], 0)[0]:
            assert time.monotonic() < deadline, seen.decode(errors="replace")
            if select.select([leader], [], [], 0.2)[0]:
                try:
                    chunk = os.read(leader, 4096)
                except OSError:  # the child closed the terminal
                    break
                seen += chunk
                if chunk.rstrip().endswith((b":", b"]:")) and answers:
                    os.write(leader, answers.pop(0).encode() + b"\n")
    finally:
        if proc.poll() is None:
            proc.kill()
        os.close(leader)
    text = seen.decode(errors="replace")
    assert proc.wait(timeout=10) == 0, text
    assert "Base model" in text and "Hub repo to push to" in text and "wrote" in text
    recipe = load_recipe(path)
    assert recipe.output.hub_repo == "alice/tiny" and recipe.compute.provider == "local"
    assert recipe.model.base == "builtin:tiny-llama" and recipe.dataset.format == "alpaca"


def test_a_runpod_recipe_from_flags_plans_against_runpod_and_the_hub(tmp_path):
    from tests.doubles.hub_emulator import HubEmulator, HubToken, HubUser
    from tests.doubles.runpod_emulator import RunPodEmulator

    token = "hf_alice_write_0123456789abcdefghij"
    path = tmp_path / "ko.yaml"
    podtune("init", str(path), "--base", "meta-llama/Llama-2-7b-hf", "--dataset", "heegyu/open-korean-instructions",
            "--format", "text", "--hub-repo", "alice/llama2-ko", "--gpu", "NVIDIA GeForce RTX 3090",
            home=tmp_path / "home")
    with HubEmulator(users=[HubUser("alice"), HubUser("meta-llama")], tokens=[HubToken(token, "alice", "write")]) as hub, \
            RunPodEmulator(state_dir=tmp_path / "runpod") as rp:
        hub.add_model("meta-llama/Llama-2-7b-hf", {"config.json": b'{"model_type": "llama"}'})
        hub.add_dataset("heegyu/open-korean-instructions", {
            "README.md": b"---\ndataset_info:\n  features:\n  - name: text\n    dtype: string\n"
                         b"  splits:\n  - name: train\n    num_examples: 1000\n---\n"})
        env = {**hub.client_env(tmp_path / "hf"), "HF_TOKEN": token, "RUNPOD_API_KEY": rp.api_key,
               "RUNPOD_API_BASE_URL": rp.url}
        out = podtune("plan", str(path), home=tmp_path / "home", env=env)
    assert "plan: ko on runpod, NVIDIA GeForce RTX 3090" in out.stdout and "writing to alice/llama2-ko" in out.stdout


def test_each_provider_gets_the_compute_fields_it_needs_and_the_file_validates():
    from orchestrator.providers import PROVIDERS
    from orchestrator.starter import Answers, render
    from remote.recipe import parse_recipe

    written = {}
    for provider in PROVIDERS:
        answers = Answers(base="meta-llama/Llama-2-7b-hf", dataset="heegyu/open-korean-instructions", format="text",
                          provider=provider, gpu="NVIDIA GeForce RTX 3090")
        written[provider] = parse_recipe(render(answers, "r"), source=f"{provider}.yaml").compute
    assert written["runpod"].gpu_types == ["NVIDIA GeForce RTX 3090"] and written["runpod"].volume_gb == 50
    assert written["runpod"].max_usd == 10.0 and written["runpod"].cloud == "secure"
    assert written["ssh"].ssh is not None and written["ssh"].ssh.host == "your-host.example.com"
    assert written["local"].ssh is None and written["local"].gpu_types == [] and written["local"].max_usd is None


def test_only_a_provider_that_rents_is_asked_for_a_gpu_type():
    from orchestrator.starter import Answers, ask_for

    for provider, asked in (("runpod", True), ("ssh", False), ("local", False)):
        questions: list[str] = []

        def prompt(text, default, provider=provider):
            questions.append(text)
            return provider if text.startswith("Where to train") else default

        answers = ask_for(Answers(base="meta-llama/Llama-2-7b-hf", dataset="d"), prompt)
        assert answers.provider == provider
        assert any(q.startswith("GPU type") for q in questions) is asked, (provider, questions)
