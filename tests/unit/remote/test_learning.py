"""remote/learning.py: whether a sample answer follows the training data, judged against the data itself."""

from __future__ import annotations

import json

from remote.learning import assess, template_markers
from remote.recipe import load_recipe
from tests.conftest import REPO

RECIPE = load_recipe(REPO / "recipes" / "tiny-cpu.yaml")
RECORDS = [json.loads(line) for line in (REPO / "recipes" / "data" / "tiny-instructions.jsonl").read_text().splitlines()]
PROMPT = RECIPE.eval.prompts[0]  # "Translate to Korean: good morning", whose answer is in the data


def test_markers_are_the_templates_fixed_lines():
    assert template_markers(RECIPE) == ["### input:", "### instruction:", "### output:"]
    chat = RECIPE.model_copy(update={"dataset": RECIPE.dataset.model_copy(update={"format": "chat"})})
    assert template_markers(chat) == []


def test_the_datas_answer_or_its_template_follows_and_noise_does_not():
    samples = [{"prompt": PROMPT, "base": "이tion��str c times", "tuned": "좋은 아침입니다"},
               {"prompt": PROMPT, "base": "", "tuned": "\n### input:\n\n\n### input:"},
               {"prompt": "never seen", "base": "좋은 아침입니다", "tuned": "zzz qqq"}]
    result = assess(RECIPE, RECORDS, samples)
    first, second, third = result["samples"]
    assert first["tuned"]["follows"] and first["tuned"]["answer_similarity"] == 1.0 and not first["base"]["follows"]
    assert second["tuned"]["follows"] and second["tuned"]["markers"] == ["### input:"]
    assert not third["tuned"]["follows"] and not third["base"]["follows"]  # no reference answer for that prompt
    assert first["tuned"]["overlap"] > first["base"]["overlap"]  # the data's own text vs noise
    assert (result["tuned_follow"], result["base_follow"], result["of"]) == (2, 0, 3)
    assert result["line"] == "tuned answers follow the training data's format: 2 of 3 (base: 0 of 3)"


def test_one_prompt_says_yes_or_no():
    result = assess(RECIPE, RECORDS, [{"prompt": PROMPT, "base": "noise", "tuned": "### output:"}])
    assert result["line"] == "tuned answer follows the training data's format: yes (base: no)"


def test_text_data_is_judged_by_the_records_that_start_with_the_prompt():
    seed_a = load_recipe(REPO / "recipes" / "llama2-ko.yaml")
    records = [{"text": "<usr> 누가 책을 썼습니까?\n<bot> 마르크스입니다."}, {"text": "<usr> 안녕?\n<bot> 안녕하세요."}]
    prompt = "<usr> 누가 책을 썼습니까?\n<bot>"
    result = assess(seed_a, records, [{"prompt": prompt, "base": "zz", "tuned": "마르크스입니다."}])
    assert result["line"] == "tuned answer follows the training data's answers: yes (base: no)"
    # A prompt the data never starts with gives nothing to judge: no line rather than a misleading "no".
    assert assess(seed_a, records, [{"prompt": "other", "base": "a", "tuned": "b"}])["line"] is None
