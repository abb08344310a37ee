"""What plan-time estimates know offline: model shapes, dataset sizes, GPU throughput (data/throughput.toml)."""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

TABLE = Path(__file__).parent.parent / "data" / "throughput.toml"
# "Meta-Llama-3.1-8B", "Llama-2-7b-hf", "Alpha-Ko-8B-Instruct": a size is a number + b between separators.
SIZE_IN_NAME = re.compile(r"(?:^|[-_/.])(\d+(?:\.\d+)?)b(?=$|[-_.])", re.IGNORECASE)


@dataclass(frozen=True)
class ModelInfo:
    name: str
    size: str  # size class: the key into [sizes] and the throughput table
    params_b: float
    hidden: int
    layers: int
    intermediate: int
    kv_dim: int
    vocab: int
    max_len: int
    weights_gb: float
    tokens_per_char: float
    note: str = ""  # set when the shape was guessed rather than known


@dataclass(frozen=True)
class DatasetInfo:
    rows: int
    avg_tokens: float
    max_tokens: int
    source: str  # where the figures come from (shown in the plan)


@dataclass(frozen=True)
class Throughput:
    tokens_per_s: float
    kind: str  # measured | calibrated | scaled | extrapolated | assumed
    how: str  # one line for the plan: which entry and which scaling


@lru_cache(maxsize=1)
def table() -> dict[str, Any]:
    with open(TABLE, "rb") as fh:
        return tomllib.load(fh)


def _size(name: str, size: str, note: str = "", **overrides: Any) -> ModelInfo:
    shape = {k: v for k, v in table()["sizes"][size].items() if k != "sources"}
    shape.update({k: v for k, v in overrides.items() if k in shape})
    return ModelInfo(name=name, size=size, note=note, **shape)


def model_info(base: str) -> ModelInfo:
    """The base model's shape: from [models], else from the size in its name, else assumed 7B (with a note)."""
    known = table()["models"].get(base)
    if known is not None:
        return _size(base, known["size"], **{k: v for k, v in known.items() if k != "size"})
    sizes = {k: v["params_b"] for k, v in table()["sizes"].items()}
    match = SIZE_IN_NAME.search(base.split("/")[-1])
    if match:
        billions = float(match.group(1))
        size = min(sizes, key=lambda k: abs(sizes[k] - billions))
        return _size(base, size, note=f"{base} is not in the model table: shape of a {size.upper()} Llama assumed "
                                      f"from its name, scaled to {billions:g}B parameters", params_b=billions,
                     weights_gb=billions * 2)
    return _size(base, "7b", note=f"could not tell the size of {base} from its name: a 7B Llama assumed; add it "
                                  f"to {TABLE.name} [models]")


def dataset_info(source: str) -> DatasetInfo | None:
    entry = table()["datasets"].get(source)
    if entry is None:
        return None
    return DatasetInfo(int(entry["rows"]), float(entry["avg_tokens"]), int(entry["max_tokens"]),
                       f"{source} (table entry)")


def gpu_factor(gpu_type: str) -> tuple[float, str]:
    entry = table()["gpus"].get(gpu_type)
    if entry is None:
        return 1.0, f"no throughput entry for {gpu_type}: RTX 3090 speed assumed"
    return float(entry["factor"]), entry["sources"]


# Throughput grows about as 1/params only down to ~100M parameters; below that, per-step overhead dominates,
# so a tiny model is never promised more than this multiple of its reference entry.
MAX_SIZE_SCALE = 64.0


def throughput(gpu_type: str, model: ModelInfo) -> Throughput:
    """Tokens/s for one GPU of this type on this model: a table entry for this GPU if there is one, else scaled."""
    entries = table()["throughput"]
    sizes = table()["sizes"]
    own = [e for e in entries if e["gpu"] == gpu_type]

    def ratio_of(entry: dict[str, Any]) -> float:
        return sizes[entry["size"]]["params_b"] / model.params_b

    if own:
        base, factor, via = _closest(own, model, sizes), 1.0, ""
        same = abs(ratio_of(base) - 1) < 1e-9
        kind = base["kind"] if same else ("extrapolated" if gpu_type == "cpu" else "scaled")
    else:
        reference = table()["scaling"]["reference_gpu"]
        base = _closest([e for e in entries if e["gpu"] == reference], model, sizes)
        factor, why = gpu_factor(gpu_type)
        via = f" x {factor:g} ({why})"
        kind = "scaled" if gpu_type in table()["gpus"] else "assumed"
    ratio = min(ratio_of(base), MAX_SIZE_SCALE)
    tps = base["tokens_per_s"] * factor * ratio
    size_part = "" if abs(ratio - 1) < 1e-9 else f" x {sizes[base['size']]['params_b']:g}/{model.params_b:g}B params"
    if ratio == MAX_SIZE_SCALE:
        size_part = f" x {MAX_SIZE_SCALE:g} (size scaling capped: small models are overhead-bound)"
    how = f"{base['tokens_per_s']:g} tok/s ({base['gpu']}, {base['size']}, {base['kind']}){via}{size_part}"
    return Throughput(tps, kind, how)


def _closest(entries: list[dict[str, Any]], model: ModelInfo, sizes: dict[str, Any]) -> dict[str, Any]:
    return min(entries, key=lambda e: abs(sizes[e["size"]]["params_b"] - model.params_b))


def scaling() -> dict[str, Any]:
    return table()["scaling"]


def transfer(on_this_machine: bool) -> dict[str, Any]:
    """Phase times beyond training; with no pod (the run is on this machine) [transfer.local] replaces some."""
    base = {k: v for k, v in table()["transfer"].items() if k != "local"}
    return {**base, **table()["transfer"]["local"]} if on_this_machine else base
