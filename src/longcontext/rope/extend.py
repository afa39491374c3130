"""How ``RopeScaling.for_target`` turns a model's RoPE facts and a target length into fields:
the support table check, the factor (extending an already-scaled model, never scaling it twice)
and each method's fields (overrides, else the model's own, else defaults)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from longcontext.rope import freqs
from longcontext.rope.model import METHOD_FIELDS, SUPPORTED_METHODS, ModelRope


def plan(info: ModelRope, target: int, method: str, overrides: Mapping[str, Any]) -> dict[str, Any]:
    """``RopeScaling`` keyword arguments (all but ``method``) for ``info`` at ``target``."""
    _check_supported(info, method)
    if not isinstance(target, int) or isinstance(target, bool):
        raise ValueError(f"target_context must be an int, got {target!r}")
    if target <= info.window:
        raise ValueError(
            f"no RoPE scaling is needed: the model's window is {info.window} tokens and "
            f"target_context={target} fits in it; use the model unscaled "
            "(RopeScaling.needs_scaling tells you beforehand)"
        )
    if info.is_scaled and info.method != method:
        raise ValueError(
            f"the model is already RoPE-scaled with {info.method!r} (window {info.window}); "
            f"extend it with method={info.method!r}: switching to {method!r} would discard "
            "the scaling it was tuned with"
        )
    fields = _method_fields(info, method, target, overrides)
    if info.is_scaled and method == "llama3":
        factor = info.factor * target / info.window
    else:
        factor = target / info.original_window
    return {
        "factor": factor,
        "original_max_position_embeddings": info.original_window,
        "rope_theta": info.rope_theta,
        "target_context": target,
        "partial_rotary_factor": info.partial_rotary_factor,
        "layer_type": info.layer_type,
        "other_layer_types": dict(info.other_layer_types) if info.layer_type else None,
        **fields,
    }


def _check_supported(info: ModelRope, method: str) -> None:
    supported = SUPPORTED_METHODS.get(info.model_type)
    if supported is None:
        raise ValueError(
            f"RoPE scaling is not supported for model_type {info.model_type!r}; supported "
            f"architectures: {sorted(SUPPORTED_METHODS)} (their transformers and vLLM rotary "
            "embeddings are built from rope_parameters alone)"
        )
    if method not in supported:
        raise ValueError(
            f"method {method!r} is not supported for model_type {info.model_type!r}; "
            f"use one of {list(supported)}"
        )


def _method_fields(
    info: ModelRope, method: str, target: int, overrides: Mapping[str, Any]
) -> dict[str, Any]:
    """Per-method fields: the overrides, else what the model already has, else defaults."""
    kept = {k: v for k, v in info.parameters.items() if k in METHOD_FIELDS[method]}
    if method == "yarn":
        kept.pop("attention_factor", None)  # tuned for the old factor; re-derive it
    values = {**kept, **overrides}
    if method == "llama3":
        values.setdefault("low_freq_factor", 1.0)
        values.setdefault("high_freq_factor", 4.0)
    if method == "longrope":
        half = freqs.rotary_dim(info.head_dim, info.partial_rotary_factor) // 2
        if info.is_scaled and "long_factor" not in overrides:
            raise ValueError(
                "the model's LongRoPE long_factor was searched for its current window "
                f"({info.window}); extending it to {target} needs factors searched for the new "
                f"length: pass long_factor=[...] ({half} values)"
            )
        values.setdefault("short_factor", [1.0] * half)
        if "long_factor" not in values:
            values["long_factor"] = _yarn_ramp_factors(info, target)
        for name in ("short_factor", "long_factor"):
            if len(values[name]) != half:
                raise ValueError(
                    f"{name} needs {half} values (one per rotary frequency of head_dim "
                    f"{info.head_dim}), got {len(values[name])}"
                )
    return {k: v for k, v in values.items() if k in METHOD_FIELDS[method]}


def _yarn_ramp_factors(info: ModelRope, target: int) -> list[float]:
    """A LongRoPE starting point without a search: YaRN's per-frequency interpolation ratios
    (1 for fast dimensions, the full factor for slow ones), as LongRoPE's search is seeded."""
    dim = freqs.rotary_dim(info.head_dim, info.partial_rotary_factor)
    factor = target / info.original_window
    base = freqs.default_inv_freq(dim, info.rope_theta)
    yarn = freqs.yarn_inv_freq(dim, info.rope_theta, factor, info.original_window, 32.0, 1.0)
    return [float(r) for r in (base / yarn).tolist()]
