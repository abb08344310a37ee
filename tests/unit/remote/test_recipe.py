"""The recipe schema: shipped recipes validate; bad ones name the field and the fix."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from remote.recipe import Recipe, RecipeError, load_recipe, parse_recipe

RECIPES = sorted((Path(__file__).parents[3] / "recipes").glob("*.yaml"))
TINY = (Path(__file__).parents[3] / "recipes" / "tiny-cpu.yaml").read_text()


def test_all_five_recipes_ship_and_validate():
    names = {load_recipe(p).name for p in RECIPES}
    assert names == {"llama2-ko", "llama2-guanaco", "llama3.1-ko-safe", "ironman-persona", "tiny-cpu"}


def test_seed_a_hyperparameters_are_exact():
    r = load_recipe(RECIPES[[p.name for p in RECIPES].index("llama2-ko.yaml")])
    assert (r.model.base, r.dataset.source, r.dataset.split) == (
        "meta-llama/Llama-2-7b-hf", "heegyu/open-korean-instructions", "train[:10%]")
    assert (r.quantization.quant_type, r.quantization.double_quant, r.quantization.compute_dtype) == ("nf4", True, "float16")
    assert (r.lora.r, r.lora.alpha, r.lora.dropout, r.lora.bias) == (64, 16, 0.1, "none")
    t = r.training
    assert (t.epochs, t.batch_size, t.grad_accum, t.optimizer, t.learning_rate) == (3, 4, 2, "paged_adamw_32bit", 2e-4)
    assert (t.weight_decay, t.max_grad_norm, t.warmup_ratio, t.lr_scheduler) == (0.001, 0.3, 0.03, "cosine")
    assert (t.logging_steps, t.save_strategy, t.seed, t.packing, t.max_seq_length) == (5, "epoch", 42, True, 2048)
    assert r.eval.max_new_tokens == 500 and r.eval.top_p == 0.9 and r.eval.temperature == 0.5
    assert r.compute.gpu_types == ["NVIDIA GeForce RTX 3090"] and r.compute.volume_gb == 50


def test_every_field_has_a_description():
    missing = []

    def walk(model, prefix):
        for name, field in model.model_fields.items():
            if not field.description:
                missing.append(prefix + name)
            inner = field.annotation
            for candidate in (inner, *getattr(inner, "__args__", ())):
                if isinstance(candidate, type) and hasattr(candidate, "model_fields"):
                    walk(candidate, f"{prefix}{name}.")

    walk(Recipe, "")
    assert missing == []


def _with(path: str, value):
    data = yaml.safe_load(TINY)
    node = data
    keys = path.split(".")
    for key in keys[:-1]:
        node = node.setdefault(key, {})
    if value is _DELETE:
        node.pop(keys[-1])
    else:
        node[keys[-1]] = value
    return yaml.safe_dump(data, allow_unicode=True)


_DELETE = object()

# (field to break, bad value, the field path the error must name, a word the message must contain)
MALFORMED = [
    ("name", "Tiny CPU!", "name", "lowercase"),
    ("name", _DELETE, "name", "missing"),
    ("model.base", "not a hub id", "model.base", "owner/name"),
    ("model.bsae", "x/y", "model.bsae", "did you mean 'base'"),
    ("dataset.format", "sharegpt", "dataset.format", "alpaca"),
    ("dataset.source", _DELETE, "dataset.source", "missing"),
    ("dataset.prompt_template", "no placeholders", "dataset", "{instruction}"),
    ("dataset.system_prompt", "be nice", "dataset", "format: chat"),
    ("dataset.eval_fraction", 0.9, "dataset.eval_fraction", "less than 0.5"),
    ("quantization.quant_type", "int3", "quantization.quant_type", "nf4"),
    ("quantization.compute_dtype", "float8", "quantization.compute_dtype", "bfloat16"),
    ("lora.r", 0, "lora.r", "greater than or equal to 1"),
    ("lora.dropout", 1.5, "lora.dropout", "less than 1"),
    ("lora.target_modules", 5, "lora.target_modules", "list"),
    ("training.learning_rate", -0.1, "training.learning_rate", "greater than 0"),
    ("training.batch_size", "four", "training.batch_size", "integer"),
    ("training.optimizer", "adam", "training.optimizer", "paged_adamw_32bit"),
    ("training.max_steps", _DELETE, "training", "epochs or training.max_steps"),
    ("training.save_strategy", "epoch", "training", "save_strategy"),
    ("training.lr_sceduler", "cosine", "training.lr_sceduler", "did you mean 'lr_scheduler'"),
    ("eval.top_p", 0, "eval.top_p", "greater than 0"),
    ("output.hub_repo", "no-slash", "output.hub_repo", "your-user/model-name"),
    ("compute.provider", "aws", "compute.provider", "runpod"),
    ("compute.volume_gb", 5, "compute.volume_gb", "greater than or equal to 10"),
    ("compute.gpu_types", ['RTX"}) { evil'], "compute.gpu_types", "never contain"),
    ("compute.provider", "ssh", "compute", "compute.ssh"),
    ("compute.ssh", {"host": "gpu-box", "python": "python3; rm -rf /"}, "compute.ssh.python", "shell characters"),
    ("compute.ssh", {"host": "gpu-box", "user": "-oProxyCommand=touch /tmp/pwned"}, "compute.ssh.user", "login name"),
    ("compute.ssh", {"host": "-oProxyCommand=touch /tmp/pwned"}, "compute.ssh.host", "not starting with `-`"),
    ("compute.image", "runpod/pytorch:2.4.0-py3.11-cuda12.4.1-devel-ubuntu22.04", "compute.image", "CVE-2025-32434"),
    ("compute.image", "runpod/pytorch:1.0.0-cu1241-torch240-ubuntu2204", "compute.image", "torch 2.4"),
    ("dataset.source", "/home/me/.runpod/config.toml", "dataset.source", "--data PATH"),
    ("dataset.source", "../secrets/data.jsonl", "dataset.source", "its own folder"),
    ("compute.gpu_count", 2, "(top level)", "training.distributed"),
    ("training.early_stopping_patience", 2, "(top level)", "eval_fraction"),
]


@pytest.mark.parametrize("path,value,field,words", MALFORMED, ids=[f"{m[0]}={m[1]!r}"[:40] for m in MALFORMED])
def test_malformed_recipe_names_field_and_fix(path, value, field, words):
    with pytest.raises(RecipeError) as info:
        parse_recipe(_with(path, value), source="bad.yaml")
    text = str(info.value)
    assert any(p == field or p.startswith(field + ".") or field == p.split(".")[0] for p, _ in info.value.problems), text
    assert words in text, text


def test_malformed_count_is_at_least_twenty():
    assert len(MALFORMED) >= 20


def test_not_yaml_names_the_line():
    with pytest.raises(RecipeError) as info:
        parse_recipe("name: x\nmodel: [unclosed\n", source="broken.yaml")
    assert "line" in str(info.value) and "not valid YAML" in str(info.value)


def test_a_key_given_twice_is_refused_with_both_lines():
    text = TINY.replace("compute:\n", "compute:\n  max_hours: 720\n", 1)
    with pytest.raises(RecipeError) as info:
        parse_recipe(text, source="twice.yaml")
    message = str(info.value)
    assert "'max_hours' is given twice" in message and "keep one" in message and "line" in message


def test_missing_file_says_where_recipes_live(tmp_path):
    with pytest.raises(RecipeError) as info:
        load_recipe(tmp_path / "nope.yaml")
    assert "no such file" in str(info.value)


def test_the_default_image_has_a_torch_that_loads_checkpoints_safely():
    from remote.recipe import MIN_TORCH, image_torch_version

    image = parse_recipe(TINY).compute.image
    assert image_torch_version(image) >= MIN_TORCH >= (2, 6)
