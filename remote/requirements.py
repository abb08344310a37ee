"""What the pod's Python must provide for one recipe, and a check that prints what is missing (JSON).

    python -m remote.requirements [REQUIREMENT ...]   -> {"missing": [...], "python": "3.11.7"}

With no argument it checks the base set. torch is required without a version: the pod image's CUDA build must
stay. Keep the base set in step with pyproject's [train] extra and the optional ones with its dev extra (a test
compares them).
"""

from __future__ import annotations

import json
import sys
from importlib import metadata
from typing import Any

REQUIREMENTS = (
    "torch",
    "transformers>=5.0",
    "peft>=0.21",
    "trl>=1.16",
    "bitsandbytes>=0.50",
    "accelerate>=1.15",
    "datasets>=5.0",
    "safetensors>=0.8",
    "tokenizers>=0.23",
    "huggingface_hub>=1.0",
    "pydantic>=2.7",
    "pyyaml>=6",
)

# Needed only by recipes that ask for them: a stock image lacks them, and most runs should not pay for them.
DEEPSPEED = "deepspeed>=0.16"
TRACKERS = {"wandb": "wandb>=0.19", "tensorboard": "tensorboard>=2.18"}


def for_recipe(recipe) -> tuple[str, ...]:
    """The base set plus what this recipe's training section needs (a DeepSpeed engine, its trackers)."""
    extra = [DEEPSPEED] if recipe.training.distributed == "deepspeed_zero3" else []
    extra += [TRACKERS[name] for name in recipe.training.report_to]
    return REQUIREMENTS + tuple(sorted(set(extra)))


def extras(requirements: tuple[str, ...]) -> tuple[str, ...]:
    """The requirements beyond the base set (what `plan` names)."""
    return tuple(r for r in requirements if r not in REQUIREMENTS)


def _requirement(text: str) -> Any:
    try:
        from packaging.requirements import Requirement
    except ImportError:  # images without packaging still have pip's vendored copy
        from pip._vendor.packaging.requirements import Requirement  # type: ignore[assignment]
    return Requirement(text)


def missing(requirements: tuple[str, ...] = REQUIREMENTS) -> list[str]:
    out = []
    for text in requirements:
        req = _requirement(text)
        try:
            version = metadata.version(req.name)
        except metadata.PackageNotFoundError:
            out.append(text)
            continue
        if req.specifier and not req.specifier.contains(version, prereleases=True):
            out.append(text)
    return out


if __name__ == "__main__":
    wanted = tuple(sys.argv[1:]) or REQUIREMENTS
    print(json.dumps({"missing": missing(wanted), "python": sys.version.split()[0]}))
