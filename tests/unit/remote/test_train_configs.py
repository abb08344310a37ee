"""build_configs maps every shipped recipe onto the seed workflows' exact hyperparameters (SEEDS.md)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torch

from remote.recipe import load_recipe
from remote.train import build_configs, max_length, sft_kwargs, usable_trackers

RECIPES = Path(__file__).resolve().parents[3] / "recipes"

RTX_3090 = {"cuda": True, "device": "cuda", "gpu_name": "NVIDIA GeForce RTX 3090", "gpu_count": 1, "bf16": True}
T4 = {"cuda": True, "device": "cuda", "gpu_name": "Tesla T4", "gpu_count": 1, "bf16": False}
A100 = {"cuda": True, "device": "cuda", "gpu_name": "NVIDIA A100-SXM4-80GB", "gpu_count": 2, "bf16": True}
CPU = {"cuda": False, "device": "cpu", "gpu_name": None, "gpu_count": 0, "bf16": False}


def recipe(name: str):
    return load_recipe(RECIPES / f"{name}.yaml")


def subset(kw: dict, expected: dict) -> dict:
    return {k: kw.get(k, "<missing>") for k in expected}


def test_seed_a_llama2_ko(tmp_path):
    r = recipe("llama2-ko")
    kw = sft_kwargs(r, RTX_3090, output_dir=tmp_path, model_max_length=4096)
    expected = {
        "num_train_epochs": 3, "max_steps": -1, "per_device_train_batch_size": 4, "gradient_accumulation_steps": 2,
        "optim": "paged_adamw_32bit", "learning_rate": 2e-4, "weight_decay": 0.001, "max_grad_norm": 0.3,
        "warmup_steps": 0.03, "lr_scheduler_type": "cosine", "logging_steps": 5, "save_strategy": "epoch",
        "seed": 42, "packing": True, "max_length": 2048, "activation_checkpointing": True,
        "fp16": True, "bf16": False, "use_cpu": False, "report_to": ["wandb"], "eval_strategy": "no",
    }
    assert subset(kw, expected) == expected
    bnb, lora, args = build_configs(r, RTX_3090, output_dir=tmp_path, model_max_length=4096)
    assert (bnb.load_in_4bit, bnb.bnb_4bit_quant_type, bnb.bnb_4bit_use_double_quant) == (True, "nf4", True)
    assert bnb.bnb_4bit_compute_dtype == torch.float16
    assert (lora.r, lora.lora_alpha, lora.lora_dropout, lora.bias, lora.task_type) == (64, 16, 0.1, "none", "CAUSAL_LM")
    assert lora.target_modules is None  # peft's default for the architecture, as the seed had
    assert (args.max_length, args.packing, args.optim, args.lr_scheduler_type) == (2048, True, "paged_adamw_32bit", "cosine")
    assert args.gradient_checkpointing and args.fp16 and not args.bf16 and args.report_to == ["wandb"]


def test_seed_a_length_is_capped_by_the_model():
    assert sft_kwargs(recipe("llama2-ko"), RTX_3090, model_max_length=1024)["max_length"] == 1024


def test_seed_b_guanaco(tmp_path):
    r = recipe("llama2-guanaco")
    kw = sft_kwargs(r, RTX_3090, output_dir=tmp_path, model_max_length=4096)
    expected = {
        "num_train_epochs": 1, "per_device_train_batch_size": 1, "gradient_accumulation_steps": 1,
        "activation_checkpointing": True, "max_grad_norm": 0.3, "learning_rate": 2e-6, "weight_decay": 0.001,
        "optim": "paged_adamw_32bit", "lr_scheduler_type": "cosine", "warmup_steps": 0.03,
        "train_sampling_strategy": "group_by_length", "packing": False, "max_length": 4096,
        "report_to": ["tensorboard"], "logging_steps": 25, "save_strategy": "no", "fp16": True, "bf16": False,
    }
    assert subset(kw, expected) == expected
    bnb, lora, args = build_configs(r, RTX_3090, output_dir=tmp_path, model_max_length=4096)
    assert (bnb.bnb_4bit_quant_type, bnb.bnb_4bit_use_double_quant, bnb.bnb_4bit_compute_dtype) == ("nf4", False, torch.float16)
    assert (lora.r, lora.lora_alpha, lora.lora_dropout) == (64, 16, 0.1)
    assert args.train_sampling_strategy == "group_by_length" and args.learning_rate == 2e-6


@pytest.mark.parametrize(("hw", "half"), [(A100, "bf16"), (T4, "fp16")])
def test_seed_c_llama31_ko_safe(tmp_path, hw, half):
    r = recipe("llama3.1-ko-safe")
    kw = sft_kwargs(r, hw, output_dir=tmp_path, model_max_length=131072)
    expected = {
        "max_steps": 60, "per_device_train_batch_size": 2, "gradient_accumulation_steps": 4, "warmup_steps": 5,
        "learning_rate": 2e-4, "optim": "adamw_8bit", "weight_decay": 0.01, "lr_scheduler_type": "linear",
        "logging_steps": 1, "packing": False, "max_length": 2048, "seed": 3407, "activation_checkpointing": True,
        "save_strategy": "no", "fp16": half == "fp16", "bf16": half == "bf16",
    }
    assert subset(kw, expected) == expected
    if half == "fp16":  # a bf16 SFTConfig cannot be built on a machine without an Ampere GPU
        bnb, lora, args = build_configs(r, hw, output_dir=tmp_path, model_max_length=131072)
        assert bnb.bnb_4bit_compute_dtype == torch.float16
        assert (lora.r, lora.lora_alpha, lora.lora_dropout, lora.bias) == (16, 16, 0.0, "none")
        assert set(lora.target_modules) == {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"}
        assert args.max_steps == 60 and args.warmup_steps == 5 and args.optim == "adamw_8bit"


def test_seed_d_ironman_persona(tmp_path):
    r = recipe("ironman-persona")
    kw = sft_kwargs(r, A100, output_dir=tmp_path, model_max_length=8192)
    expected = {
        "per_device_train_batch_size": 4, "gradient_accumulation_steps": 4, "lr_scheduler_type": "cosine",
        "learning_rate": 1e-4, "num_train_epochs": 10, "bf16": True, "fp16": False, "logging_steps": 10,
        "save_strategy": "steps", "save_steps": 100, "eval_strategy": "steps", "eval_steps": 100,
        "load_best_model_at_end": True, "metric_for_best_model": "eval_loss", "greater_is_better": False,
    }
    assert subset(kw, expected) == expected
    if importlib.util.find_spec("deepspeed") is None:
        with pytest.raises(RuntimeError, match="pip install deepspeed"):
            build_configs(r, A100, output_dir=tmp_path)


def test_tiny_on_cpu(tmp_path):
    r = recipe("tiny-cpu")
    bnb, lora, args = build_configs(r, CPU, output_dir=tmp_path, model_max_length=256)
    assert args.use_cpu and not args.fp16 and not args.bf16  # trl would default bf16 on: it must be off
    assert bnb.bnb_4bit_compute_dtype == torch.float32
    assert lora.target_modules == "all-linear"
    assert (args.max_steps, args.save_steps, args.max_length, args.packing) == (30, 15, 128, True)
    assert args.report_to == [] or args.report_to == "none"


def test_max_length_rule():
    assert max_length(2048, 4096) == 2048
    assert max_length(4096, 256) == 256
    assert max_length(None, 4096) == 4096
    assert max_length(None, None) == 1024


def test_early_stopping_needs_checkpoints():
    r = recipe("ironman-persona")
    training = r.training.model_copy(update={"save_strategy": "no", "save_steps": None})
    with pytest.raises(ValueError, match="save_strategy"):
        sft_kwargs(r.model_copy(update={"training": training}), A100)


def test_wandb_without_key_is_dropped_with_a_warning():
    keep, warnings = usable_trackers(["wandb"], {})
    assert keep == [] and len(warnings) == 1 and "wandb" in warnings[0]


def test_renamed_fields_follow_the_installed_transformers():
    """A pod image with a transformers from before the rename still gets gradient checkpointing."""
    import dataclasses

    from trl import SFTConfig

    from remote.train import for_installed_transformers

    @dataclasses.dataclass
    class OlderArguments:  # transformers 5.17's spelling
        gradient_checkpointing: bool = False
        gradient_checkpointing_kwargs: dict | None = None
        max_steps: int = -1

    kw = {"activation_checkpointing": True, "activation_checkpointing_kwargs": {"use_reentrant": False}, "max_steps": 3}
    assert for_installed_transformers(kw, OlderArguments) == {
        "gradient_checkpointing": True, "gradient_checkpointing_kwargs": {"use_reentrant": False}, "max_steps": 3}
    assert for_installed_transformers(kw, SFTConfig) == kw  # the installed release knows the new names


def test_fp16_training_keeps_trainable_weights_in_float32():
    """fp16's grad scaler cannot unscale bf16 gradients: what trl leaves in bf16 is trained in fp32."""
    from remote.train import upcast_trainable_params

    model = torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.Linear(4, 4))
    model[0].to(torch.float16).requires_grad_(False)  # the frozen base stays as loaded
    model[1].to(torch.bfloat16)  # the adapter as trl leaves it
    assert upcast_trainable_params(model) == 2
    assert [p.dtype for p in model.parameters()] == [torch.float16, torch.float16, torch.float32, torch.float32]


def test_wandb_with_the_delivered_key_is_kept_without_it_in_the_environment():
    pytest.importorskip("wandb")
    keep, warnings = usable_trackers(["wandb"], {}, wandb_key="wandb-key-from-its-file")
    assert keep == ["wandb"] and warnings == []
