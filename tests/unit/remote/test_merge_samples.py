"""Sample answers stay inside the model's positions, whatever eval.max_new_tokens asks for."""

from __future__ import annotations

from pathlib import Path

from remote.merge import new_token_budget, sample
from remote.recipe import load_recipe

RECIPE = Path(__file__).resolve().parents[3] / "recipes" / "tiny-cpu.yaml"


def test_a_long_answer_is_cut_at_the_models_position_limit(tiny_dir, tiny_tokenizer):
    import torch
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny_dir, dtype=torch.float32)
    limit = model.config.max_position_embeddings
    recipe = load_recipe(RECIPE)
    # A seed's 500 new tokens on the tiny model's 256 positions.
    recipe = recipe.model_copy(update={"eval": recipe.eval.model_copy(update={"max_new_tokens": 500})})
    tiny_tokenizer.pad_token = tiny_tokenizer.pad_token or tiny_tokenizer.eos_token
    asked: list[tuple[int, int]] = []
    generate = model.generate

    def spy(**kwargs):  # the real generate, recording what it was asked for
        asked.append((kwargs["input_ids"].shape[1], kwargs["max_new_tokens"]))
        return generate(**kwargs)

    model.generate = spy
    assert isinstance(sample(model, tiny_tokenizer, recipe, recipe.eval.prompts[0]), str)
    ((prompt_tokens, budget),) = asked
    assert 0 < budget < 500 and prompt_tokens + budget == limit


def test_budget_without_a_known_limit_is_what_the_recipe_asks():
    class NoLimit:
        config = None

    assert new_token_budget(500, 40, NoLimit()) == 500
