"""Tiny model directories for the RoPE tests: real transformers configs saved with save_pretrained.

Sizes are tiny (head_dim 32, 2 layers) but the RoPE numbers are real: rope_theta=500000 as in
Llama 3, and a 4096-token trained window.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

THETA = 500_000.0
WINDOW = 4096
HEAD_DIM = 32

_TINY: dict[str, Any] = {
    "vocab_size": 256,
    "hidden_size": 128,
    "intermediate_size": 256,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "head_dim": HEAD_DIM,
    "max_position_embeddings": WINDOW,
}


def llama_config(**overrides: Any) -> Any:
    """A tiny unscaled Llama config with rope_theta=500000 and a 4096-token window."""
    from transformers import LlamaConfig

    kwargs = {**_TINY, "rope_parameters": {"rope_type": "default", "rope_theta": THETA}}
    return LlamaConfig(**{**kwargs, **overrides})


def llama31_config() -> Any:
    """A tiny Llama shaped like Llama 3.1: llama3 scaling factor 8 from 2048 tokens, yet a
    window of 32768 (16x), as Meta ships 8192 -> 131072 with factor 8."""
    return llama_config(
        max_position_embeddings=32768,
        rope_parameters={
            "rope_type": "llama3",
            "rope_theta": THETA,
            "factor": 8.0,
            "low_freq_factor": 1.0,
            "high_freq_factor": 4.0,
            "original_max_position_embeddings": 2048,
        },
    )


def qwen2_config(**overrides: Any) -> Any:
    """A tiny unscaled Qwen2 config (same sizes, theta 500000)."""
    from transformers import Qwen2Config

    kwargs = {**_TINY, "rope_parameters": {"rope_type": "default", "rope_theta": THETA}}
    return Qwen2Config(**{**kwargs, **overrides})


def save_config(config: Any, directory: Path) -> Path:
    """Save ``config`` as ``directory/config.json`` (all vLLM needs to build its ModelConfig)."""
    directory.mkdir(parents=True, exist_ok=True)
    config.save_pretrained(directory)
    return directory


def save_random_model(config: Any, directory: Path) -> Path:
    """Save a randomly initialised causal LM for ``config`` (weights and config.json)."""
    import torch
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(config)
    model.save_pretrained(directory)
    return directory
