"""What the pod's Python must provide for one recipe, and a check that prints what is missing (JSON).

    python -m remote.requirements [REQUIREMENT ...]   -> {"missing": [...], "python": "3.11.7"}

With no argument it checks the base set. torch is required without a version: the pod image's CUDA build must
stay. Keep the base set in step with pyproject's [train] extra and the optional ones with its dev extra (a test
compares them).
"""

from __future__ import annotations

import json
import os
import re
import sys
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


# `name` or `name>=1.0,<2` and nothing else (no extras, URL or marker): parsed here, without packaging's parser.
_PLAIN = re.compile(r"([A-Za-z0-9][A-Za-z0-9._-]*)\s*((?:(?:~=|==|!=|<=|>=|<|>)\s*[A-Za-z0-9.*+!_-]+\s*,?\s*)*)")


def _name_and_specifier(text: str) -> tuple[str, Any]:
    plain = _PLAIN.fullmatch(text.strip())
    if plain is None:
        req = _requirement(text)
        return req.name, req.specifier
    try:
        from packaging.specifiers import SpecifierSet
    except ImportError:
        from pip._vendor.packaging.specifiers import SpecifierSet  # type: ignore[assignment]
    return plain.group(1), SpecifierSet(plain.group(2).strip())


def _normalize(name: str) -> str:
    """importlib.metadata's own normalization of a distribution's name (PEP 503, dashes as underscores)."""
    return re.sub(r"[-_.]+", "-", name).lower().replace("-", "_")


_listings: dict[str, dict[str, list[str]] | None] = {}


def _infos(entry: str) -> dict[str, list[str]] | None:
    """A sys.path folder's *.dist-info / *.egg-info by normalized name, as importlib.metadata indexes it; None
    for an entry this shortcut does not read (a zip, an .egg): importlib.metadata answers then."""
    if entry not in _listings:
        root = entry or "."
        if root.lower().endswith(".egg") or (os.path.exists(root) and not os.path.isdir(root)):
            _listings[entry] = None
        else:
            infos: dict[str, list[str]] = {}
            try:
                children = os.listdir(root)
            except OSError:
                children = []
            for child in children:
                low = child.lower()
                if low.endswith((".dist-info", ".egg-info")):
                    infos.setdefault(_normalize(low.rpartition(".")[0].partition("-")[0]), []).append(child)
            _listings[entry] = infos
    return _listings[entry]


def _dist_info_version(folder: str) -> str | None:
    try:
        with open(os.path.join(folder, "METADATA"), encoding="utf-8") as fh:
            for line in fh:
                if not line.strip():
                    return None  # the end of the headers
                if line.startswith("Version:"):
                    return line.split(":", 1)[1].strip() or None
    except (OSError, UnicodeDecodeError):
        return None
    return None


def installed_version(name: str) -> str | None:
    """The version importlib.metadata.version(name) gives, or None where it raises PackageNotFoundError.

    The common case (the first sys.path folder that has the package holds one *.dist-info of it) is read
    here: importing importlib.metadata and packaging's parser was half of this check's time on the pod, which
    every run pays before it starts. Anything else is left to importlib.metadata."""
    wanted = _normalize(name)
    for entry in sys.path:
        infos = _infos(entry)
        if infos is None:
            break
        found = infos.get(wanted)
        if not found:
            continue
        if len(found) == 1 and found[0].lower().endswith(".dist-info"):
            version = _dist_info_version(os.path.join(entry or ".", found[0]))
            if version:
                return version
        break
    from importlib import metadata

    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


# `name` or `name>=X.Y` (every line of the base set) against a plain release such as 2.5.1 or 2.5.1+cu121: PEP 440's
# answer is a comparison of release numbers, so packaging's parser (~18 ms of import, before every run) is not needed.
_AT_LEAST = re.compile(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)\s*(?:>=\s*(\d+(?:\.\d+)*))?\s*")
_RELEASE = re.compile(r"(\d+(?:\.\d+)*)(?:\+[A-Za-z0-9.]+)?")


def _release(text: str, width: int) -> tuple[int, ...]:
    parts = [int(x) for x in text.split(".")]
    return tuple(parts + [0] * (width - len(parts)))


def _meets_floor(version: str, floor: str) -> bool | None:
    """version >= floor as PEP 440 has it; None when version is not a plain release (packaging decides then)."""
    plain = _RELEASE.fullmatch(version)
    if plain is None:
        return None
    width = max(plain.group(1).count("."), floor.count(".")) + 1
    return _release(plain.group(1), width) >= _release(floor, width)


def missing(requirements: tuple[str, ...] = REQUIREMENTS) -> list[str]:
    out = []
    for text in requirements:
        simple = _AT_LEAST.fullmatch(text)
        if simple is not None:
            version = installed_version(simple.group(1))
            met = None if version is None else True if simple.group(2) is None else _meets_floor(version, simple.group(2))
            if met is not None:
                if not met:
                    out.append(text)
                continue
            if version is None:
                out.append(text)
                continue
        name, specifier = _name_and_specifier(text)
        version = installed_version(name)
        if version is None:
            out.append(text)
            continue
        if specifier and not specifier.contains(version, prereleases=True):
            out.append(text)
    return out


def image_site_dirs() -> list[str]:
    """This interpreter's package folders when it is itself a venv (an image may ship its torch in one), else [].

    `python -m venv --system-site-packages` made from a venv's python sees the base interpreter's packages, not
    that venv's: the pod's venv adds these folders itself (pod_setup), or pip would download a torch of its own."""
    if sys.prefix == sys.base_prefix:
        return []
    return [p for p in sys.path if os.path.basename(p) in ("site-packages", "dist-packages") and os.path.isdir(p)]


def report(wanted: tuple[str, ...]) -> dict[str, Any]:
    """What pod_setup needs to know of this interpreter: what is missing, its version, its torch, its folders."""
    return {"missing": missing(wanted), "python": sys.version.split()[0], "torch": installed_version("torch"),
            "image_site": image_site_dirs()}


if __name__ == "__main__":
    print(json.dumps(report(tuple(sys.argv[1:]) or REQUIREMENTS)))
