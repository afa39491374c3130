"""``LongContextLLM``: a LlamaIndex LLM over ``longcontext.LongContextLLM``."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator, Sequence
from typing import Any, Literal

from llama_index.core.base.llms.types import (
    ChatMessage,
    ChatResponse,
    ChatResponseAsyncGen,
    ChatResponseGen,
    CompletionResponse,
    CompletionResponseAsyncGen,
    CompletionResponseGen,
    LLMMetadata,
    MessageRole,
    TextBlock,
)
from llama_index.core.bridge.pydantic import Field, PrivateAttr, model_validator
from llama_index.core.llms.callbacks import llm_chat_callback, llm_completion_callback
from llama_index.core.llms.llm import LLM

# Light: the engine module imports torch and transformers only when a model is loaded.
from longcontext.llm import AsyncTextStream, Generation, Sampling, TextStream, adapters
from longcontext.llm import LongContextLLM as Engine

# The defaults are the engine's own, written once in longcontext.
_LOAD = adapters.LOADING
_DEFAULTS = Sampling()
_SAMPLING = ("max_tokens", "temperature", "top_p", "seed", "stop")


_ROLES = {
    MessageRole.SYSTEM: "system",
    MessageRole.DEVELOPER: "system",
    MessageRole.USER: "user",
    MessageRole.ASSISTANT: "assistant",
    MessageRole.CHATBOT: "assistant",
    MessageRole.MODEL: "assistant",
}


def to_role_dicts(messages: Sequence[ChatMessage]) -> list[dict[str, str]]:
    """LlamaIndex chat messages as ``{"role", "content"}`` dicts for the model's chat template.

    Raises:
        ValueError: for tool and function messages or non-text blocks (images, audio, documents),
            which these text-only models cannot take.
    """
    converted = []
    for message in messages:
        role = _ROLES.get(message.role)
        if role is None:
            raise ValueError(
                f"a {message.role.value!r} message is not supported: LongContextLLM takes system, "
                "user and assistant messages (it has no tool calling)"
            )
        texts = []
        for block in message.blocks:
            if not isinstance(block, TextBlock):
                raise ValueError(
                    f"a {type(block).__name__} in a {message.role.value} message is not "
                    "supported: LongContextLLM takes text only"
                )
            texts.append(block.text)
        converted.append({"role": role, "content": "".join(texts)})
    return converted


def _raw(generation: Generation) -> dict[str, Any]:
    """A response's ``raw``: a dict, as LlamaIndex expects (its token counter calls ``dict()`` on
    it and reads ``usage``), with the token counts the engine produced."""
    return {
        "text": generation.text,
        "finish_reason": generation.finish_reason,
        "usage": generation.usage(),
    }


class LongContextLLM(LLM):
    """A local model stretched past its training window, as a LlamaIndex LLM.

    Served by ``longcontext.LongContextLLM`` (vLLM on a CUDA machine, transformers anywhere, RoPE
    scaling and LongLoRA adapters). ``metadata.context_window`` is the real, scaled window, so
    LlamaIndex's prompt helper packs as much retrieved context as the model can take; chat goes
    through the model's own chat template.

    Example:
        ```python
        from llama_index.core import Settings
        from llama_index.llms.longcontext import LongContextLLM

        Settings.llm = LongContextLLM(model="meta-llama/Llama-3.1-8B-Instruct",
                                      context_length=262_144, rope="yarn", max_tokens=512)
        ```

    Several wrappers can share one loaded model: ``LongContextLLM(engine=engine)`` with an
    ``engine = longcontext.LongContextLLM(...)``.
    """

    model: str | None = Field(
        default=None, description="Local path or Hugging Face id (optional with engine)."
    )
    context_length: int | None = Field(
        default=_LOAD["context_length"],
        description="Target window; larger than the trained one means RoPE scaling.",
    )
    rope: Any = Field(
        default=_LOAD["rope"],
        description="RoPE scaling method ('linear', 'yarn', ...) or a RopeScaling.",
    )
    backend: Literal["auto", "vllm", "transformers", "openai"] = Field(
        default=_LOAD["backend"],
        description="Inference backend; 'auto' picks vLLM when CUDA is there; 'openai' is a "
        "server (vllm serve) at base_url.",
    )
    lora: str | None = Field(
        default=_LOAD["lora"], description="Path of a LoRA / LongLoRA adapter."
    )
    dtype: str = Field(
        default=_LOAD["dtype"], description="Weights dtype, e.g. 'auto', 'bfloat16'."
    )
    trust_remote_code: bool = Field(
        default=_LOAD["trust_remote_code"],
        description="Allow the model repository's own Python code to run.",
    )
    truncate: Literal["error", "left", "middle"] = Field(
        default=_LOAD["truncate"],
        description="A prompt over the window: raise, or cut left or middle.",
    )
    tensor_parallel_size: int = Field(
        default=_LOAD["tensor_parallel_size"], description="GPUs each layer is split across (vLLM)."
    )
    pipeline_parallel_size: int = Field(
        default=_LOAD["pipeline_parallel_size"],
        description="Stages the layers are split into, one GPU group each (vLLM).",
    )
    data_parallel_size: int = Field(
        default=_LOAD["data_parallel_size"],
        description="Engine replicas (vLLM; above 1 only with the external_launcher backend).",
    )
    distributed_executor_backend: str | None = Field(
        default=_LOAD["distributed_executor_backend"],
        description="How vLLM starts its workers: 'mp', 'ray' (across machines), 'uni', ...",
    )
    base_url: str | None = Field(
        default=_LOAD["base_url"],
        description="OpenAI-compatible server's API (backend='openai'); default OPENAI_BASE_URL.",
    )
    api_key: str | None = Field(
        default=_LOAD["api_key"],
        exclude=True,
        repr=False,
        description="The server's API key (backend='openai'); default OPENAI_API_KEY.",
    )
    api_model: str | None = Field(
        default=_LOAD["api_model"],
        description="The name the server serves the model under, when it is not model.",
    )
    engine_kwargs: dict[str, Any] = Field(
        default_factory=dict, description="Extra backend arguments (e.g. gpu_memory_utilization)."
    )
    engine: Engine | None = Field(
        default=None, exclude=True, description="A loaded longcontext.LongContextLLM to share."
    )
    max_tokens: int = Field(
        default=_DEFAULTS.max_tokens, gt=0, description="Most tokens to generate per call."
    )
    temperature: float = Field(
        default=_DEFAULTS.temperature, ge=0.0, description="0 is greedy decoding."
    )
    top_p: float = Field(
        default=_DEFAULTS.top_p, gt=0.0, le=1.0, description="Nucleus sampling mass."
    )
    seed: int | None = Field(default=_DEFAULTS.seed, description="Random seed for sampling.")
    stop: list[str] | None = Field(default=None, description="Stop sequences.")

    _client: Engine | None = PrivateAttr(default=None)

    @model_validator(mode="after")
    def _model_or_engine(self) -> LongContextLLM:
        self.model = adapters.check_model_or_engine(self.model, self.engine, self._loading())
        return self

    def _loading(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in adapters.LOADING}

    @classmethod
    def class_name(cls) -> str:
        return "LongContextLLM"

    @property
    def client(self) -> Engine:
        """The engine: the shared ``engine`` if given, else one loaded on first use and kept."""
        if self.engine is not None:
            return self.engine
        if self._client is None:
            self._client = adapters.load_engine(str(self.model), self._loading())
        return self._client

    @property
    def metadata(self) -> LLMMetadata:
        """The model's real (scaled) window, the completion budget, and chat support."""
        return LLMMetadata(
            context_window=self.client.context_window,
            num_output=self.max_tokens,
            is_chat_model=True,
            model_name=str(self.model),
        )

    def _sampling(self, overrides: dict[str, Any]) -> Sampling:
        """The engine's ``Sampling`` for one call: the defaults, then the call's own values."""
        unknown = sorted(set(overrides) - set(_SAMPLING))
        if unknown:
            raise TypeError(
                f"unsupported generation arguments {unknown}: LongContextLLM accepts "
                f"{', '.join(_SAMPLING)}"
            )
        return Sampling(**{name: overrides.get(name, getattr(self, name)) for name in _SAMPLING})

    def _prompt(self, prompt: str, formatted: bool) -> str:
        if formatted or self.completion_to_prompt is None:
            return prompt
        return self.completion_to_prompt(prompt)

    @llm_completion_callback()
    def complete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> CompletionResponse:
        """Complete ``prompt`` as raw text (no chat template)."""
        prompts = [self._prompt(prompt, formatted)]
        [generation] = self.client.generate(prompts, self._sampling(kwargs))
        return _completion(generation.text, None, generation)

    @llm_completion_callback()
    def stream_complete(
        self, prompt: str, formatted: bool = False, **kwargs: Any
    ) -> CompletionResponseGen:
        """Stream the completion: each response holds the text so far and its delta; the last
        one also the token counts (in ``raw`` and ``additional_kwargs``)."""
        stream = self.client.stream(self._prompt(prompt, formatted), self._sampling(kwargs))

        def gen() -> CompletionResponseGen:
            for text, delta, generation in _accumulate(stream):
                yield _completion(text, delta, generation)

        return gen()

    @llm_chat_callback()
    def chat(self, messages: Sequence[ChatMessage], **kwargs: Any) -> ChatResponse:
        """Answer the conversation through the model's chat template."""
        generation = self.client.chat(to_role_dicts(messages), self._sampling(kwargs))
        return _chat(generation.text, None, generation)

    @llm_chat_callback()
    def stream_chat(self, messages: Sequence[ChatMessage], **kwargs: Any) -> ChatResponseGen:
        """Stream the answer: each response holds the message so far and its delta; the last
        one also the token counts."""
        stream = self.client.stream_chat(to_role_dicts(messages), self._sampling(kwargs))

        def gen() -> ChatResponseGen:
            for text, delta, generation in _accumulate(stream):
                yield _chat(text, delta, generation)

        return gen()

    @llm_completion_callback()
    async def acomplete(
        self, prompt: str, formatted: bool = False, **kwargs: Any
    ) -> CompletionResponse:
        """Async ``complete``, on the engine's own async path."""
        prompts = [self._prompt(prompt, formatted)]
        [generation] = await self.client.agenerate(prompts, self._sampling(kwargs))
        return _completion(generation.text, None, generation)

    @llm_completion_callback()
    async def astream_complete(
        self, prompt: str, formatted: bool = False, **kwargs: Any
    ) -> CompletionResponseAsyncGen:
        """Async ``stream_complete``, on the engine's own async stream."""
        stream = self.client.astream(self._prompt(prompt, formatted), self._sampling(kwargs))

        async def gen() -> CompletionResponseAsyncGen:
            async for text, delta, generation in _aaccumulate(stream):
                yield _completion(text, delta, generation)

        return gen()

    @llm_chat_callback()
    async def achat(self, messages: Sequence[ChatMessage], **kwargs: Any) -> ChatResponse:
        """Async ``chat``, on the engine's own async path."""
        generation = await self.client.achat(to_role_dicts(messages), self._sampling(kwargs))
        return _chat(generation.text, None, generation)

    @llm_chat_callback()
    async def astream_chat(
        self, messages: Sequence[ChatMessage], **kwargs: Any
    ) -> ChatResponseAsyncGen:
        """Async ``stream_chat``, on the engine's own async stream."""
        stream = self.client.astream_chat(to_role_dicts(messages), self._sampling(kwargs))

        async def gen() -> ChatResponseAsyncGen:
            async for text, delta, generation in _aaccumulate(stream):
                yield _chat(text, delta, generation)

        return gen()


def _completion(text: str, delta: str | None, generation: Generation | None) -> CompletionResponse:
    if generation is None:
        return CompletionResponse(text=text, delta=delta)
    return CompletionResponse(
        text=text, delta=delta, raw=_raw(generation), additional_kwargs=generation.usage()
    )


def _chat(text: str, delta: str | None, generation: Generation | None) -> ChatResponse:
    message = ChatMessage(role=MessageRole.ASSISTANT, content=text)
    if generation is None:
        return ChatResponse(message=message, delta=delta)
    return ChatResponse(
        message=message, delta=delta, raw=_raw(generation), additional_kwargs=generation.usage()
    )


# A stream's responses are yielded one delta late, so the last one can carry the stream's
# Generation: LlamaIndex's callbacks and instrumentation read the usage from the last response.


def _accumulate(stream: TextStream) -> Iterator[tuple[str, str, Generation | None]]:
    """(text so far, delta, the Generation on the last one) for each delta of ``stream``."""
    text, held = "", None
    for delta in stream:
        if held is not None:
            yield text, held, None
        text, held = text + delta, delta
    # An empty completion still ends with one response, to carry its usage.
    yield text, held or "", stream.generation


async def _aaccumulate(
    stream: AsyncTextStream,
) -> AsyncIterator[tuple[str, str, Generation | None]]:
    """Async form of ``_accumulate``."""
    text, held = "", None
    async for delta in stream:
        if held is not None:
            yield text, held, None
        text, held = text + delta, delta
    # An empty completion still ends with one response, to carry its usage.
    yield text, held or "", stream.generation
