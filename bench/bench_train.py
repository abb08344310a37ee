"""Training throughput: podtune's trainer (remote/train.py) vs a plain trl SFTTrainer script, side by side.

Both train builtin:tiny-llama in 4 bit (bitsandbytes Linear4bit on CPU), LoRA on all linear layers, batch 4,
packing, max_length 128, 30 steps, on the shipped data; each in its own fresh process, alternating.

Honest by construction:
- Every setting is matched and asserted equal: each child reports its trainer's TrainingArguments, LoRA and
  quantization config, torch threads and packed dataset; the parent refuses to report a ratio if any differ
  (only paths and run names may differ).
- Tokens/s counts real tokens (trainer.state.num_input_tokens_seen with "non_padding"), not steps x batch x
  length, over SFTTrainer.train() only.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench.common import summary  # noqa: E402

STEPS, BATCH, MAX_LEN = 30, 4, 128
# May differ between the two without changing the work done.
IGNORED = {"output_dir", "logging_dir", "run_name", "hub_model_id", "save_total_limit", "save_steps", "eval_steps"}

DESCRIBE = r"""
import json, time, resource
import torch

def describe(trainer):
    args = {k: v for k, v in trainer.args.to_dict().items()}
    peft = trainer.model.peft_config["default"].to_dict()
    peft["target_modules"] = sorted(peft["target_modules"]) if isinstance(peft["target_modules"], (set, list)) else peft["target_modules"]
    q = trainer.model.config.quantization_config
    q = q.to_dict() if hasattr(q, "to_dict") else q
    ds = trainer.train_dataset
    return {"args": json.loads(json.dumps(args, default=str)), "peft": json.loads(json.dumps(peft, default=str)),
            "quant": json.loads(json.dumps(q, default=str)), "threads": torch.get_num_threads(),
            "use_cache": trainer.model.config.use_cache, "train_rows": len(ds),
            "train_tokens": int(sum(sum(m) for m in ds["attention_mask"])) if "attention_mask" in ds.column_names
                            else int(sum(len(x) for x in ds["input_ids"])),
            "trainable": trainer.model.get_nb_trainable_parameters()[0]}

def timed_train(trainer, **kw):
    settings = describe(trainer)
    t = time.perf_counter(); out = ORIGINAL_TRAIN(trainer, **kw); dt = time.perf_counter() - t
    RESULT.update(settings=settings, seconds=dt, real_tokens=int(trainer.state.num_input_tokens_seen),
                  steps=trainer.state.global_step)
    return out
RESULT = {}
"""

RAW = DESCRIBE + r"""
import sys
from pathlib import Path
sys.path.insert(0, sys.argv[1])
from datasets import Dataset
from peft import LoraConfig, prepare_model_for_kbit_training
from transformers import AutoModelForCausalLM, AutoTokenizer, BitsAndBytesConfig
from trl import SFTConfig, SFTTrainer
from remote.tiny import ensure_tiny_model
torch.set_num_threads(1)
model_dir = ensure_tiny_model(Path(sys.argv[2]))
tok = AutoTokenizer.from_pretrained(model_dir)
tok.pad_token = tok.pad_token or tok.eos_token
tok.padding_side = "right"
recs = [json.loads(l) for l in open(Path(sys.argv[1]) / "recipes/data/tiny-instructions.jsonl")]
tpl = "### instruction:\n{instruction}\n\n### input:\n{input}\n\n### output:\n{output}"
ds = Dataset.from_dict({"text": [tpl.format(**r) + tok.eos_token for r in recs]})
bnb = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
                         bnb_4bit_compute_dtype=torch.float32)
model = AutoModelForCausalLM.from_pretrained(model_dir, quantization_config=bnb, dtype=torch.float32)
model.config.use_cache = False
model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=False)
args = SFTConfig(output_dir=sys.argv[3], max_steps=%(steps)d, per_device_train_batch_size=%(batch)d,
                 per_device_eval_batch_size=%(batch)d, max_length=%(max_len)d, packing=True,
                 use_cpu=True, report_to="none", learning_rate=1e-2, lr_scheduler_type="cosine", warmup_steps=0.03,
                 max_grad_norm=0.3, weight_decay=0.0, optim="paged_adamw_32bit", logging_steps=1,
                 save_strategy="no", eval_strategy="no", seed=42, disable_tqdm=True, bf16=False, fp16=False,
                 activation_checkpointing=False, gradient_checkpointing=False, dataloader_pin_memory=False,
                 include_num_input_tokens_seen="non_padding", num_train_epochs=1.0)
peft = LoraConfig(r=8, lora_alpha=16, lora_dropout=0.05, bias="none", target_modules="all-linear", task_type="CAUSAL_LM")
ORIGINAL_TRAIN = SFTTrainer.train
SFTTrainer.train = timed_train
trainer = SFTTrainer(model=model, args=args, train_dataset=ds, processing_class=tok, peft_config=peft)
trainer.train()
RESULT["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print("RESULT", json.dumps(RESULT))
""" % {"steps": STEPS, "batch": BATCH, "max_len": MAX_LEN}

PODTUNE = DESCRIBE + r"""
import sys, shutil
from pathlib import Path
sys.path.insert(0, sys.argv[1])
import trl
from remote.events import EventLog
from remote.recipe import load_recipe
from remote.tiny import ensure_tiny_model
from remote import train
ORIGINAL_TRAIN = trl.SFTTrainer.train
trl.SFTTrainer.train = timed_train
run_dir = Path(sys.argv[3]); (run_dir / "data").mkdir(parents=True, exist_ok=True)
shutil.copy(Path(sys.argv[1]) / "recipes/data/tiny-instructions.jsonl", run_dir / "data")
recipe = load_recipe(Path(sys.argv[1]) / "recipes/tiny-cpu.yaml")
recipe = recipe.model_copy(update={"training": recipe.training.model_copy(update={"save_strategy": "no", "save_steps": None})})
summary = train.run(run_dir, recipe, EventLog(run_dir), model_dir=ensure_tiny_model(Path(sys.argv[2])), token=None)
RESULT["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
RESULT["podtune_train_seconds"] = summary["train_seconds"]
print("RESULT", json.dumps(RESULT))
"""


def _one(script: str, tmp: Path, tag: str) -> dict:
    out = subprocess.run([sys.executable, "-c", script, str(REPO), str(tmp / "hf"), str(tmp / tag)],
                         capture_output=True, text=True, timeout=900,
                         env={"PATH": "/usr/bin:/bin", "HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp / "hf"),
                              "TOKENIZERS_PARALLELISM": "false", "HOME": str(tmp)})
    line = [l for l in out.stdout.splitlines() if l.startswith("RESULT ")]
    if not line:
        raise RuntimeError(f"{tag} failed:\n{out.stderr[-3000:]}")
    return json.loads(line[0][7:])


def differences(a: dict, b: dict) -> list[str]:
    """Settings that differ between the two trainers (paths and names excepted)."""
    diffs = []
    for section in sorted(set(a) | set(b)):
        x, y = a.get(section), b.get(section)
        if isinstance(x, dict) and isinstance(y, dict):
            for key in sorted(set(x) | set(y)):
                if section == "args" and key in IGNORED:
                    continue
                if x.get(key) != y.get(key):
                    diffs.append(f"{section}.{key}: podtune {x.get(key)!r} vs raw {y.get(key)!r}")
        elif x != y:
            diffs.append(f"{section}: podtune {x!r} vs raw {y!r}")
    return diffs


def main(repeats: int = 5) -> dict:
    runs: dict[str, list[dict]] = {"podtune": [], "raw_trl": []}
    with tempfile.TemporaryDirectory() as name:
        tmp = Path(name)
        for i in range(repeats):
            # Alternating, and the order flips each round, so drift in the machine's load hits both alike.
            order = [("raw_trl", RAW), ("podtune", PODTUNE)]
            for tag, script in (order if i % 2 == 0 else order[::-1]):
                runs[tag].append(_one(script, tmp, f"{tag}{i}"))
                print(f"train {tag} {i + 1}/{repeats}: {runs[tag][-1]['real_tokens'] / runs[tag][-1]['seconds']:,.0f}"
                      f" tok/s", file=sys.stderr)
    diffs = differences(runs["podtune"][0]["settings"], runs["raw_trl"][0]["settings"])
    for tag in runs:  # every repeat of a side ran the same settings (its paths aside)
        assert all(not differences(r["settings"], runs[tag][0]["settings"]) for r in runs[tag]), \
            f"{tag} settings changed between runs"
    tokens = {k: {r["real_tokens"] for r in v} for k, v in runs.items()}
    if diffs or tokens["podtune"] != tokens["raw_trl"] or len(tokens["podtune"]) != 1:
        raise AssertionError("the two trainers did not run the same work:\n" + "\n".join(diffs)
                             + f"\nreal tokens: {tokens}")
    real = tokens["podtune"].pop()
    padded = STEPS * BATCH * MAX_LEN
    tps = {k: summary(r["real_tokens"] / r["seconds"] for r in v) for k, v in runs.items()}
    rss = {k: summary(r["peak_rss_mb"] for r in v) for k, v in runs.items()}
    pairs = [p["real_tokens"] / p["seconds"] / (r["real_tokens"] / r["seconds"])
             for p, r in zip(runs["podtune"], runs["raw_trl"])]
    return {
        "repeats": repeats, "steps": STEPS, "real_tokens": real, "padded_tokens": padded,
        "settings_checked": sorted(runs["podtune"][0]["settings"]["args"]), "settings_equal": True,
        "tokens_per_s": tps, "peak_rss_mb": rss,
        "ratio_tokens_per_s": tps["podtune"]["median"] / tps["raw_trl"]["median"],
        "ratio_pairs": summary(pairs),
        "ratio_rss": rss["podtune"]["median"] / rss["raw_trl"]["median"],
        "runs": {k: [{kk: vv for kk, vv in r.items() if kk != "settings"} for r in v] for k, v in runs.items()},
    }


if __name__ == "__main__":
    print(json.dumps(main(int(sys.argv[1]) if len(sys.argv) > 1 else 5), indent=1))
