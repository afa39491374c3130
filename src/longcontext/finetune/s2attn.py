"""Shifted sparse attention (S2-Attn, LongLoRA) as a transformers 5 attention function.

Registered under the name ``"s2attn"`` in transformers' ``AttentionInterface`` (and its mask
interface, which builds sdpa's boolean masks), so any model whose attention goes through
``ALL_ATTENTION_FUNCTIONS.get_interface`` (Llama, Mistral, Qwen2, Qwen3, ... GQA included) trains
with it after ``model.set_attn_implementation("s2attn")``; no model class is patched.

While the attention module is training, the first half of the heads attends causally within
groups of ``group_size`` tokens and the other half within groups shifted by half a group. The
shifted half starts with a short group (the tokens before the first shifted boundary), and the
last group of either half may be short: nothing wraps around from the end to the start, and no
query sees a key outside its own group. A sequence no longer than one group is plain causal
attention. In ``eval()`` mode, with a KV cache, or under ``full_attention()`` the function is
transformers' own sdpa attention, as LongLoRA intends for inference.

Every group is one causal sdpa call over a ``(batch * groups)`` batch, so memory and time grow
linearly with the sequence length at a fixed group size, and GPU kernels (flash, memory-
efficient) apply when there is no padding mask.
"""

from __future__ import annotations

import contextlib
import contextvars
import math
from collections.abc import Iterator
from typing import Any

import torch
import torch.nn.functional as F

NAME = "s2attn"
CONFIG_ATTRIBUTE = "s2attn_group_size"  # set on the model config by the trainer
DEFAULT_GROUP_RATIO = 4  # LongLoRA's default: a group is a quarter of the training length

_group_size: contextvars.ContextVar[int | None] = contextvars.ContextVar(
    "s2attn_group_size", default=None
)
_full: contextvars.ContextVar[bool] = contextvars.ContextVar("s2attn_full", default=False)


@contextlib.contextmanager
def group_size(size: int) -> Iterator[None]:
    """Use groups of ``size`` tokens in this context (over the model config's value).

    A context variable is not seen by the autograd threads that recompute checkpointed layers
    on a GPU, so training sets ``config.s2attn_group_size`` instead; this is for direct calls.
    """
    _check_group_size(size)
    token = _group_size.set(size)
    try:
        yield
    finally:
        _group_size.reset(token)


@contextlib.contextmanager
def full_attention() -> Iterator[None]:
    """Plain causal sdpa attention in this context, even in training mode."""
    token = _full.set(True)
    try:
        yield
    finally:
        _full.reset(token)


def _check_group_size(size: object) -> int:
    if not isinstance(size, int) or isinstance(size, bool) or size < 2:
        raise ValueError(f"S2-Attn group size must be an int >= 2, got {size!r}")
    return size


def resolve_group_size(module: Any, length: int) -> int:
    """The group size for a sequence of ``length`` tokens: the context variable, else the
    module config's ``s2attn_group_size``, else a quarter of the length (LongLoRA's ratio)."""
    size = _group_size.get()
    if size is None:
        size = getattr(getattr(module, "config", None), CONFIG_ATTRIBUTE, None)
    if size is None:
        return max(2, math.ceil(length / DEFAULT_GROUP_RATIO))
    return _check_group_size(size)


def _repeat_kv(states: torch.Tensor, heads: int) -> torch.Tensor:
    """Key/value heads repeated so each query head has its own (GQA -> one kv head per head)."""
    n_rep = heads // states.shape[1]
    return states if n_rep == 1 else states.repeat_interleave(n_rep, dim=1)


def _pad_length(x: torch.Tensor, length: int, dim: int = 2) -> torch.Tensor:
    missing = length - x.shape[dim]
    if missing == 0:
        return x
    shape = list(x.shape)
    shape[dim] = missing
    return torch.cat([x, x.new_zeros(shape)], dim=dim)


def _blocks(x: torch.Tensor, size: int) -> tuple[torch.Tensor, int]:
    """``(B, H, L, D)`` -> ``(B * n, H, size, D)`` groups of ``size`` tokens (end zero-padded)."""
    batch, heads, length, dim = x.shape
    n = math.ceil(length / size)
    x = _pad_length(x, n * size)
    x = x.view(batch, heads, n, size, dim).transpose(1, 2).reshape(batch * n, heads, size, dim)
    return x, n


def _unblocks(x: torch.Tensor, batch: int, length: int) -> torch.Tensor:
    """Inverse of ``_blocks``: ``(B * n, H, size, D)`` -> ``(B, H, length, D)``."""
    bn, heads, size, dim = x.shape
    n = bn // batch
    x = x.view(batch, n, heads, size, dim).transpose(1, 2).reshape(batch, heads, n * size, dim)
    return x[:, :, :length]


def _mask_blocks(mask: torch.Tensor, start: int, size: int, length: int) -> torch.Tensor:
    """The diagonal blocks of a ``(B, h, L, L)`` mask for groups of ``size`` from ``start``,
    as ``(B * n, h, size, size)``; padded positions attend to themselves only (no empty row)."""
    mask = mask[:, :, start:length, start:length]
    batch, heads, span, _ = mask.shape
    n = math.ceil(span / size)
    padded_len = n * size
    allow = mask if mask.dtype == torch.bool else mask == 0
    if padded_len != span:
        padded = allow.new_zeros((batch, heads, padded_len, padded_len))
        padded[:, :, :span, :span] = allow
        idx = torch.arange(span, padded_len, device=mask.device)
        padded[:, :, idx, idx] = True
        allow = padded
    blocks = allow.view(batch, heads, n, size, n, size).diagonal(dim1=2, dim2=4)
    # diagonal() puts the group axis last: (B, h, size, size, n) -> (B * n, h, size, size)
    return blocks.permute(0, 4, 1, 2, 3).reshape(batch * n, heads, size, size)


def _grouped(
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    mask: torch.Tensor | None,
    start: int,
    size: int,
    scaling: float | None,
    dropout: float,
) -> torch.Tensor:
    """Causal attention within groups of ``size`` tokens covering ``[start, L)``."""
    batch, _, length, _ = query.shape
    q, _ = _blocks(query[:, :, start:], size)
    k, _ = _blocks(key[:, :, start:], size)
    v, _ = _blocks(value[:, :, start:], size)
    if mask is None:  # end padding is invisible to real queries under a causal mask
        out = F.scaled_dot_product_attention(
            q, k, v, dropout_p=dropout, scale=scaling, is_causal=True
        )
    else:
        block_mask = _mask_blocks(mask, start, size, length)
        causal = torch.ones(size, size, dtype=torch.bool, device=q.device).tril()
        out = F.scaled_dot_product_attention(
            q, k, v, attn_mask=block_mask & causal, dropout_p=dropout, scale=scaling
        )
    return _unblocks(out, batch, length - start)


def s2_attention(
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    group: int,
    *,
    attention_mask: torch.Tensor | None = None,
    scaling: float | None = None,
    dropout: float = 0.0,
) -> torch.Tensor:
    """S2-Attn over ``(B, H, L, D)`` queries and ``(B, H_kv, L, D)`` keys/values.

    Heads ``[0, H // 2)`` attend within groups ``[0, g), [g, 2g), ...``; heads ``[H // 2, H)``
    within ``[0, g/2), [g/2, 3g/2), ...``. ``attention_mask`` is a 4D mask (boolean, True =
    attend, or additive float) of shape ``(B, 1 or H, L, L)`` from transformers, e.g. padding.
    Returns ``(B, H, L, D)``.
    """
    _check_group_size(group)
    batch, heads, length = query.shape[:3]
    if attention_mask is not None and attention_mask.shape[0] != batch:  # one mask for all rows
        attention_mask = attention_mask.expand(batch, -1, -1, -1)
    key, value = _repeat_kv(key, heads), _repeat_kv(value, heads)
    if length <= group:  # one group covers the sequence: plain causal attention
        return _grouped(query, key, value, attention_mask, 0, max(length, 1), scaling, dropout)
    half, shift = heads // 2, group // 2

    def head_mask(lo: int, hi: int) -> torch.Tensor | None:
        if attention_mask is None or attention_mask.shape[1] == 1:
            return attention_mask
        return attention_mask[:, lo:hi]

    parts = []
    if half:
        lo = (query[:, :half], key[:, :half], value[:, :half])
        parts.append(_grouped(*lo, head_mask(0, half), 0, group, scaling, dropout))
    q, k, v, m = query[:, half:], key[:, half:], value[:, half:], head_mask(half, heads)
    # the shifted heads: a short first group [0, shift), then groups of `group` from `shift`
    head = (q[:, :, :shift], k[:, :, :shift], v[:, :, :shift])
    first_mask = None if m is None else m[:, :, :shift, :shift]
    first = _grouped(*head, first_mask, 0, shift, scaling, dropout)
    rest = _grouped(q, k, v, m, shift, group, scaling, dropout)
    parts.append(torch.cat([first, rest], dim=2))
    return torch.cat(parts, dim=1)


def s2attn_forward(
    module: torch.nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    dropout: float = 0.0,
    scaling: float | None = None,
    is_causal: bool | None = None,
    **kwargs: Any,
) -> tuple[torch.Tensor, None]:
    """The attention function transformers calls: S2-Attn while training, sdpa otherwise."""
    length = query.shape[2]
    if not module.training or _full.get() or key.shape[2] != length or length == 1:
        from transformers.integrations.sdpa_attention import sdpa_attention_forward

        return sdpa_attention_forward(
            module, query, key, value, attention_mask, dropout, scaling, is_causal, **kwargs
        )
    group = resolve_group_size(module, length)
    out = s2_attention(
        query, key, value, group, attention_mask=attention_mask, scaling=scaling, dropout=dropout
    )
    return out.transpose(1, 2).contiguous(), None


def register() -> str:
    """Register ``"s2attn"`` with transformers' attention and mask interfaces (idempotent);
    return the name to pass as ``attn_implementation``."""
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

    AttentionInterface.register(NAME, s2attn_forward)
    AttentionMaskInterface.register(NAME, sdpa_mask)  # the same boolean masks sdpa gets
    return NAME
