"""Fetches the base model into HF_HOME (on the volume, so a stopped-and-resumed pod does not fetch again)."""

from __future__ import annotations

import os
from pathlib import Path

from .recipe import Recipe

WEIGHT_PATTERNS = ["*.json", "*.safetensors", "tokenizer*", "*.model", "*.tiktoken", "*.txt", "*.py"]


def hf_home() -> Path:
    return Path(os.environ.get("HF_HOME") or Path.home() / ".cache" / "huggingface")


def ensure_base_model(recipe: Recipe, token: str | None) -> Path:
    """Local directory of the recipe's base model, downloading or building it on first use."""
    if recipe.model.is_builtin:
        from .tiny import ensure_tiny_model

        return ensure_tiny_model(hf_home())
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import GatedRepoError, RepositoryNotFoundError

    try:
        path = snapshot_download(
            recipe.model.base, revision=recipe.model.revision, token=token, allow_patterns=WEIGHT_PATTERNS
        )
    except GatedRepoError:
        raise RuntimeError(
            f"{recipe.model.base} is gated and this Hub token has no access: accept its licence at "
            f"https://huggingface.co/{recipe.model.base} and run again"
        ) from None
    except RepositoryNotFoundError:
        raise RuntimeError(f"{recipe.model.base} does not exist on the Hub or is private to another account") from None
    return Path(path)
