"""Seed A's shape on one GPU: podtune's trainer against plain trl and the faster options the stack offers.

    bash bench/gpu_wheels.sh                                   # here, once: what the GPU image lacks, into .whl/
    python3 bench/bench_gpu_compare.py --out OUT               # on the GPU machine (see BENCHMARKS.md)
    BENCH_GPU_RECIPE=recipes/llama2-ko.yaml python bench/bench_gpu_compare.py --out /tmp/c --shape tiny-test --steps 4
                                                               # CPU smoke check: seed A's settings, tiny shape

One random-weight model of the shape is built and saved once (bench_gpu.build_model), one synthetic data file is
written once, then each variant trains it in its own process, one after another, with the same seed and data:

- podtune         `remote.train.run` on the seed recipe as is: transformers' default attention (SDPA) and trl's
                  default packing ('bfd', which is padding-free: no pad tokens, position ids restart per record).
- podtune-seed43  the same with training.seed 43: how far the loss curve moves from the seed alone. A faster
                  option "keeps the loss curve" when it stays as close to podtune's curve as this.
- trl             a plain trl SFTTrainer script with the seed's settings written out by hand (its TrainingArguments
                  are compared with podtune's; every difference is listed in the result).
- eager           podtune with attn_implementation="eager" (what SDPA saves).
- wrapped         podtune with packing_strategy="wrapped" (packing that is not padding-free).
- liger           podtune with use_liger_kernel=True (Liger's Triton kernels; needs the liger-kernel package).
- flash-attention-2  podtune with attn_implementation="flash_attention_2" (needs the flash-attn package).

trl and wrapped are throughput baselines, never default candidates: they run --short-steps (8) instead of --steps
(20). Each variant's options are only passed to the libraries (SFTConfig fields, from_pretrained's attn_implementation);
podtune's code is not changed. A variant whose package is missing is reported as skipped, with the reason.
Per variant: tokens/s (real tokens: trl counts "non_padding"), steady from the first logged step to the last,
peak GPU memory, and the loss at every logged step. `compare.json` in --out holds it all, and the table printed
at the end is the one BENCHMARKS.md takes. --budget-s skips the variants that would not fit in the time left.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import time
import traceback
from pathlib import Path
from typing import Any
from unittest import mock

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(1, str(REPO))

from bench import bench_gpu as bg  # noqa: E402

# The published reference the issue asks to record beside the result (unsloth's benchmark, Llama-2-7B QLoRA).
UNSLOTH_ANCHOR = {"gpu": "NVIDIA A100 (1x)", "model": "Llama-2-7B QLoRA", "hf_tokens_per_s": 2415,
                  "unsloth_tokens_per_s": 3726}

# name: (what it is, SFTConfig fields, from_pretrained kwargs, Python module it needs or None)
VARIANTS: dict[str, tuple[str, dict[str, Any], dict[str, Any], str | None]] = {
    "podtune": ("podtune's trainer, the seed recipe as is (SDPA, padding-free 'bfd' packing)", {}, {}, None),
    "podtune-seed43": ("the same, training.seed 43: the loss curve's spread from the seed alone", {}, {}, None),
    "trl": ("plain trl SFTTrainer script, the seed's settings by hand", {}, {}, None),
    "eager": ("podtune, attn_implementation eager", {}, {"attn_implementation": "eager"}, None),
    "wrapped": ("podtune, packing_strategy wrapped (not padding-free)", {"packing_strategy": "wrapped"}, {}, None),
    "liger": ("podtune, use_liger_kernel (Liger's Triton kernels)", {"use_liger_kernel": True}, {}, "liger_kernel"),
    "flash-attention-2": ("podtune, attn_implementation flash_attention_2", {},
                          {"attn_implementation": "flash_attention_2"}, "flash_attn"),
}
# Never a candidate for podtune's default, whatever the numbers say (random weights cannot show what they change).
NOT_A_DEFAULT = {
    "podtune-seed43": "the noise reference",
    "trl": "the baseline",
    "wrapped": "records attend to each other across their boundaries: another training objective",
}
# The ones that matter first, for --budget-s: the baseline, its noise, the candidates, then the rest.
DEFAULT_VARIANTS = "podtune,podtune-seed43,liger,flash-attention-2,trl,eager,wrapped"
# Throughput only (no loss curve needed): these run --short-steps.
SHORT = {"trl", "wrapped"}


def say(msg: str) -> None:
    print(f"[compare {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def bench_recipe(shape: str, steps: int, data_file: str, logging_steps: int, seed: int | None = None):
    """The seed recipe of the shape with bench_gpu's offline overrides, a log line every `logging_steps`."""
    recipe = bg.bench_recipe(shape, steps, data_file)
    update: dict[str, Any] = {"logging_steps": logging_steps}
    if seed is not None:
        update["seed"] = seed
    return recipe.model_copy(update={"training": recipe.training.model_copy(update=update)})


# ---------------------------------------------------------------- child: build once


def build(args) -> int:
    from transformers import AutoTokenizer

    work = Path(args.work)
    model_dir, data_dir = work / "model", work / "data-run"
    facts = bg.build_model(args.shape, model_dir, Path(os.environ.get("HF_HOME") or (work / "hf")))
    data_dir.mkdir(parents=True, exist_ok=True)
    base = bench_recipe(args.shape, args.steps, f"bench-{args.shape}.jsonl", args.logging_steps)
    facts["data"] = bg.make_data(base, AutoTokenizer.from_pretrained(model_dir), args.steps, data_dir, args.shape,
                                 args.record_tokens)
    (Path(args.out) / "build.json").write_text(json.dumps(facts, indent=1, default=str))
    return 0


# ---------------------------------------------------------------- child: one variant


def run_variant(args) -> int:
    import torch

    name = args.one
    out, work = Path(args.out), Path(args.work)
    cuda = torch.cuda.is_available()
    res: dict[str, Any] = {"variant": name, "what": VARIANTS[name][0], "ok": False,
                           "gpu": torch.cuda.get_device_name(0) if cuda else None, "versions": bg.versions()}
    data = json.loads((out / "build.json").read_text())["data"]
    run_dir = work / f"run-{name}"
    shutil.rmtree(run_dir, ignore_errors=True)
    (run_dir / "data").mkdir(parents=True)
    shutil.copy(work / "data-run" / "data" / data["file"], run_dir / "data" / data["file"])
    seed = 43 if name == "podtune-seed43" else None
    steps = args.short_steps if name in SHORT else args.steps
    recipe = bench_recipe(args.shape, steps, data["file"], args.logging_steps, seed)
    res["steps"] = steps
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    try:
        if name == "trl":
            res.update(plain_trl(recipe, work / "model", run_dir))
        else:
            res.update(podtune_variant(name, recipe, work / "model", run_dir))
        res["ok"] = bool(res.get("losses"))
    except BaseException as exc:  # noqa: BLE001 - report it; the parent goes on with the next variant
        res["error"] = f"{exc.__class__.__name__}: {exc}"[:2000]
        res["traceback"] = traceback.format_exc()[-4000:]
        traceback.print_exc()
    res["run_s"] = round(time.perf_counter() - t0, 2)
    if cuda:
        res["peak_alloc_gib"] = bg._r(torch.cuda.max_memory_allocated() / bg.GIB)
        res["peak_reserved_gib"] = bg._r(torch.cuda.max_memory_reserved() / bg.GIB)
    res["finished"] = True
    (out / f"{name}.json").write_text(json.dumps(res, indent=1, default=str))
    shutil.rmtree(run_dir, ignore_errors=True)
    return 0 if res["ok"] else 1


def podtune_variant(name: str, recipe, model_dir: Path, run_dir: Path) -> dict[str, Any]:
    """remote.train.run as a pod runs it; the variant's options go to SFTConfig and from_pretrained only."""
    import transformers

    from remote import train
    from remote.events import EventLog, RunPaths, read_events
    from remote.recipe import dump_recipe, load_recipe

    _, sft_extra, load_extra, _ = VARIANTS[name]
    (run_dir / "recipe.yaml").write_text(dump_recipe(recipe), encoding="utf-8")
    recipe = load_recipe(run_dir / "recipe.yaml")  # as the pod reads it
    seen: dict[str, Any] = {}
    original_kwargs, original_build = train.sft_kwargs, train.build_configs
    auto = transformers.AutoModelForCausalLM
    original_load = auto.from_pretrained

    def sft_kwargs(*a, **k):
        return {**original_kwargs(*a, **k), **sft_extra}

    def build_configs(*a, **k):
        bnb, lora, args = original_build(*a, **k)
        seen["sft_args"] = args.to_dict()  # every field, as the trainer gets it: compared with the trl script's
        return bnb, lora, args

    def from_pretrained(*a, **k):
        model = original_load(*a, **{**k, **load_extra})
        seen["attn_implementation"] = getattr(model.config, "_attn_implementation", None)
        return model

    with mock.patch.object(train, "sft_kwargs", sft_kwargs), mock.patch.object(train, "build_configs", build_configs), \
            mock.patch.object(auto, "from_pretrained", from_pretrained):
        summary = train.run(run_dir, recipe, EventLog(run_dir), model_dir=model_dir, token=None)
    events, _ = read_events(RunPaths(run_dir).events)
    steps = [e for e in events if e.get("kind") == "step"]
    return {"attn_implementation": seen.get("attn_implementation"), "options": {**sft_extra, **load_extra},
            "sft_args": _plain(seen.get("sft_args")), "tokens": summary.get("tokens"),
            "tokens_per_s": summary.get("tokens_per_s"), "train_s": summary.get("train_seconds"),
            "interrupted": bool(summary.get("interrupted")),
            **rates([(e["step"], e["ts"], e.get("tokens") or 0, e.get("loss")) for e in steps])}


PLAIN_TRL_NOTE = "trl's SFTTrainer with the seed's settings written out; everything else trl's and transformers' defaults"


def plain_trl(recipe, model_dir: Path, run_dir: Path) -> dict[str, Any]:
    """What a user would write with trl alone for seed A: the same values, trl's defaults for the rest."""
    import torch
    from datasets import load_dataset
    from peft import LoraConfig, prepare_model_for_kbit_training
    from transformers import AutoModelForCausalLM, AutoTokenizer, BitsAndBytesConfig, TrainerCallback
    from trl import SFTConfig, SFTTrainer

    from remote import hardware, train

    t, q, lo, d = recipe.training, recipe.quantization, recipe.lora, recipe.dataset
    hw = hardware.describe()
    cuda = bool(hw.get("cuda"))
    compute = hardware.torch_dtype(hardware.compute_dtype_name(q.compute_dtype, hw))
    prec = hardware.precision(t.precision, hw)
    tok = AutoTokenizer.from_pretrained(model_dir)
    tok.pad_token = tok.pad_token or tok.eos_token
    ds = load_dataset("json", data_files=str(run_dir / "data" / Path(d.source).name), split="train")
    text_field = d.text_column
    if d.format != "text":  # bench_gpu's alpaca/chat records: one prompt-and-answer text, as a trl user writes it
        text_field = "text"
        ds = ds.map(lambda r: {"text": f"### instruction:\n{r['instruction']}\n\n### input:\n{r.get('input') or ''}"
                                       f"\n\n### output:\n{r['output']}{tok.eos_token}"})
    bnb = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type=q.quant_type,
                             bnb_4bit_use_double_quant=q.double_quant, bnb_4bit_compute_dtype=compute)
    model = AutoModelForCausalLM.from_pretrained(model_dir, quantization_config=bnb, dtype=compute,
                                                 device_map={"": 0} if cuda else None)
    model.config.use_cache = False
    model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=t.gradient_checkpointing)
    args = SFTConfig(**train.for_installed_transformers(dict(
        output_dir=str(run_dir / "checkpoints"), max_steps=t.max_steps, per_device_train_batch_size=t.batch_size,
        gradient_accumulation_steps=t.grad_accum, optim=t.optimizer, learning_rate=t.learning_rate,
        weight_decay=t.weight_decay, max_grad_norm=t.max_grad_norm, warmup_steps=t.warmup_ratio,
        lr_scheduler_type=t.lr_scheduler, logging_steps=t.logging_steps, save_strategy="no", seed=t.seed,
        activation_checkpointing=t.gradient_checkpointing,
        activation_checkpointing_kwargs={"use_reentrant": False} if t.gradient_checkpointing else None,
        packing=t.packing, max_length=t.max_seq_length or 1024, dataset_text_field=text_field,
        fp16=prec == "fp16", bf16=prec == "bf16", use_cpu=not cuda, report_to="none",
        include_num_input_tokens_seen="non_padding", disable_tqdm=True), SFTConfig))
    points: list[tuple[int, float, int, float | None]] = []

    class Record(TrainerCallback):
        def on_log(self, args, state, control, logs=None, **kwargs):
            if logs and "loss" in logs:
                points.append((state.global_step, time.time(), int(state.num_input_tokens_seen), float(logs["loss"])))

    lora = LoraConfig(r=lo.r, lora_alpha=lo.alpha, lora_dropout=lo.dropout, bias=lo.bias, task_type="CAUSAL_LM")
    trainer = SFTTrainer(model=model, args=args, train_dataset=ds, processing_class=tok, peft_config=lora,
                         callbacks=[Record()])
    if args.fp16:  # trl casts adapters to bf16, which fp16's grad scaler cannot unscale (found on seed A)
        train.upcast_trainable_params(trainer.model)
    started = time.time()
    trainer.train()
    took = time.time() - started
    tokens = int(trainer.state.num_input_tokens_seen)
    if cuda:
        torch.cuda.synchronize()
    return {"note": PLAIN_TRL_NOTE, "sft_args": _plain(args.to_dict()), "tokens": tokens,
            "tokens_per_s": round(tokens / took, 1) if took > 0 else None, "train_s": round(took, 2),
            **rates(points)}


def rates(points: list[tuple[int, float, int, float | None]]) -> dict[str, Any]:
    """Steady tokens/s between the first and the last logged step, and the loss at each logged step."""
    out: dict[str, Any] = {"losses": [[s, loss] for s, _, _, loss in points if loss is not None]}
    if len(points) >= 2:
        (s0, t0, k0, _), (s1, t1, k1, _) = points[0], points[-1]
        if t1 > t0 and s1 > s0:
            out.update(steady_tokens_per_s=round((k1 - k0) / (t1 - t0), 1), steady_window=f"steps {s0}->{s1}")
    return out


def _plain(kw: dict[str, Any] | None) -> dict[str, Any]:
    return json.loads(json.dumps(kw or {}, default=str))


# ---------------------------------------------------------------- parent: compare


# Fields that differ between the two scripts without changing the work: paths, names, bookkeeping.
IGNORED_ARGS = {"output_dir", "logging_dir", "run_name", "hub_model_id", "save_total_limit", "save_steps",
                "eval_steps", "per_device_eval_batch_size", "eval_strategy", "dataset_text_field",
                "dataloader_pin_memory", "report_to", "max_steps"}


def arg_differences(a: dict[str, Any], b: dict[str, Any]) -> dict[str, list[Any]]:
    """{field: [a's value, b's value]} for the TrainingArguments fields both name with different values."""
    return {k: [a[k], b[k]] for k in sorted(set(a) & set(b)) if k not in IGNORED_ARGS and a[k] != b[k]}


def loss_gap(a: list[list[float]], b: list[list[float]]) -> float | None:
    """Mean |loss difference| over the steps both logged."""
    mine = {int(s): float(v) for s, v in a}
    both = [abs(mine[int(s)] - float(v)) for s, v in b if int(s) in mine]
    return round(sum(both) / len(both), 4) if both else None


def compare(results: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Ratios and loss gaps against podtune; whether each option keeps the loss curve (gap <= the seed's own)."""
    base = results.get("podtune") or {}
    noise = loss_gap(base.get("losses") or [], (results.get("podtune-seed43") or {}).get("losses") or [])
    rows = []
    for name, r in results.items():
        row: dict[str, Any] = {"variant": name, "what": r.get("what"), "ok": r.get("ok"),
                               "skipped": r.get("skipped"), "error": r.get("error")}
        if r.get("ok"):
            rate, base_rate = r.get("steady_tokens_per_s"), base.get("steady_tokens_per_s")
            row.update(steady_tokens_per_s=rate, tokens_per_s=r.get("tokens_per_s"),
                       peak_alloc_gib=r.get("peak_alloc_gib"), peak_reserved_gib=r.get("peak_reserved_gib"),
                       loss_first=_round((r.get("losses") or [[None, None]])[0][1]),
                       loss_last=_round((r.get("losses") or [[None, None]])[-1][1]))
            if base.get("ok") and name != "podtune":
                row["speed_vs_podtune"] = round(rate / base_rate, 3) if rate and base_rate else None
                row["peak_vs_podtune"] = (round(r["peak_alloc_gib"] / base["peak_alloc_gib"], 3)
                                          if r.get("peak_alloc_gib") and base.get("peak_alloc_gib") else None)
                row["loss_gap_vs_podtune"] = loss_gap(base.get("losses") or [], r.get("losses") or [])
                if name != "podtune-seed43" and noise is not None and row["loss_gap_vs_podtune"] is not None:
                    row["keeps_loss_curve"] = row["loss_gap_vs_podtune"] <= noise
            if name == "trl" and base.get("sft_args"):
                row["settings_differing_from_podtune"] = arg_differences(base["sft_args"], r.get("sft_args") or {})
        rows.append(row)
    for row in rows:
        if row["variant"] in NOT_A_DEFAULT:
            row["not_a_default"] = NOT_A_DEFAULT[row["variant"]]
    faster = [r for r in rows if r.get("keeps_loss_curve") and (r.get("speed_vs_podtune") or 0) > 1.0
              and "not_a_default" not in r]
    return {"seed_loss_gap": noise, "rows": rows, "unsloth_anchor": UNSLOTH_ANCHOR,
            "faster_and_keeps_loss": [r["variant"] for r in sorted(faster, key=lambda r: -r["speed_vs_podtune"])]}


def _round(x: float | None) -> float | None:
    return None if x is None else round(float(x), 4)


def table(summary: dict[str, Any]) -> str:
    lines = ["| variant | tokens/s steady (all steps) | vs podtune | peak alloc / reserved GiB | loss first -> last | "
             "mean loss gap vs podtune | keeps the curve |", "|---|---|---|---|---|---|---|"]
    for r in summary["rows"]:
        if not r.get("ok"):
            lines.append(f"| {r['variant']} | {r.get('skipped') or 'failed: ' + str(r.get('error'))[:120]} | | | | | |")
            continue
        lines.append(
            f"| {r['variant']} | {r.get('steady_tokens_per_s')} ({r.get('tokens_per_s')}) | "
            f"{r.get('speed_vs_podtune', '-')}x | {r.get('peak_alloc_gib')} / {r.get('peak_reserved_gib')} | "
            f"{r.get('loss_first')} -> {r.get('loss_last')} | {r.get('loss_gap_vs_podtune', '-')} | "
            f"{ {True: 'yes', False: 'no'}.get(r.get('keeps_loss_curve'), '-') }"
            f"{' (not a default: ' + r['not_a_default'] + ')' if r.get('not_a_default') else ''} |")
    a = summary["unsloth_anchor"]
    lines.append(f"\nSeed's spread (podtune vs podtune-seed43, mean loss gap): {summary['seed_loss_gap']}. "
                 f"Anchor: {a['model']} on {a['gpu']}: {a['hf_tokens_per_s']:,} tok/s HF, "
                 f"{a['unsloth_tokens_per_s']:,} tok/s unsloth (unsloth's published benchmark).")
    return "\n".join(lines)


def child_cmd(args, extra: list[str]) -> list[str]:
    return [sys.executable, "-u", str(Path(__file__).resolve()), "--out", args.out, "--work", str(args.work),
            "--shape", args.shape, "--steps", str(args.steps), "--short-steps", str(args.short_steps),
            "--logging-steps", str(args.logging_steps),
            "--record-tokens", str(args.record_tokens), *extra]


def run_child(cmd: list[str], timeout: float | None) -> str:
    proc = subprocess.Popen(cmd, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        return str(proc.wait(timeout=timeout))
    except subprocess.TimeoutExpired:
        proc.terminate()  # train.run's SIGTERM handler stops at the next step
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        return f"timeout ({proc.returncode})"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", required=True, help="folder for compare.json and one JSON per variant")
    p.add_argument("--shape", default="llama2-7b", help=f"one of {', '.join(bg.SHAPES)} (seed A's is llama2-7b)")
    p.add_argument("--variants", default=DEFAULT_VARIANTS, help=f"comma list of {', '.join(VARIANTS)}")
    p.add_argument("--steps", type=int, default=20, help="optimizer steps per variant (same seed and data)")
    p.add_argument("--short-steps", type=int, default=8, help=f"steps for the throughput-only variants ({', '.join(sorted(SHORT))})")
    p.add_argument("--logging-steps", type=int, default=1, help="a loss point every N steps")
    p.add_argument("--record-tokens", type=int, default=0, help="approx tokens per synthetic record (bench_gpu's)")
    p.add_argument("--work", default=None, help="model, data and run folders (default /dev/shm if room)")
    p.add_argument("--budget-s", type=float, default=0, help="skip variants that would not fit in this time (0: none)")
    p.add_argument("--variant-timeout", type=float, default=0, help="stop one variant after N seconds (0: none)")
    p.add_argument("--one", default=None, help=argparse.SUPPRESS)
    p.add_argument("--build", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.shape not in bg.SHAPES:
        p.error(f"unknown shape {args.shape}; known: {', '.join(bg.SHAPES)}")
    names = [v.strip() for v in args.variants.split(",") if v.strip()]
    unknown = [v for v in names if v not in VARIANTS]
    if unknown:
        p.error(f"unknown variant(s) {unknown}; known: {', '.join(VARIANTS)}")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if args.work is None:
        args.work = str(bg.pick_work_dir(None, bg.checkpoint_bytes(bg.SHAPES[args.shape]["config"])) / "compare")
    Path(args.work).mkdir(parents=True, exist_ok=True)
    if args.build:
        return build(args)
    if args.one:
        return run_variant(args)

    started = time.perf_counter()
    say(f"{args.shape}, {args.steps} steps, variants {names}, work {args.work}, {json.dumps(bg.versions())}")
    code = run_child(child_cmd(args, ["--build"]), None)
    if code != "0":
        say(f"building the model and data failed ({code})")
        return 1
    results: dict[str, dict[str, Any]] = {}
    took: list[float] = []
    for name in names:
        needs = VARIANTS[name][3]
        if needs and importlib.util.find_spec(needs) is None:
            results[name] = {"variant": name, "what": VARIANTS[name][0], "ok": False,
                             "skipped": f"the {needs} package is not installed here"}
            say(f"{name}: skipped ({results[name]['skipped']})")
            continue
        left = args.budget_s - (time.perf_counter() - started) if args.budget_s else None
        if left is not None and took and max(took) > left:
            results[name] = {"variant": name, "what": VARIANTS[name][0], "ok": False,
                             "skipped": f"--budget-s: {left:.0f} s left, a variant took up to {max(took):.0f} s"}
            say(f"{name}: skipped ({results[name]['skipped']})")
            continue
        say(f"=== {name}: {VARIANTS[name][0]}")
        (out / f"{name}.json").unlink(missing_ok=True)
        t0 = time.perf_counter()
        code = run_child(child_cmd(args, ["--one", name]), args.variant_timeout or None)
        took.append(time.perf_counter() - t0)
        try:
            results[name] = json.loads((out / f"{name}.json").read_text())
        except (FileNotFoundError, json.JSONDecodeError):
            results[name] = {"variant": name, "what": VARIANTS[name][0], "ok": False,
                             "error": f"process ended ({code}) without a result"}
        results[name]["wall_s"] = round(took[-1], 1)
        r = results[name]
        say(f"{name}: ok={r.get('ok')} steady {r.get('steady_tokens_per_s')} tok/s, peak {r.get('peak_alloc_gib')} GiB, "
            f"{took[-1]:.0f} s {r.get('error') or ''}")
    summary = compare(results)
    summary.update(shape=args.shape, steps=args.steps, versions=bg.versions(),
                   build=json.loads((out / "build.json").read_text()), results=results,
                   total_s=round(time.perf_counter() - started, 1))
    (out / "compare.json").write_text(json.dumps(summary, indent=1, default=str))
    shutil.rmtree(args.work, ignore_errors=True)
    print(table(summary), flush=True)
    say(f"faster and keeps the loss curve: {summary['faster_and_keeps_loss'] or 'none'}; {summary['total_s']} s")
    return 0 if (results.get("podtune") or {}).get("ok") else 1


if __name__ == "__main__":
    sys.exit(main())
