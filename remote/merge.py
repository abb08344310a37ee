"""Merge the trained adapter into the unquantized base, prove the merge is right, save it, sample answers.

    python -u -m remote merge --run-dir /workspace/runs/<run-id>

Checks, each with an error that says what went wrong: the merged model reproduces the adapter model's logits
on a fixed probe batch, and its weights differ from the base files (an adapter that learned nothing would
otherwise be pushed as a "fine-tuned" model).
"""

from __future__ import annotations

import gc
import shutil
from pathlib import Path
from typing import Any

from . import hardware
from .events import EventKind, EventLog, RunPaths
from .recipe import Recipe

PROBE_TEXTS = ["The quick brown fox jumps over the lazy dog.", "서울은 대한민국의 수도입니다. 오늘은 날씨가 좋습니다."]
PROBE_MAX_TOKENS = 64
# Allowed |merged - adapter| logit difference, relative to the largest logit: W + BA rounds once more in half types.
LOGIT_RTOL = {"float32": 1e-3, "float16": 2e-2, "bfloat16": 6e-2}
MAX_SHARD = "5GB"  # smaller files upload and resume better than one 16 GB blob


class MergeError(RuntimeError):
    """The merged model is not what the adapter trained; nothing is saved."""


def run(run_dir: Path, recipe: Recipe, log: EventLog, *, model_dir: Path, token: str | None) -> dict[str, Any]:
    """Write run_dir/merged and return the merge_done record (samples from base and tuned model included)."""
    import torch
    from peft import PeftModel
    from peft.tuners.lora import LoraLayer
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from .progress import is_main_process

    if not is_main_process():
        return {"skipped": "merge runs on rank 0 only"}
    paths = RunPaths(Path(run_dir))
    if not (paths.adapter / "adapter_config.json").is_file():
        raise MergeError(f"no adapter at {paths.adapter}; run the train phase first")
    hw = hardware.describe()
    dtype_name = merge_dtype(recipe, hw)
    tokenizer = AutoTokenizer.from_pretrained(paths.adapter if (paths.adapter / "tokenizer_config.json").exists() else model_dir)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.padding_side = "right"

    base = AutoModelForCausalLM.from_pretrained(
        model_dir, dtype=hardware.torch_dtype(dtype_name), device_map="auto" if hw["cuda"] else None,
        trust_remote_code=recipe.model.trust_remote_code,
    )
    base.eval()
    base_answers = [sample(base, tokenizer, recipe, p) for p in recipe.eval.prompts]
    _free_cuda()  # generation's cache blocks, before the adapter and the probe logits need room

    model = PeftModel.from_pretrained(base, paths.adapter)
    model.eval()
    # Module names as the base files spell them, e.g. model.layers.0.self_attn.q_proj.
    targets = [name.removeprefix("base_model.model.") for name, m in model.named_modules() if isinstance(m, LoraLayer)]
    probe = tokenizer(
        PROBE_TEXTS + [render_for(recipe, tokenizer, p) for p in recipe.eval.prompts],
        return_tensors="pt", padding=True, truncation=True, max_length=PROBE_MAX_TOKENS,
    ).to(base.device)
    with torch.inference_mode():
        adapter_logits = model(**probe).logits.float().cpu()
    merged = model.merge_and_unload()
    with torch.inference_mode():
        merged_logits = merged(**probe).logits.float().cpu()

    scale = max(1.0, adapter_logits.abs().max().item())
    max_logit_diff = (merged_logits - adapter_logits).abs().max().item()
    if max_logit_diff > LOGIT_RTOL[dtype_name] * scale:
        raise MergeError(
            f"merged model's logits differ from the adapter model's by {max_logit_diff:.4g} "
            f"(allowed {LOGIT_RTOL[dtype_name] * scale:.4g} in {dtype_name}); the merge is wrong, nothing was saved"
        )
    max_weight_diff = weight_diff(merged, model_dir, targets)
    if max_weight_diff == 0:
        raise MergeError("merged model is identical to the base: the adapter learned nothing (check learning rate and data)")
    del adapter_logits, merged_logits

    if paths.merged.exists():
        shutil.rmtree(paths.merged)  # a re-run must not leave shards of an earlier save beside the new ones
    # transformers 5 always writes safetensors (no safe_serialization flag) and the generation_config with them.
    merged.save_pretrained(paths.merged, max_shard_size=MAX_SHARD)
    tokenizer.save_pretrained(paths.merged)
    tuned_answers = [sample(merged, tokenizer, recipe, p) for p in recipe.eval.prompts]

    del merged, model, base
    _free_cuda()
    samples = [{"prompt": p, "base": b, "tuned": t} for p, b, t in zip(recipe.eval.prompts, base_answers, tuned_answers)]
    record = {
        "merged_dir": str(paths.merged),
        "dtype": dtype_name,
        "max_weight_diff": max_weight_diff,
        "max_logit_diff": max_logit_diff,
        "lora_modules": len(targets),
        "peak_mem_mb": hardware.peak_memory_mb(),
        "samples": samples,
        "learning": learned(recipe, paths.root, token, samples),
    }
    log.emit(EventKind.MERGE_DONE, **record)
    return record


def learned(recipe: Recipe, run_dir: Path, token: str | None, samples: list[dict[str, str]]) -> dict[str, Any]:
    """Whether the samples follow the training data (remote/learning.py); a data error is reported, never fatal."""
    from .data import load_records
    from .learning import assess

    try:
        return assess(recipe, load_records(recipe, run_dir, token), samples)
    except Exception as exc:  # the model is merged and saved; this is a note for the report
        from .redact import Redactor

        return {"error": Redactor([token])(f"{exc.__class__.__name__}: {exc}"), "line": None}


def merge_dtype(recipe: Recipe, hw: dict[str, Any]) -> str:
    """float32 on CPU; on a GPU the recipe's half type (bf16 where supported), never float32 (twice the size to push)."""
    if not hw.get("cuda"):
        return "float32"
    name = hardware.compute_dtype_name(recipe.quantization.compute_dtype, hw)
    return name if name != "float32" else hardware.compute_dtype_name("auto", hw)


def weight_diff(merged, model_dir: Path, targets: list[str]) -> float:
    """Largest |merged - base| over the LoRA-targeted weights, the base read tensor by tensor from its files."""
    from safetensors import safe_open

    files = sorted(Path(model_dir).glob("*.safetensors"))
    if not files:
        raise MergeError(f"no .safetensors weights in {model_dir} to compare the merged model against")
    wanted = {f"{name}.weight" for name in targets}
    params = dict(merged.named_parameters())
    largest, compared = 0.0, 0
    for file in files:
        with safe_open(str(file), framework="pt", device="cpu") as fh:
            for key in wanted.intersection(fh.keys()):
                if key not in params:
                    continue
                current = params[key].detach()
                # Cast the base to the merged dtype first: a fp16 file loaded as bf16 is not a learned change.
                original = fh.get_tensor(key).to(device=current.device, dtype=current.dtype)
                largest = max(largest, (current.float() - original.float()).abs().max().item())
                compared += 1
    if compared == 0:
        raise MergeError(f"none of the {len(wanted)} adapted weights were found in {model_dir}'s safetensors files")
    return largest


def _free_cuda() -> None:
    import torch

    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def render_for(recipe: Recipe, tokenizer, prompt: str) -> str:
    from .data import render_prompt

    return render_prompt(recipe, tokenizer, prompt)


def new_token_budget(wanted: int, prompt_tokens: int, model) -> int:
    """eval.max_new_tokens, cut so prompt + answer stay within the model's positions (past them a model
    generates noise, and the tiny model's 256 positions are easy to pass with a seed's 500 tokens)."""
    limit = getattr(getattr(model, "config", None), "max_position_embeddings", None)
    if not isinstance(limit, int) or limit <= 0:
        return wanted
    return max(1, min(wanted, limit - prompt_tokens))


def sample(model, tokenizer, recipe: Recipe, prompt: str) -> str:
    """One answer to `prompt`: greedy when eval.temperature is 0, else seeded nucleus sampling."""
    import torch

    from .data import stop_token_ids

    text = render_for(recipe, tokenizer, prompt)
    bos = tokenizer.bos_token
    enc = tokenizer(text, return_tensors="pt", add_special_tokens=not (bos and text.startswith(bos))).to(model.device)
    e = recipe.eval
    kwargs: dict[str, Any] = {"max_new_tokens": new_token_budget(e.max_new_tokens, enc["input_ids"].shape[1], model),
                              "pad_token_id": tokenizer.pad_token_id}
    stops = stop_token_ids(recipe, tokenizer)
    if stops:
        kwargs["eos_token_id"] = stops
    if e.temperature == 0:
        kwargs.update(do_sample=False, temperature=None, top_p=None, top_k=None)
    else:
        kwargs.update(do_sample=True, temperature=e.temperature, top_p=e.top_p)
        torch.manual_seed(recipe.training.seed)  # base and tuned draw from the same stream: a fair comparison
    with torch.inference_mode():
        out = model.generate(**enc, **kwargs)
    return tokenizer.decode(out[0, enc["input_ids"].shape[1]:], skip_special_tokens=True)
