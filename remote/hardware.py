"""Facts about the device training runs on, and the dtype/precision choices that follow from them."""

from __future__ import annotations

import resource
import sys
from typing import Any

DTYPES = {"float16": "float16", "bfloat16": "bfloat16", "float32": "float32"}


def describe() -> dict[str, Any]:
    """{device, gpu_name, gpu_count, bf16, cuda, total_mem_mb}: what build_configs and the report need."""
    import torch

    cuda = torch.cuda.is_available()
    info: dict[str, Any] = {"cuda": cuda, "device": "cuda" if cuda else "cpu", "gpu_name": None, "gpu_count": 0}
    if cuda:
        props = torch.cuda.get_device_properties(0)
        info.update(
            gpu_name=props.name,
            gpu_count=torch.cuda.device_count(),
            total_mem_mb=round(props.total_memory / 2**20),
        )
    info["bf16"] = bool(cuda and torch.cuda.is_bf16_supported())
    return info


def compute_dtype_name(requested: str, hw: dict[str, Any]) -> str:
    """Resolve quantization.compute_dtype: `auto` = bfloat16 where supported, else float16; float32 on CPU."""
    if not hw.get("cuda"):
        # CPU kernels for half types are slow or missing; float32 is what bitsandbytes on CPU computes in anyway.
        return "float32"
    if requested == "auto":
        return "bfloat16" if hw.get("bf16") else "float16"
    if requested == "bfloat16" and not hw.get("bf16"):
        raise ValueError(
            f"compute_dtype bfloat16 needs an Ampere or newer GPU, this is {hw.get('gpu_name')}; "
            "set quantization.compute_dtype: auto or float16"
        )
    return DTYPES[requested]


def precision(requested: str, hw: dict[str, Any]) -> str:
    """Resolve training.precision to `fp16`, `bf16` or `fp32` (mixed precision needs a GPU)."""
    if not hw.get("cuda"):
        return "fp32"
    if requested == "auto":
        return "bf16" if hw.get("bf16") else "fp16"
    if requested == "bf16" and not hw.get("bf16"):
        raise ValueError(
            f"precision bf16 needs an Ampere or newer GPU, this is {hw.get('gpu_name')}; set training.precision: auto or fp16"
        )
    return requested


def torch_dtype(name: str):
    import torch

    return getattr(torch, name)


def peak_memory_mb() -> float:
    """Peak memory so far: reserved GPU memory on CUDA (what the seeds reported), else the process's peak RSS."""
    import torch

    if torch.cuda.is_available() and torch.cuda.is_initialized():
        return round(torch.cuda.max_memory_reserved() / 2**20, 1)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    # Linux reports kilobytes, macOS bytes.
    return round(peak / (2**20 if sys.platform == "darwin" else 1024), 1)
