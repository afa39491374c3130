"""Settings shared by ``ChatLongContext`` and ``LongContextLLM``: which model, how to sample.

The wrappers hold no logic of their own: they build one ``longcontext.LongContextLLM`` (lazily, on
first use) or reuse the one passed as ``engine``, and turn LangChain's call arguments into the
engine's keyword arguments.
"""

from __future__ import annotations

from typing import Any, Literal

from langchain_core.language_models.base import LangSmithParams
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, model_validator

# Light: the engine module imports torch and transformers only when a model is loaded.
from longcontext.llm import LongContextLLM, Sampling, adapters

# Per-call keyword arguments (``invoke(..., max_tokens=8)``, ``bind(temperature=0.7)``).
_SAMPLING = ("max_tokens", "temperature", "top_p", "seed")
# The defaults are the engine's own, written once in longcontext.
_LOAD = adapters.LOADING
_DEFAULTS = Sampling()


class EngineSettings(BaseModel):
    """The model to serve and the default sampling parameters."""

    model_config = ConfigDict(arbitrary_types_allowed=True, protected_namespaces=())

    model: str | None = None
    """Local path or Hugging Face id of the model (optional when ``engine`` is given)."""
    context_length: int | None = _LOAD["context_length"]
    """Target context window; larger than the trained one means RoPE scaling."""
    rope: Any = _LOAD["rope"]
    """RoPE scaling method (``"linear"``, ``"dynamic"``, ``"yarn"``, ...) or a ``RopeScaling``."""
    backend: Literal["auto", "vllm", "transformers", "openai"] = _LOAD["backend"]
    """``"vllm"`` on a CUDA machine with vLLM, ``"transformers"`` anywhere; ``"auto"`` picks
    between them. ``"openai"``: a server (``vllm serve``) at ``base_url`` generates."""
    lora: str | None = _LOAD["lora"]
    """Path of a LoRA / LongLoRA adapter to load on top of ``model``."""
    dtype: str = _LOAD["dtype"]
    """Weights dtype, e.g. ``"auto"``, ``"bfloat16"``, ``"float32"``."""
    trust_remote_code: bool = _LOAD["trust_remote_code"]
    """Allow the model's own Python code from its repository to run."""
    truncate: Literal["error", "left", "middle"] = _LOAD["truncate"]
    """What to do with a prompt longer than the window: raise, or cut from the left or middle."""
    tensor_parallel_size: int = _LOAD["tensor_parallel_size"]
    """GPUs each layer is split across (vLLM)."""
    pipeline_parallel_size: int = _LOAD["pipeline_parallel_size"]
    """Stages the layers are split into, one GPU group each (vLLM)."""
    data_parallel_size: int = _LOAD["data_parallel_size"]
    """Engine replicas (vLLM; above 1 only with the ``"external_launcher"`` executor backend)."""
    distributed_executor_backend: str | None = _LOAD["distributed_executor_backend"]
    """How vLLM starts its workers: ``"mp"``, ``"ray"`` (across machines), ``"uni"``, ..."""
    base_url: str | None = _LOAD["base_url"]
    """The OpenAI-compatible server's API (``backend="openai"``); default ``OPENAI_BASE_URL``."""
    api_key: str | None = Field(default=_LOAD["api_key"], repr=False, exclude=True)
    """The server's API key (``backend="openai"``); default ``OPENAI_API_KEY``. Ignored next to
    ``engine``, whose client holds its own."""
    api_model: str | None = _LOAD["api_model"]
    """The name the server serves the model under, when it is not ``model``."""
    engine_kwargs: dict[str, Any] = Field(default_factory=dict)
    """Extra arguments for the backend, e.g. ``gpu_memory_utilization`` for vLLM."""
    engine: LongContextLLM | None = Field(default=None, exclude=True)
    """An already loaded ``longcontext.LongContextLLM`` to share between several wrappers."""

    max_tokens: int = _DEFAULTS.max_tokens
    """Most tokens to generate per call (the completion's length)."""
    temperature: float = _DEFAULTS.temperature
    """Sampling temperature; 0 is greedy decoding."""
    top_p: float = _DEFAULTS.top_p
    """Nucleus sampling probability mass."""
    seed: int | None = _DEFAULTS.seed
    """Random seed: the same seed gives the same sample, whatever runs alongside."""
    stop: list[str] | None = None
    """Default stop sequences; the text ends before the first one generated."""

    _client: LongContextLLM | None = PrivateAttr(default=None)

    @model_validator(mode="after")
    def _model_or_engine(self) -> EngineSettings:
        loading = self._loading()
        if self.engine is not None:
            # LangChain hands every chat model an api_key (its standard tests do); a shared
            # engine's client holds its own, so the key is no clashing loading setting there.
            loading.pop("api_key")
        self.model = adapters.check_model_or_engine(self.model, self.engine, loading)
        self.sampling(None, {})  # bad defaults (temperature=-1...) fail here, not at first call
        return self

    def _loading(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in adapters.LOADING}

    @property
    def client(self) -> LongContextLLM:
        """The engine: the shared ``engine`` if given, else one loaded on first use and kept."""
        if self.engine is not None:
            return self.engine
        if self._client is None:
            self._client = adapters.load_engine(str(self.model), self._loading())
        return self._client

    def sampling(self, stop: list[str] | None, overrides: dict[str, Any]) -> Sampling:
        """The engine's ``Sampling`` for one call: the defaults, then the call's own values."""
        unknown = sorted(set(overrides) - {*_SAMPLING, "model"})
        if unknown:
            raise TypeError(
                f"unsupported generation arguments {unknown}: {type(self).__name__} accepts "
                f"{', '.join(_SAMPLING)} and stop"
            )
        requested = overrides.get("model", self.model)
        if requested != self.model:
            raise ValueError(
                f"model={requested!r} asked for at call time, but this wrapper serves "
                f"{self.model!r}: create another {type(self).__name__} for a second model"
            )
        params = {name: overrides.get(name, getattr(self, name)) for name in _SAMPLING}
        return Sampling(**params, stop=stop if stop is not None else self.stop or ())

    def ls_params(
        self, model_type: Literal["chat", "llm"], stop: list[str] | None, **kwargs: Any
    ) -> LangSmithParams:
        """LangSmith tracing parameters, honouring per-call overrides."""
        params = LangSmithParams(
            ls_provider="longcontext",
            ls_model_name=str(kwargs.get("model", self.model)),
            ls_model_type=model_type,
            ls_temperature=kwargs.get("temperature", self.temperature),
            ls_max_tokens=kwargs.get("max_tokens", self.max_tokens),
        )
        stops = stop if stop is not None else self.stop
        if stops:
            params["ls_stop"] = stops
        return params

    def identifying_params(self) -> dict[str, Any]:
        """What makes two wrappers give the same output for the same input (for caches, traces)."""
        return {
            "model": self.model,
            "context_length": self.context_length,
            "rope": str(self.rope) if self.rope is not None else None,
            "backend": self.backend,
            "base_url": self.base_url,
            "api_model": self.api_model,
            "lora": self.lora,
            "dtype": self.dtype,
            "truncate": self.truncate,
            **{name: getattr(self, name) for name in _SAMPLING},
            "stop": self.stop,
        }
