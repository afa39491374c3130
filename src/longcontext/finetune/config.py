"""``FinetuneConfig``: what a LongLoRA run needs, as plain data checked before any weights load."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from longcontext.rope import RopeScaling

#: RoPE methods a fine-tune can train with: static ones, which transformers and vLLM compute the
#: same way from the merged config. Dynamic NTK changes with the length it sees, so a model
#: trained with it at one length is served differently by the two engines.
ROPE_METHODS = ("linear", "yarn", "longrope", "llama3")
DEFAULT_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj")  # LongLoRA's LoRA targets
GROUP_RATIO = 4  # LongLoRA: a group is a quarter of the training length


@dataclass(frozen=True)
class FinetuneConfig:
    """A LongLoRA fine-tune of ``model`` to ``context_length`` tokens.

    Attributes:
        model: local model directory or Hugging Face id of the base (a RoPE model).
        context_length: tokens per training sequence, the window the result serves.
        rope: RoPE scaling method for the longer window (one of :data:`ROPE_METHODS`); linear
            (position interpolation) as in the LongLoRA paper. Not applied when the length is
            within the model's own window.
        group_size: S2-Attn group in tokens; default a quarter of ``context_length``.
        full_attention: train with plain causal attention instead of S2-Attn (for comparison).
        lora_rank, lora_alpha, lora_dropout, target_modules: the LoRA adapter.
        trainable_embeddings: train the input embeddings and every norm in full (LongLoRA's
            "LoRA+"; off: plain LoRA).
        steps, learning_rate, batch_size, gradient_accumulation, warmup_steps, seed: training.
        gradient_checkpointing: recompute activations in the backward pass (less memory).
        supervised: JSONL records with ``prompt`` and ``response``; loss on the response only.
        resume: an adapter (from an earlier run) to continue training from.
        dtype: ``"auto"`` (bfloat16 on CUDA, float32 on CPU) or a torch dtype name.
        trust_remote_code: passed to transformers.
    """

    model: str
    context_length: int
    rope: str = "linear"
    group_size: int | None = None
    full_attention: bool = False
    lora_rank: int = 8
    lora_alpha: int | None = None
    lora_dropout: float = 0.05
    target_modules: tuple[str, ...] = DEFAULT_TARGETS
    trainable_embeddings: bool = True
    steps: int = 1000
    learning_rate: float = 2e-5
    batch_size: int = 1
    gradient_accumulation: int = 1
    warmup_steps: int = 20
    seed: int = 42
    gradient_checkpointing: bool = False
    supervised: bool = False
    resume: str | None = None
    dtype: str = "auto"
    trust_remote_code: bool = False

    def __post_init__(self) -> None:
        if not isinstance(self.context_length, int) or self.context_length < 2:
            raise ValueError(f"context length must be an int >= 2, got {self.context_length!r}")
        if self.rope not in ROPE_METHODS:
            hint = (
                " (dynamic NTK depends on the length it sees: transformers and vLLM would serve "
                "the fine-tune differently)"
                if self.rope == "dynamic"
                else ""
            )
            raise ValueError(f"rope {self.rope!r} is not one of {ROPE_METHODS}{hint}")
        group = self.context_length // GROUP_RATIO if self.group_size is None else self.group_size
        if not isinstance(group, int) or group < 2 or group > self.context_length:
            raise ValueError(
                f"group size {group!r} must be an int between 2 and the context length "
                f"{self.context_length}"
            )
        if self.context_length % group:
            low = self.context_length // group * group
            raise ValueError(
                f"context length {self.context_length} is not a multiple of the group size "
                f"{group}; use {low or group} or {low + group} tokens, or a group size that "
                f"divides {self.context_length}"
            )
        object.__setattr__(self, "group_size", group)
        for name in ("lora_rank", "steps", "batch_size", "gradient_accumulation"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive int, got {value!r}")
        if self.lora_alpha is None:
            object.__setattr__(self, "lora_alpha", 2 * self.lora_rank)  # LongLoRA: r 8, alpha 16

    @property
    def group(self) -> int:
        """The S2-Attn group size, settled at construction."""
        assert self.group_size is not None
        return self.group_size

    @property
    def alpha(self) -> int:
        """The LoRA scaling numerator, settled at construction (twice the rank by default)."""
        assert self.lora_alpha is not None
        return self.lora_alpha


def check_rope_model(model: str | os.PathLike[str], trust_remote_code: bool = False) -> Any:
    """The model's transformers config, or ``ValueError`` when it has no rotary embedding."""
    from transformers import AutoConfig

    name = os.fspath(model)
    try:
        config = AutoConfig.from_pretrained(name, trust_remote_code=trust_remote_code)
    except (OSError, ValueError) as error:
        raise OSError(f"could not load the config of model {name!r}: {error}") from error
    has_rope = bool(getattr(config, "rope_parameters", None)) or hasattr(config, "rope_theta")
    if not has_rope:
        raise ValueError(
            f"model {name!r} ({config.model_type}) has no rotary position embedding (RoPE); "
            "LongLoRA extends RoPE models such as Llama, Mistral, Qwen2 and Qwen3"
        )
    return config


def rope_for(config: Any, settings: FinetuneConfig) -> RopeScaling | None:
    """The scaling that takes the model to ``settings.context_length``; ``None`` when the length
    fits the model's own window."""
    from longcontext.rope import RopeScaling

    if not RopeScaling.needs_scaling(config, settings.context_length):
        return None
    return RopeScaling.for_target(config, settings.context_length, settings.rope)


def merged_rope_config(rope: RopeScaling) -> dict[str, Any]:
    """Config keys for the merged checkpoint: vLLM's convention (linear keeps the original
    ``max_position_embeddings`` with the factor, as LongLoRA's released checkpoints do), which
    transformers computes identically for the static methods."""
    overrides: dict[str, Any] = dict(rope.vllm_kwargs()["hf_overrides"])
    return overrides
