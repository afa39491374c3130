"""Read what RoPE scaling needs from a model's configuration, wherever the config comes from.

A local directory is read from its ``config.json`` directly (no transformers import), a ``.gguf``
file from its metadata; a model id
goes through transformers' ``AutoConfig`` (which honours ``HF_HUB_OFFLINE``); a transformers
``PretrainedConfig`` or a plain dict is read as is.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

#: Architectures whose transformers and vLLM 0.33 implementations build their rotary embedding
#: from ``config.rope_parameters`` alone (vLLM ``get_rope``, transformers ``ROPE_INIT_FUNCTIONS``),
#: mapped to the scaling methods that make sense for them. ``llama3`` is Llama 3.1's own recipe,
#: tuned for Llama's frequencies, so only the Llama family gets it.
_GENERIC = ("linear", "dynamic", "yarn", "longrope")
SUPPORTED_METHODS: Mapping[str, tuple[str, ...]] = {
    "llama": (*_GENERIC, "llama3"),
    "mistral": _GENERIC,
    "mixtral": _GENERIC,
    "qwen2": _GENERIC,
    "qwen2_moe": _GENERIC,
    "qwen3": _GENERIC,
    "qwen3_moe": _GENERIC,
    "phi3": _GENERIC,
    # Gemma 3 keeps rope_parameters per layer type; only its global (full-attention) layers are
    # scaled, as Google extends it (linear, factor 8). Its local sliding-window layers attend to
    # 512-1024 tokens at their own theta and never see a long distance, so they stay as they are.
    "gemma3_text": ("linear", "dynamic", "yarn"),
}

#: In a config with ``rope_parameters`` per layer type, the layer type that scaling extends.
SCALED_LAYER_TYPE = "full_attention"

# Model types whose max_position_embeddings already is the served window, scaling included:
# vLLM does not multiply it by a linear or dynamic factor for Gemma 3 (its "gemma3" exception).
_WINDOW_INCLUDES_FACTOR = frozenset({"gemma3", "gemma3_text"})

# Fields that belong to one method only; giving one to another method is a mistake worth naming.
METHOD_FIELDS: Mapping[str, frozenset[str]] = {
    "linear": frozenset(),
    "dynamic": frozenset(),
    "yarn": frozenset({"beta_fast", "beta_slow", "attention_factor", "mscale", "mscale_all_dim"}),
    "longrope": frozenset({"short_factor", "long_factor", "attention_factor"}),
    "llama3": frozenset({"low_freq_factor", "high_freq_factor"}),
}

# Legacy rope type names that vLLM and transformers still map to today's names.
_LEGACY_TYPES = {"su": "longrope", "mrope": "default"}

ModelSource = str | os.PathLike[str] | Mapping[str, Any] | Any
"""A local directory, a model id, a transformers ``PretrainedConfig`` or a config dict."""


@dataclass(frozen=True)
class ModelRope:
    """The RoPE facts of one model, as its configuration states them.

    Attributes:
        model_type: ``config.model_type``, e.g. ``"llama"``.
        head_dim: Size of one attention head.
        rope_theta: The RoPE base (``rope_parameters["rope_theta"]``).
        max_position_embeddings: ``config.max_position_embeddings`` as written.
        original_window: The window the model was pre-trained with, before any scaling.
        window: The window the model serves now, as vLLM derives it (``max_position_embeddings``,
            times ``factor`` for linear and dynamic scaling).
        method: The scaling already in the config (``"default"`` when none).
        parameters: The config's ``rope_parameters`` as written (empty when none).
        partial_rotary_factor: Fraction of each head that is rotated, when the config sets one.
        layer_type: For a config with ``rope_parameters`` per layer type (Gemma 3), the type
            these facts describe and scaling extends (``"full_attention"``); else ``None``.
        other_layer_types: The ``rope_parameters`` of the other layer types, kept unscaled
            (Gemma 3: ``{"sliding_attention": {"rope_type": "default", "rope_theta": 10000.0}}``).
    """

    model_type: str
    head_dim: int
    rope_theta: float
    max_position_embeddings: int
    original_window: int
    window: int
    method: str = "default"
    parameters: Mapping[str, Any] = field(default_factory=dict)
    partial_rotary_factor: float | None = None
    layer_type: str | None = None
    other_layer_types: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)

    @property
    def is_scaled(self) -> bool:
        """Whether the config already carries a RoPE scaling."""
        return self.method != "default"

    @property
    def factor(self) -> float:
        """The scaling factor already in the config (1.0 when unscaled)."""
        factor = self.parameters.get("factor")
        if factor is None:
            return self.max_position_embeddings / self.original_window if self.is_scaled else 1.0
        return float(factor)


def read_model_rope(model: ModelSource) -> ModelRope:
    """Read a model's RoPE facts from a local path, a model id, a ``PretrainedConfig`` or a dict.

    Raises:
        FileNotFoundError: A local path that does not exist or has no ``config.json``.
        OSError: A model id that cannot be resolved (offline and not cached, or unknown).
        ValueError: A config that lacks the fields RoPE scaling needs.
    """
    config = _load_config_dict(model)
    return _parse(config, source=_describe(model))


def _describe(model: ModelSource) -> str:
    if isinstance(model, (str, os.PathLike)):
        return repr(os.fspath(model))
    if isinstance(model, Mapping):
        return "the given config dict"
    return f"the given {type(model).__name__}"


_HUB_ID = re.compile(r"[A-Za-z0-9][\w.-]*(/[\w.-]+)?")


def _looks_like_path(name: str) -> bool:
    """Hub ids are ``name`` or ``org/name``; anything else can only be a filesystem path."""
    return _HUB_ID.fullmatch(name) is None


def _load_config_dict(model: ModelSource) -> dict[str, Any]:
    if isinstance(model, Mapping):
        return dict(model)
    if isinstance(model, (str, os.PathLike)):
        name = os.fspath(model)
        path = Path(name).expanduser()
        if name.lower().endswith(".gguf"):
            from longcontext.llm import gguf  # the config is in the file's metadata

            # Through the config class: it turns Gemma 3's flat rope_theta into per-type params.
            loaded_gguf: dict[str, Any] = gguf.load_config(gguf.check_file(path)).to_dict()
            return loaded_gguf
        if path.is_dir():
            config_file = path / "config.json"
            if not config_file.is_file():
                raise FileNotFoundError(
                    f"model directory {name!r} has no config.json; point to the folder that "
                    "holds the model's config.json"
                )
            loaded: dict[str, Any] = json.loads(config_file.read_text(encoding="utf-8"))
            return loaded
        if path.exists() or _looks_like_path(name):
            raise FileNotFoundError(
                f"model path {name!r} does not exist (or is not a directory); pass an existing "
                "local model directory or a Hugging Face model id such as 'org/name'"
            )
        return _load_hub_config(name)
    to_dict = getattr(model, "to_dict", None)
    if callable(to_dict):
        as_dict: dict[str, Any] = to_dict()
        return as_dict
    raise TypeError(
        "model must be a local path, a model id, a transformers PretrainedConfig or a config "
        f"dict, got {type(model).__name__}"
    )


def _load_hub_config(model_id: str) -> dict[str, Any]:
    try:
        from transformers import AutoConfig
    except ImportError as exc:  # pragma: no cover - transformers is in the [hf] extra
        raise ImportError(
            f"reading the config of model id {model_id!r} needs transformers: "
            "pip install 'longcontext[hf]', or pass a local model directory"
        ) from exc
    try:
        config = AutoConfig.from_pretrained(model_id)
    except OSError as exc:
        offline = os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on")
        hint = (
            " HF_HUB_OFFLINE=1 is set, so only models already in the Hugging Face cache load;"
            " download it first or pass a local directory."
            if offline
            else " Check the id, your network and your token for gated models."
        )
        raise OSError(
            f"could not load the config of model {model_id!r}: no local directory has that name "
            f"and the Hugging Face hub did not provide it.{hint}"
        ) from exc
    loaded: dict[str, Any] = config.to_dict()
    return loaded


def _parse(config: Mapping[str, Any], *, source: str) -> ModelRope:
    text_config = config.get("text_config")
    if "max_position_embeddings" not in config and isinstance(text_config, Mapping):
        config = {**text_config, "model_type": config.get("model_type", "")}
    model_type = str(config.get("model_type") or "")
    max_pos = config.get("max_position_embeddings")
    if not isinstance(max_pos, int) or max_pos <= 0:
        raise ValueError(
            f"the config of {source} has no positive integer max_position_embeddings "
            f"(got {max_pos!r}); RoPE scaling needs the model's trained window"
        )
    raw = dict(config.get("rope_parameters") or config.get("rope_scaling") or {})
    layer_type, others = None, {}
    if raw and all(isinstance(v, Mapping) or v is None for v in raw.values()):
        # One rope_parameters dict per layer type (Gemma 3): the global layers are the ones a
        # longer window changes; every other type is carried over as it is.
        if SCALED_LAYER_TYPE not in raw:
            raise ValueError(
                f"the config of {source} has rope_parameters per layer type {sorted(raw)} but "
                f"none for {SCALED_LAYER_TYPE!r}, the global layers RoPE scaling extends"
            )
        layer_type = SCALED_LAYER_TYPE
        others = {k: dict(v or {}) for k, v in raw.items() if k != layer_type}
        params = dict(raw[layer_type] or {})
    else:
        params = raw
    rope_theta = params.get("rope_theta", config.get("rope_theta"))
    if rope_theta is None:
        rope_theta = _default_theta(config, source)
    head_dim = config.get("head_dim") or _head_dim(config, source)
    raw_type = str(params.get("rope_type", params.get("type", "default")))
    method = _LEGACY_TYPES.get(raw_type, raw_type)
    partial = params.get("partial_rotary_factor", config.get("partial_rotary_factor"))

    if method in ("yarn", "llama3", "longrope"):
        # Phi-3 keeps its pre-training length outside rope_parameters; transformers prefers it.
        original = int(
            config.get("original_max_position_embeddings")
            or params.get("original_max_position_embeddings")
            or max_pos
        )
        window = max_pos
    elif method in ("linear", "dynamic") and model_type in _WINDOW_INCLUDES_FACTOR:
        # Gemma 3 ships linear factor 8 with max_position_embeddings already the long window.
        original = round(max_pos / float(params.get("factor") or 1.0))
        window = max_pos
    elif method in ("linear", "dynamic"):
        original = max_pos
        window = int(max_pos * float(params.get("factor") or 1.0))
    else:
        original = window = max_pos
    return ModelRope(
        model_type=model_type,
        head_dim=int(head_dim),
        rope_theta=float(rope_theta),
        max_position_embeddings=max_pos,
        original_window=original,
        window=window,
        method=method,
        parameters=params,
        partial_rotary_factor=None if partial is None else float(partial),
        layer_type=layer_type,
        other_layer_types=others,
    )


def _head_dim(config: Mapping[str, Any], source: str) -> int:
    hidden, heads = config.get("hidden_size"), config.get("num_attention_heads")
    if not isinstance(hidden, int) or not isinstance(heads, int) or heads <= 0:
        raise ValueError(
            f"the config of {source} sets neither head_dim nor hidden_size and "
            "num_attention_heads; cannot size the rotary embedding"
        )
    return hidden // heads


def _default_theta(config: Mapping[str, Any], source: str) -> float:
    """A config without rope_theta uses its transformers class default (10000 for most)."""
    try:
        from transformers import AutoConfig

        default = AutoConfig.for_model(str(config.get("model_type"))).default_theta
        if isinstance(default, Mapping):  # per layer type (Gemma 3): the global layers' base
            default = default["global"]
    except (ImportError, ValueError, KeyError) as exc:
        raise ValueError(
            f"the config of {source} has no rope_theta and its model_type "
            f"{config.get('model_type')!r} is unknown to transformers; add rope_theta to the "
            "config's rope_parameters"
        ) from exc
    return float(default)
