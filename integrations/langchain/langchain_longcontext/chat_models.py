"""``ChatLongContext``: a LangChain chat model over ``longcontext.LongContextLLM``."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from typing import Any

from langchain_core.callbacks import AsyncCallbackManagerForLLMRun, CallbackManagerForLLMRun
from langchain_core.language_models.base import LangSmithParams
from langchain_core.language_models.chat_models import (
    BaseChatModel,
    agenerate_from_stream,
    generate_from_stream,
)
from langchain_core.messages import (
    AIMessage,
    AIMessageChunk,
    BaseMessage,
    ChatMessage,
    HumanMessage,
    SystemMessage,
)
from langchain_core.messages.ai import UsageMetadata
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult

from langchain_longcontext._engine import EngineSettings
from longcontext.llm import Generation


def to_role_dicts(messages: Sequence[BaseMessage]) -> list[dict[str, str]]:
    """LangChain messages as ``{"role", "content"}`` dicts for the model's chat template.

    Raises:
        ValueError: for tool and function messages or non-text content (images, audio), which
            these text-only models cannot take.
    """
    roles: dict[type[BaseMessage], str] = {
        SystemMessage: "system",
        HumanMessage: "user",
        AIMessage: "assistant",
    }
    converted = []
    for message in messages:
        role = message.role if isinstance(message, ChatMessage) else roles.get(type(message))
        if role is None:
            role = next((r for t, r in roles.items() if isinstance(message, t)), None)
        if role is None:
            raise ValueError(
                f"{type(message).__name__} is not supported: ChatLongContext takes system, "
                "human, AI and chat messages (it has no tool calling)"
            )
        converted.append({"role": role, "content": _text(message)})
    return converted


def _text(message: BaseMessage) -> str:
    if isinstance(message.content, str):
        return message.content
    parts = []
    for block in message.content:
        if isinstance(block, str):
            parts.append(block)
        elif block.get("type") == "text":
            parts.append(str(block["text"]))
        else:
            raise ValueError(
                f"content block of type {block.get('type')!r} in a {type(message).__name__} "
                "is not supported: ChatLongContext takes text only"
            )
    return "".join(parts)


def _usage(generation: Generation) -> UsageMetadata:
    return UsageMetadata(
        input_tokens=generation.prompt_tokens,
        output_tokens=generation.completion_tokens,
        total_tokens=generation.total_tokens,
    )


class ChatLongContext(EngineSettings, BaseChatModel):
    """Chat with a local model stretched past its training window (RoPE scaling, LongLoRA).

    The model is served by ``longcontext.LongContextLLM`` through vLLM on a CUDA machine or
    transformers anywhere; prompts are built with the model's own chat template and counted with
    its own tokenizer. A prompt longer than the window minus ``max_tokens`` raises
    ``longcontext.ContextWindowExceededError`` unless ``truncate`` says how to cut it.

    Example:
        ```python
        from langchain_longcontext import ChatLongContext

        chat = ChatLongContext(model="meta-llama/Llama-3.1-8B-Instruct",
                               context_length=262_144, rope="yarn", max_tokens=512)
        chat.invoke("Summarise the report below ...")
        ```

    Several wrappers can share one loaded model: ``ChatLongContext(engine=engine)`` with an
    ``engine = longcontext.LongContextLLM(...)``.
    """

    streaming: bool = False
    """Generate through the streaming path even for ``invoke`` (callbacks see each token)."""

    @property
    def _llm_type(self) -> str:
        return "longcontext-chat"

    @property
    def _identifying_params(self) -> Mapping[str, Any]:
        return self.identifying_params()

    def _get_ls_params(self, stop: list[str] | None = None, **kwargs: Any) -> LangSmithParams:
        return self.ls_params("chat", stop, **kwargs)

    def get_num_tokens(self, text: str) -> int:
        """Tokens in ``text`` by the model's own tokenizer (not LangChain's GPT-2 fallback)."""
        return self.client.count_tokens(text)

    def get_token_ids(self, text: str) -> list[int]:
        """Token ids of ``text`` as the model sees them (its own tokenizer, with its BOS)."""
        return self.client.encode(text)

    def get_num_tokens_from_messages(
        self, messages: list[BaseMessage], tools: Sequence[Any] | None = None
    ) -> int:
        """Tokens of the prompt that ``messages`` become through the model's chat template."""
        if tools:
            raise ValueError("ChatLongContext has no tool calling: pass tools=None")
        return self.client.count_tokens(to_role_dicts(messages))

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        if self.streaming:
            return generate_from_stream(self._stream(messages, stop, run_manager, **kwargs))
        generation = self.client.chat(to_role_dicts(messages), self.sampling(stop, kwargs))
        return self._result(generation)

    async def _agenerate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        if self.streaming:
            stream = self._astream(messages, stop, run_manager, **kwargs)
            return await agenerate_from_stream(stream)
        generation = await self.client.achat(to_role_dicts(messages), self.sampling(stop, kwargs))
        return self._result(generation)

    def _stream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> Iterator[ChatGenerationChunk]:
        stream = self.client.stream_chat(to_role_dicts(messages), self.sampling(stop, kwargs))
        for piece in stream:
            chunk = ChatGenerationChunk(message=AIMessageChunk(content=piece))
            if run_manager:
                run_manager.on_llm_new_token(piece, chunk=chunk)
            yield chunk
        yield self._last_chunk(stream.generation)

    async def _astream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> AsyncIterator[ChatGenerationChunk]:
        stream = self.client.astream_chat(to_role_dicts(messages), self.sampling(stop, kwargs))
        async for piece in stream:
            chunk = ChatGenerationChunk(message=AIMessageChunk(content=piece))
            if run_manager:
                await run_manager.on_llm_new_token(piece, chunk=chunk)
            yield chunk
        yield self._last_chunk(stream.generation)

    def _result(self, generation: Generation) -> ChatResult:
        message = AIMessage(
            content=generation.text,
            usage_metadata=_usage(generation),
            response_metadata={
                "model_name": self.model,
                "finish_reason": generation.finish_reason,
            },
        )
        info = {"finish_reason": generation.finish_reason}
        return ChatResult(generations=[ChatGeneration(message=message, generation_info=info)])

    def _last_chunk(self, generation: Generation | None) -> ChatGenerationChunk:
        """The closing chunk: no text; the usage, finish reason and model name of the stream.

        The usage is what the engine counted while generating (the prompt it saw, the tokens it
        produced), the same numbers ``invoke`` reports, not the streamed text counted again.
        """
        if generation is None:  # the engine's streams always end with their Generation
            raise RuntimeError("the engine's stream ended without its token counts")
        message = AIMessageChunk(
            content="",
            usage_metadata=_usage(generation),
            response_metadata={
                "model_name": self.model,
                "finish_reason": generation.finish_reason,
            },
            chunk_position="last",
        )
        info = {"finish_reason": generation.finish_reason}
        return ChatGenerationChunk(message=message, generation_info=info)
