"""The model side of a LongLoRA run: load the base with RoPE scaling and S2-Attn, wrap it in a
peft LoRA with trainable embeddings and norms, save the LongLoRA adapter, merge it for vLLM.

The adapter is LongLoRA's released format, the one ``LongContextLLM(lora=...)`` loads: a peft
adapter (``adapter_config.json``, ``adapter_model.safetensors``) plus ``trainable_params.bin``
holding the embeddings and norms trained in full, keyed as in the peft-wrapped model. Training
the base's own embedding tensor (not a peft ``modules_to_save`` copy) keeps tied input and
output embeddings tied.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

from longcontext.finetune import s2attn
from longcontext.finetune.config import FinetuneConfig, merged_rope_config
from longcontext.llm.lora import RUN_FILE, TRAINABLE_PARAMS, check_adapter_fits, inspect_adapter
from longcontext.rope import RopeScaling

logger = logging.getLogger(__name__)


def pick_dtype(name: str) -> Any:
    """``"auto"``: bfloat16 on CUDA, float32 on CPU; else the torch dtype of that name."""
    import torch

    if name == "auto":
        return torch.bfloat16 if torch.cuda.is_available() else torch.float32
    dtype = getattr(torch, name, None)
    if not isinstance(dtype, torch.dtype):
        raise ValueError(f"unknown dtype {name!r}; use 'auto', 'bfloat16', 'float16', 'float32'")
    return dtype


def trainable_full_parameters(model: Any) -> dict[str, Any]:
    """Parameters LongLoRA trains in full: the input embeddings and every norm (by name)."""
    embedding = model.get_input_embeddings().weight
    return {
        name: param
        for name, param in model.named_parameters()
        if "lora_" not in name and (param is embedding or "norm" in name.rsplit(".", 2)[-2])
    }


def load_for_training(settings: FinetuneConfig, config: Any, rope: RopeScaling | None) -> Any:
    """The base, RoPE-scaled, with S2-Attn (unless ``full_attention``), wrapped in LoRA, with
    embeddings and norms trainable when asked; a ``peft.PeftModel``."""
    from peft import LoraConfig, PeftModel, get_peft_model
    from transformers import AutoModelForCausalLM

    if rope is not None:
        config = rope.apply_to_hf_config(config)
    attention = "sdpa" if settings.full_attention else s2attn.register()
    model = AutoModelForCausalLM.from_pretrained(
        settings.model,
        config=config,
        dtype=pick_dtype(settings.dtype),
        attn_implementation=attention,
        trust_remote_code=settings.trust_remote_code,
    )
    # the attention function reads the group from the config: visible to every thread that
    # recomputes a checkpointed layer (a context variable would not be)
    model.config.s2attn_group_size = settings.group
    if settings.resume is not None:
        adapter = inspect_adapter(settings.resume)
        check_adapter_fits(settings.model, adapter)
        peft_model = PeftModel.from_pretrained(model, str(adapter.path), is_trainable=True)
        if adapter.trainable_params is not None:
            _load_trainable(peft_model, adapter.trainable_params)
    else:
        lora = LoraConfig(
            r=settings.lora_rank,
            lora_alpha=settings.alpha,
            lora_dropout=settings.lora_dropout,
            target_modules=list(settings.target_modules),
            task_type="CAUSAL_LM",
        )
        peft_model = get_peft_model(model, lora)
    if settings.trainable_embeddings:
        for param in trainable_full_parameters(peft_model).values():
            param.requires_grad_(True)
    return peft_model


def _load_trainable(peft_model: Any, path: Path) -> None:
    import torch

    state = torch.load(str(path), map_location="cpu", weights_only=True)
    own = dict(peft_model.named_parameters())
    with torch.no_grad():
        for name, tensor in state.items():
            if name not in own:
                raise ValueError(f"{path} holds {name!r}, which the base model lacks")
            own[name].copy_(tensor)


def save_adapter(
    peft_model: Any, out: str | os.PathLike[str], settings: FinetuneConfig, rope: RopeScaling | None
) -> Path:
    """Save the LongLoRA adapter into ``out``: the peft adapter, ``trainable_params.bin`` (when
    embeddings and norms were trained) and ``longcontext_finetune.json`` (how it was trained)."""
    import torch

    directory = Path(out)
    directory.mkdir(parents=True, exist_ok=True)
    peft_model.save_pretrained(str(directory))
    trained = {
        name: param.detach().to("cpu").contiguous().clone()
        for name, param in trainable_full_parameters(peft_model).items()
        if param.requires_grad
    }
    stale = directory / TRAINABLE_PARAMS
    if trained:
        torch.save(trained, str(stale))
    elif stale.exists():  # a plain LoRA saved over an earlier LoRA+ run
        stale.unlink()
    record = {
        "base_model": settings.model,
        "context_length": settings.context_length,
        "rope": None if rope is None else rope.hf_rope_parameters(),
        "attention": "full" if settings.full_attention else "s2attn",
        "group_size": settings.group,
        "trainable_embeddings": settings.trainable_embeddings,
        "serve": {"context_length": settings.context_length, "rope": settings.rope}
        if rope is not None
        else {"context_length": settings.context_length},
    }
    (directory / RUN_FILE).write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    return directory


def save_merged(
    adapter_dir: str | os.PathLike[str],
    out: str | os.PathLike[str],
    settings: FinetuneConfig,
    rope: RopeScaling | None,
) -> Path:
    """Merge the adapter into the base the way ``LongContextLLM(lora=...)`` does (the same
    ``merge_adapter``), write the RoPE scaling into its config and save model and tokenizer."""
    from transformers import AutoConfig, AutoTokenizer

    from longcontext.llm.lora import merge_adapter

    merged = merge_adapter(
        settings.model,
        inspect_adapter(adapter_dir),
        trust_remote_code=settings.trust_remote_code,
    )
    base_dtype = AutoConfig.from_pretrained(
        settings.model, trust_remote_code=settings.trust_remote_code
    ).dtype
    if base_dtype is not None:  # merged at float32; saved at the base's own precision
        merged = merged.to(base_dtype)
    if rope is not None:
        for key, value in merged_rope_config(rope).items():
            setattr(merged.config, key, value)
    directory = Path(out)
    merged.save_pretrained(str(directory))
    tokenizer = AutoTokenizer.from_pretrained(
        settings.model, trust_remote_code=settings.trust_remote_code
    )
    tokenizer.save_pretrained(str(directory))
    return directory
