"""What each backend needs to serve a ``RopeScaling``: transformers 5 config keys and vLLM 0.33
engine arguments. The reasons for each value are the backends' own rules, named inline."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from longcontext.rope.model import METHOD_FIELDS

if TYPE_CHECKING:
    from longcontext.rope.scaling import RopeScaling


def rope_parameters(rs: RopeScaling) -> dict[str, Any]:
    """``rope_parameters`` as a config holds it: the scaled parameters, nested per layer type
    (the other types unchanged) when the model keeps them per type."""
    return _nest(rs, scaled_parameters(rs))


def _nest(rs: RopeScaling, params: dict[str, Any]) -> dict[str, Any]:
    if rs.layer_type is None:
        return params
    others = {name: dict(p) for name, p in (rs.other_layer_types or {}).items()}
    return {rs.layer_type: params, **others}


def scaled_parameters(rs: RopeScaling) -> dict[str, Any]:
    """The keys both backends share: type, theta (kept), factor and the method's fields."""
    params: dict[str, Any] = {
        "rope_type": rs.method,
        "rope_theta": rs.rope_theta,
        "factor": rs.factor,  # always a float: vLLM's linear table treats an int as a list
    }
    if rs.method in ("yarn", "longrope", "llama3"):
        params["original_max_position_embeddings"] = rs.original_max_position_embeddings
    for name in sorted(METHOD_FIELDS[rs.method]):
        value = getattr(rs, name)
        if value is not None:
            params[name] = list(value) if isinstance(value, tuple) else value
    if rs.partial_rotary_factor is not None:
        params["partial_rotary_factor"] = rs.partial_rotary_factor
    return params


def hf_config_overrides(rs: RopeScaling) -> dict[str, Any]:
    """transformers config attributes: ``rope_parameters`` and ``max_position_embeddings``."""
    overrides: dict[str, Any] = {
        "rope_parameters": rope_parameters(rs),
        # transformers' dynamic NTK reads max_position_embeddings as the original window.
        "max_position_embeddings": (
            rs.original_max_position_embeddings if rs.method == "dynamic" else rs.target_context
        ),
    }
    if rs.method == "longrope":
        # Phi-3 stores this at the top level too, and transformers prefers that copy.
        overrides["original_max_position_embeddings"] = rs.original_max_position_embeddings
    return overrides


def vllm_kwargs(rs: RopeScaling) -> dict[str, Any]:
    """``hf_overrides`` and ``max_model_len`` for vLLM 0.33."""
    params = scaled_parameters(rs)  # replaces vLLM's whole dict, so it carries rope_theta
    # (nested per layer type, each type with its own theta: the dict replaces all of them)
    overrides: dict[str, Any] = {"rope_parameters": _nest(rs, params)}
    if rs.layer_type is not None:
        # vLLM reads a Gemma 3 max_position_embeddings as the window itself, for every method.
        overrides["max_position_embeddings"] = rs.target_context
    elif rs.method == "linear":
        # vLLM derives the window as max_position_embeddings * factor for linear.
        overrides["max_position_embeddings"] = rs.original_max_position_embeddings
    else:
        # YaRN, llama3 and LongRoPE windows are max_position_embeddings as is; dynamic's
        # table has exactly max_position_embeddings rows.
        overrides["max_position_embeddings"] = rs.target_context
    if rs.method == "dynamic":
        # vLLM's static NTK base: theta * (factor * max_pos / max_trained - (factor - 1)) ** ...
        params["max_trained_positions"] = rs.original_max_position_embeddings
    if rs.method == "longrope":
        overrides["original_max_position_embeddings"] = rs.original_max_position_embeddings
        if rs.attention_factor is not None:  # vLLM names LongRoPE's magnitude this way
            params["short_mscale"] = params["long_mscale"] = rs.attention_factor
    return {"hf_overrides": overrides, "max_model_len": rs.target_context}
