"""Train a LoRA adapter (QLoRA when the recipe loads the base in 4 bit) and report progress to events.jsonl.

    python -u -m remote train --run-dir /workspace/runs/<run-id> --token-file /workspace/.hf-token
    torchrun --nproc_per_node 2 -m remote train --run-dir ...      # training.distributed: ddp | deepspeed_zero3

The pipeline calls `run()` as its train phase. All recipe -> library mapping is in `build_configs` (pure, unit
tested against the four seed workflows). A restarted pod resumes from the last checkpoint; SIGTERM saves one
and returns `interrupted=True`.
"""

from __future__ import annotations

import importlib.util
import os
import signal
import time
from pathlib import Path
from typing import Any

from . import hardware
from .events import EventKind, EventLog, RunPaths
from .recipe import Recipe

# trl's SFTConfig default when neither the recipe nor the model gives a limit.
FALLBACK_MAX_LENGTH = 1024
# Keeps the volume from filling with optimizer states on long runs (seed D saves every 100 steps for 10 epochs).
SAVE_TOTAL_LIMIT = 3


def sft_kwargs(
    recipe: Recipe,
    hw: dict[str, Any],
    *,
    output_dir: str | Path = "checkpoints",
    model_max_length: int | None = None,
    report_to: list[str] | None = None,
) -> dict[str, Any]:
    """The SFTConfig arguments for this recipe on this hardware, as plain values (no library needed)."""
    t = recipe.training
    prec = hardware.precision(t.precision, hw)
    has_eval = recipe.dataset.eval_fraction > 0
    trackers = list(t.report_to) if report_to is None else list(report_to)
    kw: dict[str, Any] = {
        "output_dir": str(output_dir),
        "num_train_epochs": t.epochs if t.epochs is not None else 1.0,
        "max_steps": t.max_steps if t.max_steps is not None else -1,
        "per_device_train_batch_size": t.batch_size,
        "per_device_eval_batch_size": t.batch_size,
        "gradient_accumulation_steps": t.grad_accum,
        "optim": t.optimizer,
        "learning_rate": t.learning_rate,
        "weight_decay": t.weight_decay,
        "max_grad_norm": t.max_grad_norm,
        # transformers 5 folds warmup_ratio into warmup_steps: a float below 1 is a ratio of the total steps.
        "warmup_steps": t.warmup_steps if t.warmup_steps > 0 else t.warmup_ratio,
        "lr_scheduler_type": t.lr_scheduler,
        "logging_steps": t.logging_steps,
        "save_strategy": t.save_strategy,
        "save_total_limit": SAVE_TOTAL_LIMIT,
        "seed": t.seed,
        "activation_checkpointing": t.gradient_checkpointing,
        # Non-reentrant checkpointing works with DDP and needs no input-grad hooks; trl forces reentrant under ZeRO-3.
        "activation_checkpointing_kwargs": {"use_reentrant": False} if t.gradient_checkpointing else None,
        "train_sampling_strategy": "group_by_length" if t.group_by_length else "random",
        "packing": t.packing,
        "max_length": max_length(t.max_seq_length, model_max_length),
        "fp16": prec == "fp16",
        "bf16": prec == "bf16",  # explicit: trl would otherwise turn bf16 on whenever fp16 is off
        "use_cpu": not hw.get("cuda"),
        "dataloader_pin_memory": bool(hw.get("cuda")),
        "report_to": trackers or "none",
        "include_num_input_tokens_seen": "non_padding",
        "disable_tqdm": True,  # train.log gets one line per logging step instead of carriage-return bars
        "eval_strategy": t.save_strategy if has_eval else "no",
    }
    if t.save_strategy == "steps":
        kw["save_steps"] = t.save_steps
        if has_eval:
            kw["eval_steps"] = t.save_steps
    if t.early_stopping_patience:
        if t.save_strategy == "no":
            raise ValueError(
                "training.early_stopping_patience evaluates at each checkpoint but save_strategy is `no`; "
                "set save_strategy: steps (with save_steps) or epoch, or remove early_stopping_patience"
            )
        kw.update(load_best_model_at_end=True, metric_for_best_model="eval_loss", greater_is_better=False)
    if t.distributed == "ddp":
        kw["ddp_find_unused_parameters"] = False  # LoRA leaves the frozen base unused; the search only costs time
    return kw


def max_length(recipe_value: int | None, model_limit: int | None) -> int:
    """min(recipe value, model limit); null in the recipe means the model's own limit."""
    values = [v for v in (recipe_value, model_limit) if v]
    return min(values) if values else FALLBACK_MAX_LENGTH


def model_limit(model_dir: Path, tokenizer) -> int | None:
    """The shortest of the config's position limit and the tokenizer's model_max_length (which is 1e30 when unset)."""
    from transformers import AutoConfig

    config = AutoConfig.from_pretrained(model_dir)
    limits = [n for n in (getattr(config, "max_position_embeddings", None), tokenizer.model_max_length) if n and n < 10**7]
    return min(limits) if limits else None


def zero3_config() -> dict[str, Any]:
    """A DeepSpeed ZeRO-3 config whose `auto` values the Trainer fills from SFTConfig."""
    return {
        "zero_optimization": {
            "stage": 3,
            "overlap_comm": True,
            "contiguous_gradients": True,
            "reduce_bucket_size": "auto",
            "stage3_prefetch_bucket_size": "auto",
            "stage3_param_persistence_threshold": "auto",
            "stage3_gather_16bit_weights_on_model_save": True,  # so save_model writes real weights, not shards
        },
        "bf16": {"enabled": "auto"},
        "fp16": {"enabled": "auto"},
        "gradient_clipping": "auto",
        "train_batch_size": "auto",
        "train_micro_batch_size_per_gpu": "auto",
        "gradient_accumulation_steps": "auto",
    }


def build_configs(
    recipe: Recipe,
    hw: dict[str, Any],
    *,
    output_dir: str | Path = "checkpoints",
    model_max_length: int | None = None,
    report_to: list[str] | None = None,
):
    """(BitsAndBytesConfig or None, LoraConfig, SFTConfig) for this recipe on this hardware."""
    from peft import LoraConfig
    from transformers import BitsAndBytesConfig
    from trl import SFTConfig

    q, lora, t = recipe.quantization, recipe.lora, recipe.training
    compute = hardware.torch_dtype(hardware.compute_dtype_name(q.compute_dtype, hw))
    kw = sft_kwargs(recipe, hw, output_dir=output_dir, model_max_length=model_max_length, report_to=report_to)
    if t.distributed == "deepspeed_zero3":
        if importlib.util.find_spec("deepspeed") is None:
            raise RuntimeError(
                "training.distributed is deepspeed_zero3 but the deepspeed package is missing (podtune's setup "
                "installs it for such a recipe; this Python was not set up by it): `pip install deepspeed` here, "
                "or set training.distributed: ddp"
            )
        kw["deepspeed"] = zero3_config()
    bnb = None
    if q.load_in_4bit:
        bnb = BitsAndBytesConfig(
            load_in_4bit=True,
            bnb_4bit_quant_type=q.quant_type,
            bnb_4bit_use_double_quant=q.double_quant,
            bnb_4bit_compute_dtype=compute,
            # ZeRO-3 shards parameters by dtype; 4-bit weights must be stored as the compute dtype to be sharded.
            **({"bnb_4bit_quant_storage": compute} if t.distributed == "deepspeed_zero3" else {}),
        )
    targets = lora.target_modules
    peft_config = LoraConfig(
        r=lora.r,
        lora_alpha=lora.alpha,
        lora_dropout=lora.dropout,
        bias=lora.bias,
        task_type="CAUSAL_LM",
        target_modules=None if targets == "default" else (targets if isinstance(targets, str) else list(targets)),
    )
    return bnb, peft_config, SFTConfig(**for_installed_transformers(kw, SFTConfig))


# Names newer transformers releases gave to older TrainingArguments fields. A pod image may ship a release from
# before a rename (transformers 5.17 has only gradient_checkpointing*), and the requirement check accepts it.
RENAMED_FIELDS = {
    "activation_checkpointing": "gradient_checkpointing",
    "activation_checkpointing_kwargs": "gradient_checkpointing_kwargs",
}


def for_installed_transformers(kw: dict[str, Any], config_class) -> dict[str, Any]:
    """kw with each renamed field spelled as the installed config class knows it."""
    import dataclasses

    known = {f.name for f in dataclasses.fields(config_class)}
    return {(RENAMED_FIELDS.get(k, k) if k not in known else k): v for k, v in kw.items()}


def checkpointing_kwargs(args) -> dict[str, Any] | None:
    return getattr(args, "activation_checkpointing_kwargs", None) or getattr(args, "gradient_checkpointing_kwargs", None)


def usable_trackers(requested: list[str], env: dict[str, str] | os._Environ,
                    wandb_key: str | None = None) -> tuple[list[str], list[str]]:
    """(trackers to use, warnings): a tracker without its package or key is dropped instead of failing the run.

    The W&B key comes from the file the laptop delivered (wandb_key), or an environment the pod itself set."""
    keep, warnings = [], []
    for name in requested:
        module = "wandb" if name == "wandb" else ("tensorboard" if importlib.util.find_spec("tensorboard") else "tensorboardX")
        if importlib.util.find_spec(module) is None:
            warnings.append(f"report_to {name} dropped: the {module} package is not installed on the pod")
        elif name == "wandb" and not (wandb_key or env.get("WANDB_API_KEY")):
            warnings.append("report_to wandb dropped: WANDB_API_KEY is not set (export it on the laptop)")
        else:
            keep.append(name)
    return keep, warnings


def setup_trackers(trackers: list[str], run_dir: Path, wandb_key: str | None) -> None:
    """Where the trackers write (inside the run folder, so the laptop can fetch it), and W&B's key, in memory.

    The key goes to wandb.setup(), which keeps it in this process: not os.environ, which wandb's own service
    process (and anything else started from here) would inherit and show in /proc/<pid>/environ."""
    if "tensorboard" in trackers:
        os.environ.setdefault("TENSORBOARD_LOGGING_DIR", str(RunPaths(run_dir).tensorboard))
    if "wandb" in trackers:
        os.environ.setdefault("WANDB_DIR", str(run_dir))
        if wandb_key:
            import wandb

            wandb.setup(settings=wandb.Settings(api_key=wandb_key))


def run(run_dir: Path, recipe: Recipe, log: EventLog, *, model_dir: Path, token: str | None,
        wandb_key: str | None = None) -> dict[str, Any]:
    """Train the adapter into run_dir/adapter; return the train_done summary (or `interrupted=True`)."""
    import torch
    from peft import prepare_model_for_kbit_training
    from transformers import AutoModelForCausalLM, AutoTokenizer, EarlyStoppingCallback
    from transformers.trainer_utils import get_last_checkpoint
    from trl import SFTTrainer

    from .data import prepare
    from .progress import ProgressCallback, StopFlag, is_main_process

    paths = RunPaths(Path(run_dir))
    main = is_main_process()
    hw = hardware.describe()
    if recipe.model.is_builtin and not hw["cuda"]:
        # The tiny model gains nothing from a second thread, and on a busy CPU OpenMP's spinning makes each step
        # several times slower (the demo's 30 steps: ~60 s with 2 threads, ~11 s with one, on a loaded 2-core box).
        torch.set_num_threads(1)
    say = log.emit if main else (lambda *a, **k: None)

    tokenizer = AutoTokenizer.from_pretrained(model_dir, trust_remote_code=recipe.model.trust_remote_code)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.padding_side = "right"

    trackers, warnings = usable_trackers(list(recipe.training.report_to), os.environ, wandb_key)
    for message in warnings:
        say(EventKind.WARNING, message=message)
    if main:
        setup_trackers(trackers, paths.root, wandb_key)
    if recipe.training.distributed != "none" and int(os.environ.get("WORLD_SIZE", "1")) < 2:
        say(EventKind.WARNING, message=f"training.distributed is {recipe.training.distributed} but this is a single process")
    # The SFTConfig must exist before the model loads: under ZeRO-3 it switches from_pretrained to sharded init.
    bnb, peft_config, args = build_configs(
        recipe, hw, output_dir=paths.checkpoints, model_max_length=model_limit(model_dir, tokenizer), report_to=trackers
    )
    train_ds, eval_ds = prepare(recipe, tokenizer, paths.root, token, max_length=args.max_length)
    say("data", train_records=len(train_ds), eval_records=len(eval_ds) if eval_ds is not None else 0,
        max_length=args.max_length)

    compute = hardware.torch_dtype(hardware.compute_dtype_name(recipe.quantization.compute_dtype, hw))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    device_map = None if (not hw["cuda"] or args.deepspeed) else {"": local_rank}
    model = AutoModelForCausalLM.from_pretrained(
        model_dir, quantization_config=bnb, dtype=compute, device_map=device_map,
        trust_remote_code=recipe.model.trust_remote_code,
    )
    model.config.use_cache = False  # the KV cache is useless in training and conflicts with checkpointing
    model.config.pretraining_tp = 1  # Llama-2's sliced matmul is slower and only matters for exact-logit parity
    if bnb is not None:
        model = prepare_model_for_kbit_training(
            model,
            use_gradient_checkpointing=recipe.training.gradient_checkpointing,
            gradient_checkpointing_kwargs=checkpointing_kwargs(args),
        )
    load_mem = hardware.peak_memory_mb()

    stop = StopFlag()
    progress = ProgressCallback(say, stop, start_mem_mb=load_mem)
    callbacks: list[Any] = [progress]
    if recipe.training.early_stopping_patience:
        callbacks.append(EarlyStoppingCallback(early_stopping_patience=recipe.training.early_stopping_patience))
    trainer = SFTTrainer(
        model=model, args=args, train_dataset=train_ds, eval_dataset=eval_ds,
        processing_class=tokenizer, peft_config=peft_config, callbacks=callbacks,
    )
    if args.fp16:
        upcast_trainable_params(trainer.model)
    trainable, total = trainer.model.get_nb_trainable_parameters()  # type: ignore[union-attr,operator]
    layers_4bit = count_4bit_layers(trainer.model)
    world = int(os.environ.get("WORLD_SIZE", "1"))
    # Every rank says what it loaded (torchrun tags the line with the rank): each holds its own 4-bit copy.
    print(f"rank {os.environ.get('RANK', '0')}/{world}: model loaded with {layers_4bit} bitsandbytes Linear4bit "
          f"layers, {trainable:,} trainable parameters, on {hw['device']}", flush=True)
    say("model", linear4bit=layers_4bit, trainable_params=trainable, total_params=total,
        dtype=str(compute).removeprefix("torch."), world_size=world)
    last = get_last_checkpoint(str(paths.checkpoints)) if paths.checkpoints.is_dir() else None
    if last:
        say(EventKind.RESUMED, checkpoint=Path(last).name)

    restore = _install_sigterm(stop)
    started = time.time()
    try:
        trainer.train(resume_from_checkpoint=last)
    finally:
        restore()
    summary = progress.summary(trainer.state, train_seconds=round(time.time() - started, 3))
    summary.update(resumed_from=Path(last).name if last else None, load_mem_mb=load_mem, device=hw["device"])
    if progress.interrupted:  # a signal after the last step does not count: the adapter is saved below
        return {**summary, "interrupted": True, "checkpoint": _latest(paths.checkpoints)}

    trainer.save_model(str(paths.adapter))  # every rank must call it under ZeRO-3; only the main one writes
    if main:
        tokenizer.save_pretrained(paths.adapter)
    summary["adapter_dir"] = str(paths.adapter)
    say(EventKind.TRAIN_DONE, **summary)
    del trainer, model
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    return {**summary, "interrupted": False}


def upcast_trainable_params(model) -> int:
    """Trainable parameters in half types go to float32; returns how many moved.

    trl casts QLoRA adapter weights to bfloat16 whatever the precision, and fp16 mixed precision's grad scaler
    cannot unscale bfloat16 gradients (it fails on the first optimizer step, e.g. seed A on a GPU). float32
    master weights under fp16 autocast are what peft itself does for adapters."""
    import torch

    moved = 0
    for param in model.parameters():
        if param.requires_grad and param.dtype in (torch.float16, torch.bfloat16):
            param.data = param.data.float()
            moved += 1
    return moved


def count_4bit_layers(model) -> int:
    """How many bitsandbytes Linear4bit layers the model holds (0 for plain LoRA)."""
    try:
        from bitsandbytes.nn import Linear4bit
    except ImportError:
        return 0
    return sum(isinstance(m, Linear4bit) for m in model.modules())


def _install_sigterm(stop):
    """SIGTERM only raises the flag; the callback then saves a checkpoint and stops at the next step boundary.

    Returns the function that puts the previous handler back."""
    previous = signal.getsignal(signal.SIGTERM)
    try:
        signal.signal(signal.SIGTERM, lambda signum, frame: stop.set("SIGTERM"))
    except ValueError:  # not the main thread: signals cannot be handled here, leave them alone
        return lambda: None
    return lambda: signal.signal(signal.SIGTERM, previous if previous is not None else signal.SIG_DFL)


def _latest(checkpoints: Path) -> str | None:
    from transformers.trainer_utils import get_last_checkpoint

    found = get_last_checkpoint(str(checkpoints)) if checkpoints.is_dir() else None
    return Path(found).name if found else None
