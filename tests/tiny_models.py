"""Tiny but real Llama and Qwen2 checkpoints, built on the fly for tests.

Each model has random weights of a legal shape (head_dim 32, a multiple of 8 as vLLM and the fused
rotary kernels want), a byte-level BPE tokenizer trained here on public-domain text (so any unicode
string encodes), bos/eos/pad tokens and a chat template. Everything is saved with
``save_pretrained`` into a directory that ``AutoModelForCausalLM``, ``AutoTokenizer``, vLLM's
``EngineArgs`` and ``longcontext.LongContextLLM`` load like a real model directory.

Use the functions ``make_tiny_llama(path)`` / ``make_tiny_qwen2(path)`` or the session-scoped
pytest fixtures ``tiny_llama_dir`` / ``tiny_qwen2_dir`` (import them into a test module).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared"

VOCAB_SIZE = 512
HIDDEN = 64
HEADS = 2  # head_dim = 64 / 2 = 32
KV_HEADS = 1
LAYERS = 2
INTERMEDIATE = 128
MAX_POSITIONS = 2048
ROPE_THETA = 500_000.0

BOS, EOS, PAD = "<|begin|>", "<|end|>", "<|pad|>"
CHAT_TEMPLATE = (
    "{{ bos_token }}"
    "{% for message in messages %}"
    "<|{{ message['role'] }}|>\n{{ message['content'] }}{{ eos_token }}\n"
    "{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>\n{% endif %}"
)

_FALLBACK_TEXT = (
    "Two households, both alike in dignity, in fair Verona, where we lay our scene, from ancient "
    "grudge break to new mutiny, where civil blood makes civil hands unclean. "
) * 40


def _training_text() -> Iterator[str]:
    """Real text for the BPE merges: a public-domain play when the shared data is there."""
    play = SHARED / "data" / "corpora" / "romeo_and_juliet.txt"
    text = play.read_text(encoding="utf-8")[:60_000] if play.exists() else _FALLBACK_TEXT
    for line in text.splitlines():
        if line.strip():
            yield line


def make_tokenizer(path: str | Path) -> Any:
    """Train a byte-level BPE tokenizer, wrap it as ``PreTrainedTokenizerFast`` and save it."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    backend = Tokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=VOCAB_SIZE,
        special_tokens=[PAD, BOS, EOS, "<|system|>", "<|user|>", "<|assistant|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    backend.train_from_iterator(_training_text(), trainer=trainer)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend,
        bos_token=BOS,
        eos_token=EOS,
        pad_token=PAD,
        chat_template=CHAT_TEMPLATE,
        model_max_length=MAX_POSITIONS,
    )
    tokenizer.save_pretrained(str(path))
    return tokenizer


def _save_model(config: Any, path: Path) -> Path:
    import torch
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    model.generation_config.bos_token_id = config.bos_token_id
    model.generation_config.eos_token_id = config.eos_token_id
    model.generation_config.pad_token_id = config.pad_token_id
    model.save_pretrained(str(path))
    return path


def _ids(tokenizer: Any) -> dict[str, int]:
    return {
        "bos_token_id": tokenizer.bos_token_id,
        "eos_token_id": tokenizer.eos_token_id,
        "pad_token_id": tokenizer.pad_token_id,
    }


def _shape(tokenizer: Any) -> dict[str, Any]:
    return {
        "vocab_size": len(tokenizer),
        "hidden_size": HIDDEN,
        "intermediate_size": INTERMEDIATE,
        "num_hidden_layers": LAYERS,
        "num_attention_heads": HEADS,
        "num_key_value_heads": KV_HEADS,
        "head_dim": HIDDEN // HEADS,
        "max_position_embeddings": MAX_POSITIONS,
        "rope_parameters": {"rope_type": "default", "rope_theta": ROPE_THETA},
        "tie_word_embeddings": False,
        **_ids(tokenizer),
    }


def make_tiny_llama(path: str | Path, **config: Any) -> Path:
    """Save a tiny random ``LlamaForCausalLM`` and its tokenizer into ``path``; return the path.

    ``config`` overrides fields of the ``LlamaConfig`` (e.g. ``hidden_size=128`` for a model of
    another shape).
    """
    from transformers import LlamaConfig

    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    tokenizer = make_tokenizer(path)
    return _save_model(LlamaConfig(**{**_shape(tokenizer), **config}), path)


def make_tiny_qwen2(path: str | Path) -> Path:
    """Save a tiny random ``Qwen2ForCausalLM`` and its tokenizer into ``path``; return the path."""
    from transformers import Qwen2Config

    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    tokenizer = make_tokenizer(path)
    shape = _shape(tokenizer)
    shape.pop("head_dim")  # Qwen2 derives it from hidden_size / num_attention_heads
    return _save_model(Qwen2Config(**shape, use_sliding_window=False), path)


@pytest.fixture(scope="session")
def tiny_llama_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny Llama model directory, built once per test session."""
    return make_tiny_llama(tmp_path_factory.mktemp("tiny-llama"))


@pytest.fixture(scope="session")
def tiny_qwen2_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny Qwen2 model directory, built once per test session."""
    return make_tiny_qwen2(tmp_path_factory.mktemp("tiny-qwen2"))
