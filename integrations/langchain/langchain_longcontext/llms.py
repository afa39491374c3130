"""``LongContextLLM``: a LangChain text-completion model over ``longcontext.LongContextLLM``."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator, Mapping
from typing import Any

from langchain_core.callbacks import AsyncCallbackManagerForLLMRun, CallbackManagerForLLMRun
from langchain_core.language_models.base import LangSmithParams
from langchain_core.language_models.llms import BaseLLM
from langchain_core.outputs import Generation, GenerationChunk, LLMResult

from langchain_longcontext._engine import EngineSettings
from longcontext.llm import Generation as EngineGeneration


class LongContextLLM(EngineSettings, BaseLLM):
    """Complete raw text with a local model stretched past its training window.

    The same engine as ``ChatLongContext`` (vLLM on a CUDA machine, transformers anywhere, RoPE
    scaling and LongLoRA adapters), without the chat template: the prompt is given to the model
    as it is. A batch of prompts is generated in one engine call.

    Example:
        ```python
        from langchain_longcontext import LongContextLLM

        llm = LongContextLLM(model="Qwen/Qwen2.5-7B", context_length=131_072, rope="yarn")
        llm.invoke("The three laws of thermodynamics are")
        ```
    """

    @property
    def _llm_type(self) -> str:
        return "longcontext"

    @property
    def _identifying_params(self) -> Mapping[str, Any]:
        return self.identifying_params()

    def _get_ls_params(self, stop: list[str] | None = None, **kwargs: Any) -> LangSmithParams:
        return self.ls_params("llm", stop, **kwargs)

    def get_num_tokens(self, text: str) -> int:
        """Tokens in ``text`` by the model's own tokenizer (not LangChain's GPT-2 fallback)."""
        return self.client.count_tokens(text)

    def get_token_ids(self, text: str) -> list[int]:
        """Token ids of ``text`` as the model sees them (its own tokenizer, with its BOS)."""
        return self.client.encode(text)

    def _generate(
        self,
        prompts: list[str],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> LLMResult:
        return self._result(self.client.generate(prompts, self.sampling(stop, kwargs)))

    async def _agenerate(
        self,
        prompts: list[str],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> LLMResult:
        return self._result(await self.client.agenerate(prompts, self.sampling(stop, kwargs)))

    def _stream(
        self,
        prompt: str,
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> Iterator[GenerationChunk]:
        stream = self.client.stream(prompt, self.sampling(stop, kwargs))
        for piece in stream:
            chunk = GenerationChunk(text=piece)
            if run_manager:
                run_manager.on_llm_new_token(piece, chunk=chunk)
            yield chunk
        yield _last_chunk(stream.generation)

    async def _astream(
        self,
        prompt: str,
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> AsyncIterator[GenerationChunk]:
        stream = self.client.astream(prompt, self.sampling(stop, kwargs))
        async for piece in stream:
            chunk = GenerationChunk(text=piece)
            if run_manager:
                await run_manager.on_llm_new_token(piece, chunk=chunk)
            yield chunk
        yield _last_chunk(stream.generation)

    def _result(self, generations: list[EngineGeneration]) -> LLMResult:
        prompt_tokens = sum(g.prompt_tokens for g in generations)
        completion_tokens = sum(g.completion_tokens for g in generations)
        return LLMResult(
            generations=[[Generation(text=g.text, generation_info=_info(g))] for g in generations],
            llm_output={
                "model_name": self.model,
                "token_usage": {
                    "prompt_tokens": prompt_tokens,
                    "completion_tokens": completion_tokens,
                    "total_tokens": prompt_tokens + completion_tokens,
                },
            },
        )


def _info(generation: EngineGeneration) -> dict[str, Any]:
    return {
        "finish_reason": generation.finish_reason,
        "prompt_tokens": generation.prompt_tokens,
        "completion_tokens": generation.completion_tokens,
    }


def _last_chunk(generation: EngineGeneration | None) -> GenerationChunk:
    """The closing chunk: no text; the finish reason and the token counts the engine produced
    (the same ``generation_info`` as a non-streamed call)."""
    if generation is None:  # the engine's streams always end with their Generation
        raise RuntimeError("the engine's stream ended without its token counts")
    return GenerationChunk(text="", generation_info=_info(generation))
