"""What the pod's Python must provide, and a check that prints what is missing (JSON).

    python -m remote.requirements            -> {"missing": [...], "python": "3.11.7"}

torch is required without a version: the pod image's CUDA build must stay. Keep in step with pyproject's
[train] extra (a test compares them).
"""

from __future__ import annotations

import json
import sys
from importlib import metadata

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


def _requirement(text: str):
    try:
        from packaging.requirements import Requirement
    except ImportError:  # images without packaging still have pip's vendored copy
        from pip._vendor.packaging.requirements import Requirement
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
    print(json.dumps({"missing": missing(), "python": sys.version.split()[0]}))
