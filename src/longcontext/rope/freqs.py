"""Rotary inverse frequencies for each RoPE scaling method, computed by our own code.

The formulas follow the papers (position interpolation, dynamic NTK, YaRN, LongRoPE, Llama 3.1)
in the form transformers 5 and vLLM 0.33 implement them, so the tests can hold all three equal.
Computation is in float64 and the result is cast to float32, the dtype both backends use.
torch is imported inside the functions: importing this module costs nothing.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch


def rotary_dim(head_dim: int, partial_rotary_factor: float | None = None) -> int:
    """The number of head dimensions that are rotated (all of them unless a factor is set)."""
    return int(head_dim * (1.0 if partial_rotary_factor is None else partial_rotary_factor))


def _exponents(dim: int) -> torch.Tensor:
    import torch

    return torch.arange(0, dim, 2, dtype=torch.float64) / dim


def default_inv_freq(dim: int, rope_theta: float) -> torch.Tensor:
    """Unscaled RoPE: ``1 / theta ** (2i / dim)`` for ``i`` in ``0 .. dim/2 - 1`` (float64)."""
    return 1.0 / (rope_theta ** _exponents(dim))


def linear_inv_freq(dim: int, rope_theta: float, factor: float) -> torch.Tensor:
    """Position interpolation: every frequency divided by ``factor``."""
    return default_inv_freq(dim, rope_theta) / factor


def dynamic_inv_freq(
    dim: int, rope_theta: float, factor: float, original: int, seq_len: int
) -> torch.Tensor:
    """Dynamic NTK: a larger base, chosen for the sequence length ``seq_len``.

    Within the original window the base is unchanged; past it the base grows as
    ``theta * (factor * seq_len / original - (factor - 1)) ** (dim / (dim - 2))``.
    """
    seq_len = max(seq_len, original)
    base = rope_theta * ((factor * seq_len / original) - (factor - 1)) ** (dim / (dim - 2))
    return default_inv_freq(dim, base)


def yarn_attention_factor(
    factor: float, mscale: float | None = None, mscale_all_dim: float | None = None
) -> float:
    """YaRN's magnitude correction ``0.1 * ln(factor) + 1`` (or DeepSeek's mscale ratio)."""

    def get_mscale(scale: float, m: float = 1.0) -> float:
        return 1.0 if scale <= 1 else 0.1 * m * math.log(scale) + 1.0

    if mscale and mscale_all_dim:
        return get_mscale(factor, mscale) / get_mscale(factor, mscale_all_dim)
    return get_mscale(factor)


def yarn_inv_freq(
    dim: int,
    rope_theta: float,
    factor: float,
    original: int,
    beta_fast: float,
    beta_slow: float,
) -> torch.Tensor:
    """YaRN "NTK-by-parts": fast dimensions keep their frequency, slow ones are interpolated.

    Dimensions that turn more than ``beta_fast`` times over the original window are left alone,
    those turning fewer than ``beta_slow`` times are divided by ``factor``, and a linear ramp
    blends the ones in between.
    """
    import torch

    def correction_dim(rotations: float) -> float:
        return (dim * math.log(original / (rotations * 2 * math.pi))) / (2 * math.log(rope_theta))

    low: float = max(math.floor(correction_dim(beta_fast)), 0)
    high: float = min(math.ceil(correction_dim(beta_slow)), dim - 1)
    if low == high:
        high += 0.001  # the ramp needs a non-empty interval
    ramp = torch.clamp((torch.arange(dim // 2, dtype=torch.float64) - low) / (high - low), 0, 1)
    keep = 1 - ramp  # 1: extrapolate (keep the frequency), 0: interpolate (divide by factor)
    base = default_inv_freq(dim, rope_theta)
    return base / factor * (1 - keep) + base * keep


def longrope_attention_factor(factor: float, original: int) -> float:
    """LongRoPE's magnitude correction ``sqrt(1 + ln(factor) / ln(original))``."""
    return 1.0 if factor <= 1 else math.sqrt(1 + math.log(factor) / math.log(original))


def longrope_inv_freq(dim: int, rope_theta: float, ext_factors: Sequence[float]) -> torch.Tensor:
    """LongRoPE: each frequency divided by its own searched rescale factor."""
    import torch

    if len(ext_factors) != dim // 2:
        raise ValueError(
            f"LongRoPE needs one factor per rotary frequency ({dim // 2} for rotary dim {dim}), "
            f"got {len(ext_factors)}"
        )
    return default_inv_freq(dim, rope_theta) / torch.tensor(ext_factors, dtype=torch.float64)


def llama3_inv_freq(
    dim: int,
    rope_theta: float,
    factor: float,
    original: int,
    low_freq_factor: float,
    high_freq_factor: float,
) -> torch.Tensor:
    """Llama 3.1: wavelengths shorter than ``original / high_freq_factor`` are kept, longer than
    ``original / low_freq_factor`` are divided by ``factor``, and the band between is blended."""
    import torch

    base = default_inv_freq(dim, rope_theta)
    wavelen = 2 * math.pi / base
    smooth = (original / wavelen - low_freq_factor) / (high_freq_factor - low_freq_factor)
    blended = (1 - smooth) * base / factor + smooth * base
    out = torch.where(wavelen > original / low_freq_factor, base / factor, blended)
    return torch.where(wavelen < original / high_freq_factor, base, out)


def to_float32(inv_freq: torch.Tensor, device: Any = None) -> torch.Tensor:
    """Cast to the dtype the backends use and move to ``device`` (CPU when None)."""
    import torch

    return inv_freq.to(dtype=torch.float32, device=device)
