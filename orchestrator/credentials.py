"""Before any work: every credential this run needs, all reported at once with where to get each.

One missing at a time (fix, re-run, hit the next) wastes a person's time; each had its own exit code too."""

from __future__ import annotations

import os
from pathlib import Path

from remote.recipe import Recipe

from .errors import PodtuneError
from .secrets import hf_token, runpod_api_key, wandb_api_key


class CredentialsError(PodtuneError):
    """Missing tokens or keys; exit code USER, whichever are missing."""


def missing(recipe: Recipe, provider: str) -> list[tuple[str, str]]:
    """(what is missing, how to provide it) for each credential the run needs and cannot find. Never reads a value out."""
    found: list[tuple[str, str]] = []
    if provider == "runpod" and not runpod_api_key():
        found.append(("a RunPod API key (provider runpod)",
                      "export RUNPOD_API_KEY=... (RunPod: Settings > API Keys) or run `runpod config`; "
                      "or use --provider local"))
    if provider == "ssh" and recipe.compute.ssh is not None:
        key = Path(os.path.expanduser(recipe.compute.ssh.key_path))
        if not key.is_file():
            found.append((f"the SSH private key {key} (compute.ssh.key_path)",
                          "point compute.ssh.key_path at the key you use for that host"))
    if recipe.output.hub_repo and not hf_token():
        found.append((f"a Hub write token (output.hub_repo is {recipe.output.hub_repo})",
                      "set HF_TOKEN or run `hf auth login` with a write token; or set output.hub_repo: null"))
    if "wandb" in recipe.training.report_to and not wandb_api_key():
        found.append(("a Weights & Biases API key (training.report_to has wandb)",
                      "export WANDB_API_KEY=... (https://wandb.ai/authorize) or run `wandb login`; "
                      "or remove wandb from training.report_to"))
    return found


def require(recipe: Recipe, provider: str) -> None:
    gaps = missing(recipe, provider)
    if not gaps:
        return
    lines = "\n".join(f"  - {what}: {how}" for what, how in gaps)
    raise CredentialsError(f"{len(gaps)} credential(s) missing:\n{lines}",
                           "provide them all, then run again (tokens are read from the environment or their tools' "
                           "stores, never from the recipe)")
