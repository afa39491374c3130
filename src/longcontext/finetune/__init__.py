"""LongLoRA fine-tuning on transformers 5: S2-Attn, LoRA with trainable embeddings and norms,
RoPE scaling for the target length, packed data, and the adapter/merged-checkpoint outputs.

Nothing heavy is imported here; ``longcontext.finetune.s2attn`` needs torch and transformers.
"""

from __future__ import annotations
