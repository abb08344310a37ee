"""Plan-time estimates: memory need (formula shown), tokens to process, and the hours and dollars of one GPU offer."""

from __future__ import annotations

import re
import time
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from types import MappingProxyType
from typing import Any

from remote.recipe import Recipe

from . import catalog
from .catalog import ModelInfo
from ..providers import GpuOffer

GB = 1e9
# CUDA context, cuBLAS workspaces, the checkpointed layer recomputed in backward, allocator fragmentation.
# Calibrated on an H200 (BENCHMARKS.md): at 1.0 GB the plan was 11 % under seed A's measured peak allocation
# (12.1 GB) and 7 % over seed C's at 2048 tokens (12.1 GB); at 2.0 GB it is -2 % and +16 %: erring on the side
# that does not run out of memory.
CUDA_OVERHEAD_GB = 2.0
FIT_SHARE = 0.95  # a GPU fits when the need is at most this share of its memory
PACK_FILL = 0.9  # trl's bfd packing leaves ~10% of each sequence empty (NOTES-VERIFIED: 13.4k tokens in 30 x 4 x 128)
PAD_FACTOR = {"packed": 1.0, "grouped": 1.05, "padded": 1.3}  # tokens computed per real token, padding included
LORA_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
PEFT_DEFAULT_TARGETS = ("q_proj", "v_proj")  # peft's default for Llama-architecture models
OPTIMIZER_STATE_B = {"paged_adamw_32bit": 12, "adamw_torch": 12, "paged_adamw_8bit": 6, "adamw_8bit": 6,
                     "adamw_bnb_8bit": 6, "sgd": 4, "adafactor": 4}  # fp32 master copy + moments, per LoRA param
ASSUMED_ROWS, ASSUMED_TOKENS = 10_000, 300
PROBE_SAMPLE_TOKENS = 2 * 16 * 2  # the CPU probe's merge answers recipes/tiny-cpu.yaml's 2 prompts x 16 tokens
SPLIT_SLICE = re.compile(r"\[\s*(-?\d+%?)?\s*:\s*(-?\d+%?)?\s*\]")


@dataclass(frozen=True)
class Memory:
    weights_gb: float
    lora_gb: float
    activations_gb: float
    logits_gb: float
    overhead_gb: float
    lines: list[str]

    @property
    def total_gb(self) -> float:
        return self.weights_gb + self.lora_gb + self.activations_gb + self.logits_gb + self.overhead_gb


@dataclass(frozen=True)
class Work:
    tokens: float
    seq_len: int
    vram_seq_len: int
    lines: list[str]
    notes: list[str] = field(default_factory=list)


def lora_params(recipe: Recipe, m: ModelInfo) -> int:
    h, kv, i = m.hidden, m.kv_dim, m.intermediate
    shapes = {"q_proj": (h, h), "k_proj": (h, kv), "v_proj": (h, kv), "o_proj": (h, h),
              "gate_proj": (h, i), "up_proj": (h, i), "down_proj": (i, h)}
    targets = recipe.lora.target_modules
    names = PEFT_DEFAULT_TARGETS if targets == "default" else LORA_TARGETS if targets == "all-linear" else targets
    return m.layers * sum(recipe.lora.r * sum(shapes[n]) for n in names if n in shapes)


def count(n: float) -> str:
    for scale, suffix in ((1e9, "B"), (1e6, "M"), (1e3, "k")):
        if n >= scale:
            return f"{n / scale:.2f}{suffix}"
    return f"{n:.0f}"


def memory(recipe: Recipe, m: ModelInfo, vram_seq_len: int) -> Memory:
    """Per-device memory need, and the lines that show how it was computed."""
    t, q = recipe.training, recipe.quantization
    shards = recipe.compute.gpu_count if t.distributed == "deepspeed_zero3" else 1  # ZeRO-3 shards weights and state
    embed = 2 * m.vocab * m.hidden  # embedding + LM head stay 16-bit even in a 4-bit model
    linear = m.params_b * GB - embed
    if q.load_in_4bit:
        per_param = 0.5 + (0.127 if q.double_quant else 0.5) / 8  # nf4 + absmax constants (QLoRA paper, sec. 3)
        weights = (linear * per_param + embed * 2) / shards
        w_line = (f"weights     = {count(linear)} 4-bit params x {per_param:.3f} B "
                  f"(0.5 B + {'double-quantized' if q.double_quant else 'fp32'} constants) "
                  f"+ {count(embed)} embedding/head params x 2 B")
    else:
        weights = m.params_b * GB * 2 / shards
        w_line = f"weights     = {count(m.params_b * GB)} params x 2 B (16-bit, no quantization)"
    gpus = recipe.compute.gpu_count
    split = (f", / {shards} GPUs (ZeRO-3)" if shards > 1
             else f", on each of {gpus} GPUs (DDP replicates)" if gpus > 1 else "")
    w_line += split
    n_lora = lora_params(recipe, m)
    state_b = OPTIMIZER_STATE_B.get(t.optimizer, 12)
    lora = n_lora * (2 + state_b + 2) / shards
    b, s, h = t.batch_size, vram_seq_len, m.hidden
    if t.gradient_checkpointing:
        act = b * s * h * (2 * m.layers + 34)  # each layer's 16-bit input kept; one layer's internals recomputed
        a_line = (f"activations = batch {b} x seq {s} x hidden {h} x (2 B x {m.layers} layers + 34 B)"
                  " [gradient checkpointing]")
    else:
        act = b * s * h * 34 * m.layers  # ~34 B per hidden unit per layer in 16-bit (Korthikanti et al. 2022)
        a_line = f"activations = batch {b} x seq {s} x hidden {h} x 34 B x {m.layers} layers [no checkpointing]"
    logits = b * s * m.vocab * 8  # 16-bit logits + their fp32 copy for the loss + its gradient
    lines = [
        w_line,
        f"LoRA        = {count(n_lora)} params x {2 + state_b + 2} B (2 B weights + {state_b} B {t.optimizer} state"
        f" + 2 B grads){split}",
        a_line,
        f"logits      = batch {b} x seq {s} x vocab {m.vocab:,} x 8 B",
        f"overhead    = {CUDA_OVERHEAD_GB:.1f} GB (CUDA context / runtime, workspaces, fragmentation)",
    ]
    return Memory(weights / GB, lora / GB, act / GB, logits / GB, CUDA_OVERHEAD_GB, lines)


def memory_summary(mem: Memory, per_gpu: bool) -> str:
    where = "per GPU" if per_gpu else "(host RAM on a CPU)"
    return (f"memory need ≈ {mem.total_gb:.1f} GB {where} = weights {mem.weights_gb:.2f} + LoRA {mem.lora_gb:.2f}"
            f" + activations {mem.activations_gb:.2f} + logits {mem.logits_gb:.2f} + overhead {mem.overhead_gb:.2f}")


CHECKPOINTS_KEPT = 3  # remote/train.py SAVE_TOTAL_LIMIT (not imported: the laptop never loads the trainer)
VENV_GB = 8.0  # the training venv on the volume: torch with CUDA, transformers, peft, trl, bitsandbytes


@dataclass(frozen=True)
class Volume:
    need_gb: float
    line: str


def volume(recipe: Recipe, m: ModelInfo) -> Volume:
    """What the pod's volume holds at the end of a run: the base in the HF cache, the kept checkpoints (adapter in
    fp32 plus two fp32 optimizer moments each), the merged 16-bit model and the venv."""
    checkpoints = CHECKPOINTS_KEPT * lora_params(recipe, m) * 12 / GB
    need = m.weights_gb * 2 + checkpoints + VENV_GB
    return Volume(need, f"volume need ≈ {need:.1f} GB = base weights {m.weights_gb:.1f} (HF cache) + merged model "
                        f"{m.weights_gb:.1f} + {CHECKPOINTS_KEPT} checkpoints {checkpoints:.2f} + venv {VENV_GB:.0f}")


def fits(offer: GpuOffer, need_gb: float) -> bool:
    """memory_gb 0 means the provider does not know (a CPU, an SSH host): nothing to check against."""
    return offer.memory_gb <= 0 or need_gb <= offer.memory_gb * FIT_SHARE


def split_fraction(split: str, rows: int) -> float:
    """Share of `rows` a split expression selects: `train` 1.0, `train[:10%]` 0.1, `train[:1000]` 1000/rows."""
    match = SPLIT_SLICE.search(split)
    if not match or rows <= 0:
        return 1.0

    def index(text: str | None, default: float) -> float:
        if text is None:
            return default
        value = float(text.rstrip("%"))
        value = value / 100 * rows if text.endswith("%") else value
        return value + rows if value < 0 else value

    start, stop = index(match.group(1), 0), index(match.group(2), rows)
    return max(0.0, min(stop, rows) - max(start, 0)) / rows


def _records(path: Path) -> list[Any]:
    from .datafiles import read_records  # a bad file is a ConfigError naming its line, not a traceback

    return read_records(path)


def _strings(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, dict):
        return " ".join(_strings(v) for v in value.values())
    if isinstance(value, list):
        return " ".join(_strings(v) for v in value)
    return ""


def text_tokens(text: str, m: ModelInfo) -> float:
    ascii_chars = sum(1 for ch in text if ord(ch) < 128)
    return ascii_chars / 4 + (len(text) - ascii_chars) * m.tokens_per_char + 2  # + BOS/EOS


def local_dataset(recipe: Recipe, path: Path, m: ModelInfo) -> catalog.DatasetInfo:
    """Rows, average and longest record in tokens of a local data file, counted for real."""
    d = recipe.dataset
    extra = (d.system_prompt or "") + (re.sub(r"\{\w+\}", "", d.prompt_template) if d.format == "alpaca" else "")
    sizes = [text_tokens(_strings(r) + extra, m) for r in _records(path)]
    if not sizes:
        return catalog.DatasetInfo(0, 0.0, 0, f"{path.name} (empty)")
    return catalog.DatasetInfo(len(sizes), sum(sizes) / len(sizes), int(max(sizes)), f"{path.name} (counted)")


def work(recipe: Recipe, m: ModelInfo, data_files: list[Path]) -> Work:
    """Tokens the trainer will process, with the line that shows the arithmetic."""
    t, d = recipe.training, recipe.dataset
    seq = min(t.max_seq_length or m.max_len, m.max_len)
    notes: list[str] = []
    if data_files:
        data = local_dataset(recipe, data_files[0], m)
    else:
        known = catalog.dataset_info(d.source)
        if known is not None:
            data = known
        else:
            data = catalog.DatasetInfo(ASSUMED_ROWS, ASSUMED_TOKENS, seq, "assumed")
            notes.append(f"{d.source} is not in the dataset table: {ASSUMED_ROWS:,} rows of {ASSUMED_TOKENS} tokens "
                         f"assumed, so the time estimate is a guess")
    mode = "packed" if t.packing else "grouped" if (t.group_by_length or t.batch_size == 1) else "padded"
    pad = PAD_FACTOR[mode]
    per_record = min(data.avg_tokens, seq)
    vram_seq = seq if t.packing else min(seq, max(data.max_tokens, 16))
    gpus = recipe.compute.gpu_count
    if t.max_steps:
        per_seq = seq * PACK_FILL if t.packing else per_record * pad
        tokens = t.max_steps * t.batch_size * t.grad_accum * gpus * per_seq
        how = (f"{t.max_steps} steps x batch {t.batch_size} x grad accum {t.grad_accum}"
               + (f" x {gpus} GPUs" if gpus > 1 else "")
               + (f" x {seq} seq x {PACK_FILL} packing fill" if t.packing
                  else f" x {per_record:.0f} tokens x {pad} padding"))
    else:
        rows = data.rows * split_fraction(d.split, data.rows) * (1 - d.eval_fraction)
        tokens = rows * per_record * (t.epochs or 1) * pad
        how = (f"{rows:,.0f} rows ({d.split}{f', {d.eval_fraction:.0%} held out' if d.eval_fraction else ''})"
               f" x {per_record:.0f} tokens x {t.epochs:g} epochs" + (f" x {pad} padding" if pad != 1 else " (packed)"))
    lines = [f"tokens ≈ {count(tokens)} = {how}; data: {data.source}"]
    return Work(tokens, seq, vram_seq, lines, notes)


@dataclass(frozen=True)
class OfferEstimate:
    """The time and cost of this run on one GPU offer; `plan --json` shows it as to_json() (same keys, same order)."""

    gpu_type: str
    memory_gb: float  # per GPU; 0: the provider does not say (a CPU, an SSH host)
    usd_per_hour: float  # the whole pod: every GPU
    gpu_count: int
    usd_per_gpu_hour: float
    multi_gpu_efficiency: float
    distributed: str
    tokens_per_s: float  # all GPUs together
    throughput_kind: str  # measured | calibrated | scaled | extrapolated | assumed
    throughput_source: str  # the line that says which entry and which scaling
    phases: Mapping[str, float]  # seconds per phase, provision to stop
    seconds: float
    hours: float
    train_hours: float
    train_tokens_s: float  # comparable with the trainer's own train_seconds
    calibrated: bool  # this machine's CPU probe, not the table, gave the rate and fixed costs
    gpu_usd: float
    storage_usd: float
    total_usd: float
    storage_usd_per_day_after: float  # what the stopped volume costs per day once the run is over

    def to_json(self) -> dict[str, Any]:
        return {f.name: dict(self.phases) if f.name == "phases" else getattr(self, f.name) for f in fields(self)}


def calibrated_throughput(cal: dict[str, Any], m: ModelInfo) -> catalog.Throughput:
    """Tokens/s from this machine's probe (builtin:tiny-llama), scaled to the model's size like a table entry."""
    tiny = catalog.table()["sizes"]["tiny"]["params_b"]
    ratio = min(tiny / m.params_b, catalog.MAX_SIZE_SCALE)
    age = max(0.0, time.time() - float(cal.get("measured_at", time.time()))) / 3600
    size_part = "" if abs(ratio - 1) < 1e-9 else f" x {tiny:g}/{m.params_b:g}B params"
    how = (f"{cal['tokens_per_s']:g} tok/s measured on this CPU by a {cal.get('steps', '?')}-step probe "
           f"{age:.1f} h ago (cached per machine){size_part}")
    return catalog.Throughput(cal["tokens_per_s"] * ratio, "measured" if ratio == 1 else "extrapolated", how)


def for_offer(recipe: Recipe, offer: GpuOffer, m: ModelInfo, w: Work, *, on_this_machine: bool,
              storage_usd_per_hour: float, calibration: dict[str, Any] | None = None) -> OfferEstimate:
    """Hours and dollars of this run on this offer, per phase.

    `calibration` (orchestrator/planning/calibrate.py, the local CPU only) replaces the table's CPU rate and fixed costs."""
    c, t, x = recipe.compute, recipe.training, catalog.transfer(on_this_machine)
    cal = calibration if (calibration and offer.gpu_type == "cpu") else None
    tp = calibrated_throughput(cal, m) if cal else catalog.throughput(offer.gpu_type, m)
    start_s = 0.0
    if cal:
        x = {**x, **{k: cal[k] for k in ("import_s", "train_setup_s", "setup_s") if k in cal}}
        x["download_s"] = cal.get("download_s", x.get("download_s", 0))
        start_s = float(cal.get("train_start_s", 0.0))
    tps = tp.tokens_per_s * (1.0 if recipe.quantization.load_in_4bit else catalog.scaling()["lora_16bit_speedup"])
    efficiency = multi_gpu_efficiency(t.distributed) if c.gpu_count > 1 else 1.0
    tps *= c.gpu_count * efficiency
    weights = m.weights_gb
    if recipe.model.is_builtin:
        download = x.get("download_s", 0)
    else:
        download = weights * 1000 / x["hub_download_mb_s"]
    samples = len(recipe.eval.prompts) * recipe.eval.max_new_tokens * 2 / x["generate_tokens_per_s"]
    if cal and "merge_s" in cal:  # the probe's merge had the tiny recipe's samples: only the difference is added
        x = {**x, "merge_s": cal["merge_s"]}
        samples = max(0.0, samples - PROBE_SAMPLE_TOKENS / x["generate_tokens_per_s"])
    adapter_gb = lora_params(recipe, m) * 4 / GB  # peft saves the adapter in fp32
    pushed = (weights if recipe.output.push_merged else 0) + (adapter_gb if recipe.output.push_adapter else 0)
    phases = {
        "provision": min(20.0, x["pod_start_s"]),
        "connect": max(0.0, x["pod_start_s"] - 20.0),
        "sync": x["sync_s"],
        "setup": x["setup_s"],
        "download": download + x.get("import_s", 0),
        "train": x["train_setup_s"] + weights / x["load_gb_s"] + w.tokens / tps + start_s,
        "merge": x.get("merge_s", 0) + weights / x["load_gb_s"] + weights / x["save_gb_s"] + samples,
        "push": pushed * 1000 / x["hub_upload_mb_s"] if recipe.output.hub_repo else 0.0,
        "stop": x["stop_s"],
    }
    seconds = sum(phases.values())
    hours = seconds / 3600
    usd_per_hour = offer.usd_per_hour * c.gpu_count
    gpu_usd, storage_usd = hours * usd_per_hour, hours * storage_usd_per_hour
    return OfferEstimate(
        gpu_type=offer.gpu_type, memory_gb=offer.memory_gb, usd_per_hour=usd_per_hour, gpu_count=c.gpu_count,
        usd_per_gpu_hour=offer.usd_per_hour, multi_gpu_efficiency=efficiency, distributed=t.distributed,
        tokens_per_s=round(tps, 3), throughput_kind=tp.kind, throughput_source=tp.how,
        phases=MappingProxyType({k: round(v, 1) for k, v in phases.items()}), seconds=round(seconds, 1),
        hours=round(hours, 4), train_hours=round(phases["train"] / 3600, 4),
        train_tokens_s=round(w.tokens / tps + start_s, 1), calibrated=bool(cal), gpu_usd=round(gpu_usd, 4),
        storage_usd=round(storage_usd, 4), total_usd=round(gpu_usd + storage_usd, 4),
        storage_usd_per_day_after=round(storage_usd_per_hour * 24, 4),
    )


def multi_gpu_efficiency(strategy: str) -> float:
    """Share of N x one GPU's tokens/s that N GPUs reach under this strategy (communication overhead)."""
    return float(catalog.scaling()["multi_gpu_efficiency"].get(strategy, 0.8))


def strategy_memory(recipe: Recipe, m: ModelInfo, vram_seq_len: int) -> dict[str, float]:
    """Per-GPU need under each multi-GPU strategy, so the plan shows what the recipe's choice saves or costs."""
    from remote.recipe import TrainingSpec

    choices = typing.get_args(TrainingSpec.model_fields["distributed"].annotation)
    strategies = [s for s in choices if s != "none"]
    out = {}
    for strategy in strategies:
        training = recipe.training.model_copy(update={"distributed": strategy})
        out[strategy] = memory(recipe.model_copy(update={"training": training}), m, vram_seq_len).total_gb
    return out


def fmt_duration(s: float) -> str:
    return f"{s / 3600:.2f} h" if s >= 3600 else f"{s / 60:.1f} min" if s >= 120 else f"{s:.0f} s"


def describe(est: OfferEstimate, gpu_count: int) -> list[str]:
    """The time and cost lines of one offer's estimate."""
    fmt = fmt_duration
    parts = ", ".join(f"{k} {fmt(v)}" for k, v in est.phases.items() if v >= 0.5)
    lines = [
        f"throughput ≈ {est.tokens_per_s:,.0f} tokens/s ({est.throughput_kind}: {est.throughput_source})"
        + (f" x {gpu_count} GPUs x {est.multi_gpu_efficiency:g} multi-GPU efficiency ({est.distributed})"
           if gpu_count > 1 else ""),
        f"time ≈ {fmt(est.seconds)} = {parts}",
        f"cost ≈ ${est.total_usd:.2f} = GPU {est.hours:.2f} h x ${est.usd_per_hour:.3f}/h"
        + (f" ({gpu_count} GPUs x ${est.usd_per_gpu_hour:.3f}/h)" if gpu_count > 1 else "")
        + f" ${est.gpu_usd:.2f} + storage ${est.storage_usd:.2f}",
    ]
    if est.storage_usd_per_day_after > 0:
        lines.append(f"after the run the stopped volume costs ${est.storage_usd_per_day_after:.2f}/day until"
                     f" `podtune stop RUN --terminate`")
    return lines
