"""The Trainer callback that turns training progress into events and stops cleanly on SIGTERM."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any, Callable

from transformers import TrainerCallback

from . import hardware
from .events import EventKind

STALL_ENV = "PODTUNE_TEST_STALL_AT_STEP"  # test hook: hang after step N so the stall watchdog has work
STALL_MAX_S = 3600
CRASH_ENV = "PODTUNE_TEST_CRASH_AT_STEP"  # test hook: fail at step N so a crash's reason has to reach `status`


def is_main_process() -> bool:
    """True unless this is a non-zero rank under torchrun (only rank 0 writes events and files)."""
    return int(os.environ.get("RANK", "0")) == 0


class StopFlag:
    """Set from a signal handler; read by the callback at step boundaries."""

    def __init__(self) -> None:
        self.reason: str | None = None

    def set(self, reason: str) -> None:
        self.reason = self.reason or reason

    def is_set(self) -> bool:
        return self.reason is not None

    def any_rank(self, device) -> bool:
        """Whether any rank was signalled: ranks must stop at the same step or the next collective hangs."""
        import torch
        import torch.distributed as dist

        if not (dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1):
            return self.is_set()
        flag = torch.tensor([1 if self.is_set() else 0], device=device)
        dist.all_reduce(flag, op=dist.ReduceOp.MAX)
        if flag.item() and not self.is_set():
            self.set("SIGTERM")
        return self.is_set()


class ProgressCallback(TrainerCallback):
    """Emits `step` at each logging step, `eval` after each evaluation, `interrupted` when stopped by a signal."""

    def __init__(self, emit: Callable[..., Any], stop: StopFlag, *, start_mem_mb: float = 0.0):
        self.emit = emit
        self.stop = stop
        self.start_mem_mb = start_mem_mb
        self.first_loss: float | None = None
        self.last_loss: float | None = None
        self.t0: float | None = None
        self.tokens0 = 0
        self.stall_at = int(os.environ.get(STALL_ENV, "0") or 0)
        self.stalled = False
        self.crash_at = int(os.environ.get(CRASH_ENV, "0") or 0)
        self.interrupted = False

    def on_step_begin(self, args, state, control, **kwargs):
        if self.t0 is None:
            # Here, not in on_train_begin: a resumed run has loaded its token count by now.
            self.t0, self.tokens0 = time.time(), state.num_input_tokens_seen
        if self.crash_at and state.global_step >= self.crash_at:
            once = Path(args.output_dir).parent / ".test-crashed"  # once per run: a resumed run goes on
            if not once.exists():
                once.write_text(str(state.global_step))
                raise RuntimeError(f"test crash at step {state.global_step} ({CRASH_ENV})")
        if self.stall_at and state.global_step >= self.stall_at and not self.stalled:
            self.stalled = True
            deadline = time.time() + STALL_MAX_S
            while time.time() < deadline and not self.stop.is_set():
                time.sleep(1)

    def on_step_end(self, args, state, control, **kwargs):
        if self.stop.any_rank(args.device) and not self.interrupted:
            self.interrupted = True
            control.should_save = True  # a checkpoint even under save_strategy `no`: the restarted pod resumes from it
            control.should_training_stop = True
            self.emit(EventKind.INTERRUPTED, reason=self.stop.reason, step=state.global_step)
        return control

    def on_log(self, args, state, control, logs=None, **kwargs):
        logs = logs or {}
        if "loss" in logs:
            loss = float(logs["loss"])
            self.first_loss = loss if self.first_loss is None else self.first_loss
            self.last_loss = loss
            self.emit(
                EventKind.STEP,
                step=state.global_step,
                total_steps=state.max_steps,
                loss=round(loss, 5),
                lr=logs.get("learning_rate"),
                epoch=round(state.epoch or 0.0, 4),
                grad_norm=_num(logs.get("grad_norm")),
                tokens=state.num_input_tokens_seen,
                tokens_per_s=self._rate(state),
                peak_mem_mb=hardware.peak_memory_mb(),
            )
        if "eval_loss" in logs:
            self.emit(EventKind.EVAL, step=state.global_step, eval_loss=round(float(logs["eval_loss"]), 5))

    def summary(self, state, *, train_seconds: float) -> dict[str, Any]:
        peak = hardware.peak_memory_mb()
        return {
            "final_loss": self.last_loss,
            "first_loss": self.first_loss,
            "steps": state.global_step,
            "total_steps": state.max_steps,
            "train_seconds": train_seconds,
            "tokens": state.num_input_tokens_seen,
            "tokens_per_s": self._rate(state),
            "peak_mem_mb": peak,
            # Seed C reported the share of peak memory that training added on top of the loaded model.
            "train_mem_mb": round(max(0.0, peak - self.start_mem_mb), 1),
            "best_checkpoint": state.best_model_checkpoint,
        }

    def _rate(self, state) -> float | None:
        if self.t0 is None:
            return None
        elapsed = time.time() - self.t0
        return round((state.num_input_tokens_seen - self.tokens0) / elapsed, 1) if elapsed > 0 else None


def _num(value: Any) -> float | None:
    try:
        return round(float(value), 5)
    except (TypeError, ValueError):
        return None
