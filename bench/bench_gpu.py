"""QLoRA throughput and memory of podtune's own trainer (remote/train.py) at real Llama shapes, on one GPU.

    python3 bench/bench_gpu.py --out DIR [--shapes llama2-7b,llama3-8b] [--steps N]
    python bench/bench_gpu.py --out /tmp/b --shapes tiny-test --steps 2        # CPU smoke check

No internet is needed. For each shape a randomly initialised Llama with the real shapes is built (fp16, directly
on the GPU), saved as safetensors under --work-dir (tmpfs by default) with the tokenizer of `builtin:tiny-llama`,
then trained by `remote.train.run` exactly as a pod does, with the seed recipe of that shape. Only what cannot
work offline is overridden: the dataset becomes a synthetic local JSONL in the run's data/ folder, max_steps is
--steps, no checkpoints, no trackers. Each shape runs in its own process, so one failing (or running out of
memory) still lets the next report. Prints `RESULT {...}` per shape and writes DIR/gpu_bench.json.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path
from unittest import mock
from typing import Any

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(1, str(REPO))

GIB = 2**30

# Real shapes of the seed base models; the weights are random.
SHAPES: dict[str, dict[str, Any]] = {
    "llama2-7b": {
        "recipe": "recipes/llama2-ko.yaml",
        "steps": 12,
        "config": dict(hidden_size=4096, num_hidden_layers=32, num_attention_heads=32, num_key_value_heads=32,
                       intermediate_size=11008, vocab_size=32000, max_position_embeddings=4096),
    },
    "llama3-8b": {
        "recipe": "recipes/llama3.1-ko-safe.yaml",
        "steps": 10,
        "config": dict(hidden_size=4096, num_hidden_layers=32, num_attention_heads=32, num_key_value_heads=8,
                       intermediate_size=14336, vocab_size=128256, rope_theta=500000.0,
                       max_position_embeddings=8192),
    },
    "tiny-test": {
        "recipe": "recipes/tiny-cpu.yaml",
        "steps": 2,
        "config": dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=4,
                       intermediate_size=128, vocab_size=512, max_position_embeddings=256),
    },
}


def say(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def versions() -> dict[str, str | None]:
    from importlib import metadata

    out: dict[str, str | None] = {"python": sys.version.split()[0]}
    for name in ("torch", "transformers", "trl", "peft", "bitsandbytes", "accelerate", "datasets", "pydantic",
                 "tokenizers", "safetensors", "pyarrow", "typing_extensions"):
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def pick_work_dir(requested: str | None, need_bytes: int) -> Path:
    """--work-dir, else /dev/shm when it has room for the checkpoint (plus 10%), else the temp dir."""
    if requested:
        return Path(requested)
    shm = Path("/dev/shm")
    if shm.is_dir() and shutil.disk_usage(shm).free > need_bytes * 1.1 + GIB:
        return shm / "podtune-bench"
    return Path(tempfile.gettempdir()) / "podtune-bench"


def checkpoint_bytes(cfg: dict[str, Any], bytes_per_param: int = 2) -> int:
    h, i, v, n = cfg["hidden_size"], cfg["intermediate_size"], cfg["vocab_size"], cfg["num_hidden_layers"]
    kv = h * cfg["num_key_value_heads"] // cfg["num_attention_heads"]
    layer = 2 * h * h + 2 * h * kv + 3 * h * i + 2 * h
    return (n * layer + 2 * v * h + h) * bytes_per_param


# ---------------------------------------------------------------- model


def build_model(shape: str, model_dir: Path, hf_home: Path) -> dict[str, Any]:
    """Random Llama of `shape` saved to model_dir (fp16 on GPU, fp32 on CPU) with the tiny tokenizer."""
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    from remote.tiny import ensure_tiny_model

    cuda = torch.cuda.is_available()
    dtype = torch.float16 if cuda else torch.float32
    cfg = dict(SHAPES[shape]["config"])
    # Token ids of the tiny tokenizer (<unk> <s> </s> <pad>); its 512 ids all fall inside any of these vocabularies.
    config = LlamaConfig(**cfg, bos_token_id=1, eos_token_id=2, pad_token_id=3, tie_word_embeddings=False,
                         dtype="float16" if cuda else "float32")
    t0 = time.perf_counter()
    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)  # parameters are created in fp16 directly: no fp32 copy of 7-8B weights
    try:
        with torch.device("cuda" if cuda else "cpu"):
            torch.manual_seed(0)
            model = LlamaForCausalLM(config)
    finally:
        torch.set_default_dtype(previous)
    if cuda:
        torch.cuda.synchronize()
    params = sum(p.numel() for p in model.parameters())
    build_s = time.perf_counter() - t0
    build_peak = torch.cuda.max_memory_allocated() / GIB if cuda else None
    say(f"{shape}: built {params / 1e9:.2f}B params in {build_s:.1f}s ({dtype}); saving to {model_dir}")

    t0 = time.perf_counter()
    if model_dir.exists():
        shutil.rmtree(model_dir)
    model.save_pretrained(model_dir)  # safetensors is transformers 5's only format
    tiny = ensure_tiny_model(hf_home)
    tokenizer = AutoTokenizer.from_pretrained(tiny)
    # The tiny tokenizer says 256 positions; train.model_limit takes the minimum, so give it the model's own limit.
    tokenizer.model_max_length = cfg["max_position_embeddings"]
    tokenizer.save_pretrained(model_dir)
    save_s = time.perf_counter() - t0
    size = sum(f.stat().st_size for f in model_dir.iterdir() if f.is_file())
    del model
    gc.collect()
    if cuda:
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    say(f"{shape}: saved {size / GIB:.2f} GiB in {save_s:.1f}s")
    return {"params": params, "build_s": round(build_s, 2), "save_s": round(save_s, 2),
            "checkpoint_gib": round(size / GIB, 2), "build_peak_alloc_gib": _r(build_peak)}


# ---------------------------------------------------------------- data


def word_pool() -> list[str]:
    words: list[str] = []
    for line in (REPO / "recipes/data/tiny-instructions.jsonl").read_text(encoding="utf-8").splitlines():
        if line.strip():
            rec = json.loads(line)
            words += " ".join(str(rec.get(k) or "") for k in ("instruction", "input", "output")).split()
    return words


def make_data(recipe, tokenizer, steps: int, run_dir: Path, shape: str, record_tokens: int) -> dict[str, Any]:
    """Write a synthetic JSONL for the recipe's format into run_dir/data; return (file name, facts)."""
    t = recipe.training
    seq = t.max_seq_length or 1024
    rng = random.Random(1234)
    pool = word_pool()
    sample = " ".join(rng.choice(pool) for _ in range(2000))
    per_word = len(tokenizer(sample, add_special_tokens=False, verbose=False)["input_ids"]) / 2000
    sequences = steps * t.batch_size * t.grad_accum
    if t.packing:
        # Records like a real instruction set (a few hundred tokens); packing fills max_seq_length with several.
        target = record_tokens or min(300, max(16, seq // 3))
        n = int(sequences * seq * 1.25 / target) + 8
    else:
        # One record is one sequence: make each long enough to be cut at max_seq_length (the worst case in memory).
        target = record_tokens or seq + 64
        n = int(sequences * 1.1) + 8
    words = max(4, int(target / per_word))
    fmt = recipe.dataset.format
    name = f"bench-{shape}.jsonl"
    path = run_dir / "data" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as fh:
        for _ in range(n):
            # Packed records vary around the target; unpacked ones only upwards, so every one is cut at max length.
            spread = rng.uniform(0.8, 1.2) if t.packing else rng.uniform(1.0, 1.3)
            w = [rng.choice(pool) for _ in range(max(4, int(words * spread)))]
            if fmt == "text":
                cut = max(1, len(w) // 5)
                rec = {recipe.dataset.text_column: f"<usr> {' '.join(w[:cut])}\n<bot> {' '.join(w[cut:])}"}
            else:  # alpaca and chat both read instruction/input/output
                cut = max(1, len(w) // 8)
                rec = {"instruction": " ".join(w[:cut]), "input": "", "output": " ".join(w[cut:])}
            fh.write(json.dumps(rec, ensure_ascii=False) + "\n")
    return {"file": name, "records": n, "target_tokens_per_record": target, "sequences_needed": sequences}


def recipe_path(shape: str) -> Path:
    return REPO / (os.environ.get("BENCH_GPU_RECIPE") or SHAPES[shape]["recipe"])


def bench_recipe(shape: str, steps: int, data_file: str):
    from remote.recipe import load_recipe

    recipe = load_recipe(recipe_path(shape))
    return override(recipe, steps, data_file)


def override(recipe, steps: int, data_file: str):
    """Only what cannot run offline or would write/track: data, step count, checkpoints, trackers.

    train.run never reads recipe.eval (sample answers are the merge phase's), so the eval prompts stay."""
    d, t = recipe.dataset, recipe.training
    training = t.model_copy(update={"max_steps": steps, "save_strategy": "no", "save_steps": None, "report_to": []})
    # A local file is read from run_dir/data/<basename>; the whole file (the Hub splits were slices like train[:10%]).
    dataset = d.model_copy(update={"source": f"data/{data_file}", "split": "train"})
    return recipe.model_copy(update={"training": training, "dataset": dataset})


# ---------------------------------------------------------------- one shape


def run_shape(shape: str, steps: int, work: Path, out: Path, hf_home: Path, record_tokens: int,
              keep: bool, merge: bool = False) -> dict[str, Any]:
    import torch
    import transformers

    from remote import train
    from remote.events import EventLog, RunPaths, read_events
    from remote.recipe import dump_recipe, load_recipe

    cuda = torch.cuda.is_available()
    res: dict[str, Any] = {"shape": shape, "ok": False, "steps_requested": steps,
                           "gpu": torch.cuda.get_device_name(0) if cuda else None, "versions": versions()}
    started = time.perf_counter()
    model_dir, run_dir = work / f"{shape}-model", work / f"{shape}-run"
    res.update(model_dir=str(model_dir), run_dir=str(run_dir))

    def stage(name: str) -> None:  # what the parent finds if this process is killed
        res["stage"] = name
        (out / f"{shape}.json").write_text(json.dumps(res, indent=1, default=str))

    try:
        stage("build")
        res.update(build_model(shape, model_dir, hf_home))

        if run_dir.exists():
            shutil.rmtree(run_dir)
        run_dir.mkdir(parents=True)
        from transformers import AutoTokenizer

        base = bench_recipe(shape, steps, f"bench-{shape}.jsonl")
        data = make_data(base, AutoTokenizer.from_pretrained(model_dir), steps, run_dir, shape, record_tokens)
        recipe = bench_recipe(shape, steps, data["file"])
        t = recipe.training
        res.update(data=data, recipe=str(recipe_path(shape).relative_to(REPO)), batch_size=t.batch_size,
                   grad_accum=t.grad_accum, max_seq_length=t.max_seq_length, packing=t.packing, optimizer=t.optimizer,
                   precision=t.precision, gradient_checkpointing=t.gradient_checkpointing,
                   lora_r=recipe.lora.r, lora_alpha=recipe.lora.alpha,
                   quant=f"{recipe.quantization.quant_type} double={recipe.quantization.double_quant} "
                         f"4bit={recipe.quantization.load_in_4bit} compute={recipe.quantization.compute_dtype}")
        # Written and read back as the orchestrator and the pod's pipeline do (this also re-validates the overrides).
        (run_dir / "recipe.yaml").write_text(dump_recipe(recipe), encoding="utf-8")
        recipe = load_recipe(run_dir / "recipe.yaml")
        shutil.copy(run_dir / "recipe.yaml", out / f"{shape}-recipe.yaml")

        # Time from_pretrained alone (train.run imports the class at call time, so this wrapper is what it calls).
        auto = transformers.AutoModelForCausalLM
        original = auto.from_pretrained
        load_s: list[float] = []

        def timed(*a, **k):
            t0 = time.perf_counter()
            try:
                return original(*a, **k)
            finally:
                if cuda:
                    torch.cuda.synchronize()
                load_s.append(time.perf_counter() - t0)
                say(f"{shape}: from_pretrained (4-bit) took {load_s[-1]:.1f}s, "
                    f"{torch.cuda.memory_allocated() / GIB if cuda else 0:.2f} GiB allocated")

        stage("train.run")
        if cuda:
            torch.cuda.reset_peak_memory_stats()
        say(f"{shape}: train.run, {steps} steps x batch {t.batch_size} x accum {t.grad_accum}, "
            f"max_seq_length {t.max_seq_length}, packing {t.packing}")
        t0 = time.perf_counter()
        run_t0 = time.time()
        with mock.patch.object(auto, "from_pretrained", timed):  # put back as it was, inherited or not
            summary = train.run(run_dir, recipe, EventLog(run_dir), model_dir=model_dir, token=None)
        res["run_s"] = round(time.perf_counter() - t0, 2)
        if cuda:
            res["peak_alloc_gib"] = _r(torch.cuda.max_memory_allocated() / GIB)
            res["peak_reserved_gib"] = _r(torch.cuda.max_memory_reserved() / GIB)
        res["load_s"] = _r(load_s[0]) if load_s else None

        events, _ = read_events(RunPaths(run_dir).events)
        shutil.copy(RunPaths(run_dir).events, out / f"{shape}-events.jsonl")
        res.update(from_events(events, run_t0))
        res["summary"] = {k: v for k, v in summary.items() if k != "adapter_dir"}
        res.update(steps=summary.get("steps"), tokens=summary.get("tokens"),
                   tokens_per_s=summary.get("tokens_per_s"), train_s=summary.get("train_seconds"),
                   loss_first=summary.get("first_loss"), loss_last=summary.get("final_loss"),
                   podtune_peak_mem_mb=summary.get("peak_mem_mb"), load_mem_mb=summary.get("load_mem_mb"))
        res["interrupted"] = bool(summary.get("interrupted"))
        res["ok"] = not res["interrupted"] and bool(summary.get("steps"))
        if merge and res["ok"]:
            res.update(run_merge(shape, run_dir, recipe, model_dir, out, cuda))
            res["ok"] = "merge_error" not in res
        res["stage"] = "done"
    except BaseException as exc:  # noqa: BLE001 - report whatever happened, then let the parent go on
        res["error"] = f"{exc.__class__.__name__}: {exc}"[:2000]
        res["traceback"] = traceback.format_exc()[-4000:]
        say(f"{shape}: FAILED {res['error']}")
        traceback.print_exc()
        if cuda:
            res["peak_alloc_gib"] = _r(torch.cuda.max_memory_allocated() / GIB)
            res["peak_reserved_gib"] = _r(torch.cuda.max_memory_reserved() / GIB)
        if isinstance(exc, KeyboardInterrupt):
            raise
    finally:
        res["total_s"] = round(time.perf_counter() - started, 2)
        res["finished"] = True  # this process wrote its own result: the parent need not salvage anything
        if not keep:
            shutil.rmtree(model_dir, ignore_errors=True)
            shutil.rmtree(run_dir, ignore_errors=True)
    return res


def run_merge(shape: str, run_dir: Path, recipe, model_dir: Path, out: Path, cuda: bool) -> dict[str, Any]:
    """podtune's merge phase (remote/merge.py) on what train.run left: reload, merge, checks, save, samples."""
    import torch

    from remote import merge
    from remote.events import EventLog

    stage_name = f"{shape}: merge"
    if cuda:
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    say(f"{stage_name} (the seed's eval: {len(recipe.eval.prompts)} prompt(s) x {recipe.eval.max_new_tokens} tokens)")
    t0 = time.perf_counter()
    try:
        done = merge.run(run_dir, recipe, EventLog(run_dir), model_dir=model_dir, token=None)
    except Exception as exc:  # noqa: BLE001 - the train numbers above still stand
        say(f"{stage_name} FAILED {exc.__class__.__name__}: {exc}")
        traceback.print_exc()
        return {"merge_error": f"{exc.__class__.__name__}: {exc}"[:2000]}
    res: dict[str, Any] = {"merge_s": round(time.perf_counter() - t0, 2)}
    if cuda:
        res["merge_peak_alloc_gib"] = _r(torch.cuda.max_memory_allocated() / GIB)
    res["merge"] = {k: v for k, v in done.items() if k not in ("samples",)}
    res["merge_sample_chars"] = [len(str(x.get("tuned", ""))) for x in done.get("samples") or []]
    say(f"{stage_name} done in {res['merge_s']}s: {json.dumps(res['merge'], default=str)[:400]}")
    return res


def from_events(events: list[dict[str, Any]], run_t0: float) -> dict[str, Any]:
    """Phase times and the steady-state rate from podtune's own events (step events carry ts and tokens)."""
    out: dict[str, Any] = {}
    first = {e["kind"]: e for e in reversed(events)}  # earliest of each kind
    if "data" in first:
        out["data_s"] = round(first["data"]["ts"] - run_t0, 2)
        out["train_records"] = first["data"].get("train_records")
        out["max_length"] = first["data"].get("max_length")
    if "data" in first and "model" in first:
        out["load_and_setup_s"] = round(first["model"]["ts"] - first["data"]["ts"], 2)
    if "model" in first:
        out.update(linear4bit=first["model"].get("linear4bit"), trainable_params=first["model"].get("trainable_params"),
                   compute_dtype=first["model"].get("dtype"))
    steps = [e for e in events if e.get("kind") == "step"]
    out["step_events"] = [{k: e.get(k) for k in ("step", "ts", "loss", "tokens", "tokens_per_s", "peak_mem_mb")}
                          for e in steps]
    if len(steps) >= 2:
        a, b = steps[0], steps[-1]
        dt, dtok = b["ts"] - a["ts"], (b.get("tokens") or 0) - (a.get("tokens") or 0)
        if dt > 0 and b["step"] > a["step"]:
            out["steady_tokens_per_s"] = round(dtok / dt, 1)
            out["steady_s_per_step"] = round(dt / (b["step"] - a["step"]), 3)
            out["steady_window"] = f"steps {a['step']}->{b['step']}"
    warnings = [e.get("message") for e in events if e.get("kind") == "warning"]
    if warnings:
        out["warnings"] = warnings
    return out


def _r(x: float | None) -> float | None:
    return None if x is None else round(x, 2)


# ---------------------------------------------------------------- driver


def child(args) -> int:
    import torch

    shape = args.one
    steps = args.steps or SHAPES[shape]["steps"]
    need = checkpoint_bytes(SHAPES[shape]["config"], 2 if torch.cuda.is_available() else 4)
    work = pick_work_dir(args.work_dir, need)
    work.mkdir(parents=True, exist_ok=True)
    out = Path(args.out)
    hf_home = Path(os.environ.get("HF_HOME") or (work / "hf"))
    say(f"{shape}: work dir {work} (checkpoint ~{need / GIB:.1f} GiB), HF_HOME {hf_home}")
    res = run_shape(shape, steps, work, out, hf_home, args.record_tokens, args.keep, merge=args.merge)
    (out / f"{shape}.json").write_text(json.dumps(res, indent=1, default=str))
    brief = {k: v for k, v in res.items() if k not in ("versions", "step_events", "summary", "traceback", "data")}
    print("RESULT " + json.dumps(brief, default=str), flush=True)
    return 0 if res["ok"] else 1


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", required=True, help="folder for gpu_bench.json, per-shape JSON and events")
    p.add_argument("--shapes", default="llama2-7b,llama3-8b", help=f"comma list of {', '.join(SHAPES)}")
    p.add_argument("--steps", type=int, default=0, help="optimizer steps (default per shape: "
                   + ", ".join(f"{k} {v['steps']}" for k, v in SHAPES.items()) + ")")
    p.add_argument("--work-dir", default=None, help="where checkpoints and run dirs go (default /dev/shm if room)")
    p.add_argument("--record-tokens", type=int, default=0,
                   help="approx tokens per synthetic record (default: 300 when packing, max_seq_length+64 if not)")
    p.add_argument("--shape-timeout", type=float, default=0, help="kill a shape's process after N seconds (0: none)")
    p.add_argument("--keep", action="store_true", help="keep the checkpoints and run dirs")
    p.add_argument("--merge", action="store_true", help="then run podtune's merge phase (reload, merge, check, save)")
    p.add_argument("--recipe", default=None,
                   help="use this recipe (path from the repo root) for every shape instead of each shape's seed")
    p.add_argument("--one", default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    Path(args.out).mkdir(parents=True, exist_ok=True)
    if args.recipe:
        os.environ["BENCH_GPU_RECIPE"] = args.recipe  # the shape processes inherit it
    if args.one:
        return child(args)

    shapes = [s.strip() for s in args.shapes.split(",") if s.strip()]
    unknown = [s for s in shapes if s not in SHAPES]
    if unknown:
        p.error(f"unknown shape(s) {unknown}; known: {', '.join(SHAPES)}")
    say(f"shapes {shapes}, python {sys.executable}, {json.dumps(versions())}")
    results = []
    for shape in shapes:
        cmd = [sys.executable, "-u", str(Path(__file__).resolve()), "--one", shape, "--out", args.out,
               "--record-tokens", str(args.record_tokens)]
        if args.steps:
            cmd += ["--steps", str(args.steps)]
        if args.work_dir:
            cmd += ["--work-dir", args.work_dir]
        if args.keep:
            cmd.append("--keep")
        if args.merge:
            cmd.append("--merge")
        say(f"=== {shape}")
        t0 = time.perf_counter()
        result_file = Path(args.out) / f"{shape}.json"
        result_file.unlink(missing_ok=True)
        proc = subprocess.Popen(cmd, env={**os.environ, "PYTHONUNBUFFERED": "1"})
        code: int | str
        try:
            code = proc.wait(timeout=args.shape_timeout or None)
        except subprocess.TimeoutExpired:
            # SIGTERM: inside trainer.train podtune's own handler stops at the next step and train.run returns
            # its summary (interrupted=True), so the numbers so far still get reported.
            say(f"{shape}: over --shape-timeout {args.shape_timeout:g}s, sending SIGTERM")
            proc.terminate()
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            code = f"timeout ({proc.returncode})"
        try:
            res = json.loads(result_file.read_text())
        except (FileNotFoundError, json.JSONDecodeError):
            res = {"shape": shape, "ok": False}
        if not res.get("finished"):
            res.setdefault("error", f"process ended ({code}) in stage {res.get('stage')}")
            run_dir = Path(res["run_dir"]) if res.get("run_dir") else None
            if run_dir and (run_dir / "events.jsonl").is_file():
                from remote.events import read_events

                events, _ = read_events(run_dir / "events.jsonl")
                shutil.copy(run_dir / "events.jsonl", Path(args.out) / f"{shape}-events.jsonl")
                res.update(from_events(events, events[0]["ts"] if events else 0.0))
            if not args.keep:
                for key in ("model_dir", "run_dir"):
                    if res.get(key):
                        shutil.rmtree(res[key], ignore_errors=True)
            brief = {k: v for k, v in res.items() if k not in ("versions", "step_events", "traceback")}
            print("RESULT " + json.dumps(brief, default=str), flush=True)
        res["exit_code"] = code
        res["wall_s"] = round(time.perf_counter() - t0, 2)
        results.append(res)
        (Path(args.out) / "gpu_bench.json").write_text(json.dumps({"results": results}, indent=1, default=str))
    say("summary:")
    for r in results:
        say(f"  {r['shape']}: ok={r.get('ok')} tok/s={r.get('tokens_per_s')} steady={r.get('steady_tokens_per_s')} "
            f"peak_alloc={r.get('peak_alloc_gib')}GiB reserved={r.get('peak_reserved_gib')}GiB "
            f"loss {r.get('loss_first')}->{r.get('loss_last')} wall={r.get('wall_s')}s {r.get('error') or ''}")
    return 0 if all(r.get("ok") for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
