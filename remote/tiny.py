"""`builtin:tiny-llama`: a tiny Llama that podtune builds itself, the same bytes on every machine.

Tests and the embedded default need a real Llama-architecture checkpoint without the internet. It is built on
first use under `$HF_HOME/podtune/tiny-llama-v1/`: random weights from a fixed seed, and a byte-level BPE
tokenizer trained on `tiny_corpus.txt`, which travels with `remote/` (the pod gets only `remote/` and the run's
data file). The corpus is derived from `recipes/data/tiny-instructions.jsonl` by `corpus_text` (a test keeps
the two in sync). Change anything that alters the bytes and bump TINY_VERSION, so old caches are not reused.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Iterable

TINY_VERSION = "tiny-llama-v1"
CORPUS = Path(__file__).with_name("tiny_corpus.txt")
SEED = 1234
VOCAB = 512
MAX_POSITIONS = 256
SPECIALS = ["<unk>", "<s>", "</s>", "<pad>"]  # ids 0..3, the order the config below relies on
CORPUS_TEMPLATE = "### instruction:\n{instruction}\n\n### input:\n{input}\n\n### output:\n{output}"
# A plain role-tagged template; recipes that need Llama-3 headers set dataset.chat_template: llama3 instead.
CHAT_TEMPLATE = (
    "{{ bos_token }}{% for message in messages %}"
    "{{ '<|' + message['role'] + '|>\n' + message['content'] + eos_token + '\n' }}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|assistant|>\n' }}{% endif %}"
)


def corpus_text(records: Iterable[dict]) -> str:
    """The tokenizer's training text for these {instruction, input, output} records."""
    return "\n\n".join(CORPUS_TEMPLATE.format(**r) for r in records) + "\n"


def ensure_tiny_model(hf_home: Path) -> Path:
    """Directory of the tiny model under `hf_home`, building it first if absent (safe when processes race)."""
    final = Path(hf_home) / "podtune" / TINY_VERSION
    if (final / "config.json").exists():
        return final
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{TINY_VERSION}.", dir=final.parent))
    try:
        build_tiny_model(tmp)
        try:
            # rename is atomic: a reader sees no directory or a complete one, never half a model.
            os.rename(tmp, final)
        except OSError:
            if not (final / "config.json").exists():
                raise
            # Another process won the race with identical bytes; keep theirs.
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return final


def build_tiny_model(out: Path) -> None:
    """Write the tokenizer and the randomly initialised model into `out`."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    tokenizer = _train_tokenizer()
    config = LlamaConfig(
        vocab_size=VOCAB,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=4,
        max_position_embeddings=MAX_POSITIONS,
        unk_token_id=0,  # type: ignore[call-arg]  # accepted through the config's **kwargs
        bos_token_id=1,
        eos_token_id=2,
        pad_token_id=3,
        tie_word_embeddings=False,
        dtype="float32",
    )
    # fork_rng: seeding here must not change the caller's random stream (training seeds its own).
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(SEED)
        model = LlamaForCausalLM(config)
    model.generation_config.pad_token_id = config.pad_token_id
    model.save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)


def _train_tokenizer():
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    # Byte-level BPE: Korean has more distinct syllables than a 512 vocabulary holds, bytes cover them all.
    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=VOCAB,
        special_tokens=SPECIALS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        min_frequency=2,
        show_progress=False,
    )
    lines = CORPUS.read_text(encoding="utf-8").splitlines()
    tok.train_from_iterator(lines, trainer=trainer, length=len(lines))
    bos = tok.token_to_id("<s>")
    # Llama convention: BOS in front of every sequence, nothing after (EOS is added by the data renderer).
    tok.post_processor = processors.TemplateProcessing(
        single="<s> $A", pair="<s> $A <s> $B", special_tokens=[("<s>", bos)]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        unk_token="<unk>",
        bos_token="<s>",
        eos_token="</s>",
        pad_token="<pad>",
        model_max_length=MAX_POSITIONS,
        padding_side="right",
        chat_template=CHAT_TEMPLATE,
    )
