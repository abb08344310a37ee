"""The ZeRO-3 config podtune generates, filled the way the Trainer fills it, passes DeepSpeed's own parser.

deepspeed installs without CUDA (its ops are built on first use on the pod), so its config classes run here.
"""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest
from deepspeed.runtime import config as deepspeed_config  # the dev extra installs it: never skipped

from remote.recipe import load_recipe
from remote.train import for_installed_transformers, sft_kwargs, zero3_config

RECIPES = Path(__file__).resolve().parents[3] / "recipes"
A100 = {"cuda": True, "device": "cuda", "gpu_name": "NVIDIA A100-SXM4-80GB", "gpu_count": 2, "bf16": True}
LLAMA3_8B_HIDDEN = 4096  # allganize/Llama-3-Alpha-Ko-8B-Instruct


def filled_seed_d_config(steps: int = 170) -> dict:
    """Seed D's SFTConfig for 2x A100 with our ZeRO-3 dict; transformers fills every `auto` as in the Trainer.

    use_cpu only so that transformers accepts bf16 on this GPU-less machine; it does not touch the DeepSpeed dict."""
    from transformers import LlamaConfig
    from trl import SFTConfig

    kw = sft_kwargs(load_recipe(RECIPES / "ironman-persona.yaml"), A100, model_max_length=8192)
    kw.update(deepspeed=zero3_config(), use_cpu=True)
    args = SFTConfig(**for_installed_transformers(kw, SFTConfig))
    hf_config = args.hf_deepspeed_config  # trainer_config_process ran: batch, accumulation, clipping, precision
    hf_config.trainer_config_finalize(args, SimpleNamespace(config=LlamaConfig(hidden_size=LLAMA3_8B_HIDDEN)), steps)
    return hf_config.config


def test_seed_d_zero3_config_passes_deepspeeds_parser():
    config = filled_seed_d_config()
    assert "auto" not in repr(config)
    parsed = deepspeed_config.DeepSpeedConfig(config)  # raises on an unknown key, a bad type or batch arithmetic
    assert parsed.zero_enabled and parsed.zero_optimization_stage == 3
    assert parsed.bfloat16_config.enabled and not parsed.float16_config.enabled  # seed D trained in bf16
    assert (parsed.train_micro_batch_size_per_gpu, parsed.gradient_accumulation_steps) == (4, 4)
    assert parsed.gradient_clipping == 1.0
    # save_model must write whole 16-bit weights (one adapter file), not per-rank shards.
    assert parsed.zero_config.gather_16bit_weights_on_model_save is True
    assert parsed.zero_config.reduce_bucket_size == LLAMA3_8B_HIDDEN**2


def test_deepspeeds_parser_is_strict_enough_to_catch_a_typo():
    """The check above can fail: a misspelt ZeRO key is refused, not ignored."""
    config = filled_seed_d_config()
    config["zero_optimization"]["stage3_gather_16bit_weights_on_model_sav"] = True
    with pytest.raises(Exception, match="stage3_gather_16bit_weights_on_model_sav"):
        deepspeed_config.DeepSpeedConfig(config)
