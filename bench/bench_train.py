"""Training throughput: podtune's trainer (remote/train.py) vs a plain trl SFTTrainer script, side by side.

Both train the same tiny Llama in 4 bit (bitsandbytes Linear4bit on CPU), LoRA on all linear layers, batch 4,
packing, max_length 128, 30 steps, on the same rendered data; each in its own fresh process, interleaved.
Tokens/s counts packed tokens (steps x batch x max_length) in both, over trainer.train() only.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
STEPS, BATCH, MAX_LEN = 30, 4, 128

RAW = r"""
import json, resource, sys, time
from pathlib import Path
sys.path.insert(0, sys.argv[1])
import torch
from datasets import Dataset
from peft import LoraConfig, prepare_model_for_kbit_training
from transformers import AutoModelForCausalLM, AutoTokenizer, BitsAndBytesConfig
from trl import SFTConfig, SFTTrainer
from remote.tiny import ensure_tiny_model
model_dir = ensure_tiny_model(Path(sys.argv[2]))
tok = AutoTokenizer.from_pretrained(model_dir)
tok.pad_token = tok.pad_token or tok.eos_token
recs = [json.loads(l) for l in open(Path(sys.argv[1]) / "recipes/data/tiny-instructions.jsonl")]
tpl = "### instruction:\n{instruction}\n\n### input:\n{input}\n\n### output:\n{output}"
ds = Dataset.from_dict({"text": [tpl.format(**r) + tok.eos_token for r in recs]})
bnb = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
                         bnb_4bit_compute_dtype=torch.float32)
model = AutoModelForCausalLM.from_pretrained(model_dir, quantization_config=bnb, dtype=torch.float32)
model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=False)
args = SFTConfig(output_dir=sys.argv[3], max_steps=%(steps)d, per_device_train_batch_size=%(batch)d,
                 max_length=%(max_len)d, packing=True, dataset_text_field="text", use_cpu=True, report_to=[],
                 learning_rate=2e-3, optim="paged_adamw_32bit", logging_steps=1, save_strategy="no", seed=42,
                 disable_tqdm=True, bf16=False)
peft = LoraConfig(r=8, lora_alpha=16, lora_dropout=0.05, target_modules="all-linear", task_type="CAUSAL_LM")
trainer = SFTTrainer(model=model, args=args, train_dataset=ds, processing_class=tok, peft_config=peft)
t = time.perf_counter(); trainer.train(); dt = time.perf_counter() - t
print("RESULT", json.dumps({"seconds": dt, "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
""" % {"steps": STEPS, "batch": BATCH, "max_len": MAX_LEN}

PODTUNE = r"""
import json, resource, sys, shutil
from pathlib import Path
sys.path.insert(0, sys.argv[1])
from remote.events import EventLog
from remote.recipe import load_recipe
from remote.tiny import ensure_tiny_model
from remote import train
run_dir = Path(sys.argv[3]); (run_dir / "data").mkdir(parents=True, exist_ok=True)
shutil.copy(Path(sys.argv[1]) / "recipes/data/tiny-instructions.jsonl", run_dir / "data")
recipe = load_recipe(Path(sys.argv[1]) / "recipes/tiny-cpu.yaml")
recipe = recipe.model_copy(update={"training": recipe.training.model_copy(update={"save_strategy": "no", "save_steps": None})})
summary = train.run(run_dir, recipe, EventLog(run_dir), model_dir=ensure_tiny_model(Path(sys.argv[2])), token=None)
print("RESULT", json.dumps({"seconds": summary["train_seconds"], "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def _one(script: str, tmp: Path, tag: str) -> dict:
    out = subprocess.run([sys.executable, "-c", script, str(REPO), str(tmp / "hf"), str(tmp / tag)],
                         capture_output=True, text=True, timeout=600,
                         env={"PATH": "/usr/bin:/bin", "HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp / "hf"),
                              "TOKENIZERS_PARALLELISM": "false"})
    line = [l for l in out.stdout.splitlines() if l.startswith("RESULT ")]
    if not line:
        raise RuntimeError(f"{tag} failed:\n{out.stderr[-3000:]}")
    return json.loads(line[0][7:])


def main(repeats: int = 2) -> dict:
    tokens = STEPS * BATCH * MAX_LEN
    runs: dict[str, list[dict]] = {"podtune": [], "raw_trl": []}
    with tempfile.TemporaryDirectory() as name:
        tmp = Path(name)
        for i in range(repeats):
            runs["raw_trl"].append(_one(RAW, tmp, f"raw{i}"))
            runs["podtune"].append(_one(PODTUNE, tmp, f"pt{i}"))
    med = {k: statistics.median(r["seconds"] for r in v) for k, v in runs.items()}
    mem = {k: max(r["peak_rss_mb"] for r in v) for k, v in runs.items()}
    return {
        "tokens": tokens, "repeats": repeats,
        "tokens_per_s": {k: tokens / v for k, v in med.items()},
        "peak_rss_mb": mem,
        "ratio_podtune_over_raw": (tokens / med["podtune"]) / (tokens / med["raw_trl"]),
    }


if __name__ == "__main__":
    print(json.dumps(main(), indent=1))
