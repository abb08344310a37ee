"""`python -m remote <command>`: the pod's entry points (each module's docstring has its full command line)."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from .events import PIPELINE_PHASES, RunPaths


def exit_now(code: int) -> None:
    """Leave without the interpreter's teardown of torch and friends (~3 s on a CPU, BENCHMARKS.md), which the
    watchdog and an attached laptop would otherwise wait out, GPU billing, before the pod stops.

    Everything the run leaves is already on disk (events, report, exit_code); the streams are flushed here, and
    a tracker that uploads at exit (wandb) is finished first."""
    wandb = sys.modules.get("wandb")
    if wandb is not None and getattr(wandb, "run", None) is not None:
        wandb.finish()
    import logging

    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    os._exit(code)


def main(argv: list[str] | None = None, *, fast_exit: bool = False) -> int:
    parser = argparse.ArgumentParser(prog="python -m remote")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("pipeline", help="download, train, merge and push one run")
    p.add_argument("--run-dir", type=Path, required=True)
    p.add_argument("--token-file", default=None, help="file holding the Hub token (0600), never the token itself")
    p.add_argument("--phases", default=",".join(PIPELINE_PHASES))
    p.add_argument("--wandb-key-file", default=None, help="file holding the W&B API key (0600), for report_to wandb")

    p = sub.add_parser("train", help="train only (download first)")
    p.add_argument("--run-dir", type=Path, required=True)
    p.add_argument("--token-file", default=None)

    p = sub.add_parser("merge", help="merge only")
    p.add_argument("--run-dir", type=Path, required=True)
    p.add_argument("--token-file", default=None)

    p = sub.add_parser("push", help="push only")
    p.add_argument("--run-dir", type=Path, required=True)
    p.add_argument("--token-file", default=None)

    p = sub.add_parser("train-rank", help="one torchrun rank of a multi-GPU train phase (started by pipeline)")
    p.add_argument("--run-dir", type=Path, required=True)
    p.add_argument("--model-dir", type=Path, required=True)
    p.add_argument("--token-file", default=None)
    p.add_argument("--wandb-key-file", default=None)

    p = sub.add_parser("watchdog", help="enforce time, money, stall and idle limits, then stop the pod")
    p.add_argument("--run-dir", type=Path, required=True)

    p = sub.add_parser("selfstop", help="stop this pod's billing from inside it")
    p.add_argument("provider")

    args = parser.parse_args(argv)
    if args.command in ("pipeline", "train", "merge", "push"):
        from . import pipeline

        phases = tuple(args.phases.split(",")) if args.command == "pipeline" else (
            ("download", args.command) if args.command != "push" else ("push",)
        )
        code = pipeline.run(args.run_dir, args.token_file, phases, wandb_key_file=getattr(args, "wandb_key_file", None))
        RunPaths(args.run_dir).exit_code.write_text(f"{code}\n")
        if fast_exit:
            exit_now(code)
        return code
    if args.command == "train-rank":
        from . import train
        from .distributed import die_with_parent
        from .events import EventLog
        from .pipeline import _read_token
        from .recipe import load_recipe

        die_with_parent()  # no rank outlives torchrun

        recipe = load_recipe(RunPaths(args.run_dir).recipe)
        result = train.run(args.run_dir, recipe, EventLog(args.run_dir), model_dir=args.model_dir,
                           token=_read_token(args.token_file), wandb_key=_read_token(args.wandb_key_file))
        return 0 if not result.get("interrupted") else 143
    if args.command == "watchdog":
        from . import watchdog

        return watchdog.main(args.run_dir)
    if args.command == "selfstop":
        from . import selfstop

        return selfstop.main(args.provider)
    return 2


if __name__ == "__main__":
    os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
    sys.exit(main(fast_exit=True))
