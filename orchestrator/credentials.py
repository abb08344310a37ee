"""Before any work: every credential this run needs, all reported at once with where to get each.

One missing at a time (fix, re-run, hit the next) wastes a person's time; each had its own exit code too."""

from __future__ import annotations

from remote.recipe import Recipe

from .errors import PodtuneError
from .providers import PROVIDERS, provider_class
from .secrets import hf_token, wandb_api_key


class CredentialsError(PodtuneError):
    """Missing tokens or keys; exit code USER, whichever are missing."""


def missing(recipe: Recipe, provider: str) -> list[tuple[str, str]]:
    """(what is missing, how to provide it) for each credential the run needs and cannot find. Never reads a value out."""
    # An unknown name is refused with the list of known ones when the provider is built, after this.
    found = list(provider_class(provider).missing_credentials(recipe)) if provider in PROVIDERS else []
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
