"""The vLLM backend: ``vllm.LLM`` for sync calls, ``AsyncLLM`` for async ones.

Each engine is built on first use. Sync streaming steps the sync engine's ``LLMEngine`` with
delta outputs, so a sync-only application holds one engine; an async-only one holds one
``AsyncLLM``. An application that mixes both gets two engines on the same GPU: give each a share
with ``gpu_memory_utilization`` (a warning says so when the second one starts).
"""

from __future__ import annotations

import itertools
import logging
import threading
import uuid
from collections.abc import AsyncIterator, Iterator, Sequence
from typing import TYPE_CHECKING, Any

from longcontext.llm.types import Generation, Sampling

if TYPE_CHECKING:
    from longcontext.llm.lora import Adapter
    from longcontext.rope import RopeScaling

logger = logging.getLogger(__name__)

# vLLM accepts only these values for max_lora_rank.
LORA_RANKS = (1, 8, 16, 32, 64, 128, 256, 320, 512)
_lora_ids = itertools.count(1)


def engine_kwargs(
    model: str,
    *,
    context_window: int,
    rope: RopeScaling | None,
    lora: Adapter | None,
    dtype: str,
    trust_remote_code: bool,
    **overrides: Any,
) -> dict[str, Any]:
    """The keyword arguments for ``vllm.LLM`` / ``EngineArgs``: the model, the window, prefix
    caching on (RAG prompts repeat long contexts), the RoPE overrides, LoRA support, then the
    caller's ``overrides`` (``tensor_parallel_size``, ``gpu_memory_utilization``...)."""
    kwargs: dict[str, Any] = {
        "model": model,
        "dtype": dtype,
        "trust_remote_code": trust_remote_code,
        "enable_prefix_caching": True,
        "max_model_len": context_window,
    }
    if rope is not None:
        kwargs.update(rope.vllm_kwargs())
        kwargs["max_model_len"] = context_window
    if lora is not None:
        fitting = [r for r in LORA_RANKS if r >= lora.rank]
        if not fitting:
            raise ValueError(f"LoRA rank {lora.rank} is above vLLM's largest, {LORA_RANKS[-1]}")
        kwargs.update(enable_lora=True, max_lora_rank=fitting[0], max_loras=1)
    kwargs.update(overrides)
    return kwargs


def sampling_params(sampling: Sampling, *, delta: bool = False) -> Any:
    """``vllm.SamplingParams`` for ``sampling``; ``delta`` asks for streamed increments.

    vLLM seeds each request with its own generator, so a seed reproduces whatever else runs.
    """
    from vllm import SamplingParams
    from vllm.sampling_params import RequestOutputKind

    return SamplingParams(
        max_tokens=sampling.max_tokens,
        temperature=sampling.temperature,
        top_p=sampling.top_p,
        seed=sampling.seed,
        stop=list(sampling.stop) or None,
        output_kind=RequestOutputKind.DELTA if delta else RequestOutputKind.FINAL_ONLY,
    )


def score_params() -> Any:
    """``vllm.SamplingParams`` that score a prompt: the log-probability of each prompt token
    (``prompt_logprobs=0``: the token itself, no alternatives) and one throwaway token."""
    from vllm import SamplingParams

    return SamplingParams(max_tokens=1, temperature=0.0, prompt_logprobs=0, detokenize=False)


def prompt_loglikelihoods(output: Any, ids: Sequence[int], first: int) -> list[float]:
    """The log-likelihood of each token ``ids[first:]`` in a ``vllm.RequestOutput`` made with
    :func:`score_params`.

    ``prompt_logprobs[i]`` maps token ids to the ``Logprob`` of position ``i`` given the tokens
    before it; position 0 has none. vLLM always includes the prompt's own token.
    """
    rows = output.prompt_logprobs
    if rows is None or len(rows) != len(ids):
        raise RuntimeError(
            f"vLLM returned {0 if rows is None else len(rows)} prompt log-probabilities for "
            f"{len(ids)} tokens; was the request made with score_params()?"
        )
    scores = []
    for position in range(first, len(ids)):
        row = rows[position]
        entry = row.get(ids[position]) if row is not None else None
        if entry is None:
            raise RuntimeError(f"vLLM gave no log-probability for prompt token {position}")
        scores.append(float(entry.logprob))
    return scores


def to_generation(output: Any) -> Generation:
    """A finished ``vllm.RequestOutput`` as a ``Generation``."""
    completion = output.outputs[0]
    return Generation(
        text=completion.text,
        prompt_tokens=len(output.prompt_token_ids or ()),
        completion_tokens=len(completion.token_ids),
        finish_reason=completion.finish_reason,
    )


class VLLMBackend:
    """Serves a model with vLLM.

    Args:
        model: local directory or hub id (a merged checkpoint when a LoRA needed merging).
        context_window: the window to serve; becomes ``max_model_len``.
        rope: RoPE scaling, applied through ``hf_overrides``.
        lora: a plain LoRA adapter, served with a ``LoRARequest`` on every call.
        dtype: ``"auto"`` or a dtype name.
        trust_remote_code: passed to vLLM as given.
        **overrides: more ``vllm.LLM`` / ``EngineArgs`` keyword arguments.
    """

    name = "vllm"

    def __init__(
        self,
        model: str,
        *,
        context_window: int,
        rope: RopeScaling | None,
        lora: Adapter | None,
        dtype: str,
        trust_remote_code: bool,
        **overrides: Any,
    ) -> None:
        self.kwargs = engine_kwargs(
            model,
            context_window=context_window,
            rope=rope,
            lora=lora,
            dtype=dtype,
            trust_remote_code=trust_remote_code,
            **overrides,
        )
        self.lora_request = None
        if lora is not None:
            from vllm.lora.request import LoRARequest

            self.lora_request = LoRARequest(lora.path.name, next(_lora_ids), str(lora.path))
        self._llm: Any = None
        self._async_llm: Any = None
        # vllm.LLM is not thread-safe, and a stream steps the shared engine: another thread's
        # step would take its outputs. LangChain's batch() calls from threads, so sync calls
        # (and building the engine) take turns; a stream holds the engine until it ends.
        self._sync = threading.RLock()

    @property
    def llm(self) -> Any:
        """The sync engine, ``vllm.LLM``, built on first use."""
        with self._sync:
            if self._llm is None:
                import vllm

                self._warn_if_second("vllm.LLM")
                self._llm = vllm.LLM(**self.kwargs)
            return self._llm

    @property
    def async_llm(self) -> Any:
        """The async engine, ``vllm.v1.engine.async_llm.AsyncLLM``, built on first use."""
        if self._async_llm is None:
            from vllm.engine.arg_utils import AsyncEngineArgs
            from vllm.v1.engine.async_llm import AsyncLLM

            self._warn_if_second("AsyncLLM")
            self._async_llm = AsyncLLM.from_engine_args(AsyncEngineArgs(**self.kwargs))
        return self._async_llm

    def _warn_if_second(self, starting: str) -> None:
        if self._llm is not None or self._async_llm is not None:
            logger.warning(
                "starting %s next to the engine already loaded: sync and async calls each hold "
                "an engine on the GPU; set gpu_memory_utilization so both fit, or use one style",
                starting,
            )

    def generate(self, prompts: Sequence[list[int]], sampling: Sampling) -> list[Generation]:
        """One batched ``vllm.LLM.generate`` call over all prompts."""
        if not prompts:
            return []
        with self._sync:
            outputs = self.llm.generate(
                [{"prompt_token_ids": ids} for ids in prompts],
                sampling_params(sampling),
                use_tqdm=False,
                lora_request=self.lora_request,
            )
        return [to_generation(output) for output in outputs]

    def score(self, ids: Sequence[int], first: int = 1) -> list[float]:
        """Natural-log likelihood of each token ``ids[first:]`` given every token before it,
        from vLLM's prompt log-probabilities (computed in chunks of positions, so the
        ``[len x vocab]`` logits never exist at once). The prompt must fit the served window:
        vLLM refuses longer ones."""
        if not 1 <= first < len(ids):
            raise ValueError(f"first={first} must lie in [1, {len(ids)}) for {len(ids)} ids")
        with self._sync:
            [output] = self.llm.generate(
                [{"prompt_token_ids": list(ids)}],
                score_params(),
                use_tqdm=False,
                lora_request=self.lora_request,
            )
        return prompt_loglikelihoods(output, ids, first)

    def stream(self, prompt: list[int], sampling: Sampling) -> Iterator[str | Generation]:
        """Step the sync engine and yield each new piece of text, then the ``Generation``."""
        with self._sync:
            yield from self._stream(prompt, sampling)

    def _stream(self, prompt: list[int], sampling: Sampling) -> Iterator[str | Generation]:
        engine = self.llm.llm_engine
        request_id = f"longcontext-{uuid.uuid4().hex}"
        engine.add_request(
            request_id,
            {"prompt_token_ids": prompt},
            sampling_params(sampling, delta=True),
            lora_request=self.lora_request,
        )
        totals = _StreamTotals(prompt)
        try:
            while not totals.finished and engine.has_unfinished_requests():
                for output in engine.step():
                    if output.request_id == request_id and (text := totals.add(output)):
                        yield text
        finally:
            if not totals.finished:
                engine.abort_request([request_id])
        yield totals.generation()

    async def agenerate(self, prompts: Sequence[list[int]], sampling: Sampling) -> list[Generation]:
        """Submit every prompt to ``AsyncLLM`` at once and wait for all of them."""
        import asyncio

        async def one(ids: list[int]) -> Generation:
            final = None
            async for output in self.async_llm.generate(
                {"prompt_token_ids": ids},
                sampling_params(sampling),
                request_id=f"longcontext-{uuid.uuid4().hex}",
                lora_request=self.lora_request,
            ):
                final = output
            if final is None:
                raise RuntimeError("vLLM returned no output for the request")
            return to_generation(final)

        return list(await asyncio.gather(*(one(ids) for ids in prompts)))

    async def astream(
        self, prompt: list[int], sampling: Sampling
    ) -> AsyncIterator[str | Generation]:
        """Token streaming from ``AsyncLLM.generate`` with delta outputs, then the
        ``Generation``."""
        totals = _StreamTotals(prompt)
        async for output in self.async_llm.generate(
            {"prompt_token_ids": prompt},
            sampling_params(sampling, delta=True),
            request_id=f"longcontext-{uuid.uuid4().hex}",
            lora_request=self.lora_request,
        ):
            if text := totals.add(output):
                yield text
        yield totals.generation()

    def close(self) -> None:
        """Shut the engines down and let their GPU memory go."""
        if self._async_llm is not None:
            self._async_llm.shutdown()
        self._llm = self._async_llm = None


class _StreamTotals:
    """What a stream of delta outputs adds up to: the text, the tokens generated (each delta
    carries its new token ids) and the finish reason of the last one."""

    def __init__(self, prompt: list[int]) -> None:
        self.prompt_tokens = len(prompt)
        self.pieces: list[str] = []
        self.completion_tokens = 0
        self.finish_reason: str | None = None
        self.finished = False

    def add(self, output: Any) -> str:
        """Take one delta output; return its new text."""
        completion = output.outputs[0]
        self.completion_tokens += len(completion.token_ids)
        self.finish_reason = completion.finish_reason or self.finish_reason
        self.finished = bool(output.finished)
        self.pieces.append(completion.text)
        return str(completion.text)

    def generation(self) -> Generation:
        return Generation(
            "".join(self.pieces), self.prompt_tokens, self.completion_tokens, self.finish_reason
        )
