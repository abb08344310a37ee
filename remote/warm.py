"""The pod's Python, started before the job is known: it imports the training libraries (~5 s on a CPU, ~6 s on
a pod) while the laptop is still syncing and checking packages, then runs the job it is handed.

The laptop sends this file itself (it is run as a script, never imported as `remote.warm`), so it runs the
laptop's version even before the first sync, and it imports nothing of `remote` until the job starts: the job
runs the code the sync just wrote. Standard library only.

    python -u boot.py --code DIR --log TRAIN_LOG --warm-log FILE --claim DIR --args FILE --went FILE
                      [--wait-s S] [--imports module:name,module]

The hand-over is one atomic `mkdir` of the claim folder, by whichever side gets there first:
- the launch writes the job's arguments (a JSON list, what follows `python -m remote`) to --args, then makes the
  claim: this process runs that job, with its output appended to train.log after what the imports printed;
- a launch that will not use it (another python was chosen, the start failed) makes the claim without arguments:
  this process exits;
- after --wait-s without either, this process makes the claim itself and exits, and a later launch starts the
  job the ordinary way.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import runpy
import sys
import time

STARTED_AT = time.time()  # before the training libraries are imported: how far ahead of its job it started

# What the job imports before its first training step, heaviest first; a module that fails to import here is
# left for the job, which imports it again and reports the error where the user sees it.
WARM_IMPORTS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("torch", ()),
    ("transformers", ("AutoConfig", "AutoModelForCausalLM", "AutoTokenizer", "TrainerCallback",
                      "BitsAndBytesConfig")),
    ("peft", ("LoraConfig", "PeftModel", "prepare_model_for_kbit_training")),
    ("trl", ("SFTConfig", "SFTTrainer")),
    ("datasets", ("load_dataset",)),
)
POLL_S = 0.005  # how often the claim is looked for once the imports are done (a launch waits at most this)
GAVE_UP = 0  # nothing was handed over: the exit code no one records


def parse_imports(text: str) -> tuple[tuple[str, tuple[str, ...]], ...]:
    """`torch,transformers:AutoConfig:AutoTokenizer` -> (("torch", ()), ("transformers", ("AutoConfig", ...)))"""
    found = []
    for item in filter(None, text.split(",")):
        module, *names = item.split(":")
        found.append((module, tuple(names)))
    return tuple(found)


def warm_imports(imports: tuple[tuple[str, tuple[str, ...]], ...] = WARM_IMPORTS) -> None:
    for module, names in imports:
        try:
            imported = importlib.import_module(module)
            for name in names:
                getattr(imported, name)  # transformers and friends import lazily, on first attribute access
        except Exception:  # noqa: BLE001 - the job meets it again, with its traceback in train.log
            return  # the later ones build on the earlier


def wait_for_claim(claim: str, args: str, wait_s: float) -> list[str] | None:
    """The job's arguments once the launch claims this process; None when it was cancelled or nobody came."""
    deadline = time.monotonic() + wait_s
    while not os.path.isdir(claim):
        if time.monotonic() >= deadline:
            try:
                os.mkdir(claim)  # first: a launch from now on starts the job without this process
                return None
            except FileExistsError:
                break  # the launch claimed it in the same instant
        time.sleep(POLL_S)
    try:
        with open(args, encoding="utf-8") as handle:
            argv = json.load(handle)
    except FileNotFoundError:
        return None  # claimed without arguments: cancelled
    if not (isinstance(argv, list) and all(isinstance(a, str) for a in argv)):
        raise SystemExit(f"podtune warm start: {args} does not hold a list of arguments")
    return argv


def take_over_output(warm_log: str, train_log: str) -> None:
    """From here on stdout and stderr are the job's train.log, which starts with what the imports printed."""
    for stream in (sys.stdout, sys.stderr):
        stream.flush()
    fd = os.open(train_log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        with open(warm_log, "rb") as early:
            os.write(fd, early.read())
    except FileNotFoundError:
        pass
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.close(fd)
    try:
        os.unlink(warm_log)
    except FileNotFoundError:
        pass


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="boot.py")
    parser.add_argument("--code", required=True, help="the synced code: the job runs `python -m remote` from here")
    parser.add_argument("--log", required=True, help="the run's train.log")
    parser.add_argument("--warm-log", required=True, help="where this process's own output went until now")
    parser.add_argument("--claim", required=True)
    parser.add_argument("--args", required=True)
    parser.add_argument("--went", required=True, help="made once the job starts: its exit code is then the run's")
    parser.add_argument("--wait-s", type=float, default=300.0)
    parser.add_argument("--imports", type=parse_imports, default=WARM_IMPORTS,
                        help="what to import ahead, `module:name:name,module` (default: what training imports)")
    opts = parser.parse_args(argv)
    warm_imports(opts.imports)
    imported_at = time.time()
    job = wait_for_claim(opts.claim, opts.args, opts.wait_s)
    if job is None:
        return GAVE_UP
    take_over_output(opts.warm_log, opts.log)
    with open(opts.went, "w", encoding="utf-8") as went:  # when it started, imported and went: for benchmarks
        json.dump({"started_at": STARTED_AT, "imported_at": imported_at, "went_at": time.time()}, went)
    # As `cd CODE && python -m remote ARGS` would: the code on the path first, the module run as __main__.
    os.chdir(opts.code)
    sys.path[0] = opts.code
    sys.argv = [sys.argv[0], *job]
    runpy.run_module("remote", run_name="__main__", alter_sys=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
