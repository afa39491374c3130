"""LongLoRA fine-tuning on transformers 5: S2-Attn, LoRA with trainable embeddings and norms,
RoPE scaling for the target length, packed data, and the adapter/merged-checkpoint outputs.

Importing this package is light; torch, transformers and peft load when a run starts.
``longcontext.finetune.s2attn`` (the attention function) imports torch.
"""

from __future__ import annotations

from longcontext.finetune.config import FinetuneConfig
from longcontext.finetune.data import DataError
from longcontext.finetune.train import FinetuneResult, Plan, finetune, plan

__all__ = ["DataError", "FinetuneConfig", "FinetuneResult", "Plan", "finetune", "plan"]
