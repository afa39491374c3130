"""``RopeScaling``: one RoPE scaling, as plain data, with the math and an emitter per backend."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

from longcontext.rope import emit, extend, freqs
from longcontext.rope.model import METHOD_FIELDS, ModelSource, read_model_rope

if TYPE_CHECKING:
    import torch

# vLLM's linear and YaRN rotary tables have ``original * factor`` rows, so for these two the
# factor itself must cover the target (llama3, LongRoPE and dynamic tables follow the target).
_FACTOR_BOUNDS_WINDOW = frozenset({"linear", "yarn"})
_OPTIONAL_FIELDS = frozenset().union(*METHOD_FIELDS.values())


@dataclass(frozen=True)
class RopeScaling:
    """A RoPE scaling that stretches a model past the window it was trained with.

    Build one with :meth:`for_target` from a model and the context length you want, or directly
    when you know the numbers. Then hand it to a backend with :meth:`hf_rope_parameters` /
    :meth:`apply_to_hf_config` (transformers 5) or :meth:`vllm_kwargs` (vLLM 0.33).

    Attributes:
        method: One of :attr:`METHODS`: ``"linear"`` (position interpolation), ``"dynamic"``
            (dynamic NTK), ``"yarn"``, ``"longrope"`` or ``"llama3"``.
        factor: How much the positions are stretched (at least 1).
        original_max_position_embeddings: The window the model was pre-trained with.
        rope_theta: The model's RoPE base; it is kept as is, never rescaled by us.
        target_context: The window the scaled model serves. Defaults to
            ``original_max_position_embeddings * factor`` (rounded down).
        beta_fast, beta_slow: YaRN's ramp bounds in rotations (defaults 32 and 1).
        attention_factor: YaRN/LongRoPE magnitude correction; None derives it from ``factor``.
        mscale, mscale_all_dim: DeepSeek-style YaRN attention factor inputs (rarely needed).
        short_factor, long_factor: LongRoPE's per-frequency rescale factors, one per rotary
            frequency (``head_dim / 2``); ``short_factor`` applies within the original window.
        low_freq_factor, high_freq_factor: Llama 3.1's band limits (Meta uses 1 and 4).
        partial_rotary_factor: Fraction of each head that is rotated, carried from the model.
        layer_type: For models with ``rope_parameters`` per layer type (Gemma 3), the layer type
            this scaling applies to (``"full_attention"``, the global layers); ``None`` otherwise.
        other_layer_types: The ``rope_parameters`` of the other layer types, emitted unchanged
            (Gemma 3's local sliding-window layers keep ``rope_theta`` 10000, unscaled).

    Raises:
        ValueError: An unknown method, a factor below 1, a field that belongs to another
            method, a missing required field, or a target the factor cannot cover.
    """

    METHODS: ClassVar[tuple[str, ...]] = ("linear", "dynamic", "yarn", "longrope", "llama3")

    method: str
    factor: float
    original_max_position_embeddings: int
    rope_theta: float
    target_context: int | None = None
    beta_fast: float | None = None
    beta_slow: float | None = None
    attention_factor: float | None = None
    mscale: float | None = None
    mscale_all_dim: float | None = None
    short_factor: tuple[float, ...] | None = None
    long_factor: tuple[float, ...] | None = None
    low_freq_factor: float | None = None
    high_freq_factor: float | None = None
    partial_rotary_factor: float | None = None
    layer_type: str | None = None
    other_layer_types: Mapping[str, Mapping[str, Any]] | None = field(default=None, hash=False)

    def __post_init__(self) -> None:
        if self.method not in self.METHODS:
            raise ValueError(
                f"unknown RoPE scaling method {self.method!r}; choose one of {list(self.METHODS)}"
            )
        if not _is_number(self.factor) or not math.isfinite(self.factor) or self.factor < 1:
            raise ValueError(
                f"RoPE scaling factor must be a finite number >= 1, got {self.factor!r}; "
                "a factor below 1 would shrink the window, not extend it"
            )
        original = self.original_max_position_embeddings
        if not isinstance(original, int) or isinstance(original, bool) or original <= 0:
            raise ValueError(
                f"original_max_position_embeddings must be a positive int, got {original!r}"
            )
        if not _is_number(self.rope_theta) or self.rope_theta <= 0:
            raise ValueError(f"rope_theta must be a positive number, got {self.rope_theta!r}")
        misplaced = sorted(
            name
            for name in _OPTIONAL_FIELDS - METHOD_FIELDS[self.method]
            if getattr(self, name) is not None
        )
        if misplaced:
            raise ValueError(
                f"{misplaced} do not apply to method {self.method!r}; it takes "
                f"{sorted(METHOD_FIELDS[self.method]) or 'no extra fields'}"
            )
        self._check_layer_types()
        set_ = self._set
        set_("factor", float(self.factor))
        set_("rope_theta", float(self.rope_theta))
        getattr(self, f"_check_{self.method}", lambda: None)()
        self._settle_target()

    def _set(self, name: str, value: Any) -> None:
        object.__setattr__(self, name, value)  # frozen dataclass: normalise once, at creation

    def _check_layer_types(self) -> None:
        others = self.other_layer_types
        if others is None:
            return
        if self.layer_type is None:
            raise ValueError(
                "other_layer_types needs layer_type, the layer type this scaling applies to "
                "(for Gemma 3: 'full_attention')"
            )
        if self.layer_type in others:
            raise ValueError(
                f"other_layer_types must not hold {self.layer_type!r}, the layer type scaled"
            )
        for name, params in others.items():
            if not isinstance(params, Mapping) or not _is_number(params.get("rope_theta")):
                raise ValueError(
                    f"other_layer_types[{name!r}] must be rope_parameters with a rope_theta, "
                    f"got {params!r}"
                )
        # A private copy: the dataclass is frozen, and the caller's dicts must not change it.
        self._set("other_layer_types", {k: dict(v) for k, v in others.items()})

    def _check_yarn(self) -> None:
        self._set("beta_fast", float(32.0 if self.beta_fast is None else self.beta_fast))
        self._set("beta_slow", float(1.0 if self.beta_slow is None else self.beta_slow))
        if self.beta_fast <= self.beta_slow:  # type: ignore[operator]
            raise ValueError(
                f"YaRN needs beta_fast > beta_slow, got beta_fast={self.beta_fast} and "
                f"beta_slow={self.beta_slow}"
            )

    def _check_longrope(self) -> None:
        if self.short_factor is None or self.long_factor is None:
            raise ValueError(
                "method 'longrope' needs short_factor and long_factor (one rescale factor per "
                "rotary frequency, head_dim/2 each); RopeScaling.for_target derives defaults"
            )
        short, long = (
            _floats("short_factor", self.short_factor),
            _floats("long_factor", self.long_factor),
        )
        if len(short) != len(long):
            raise ValueError(
                f"short_factor and long_factor must have the same length, got {len(short)} "
                f"and {len(long)}"
            )
        self._set("short_factor", short)
        self._set("long_factor", long)

    def _check_llama3(self) -> None:
        low, high = self.low_freq_factor, self.high_freq_factor
        if low is None or high is None:
            raise ValueError(
                "method 'llama3' needs low_freq_factor and high_freq_factor (Llama 3.1 uses "
                "1.0 and 4.0); RopeScaling.for_target fills them in"
            )
        if not (0 < low < high):
            raise ValueError(
                f"llama3 needs 0 < low_freq_factor < high_freq_factor, got {low} and {high}"
            )
        self._set("low_freq_factor", float(low))
        self._set("high_freq_factor", float(high))

    def _settle_target(self) -> None:
        original = self.original_max_position_embeddings
        covered = original * self.factor
        target = self.target_context
        if target is None:
            target = round(covered) if math.isclose(covered, round(covered)) else int(covered)
        if not isinstance(target, int) or isinstance(target, bool) or target < original:
            raise ValueError(
                f"target_context must be an int >= original_max_position_embeddings "
                f"({original}), got {target!r}"
            )
        if self.method in _FACTOR_BOUNDS_WINDOW and covered < target:
            if not math.isclose(covered, target, rel_tol=1e-9):
                raise ValueError(
                    f"{self.method} with factor {self.factor} covers {covered:g} positions "
                    f"({original} x {self.factor}), fewer than target_context={target}; use "
                    f"factor >= {target / original}"
                )
            # Float rounding left factor * original a hair under the target; vLLM compares
            # max_model_len with that product, so nudge the factor up until it covers it.
            factor = self.factor
            while original * factor < target:
                factor = math.nextafter(factor, math.inf)
            self._set("factor", factor)
        self._set("target_context", target)

    # ------------------------------------------------------------------ construction from a model

    @classmethod
    def for_target(
        cls, model: ModelSource, target_context: int, method: str, **overrides: Any
    ) -> RopeScaling:
        """The scaling that takes ``model`` to ``target_context`` tokens with ``method``.

        Reads the model's config (a local directory, a model id, a transformers
        ``PretrainedConfig`` or a dict): ``max_position_embeddings``, ``rope_parameters``
        (``rope_scaling`` is read as its legacy alias) with ``rope_theta``, and any scaling
        already there. ``rope_theta`` is kept.

        The factor is ``target_context / original window``. A model that is already scaled is
        extended from its current window, never scaled twice: its original window and method
        fields are kept and its factor grows by ``target_context / current window`` (for Llama
        3.1, factor 8 at 131072 tokens becomes 16 at 262144; for linear, dynamic, YaRN and
        LongRoPE this equals ``target / original``).

        A config with ``rope_parameters`` per layer type (Gemma 3:
        ``{"full_attention": {...}, "sliding_attention": {...}}``) is scaled the way its authors
        extend it: the global ``full_attention`` layers get the scaling (their ``rope_theta``
        kept), the local sliding-window layers keep their own parameters, and both backends get
        the whole per-type dict.

        Args:
            model: Local model directory, model id, ``PretrainedConfig`` or config dict.
            target_context: The window wanted, in tokens.
            method: One of :attr:`METHODS`.
            **overrides: Method fields to set instead of the defaults, e.g. ``beta_fast=16`` for
                YaRN, ``low_freq_factor``/``high_freq_factor`` for llama3, searched
                ``short_factor``/``long_factor`` for LongRoPE. Without them LongRoPE uses 1s for
                ``short_factor`` and YaRN's per-frequency ramp for ``long_factor``.

        Raises:
            ValueError: Unknown method; a target within the current window (no scaling is
                needed: check :meth:`needs_scaling` first); an architecture that does not
                support the method; a model already scaled with another method; overrides that
                do not belong to the method.
            FileNotFoundError: A local path that does not exist or has no ``config.json``.
            OSError: A model id that cannot be loaded (for example offline and not cached).
        """
        if method not in cls.METHODS:
            raise ValueError(
                f"unknown RoPE scaling method {method!r}; choose one of {list(cls.METHODS)}"
            )
        bad = sorted(set(overrides) - METHOD_FIELDS[method])
        if bad:
            raise ValueError(
                f"overrides {bad} do not apply to method {method!r}; it takes "
                f"{sorted(METHOD_FIELDS[method]) or 'no overrides'} (the factor follows "
                "from target_context; build RopeScaling(...) directly to choose it yourself)"
            )
        fields_ = extend.plan(read_model_rope(model), target_context, method, overrides)
        return cls(method=method, **fields_)

    @staticmethod
    def needs_scaling(model: ModelSource, target_context: int) -> bool:
        """Whether ``target_context`` exceeds the model's current window.

        :meth:`for_target` raises ``ValueError`` when it does not; call this first to decide
        without an exception (the :class:`~longcontext.LongContextLLM` facade does).
        """
        return target_context > read_model_rope(model).window

    # ------------------------------------------------------------------------------- the math

    def inv_freq(
        self, head_dim: int, device: Any = None, seq_len: int | None = None
    ) -> tuple[torch.Tensor, float]:
        """Inverse frequencies (float32, ``rotary_dim / 2`` of them) and the attention scaling.

        For a per-layer-type model these are the scaled layers' (:attr:`layer_type`); the other
        layer types keep their own frequencies.

        Computed by our own code, equal to transformers' ``ROPE_INIT_FUNCTIONS`` for the same
        parameters. ``seq_len`` matters for the two length-dependent methods and defaults to
        :attr:`target_context`: dynamic NTK returns the frequencies for that length (what vLLM
        uses statically), LongRoPE the long factors past the original window, else the short ones.
        """
        dim = freqs.rotary_dim(head_dim, self.partial_rotary_factor)
        theta, factor = self.rope_theta, self.factor
        original = self.original_max_position_embeddings
        seq = self.target_context if seq_len is None else seq_len
        assert seq is not None  # settled in __post_init__
        attention = 1.0
        if self.method == "linear":
            inv = freqs.linear_inv_freq(dim, theta, factor)
        elif self.method == "dynamic":
            inv = freqs.dynamic_inv_freq(dim, theta, factor, original, seq)
        elif self.method == "yarn":
            assert self.beta_fast is not None and self.beta_slow is not None
            inv = freqs.yarn_inv_freq(dim, theta, factor, original, self.beta_fast, self.beta_slow)
            attention = self.attention_factor or freqs.yarn_attention_factor(
                factor, self.mscale, self.mscale_all_dim
            )
        elif self.method == "longrope":
            ext = self.long_factor if seq > original else self.short_factor
            assert ext is not None
            inv = freqs.longrope_inv_freq(dim, theta, ext)
            attention = self.attention_factor or freqs.longrope_attention_factor(factor, original)
        else:
            assert self.low_freq_factor is not None and self.high_freq_factor is not None
            inv = freqs.llama3_inv_freq(
                dim, theta, factor, original, self.low_freq_factor, self.high_freq_factor
            )
        return freqs.to_float32(inv, device), float(attention)

    # ------------------------------------------------------------------------------ emitters

    def hf_rope_parameters(self, config: Any = None) -> dict[str, Any]:
        """``rope_parameters`` for transformers 5 (``rope_theta`` kept, ``rope_type`` set).

        For a per-layer-type model it is the per-type dict: the scaled parameters under
        :attr:`layer_type`, the other types as the model has them.

        Pass it with the matching ``max_position_embeddings`` (see :meth:`hf_config_overrides`,
        or use :meth:`apply_to_hf_config`). ``config``, when given (a ``PretrainedConfig`` or a
        dict), is checked: its ``rope_theta`` must be ours and its head size must fit LongRoPE's
        factor lists, so a scaling computed for one model is not applied to another.
        """
        if config is not None:
            self._check_matches(config)
        return emit.rope_parameters(self)

    def hf_config_overrides(self) -> dict[str, Any]:
        """Config attributes to set for transformers: ``rope_parameters`` and the window.

        transformers' dynamic NTK treats ``max_position_embeddings`` as the original window and
        grows the base past it, so it stays at the original length; every other method gets the
        target (transformers' YaRN and llama3 expect ``max_position_embeddings`` scaled, and the
        model then reports its real window).
        """
        return emit.hf_config_overrides(self)

    def apply_to_hf_config(self, config: Any) -> Any:
        """A copy of a transformers ``PretrainedConfig`` with this scaling applied and validated.

        Load the scaled model with
        ``AutoModelForCausalLM.from_pretrained(path, config=rs.apply_to_hf_config(config))``.
        """
        import copy

        self._check_matches(config)
        scaled = copy.deepcopy(config)
        for key, value in self.hf_config_overrides().items():
            setattr(scaled, key, value)
        scaled.standardize_rope_params()
        scaled.validate_rope()
        return scaled

    def vllm_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for ``vllm.LLM`` / ``EngineArgs`` (vLLM 0.33) that serve the target.

        Returns ``{"hf_overrides": {...}, "max_model_len": target_context}``. vLLM 0.33 has no
        ``rope_scaling`` argument; the scaling travels in ``hf_overrides`` and:

        * a dict override replaces the whole ``rope_parameters``, so ``rope_theta`` is included;
        * vLLM multiplies ``max_position_embeddings`` by ``factor`` for linear and dynamic but
          not for YaRN, llama3 or LongRoPE, so those get ``max_position_embeddings`` = target
          while linear keeps the original;
        * vLLM's dynamic NTK is static and its rotary table has only ``max_position_embeddings``
          rows, so it gets ``max_position_embeddings`` = target and ``max_trained_positions`` =
          original: the frequencies transformers' dynamic NTK uses at the target length.
        """
        return emit.vllm_kwargs(self)

    def _check_matches(self, config: Any) -> None:
        info = read_model_rope(config)
        if info.layer_type != self.layer_type:
            raise ValueError(
                f"this RopeScaling applies to layer type {self.layer_type!r} but the config's "
                f"rope_parameters are {'per layer type' if info.layer_type else 'shared'}; "
                "build it for this model with RopeScaling.for_target"
            )
        if not math.isclose(info.rope_theta, self.rope_theta):
            raise ValueError(
                f"this RopeScaling was made for rope_theta={self.rope_theta:g} but the config "
                f"has rope_theta={info.rope_theta:g}; build it for this model with "
                "RopeScaling.for_target"
            )
        if self.short_factor is not None:
            half = freqs.rotary_dim(info.head_dim, self.partial_rotary_factor) // 2
            if len(self.short_factor) != half:
                raise ValueError(
                    f"LongRoPE factor lists have {len(self.short_factor)} entries but this "
                    f"model has {half} rotary frequencies (head_dim {info.head_dim})"
                )


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _floats(name: str, values: Sequence[float]) -> tuple[float, ...]:
    if isinstance(values, (str, bytes)) or not all(_is_number(v) and v > 0 for v in values):
        raise ValueError(f"{name} must be a sequence of positive numbers, got {values!r}")
    return tuple(float(v) for v in values)
