"""The vLLM backend without a GPU.

vLLM cannot generate on this CPU-only machine, so two things are tested:

* configuration against the real vLLM: the keyword arguments our backend builds go through
  vLLM's own ``EngineArgs(...).create_model_config()``;
* the backend's own code (request building, sampling parameters, LoRA requests, output mapping,
  streaming loops) against STAND-INS for ``vllm.LLM`` and ``AsyncLLM``. The stand-ins are ours,
  named ``StandIn*`` below: they validate their arguments with the real ``EngineArgs`` and answer
  with real ``vllm.outputs.RequestOutput`` / ``CompletionOutput`` objects, "generating" the
  prompt's token ids in reverse instead of running a model.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any, ClassVar

import pytest
from tiny_models import tiny_llama_dir  # noqa: F401 - pytest fixture

pytest.importorskip("vllm", reason="the vLLM backend is tested where vllm is installed")

from vllm.engine.arg_utils import EngineArgs
from vllm.outputs import CompletionOutput, RequestOutput
from vllm.sampling_params import RequestOutputKind, SamplingParams

from longcontext.llm import ContextWindowExceededError, LongContextLLM
from longcontext.llm.backends.vllm import engine_kwargs
from longcontext.rope import RopeScaling


def _reply(ids: list[int], params: SamplingParams, tokenizer: Any) -> tuple[list[int], str, str]:
    """The stand-in's "generation": the prompt reversed, honouring max_tokens and stop strings."""
    assert params.max_tokens is not None
    out = list(reversed(ids))[: params.max_tokens]
    text = tokenizer.decode(out, skip_special_tokens=True)
    for stop in params.stop or []:
        if stop in text:
            return out, text[: text.index(stop)], "stop"
    return out, text, "length" if len(out) == params.max_tokens else "stop"


def _output(request_id: str, ids: list[int], out: list[int], text: str, reason: str | None) -> Any:
    completion = CompletionOutput(
        index=0, text=text, token_ids=out, cumulative_logprob=None, logprobs=None
    )
    completion.finish_reason = reason
    return RequestOutput(
        request_id=request_id,
        prompt=None,
        prompt_token_ids=ids,
        prompt_logprobs=None,
        outputs=[completion],
        finished=reason is not None,
    )


def _deltas(
    request_id: str, ids: list[int], params: SamplingParams, tokenizer: Any
) -> Iterator[Any]:
    """One DELTA RequestOutput per generated token, as vLLM streams them."""
    out, text, reason = _reply(ids, params, tokenizer)
    shown = ""
    for i in range(1, len(out) + 1):
        piece = tokenizer.decode(out[:i], skip_special_tokens=True)[: len(text)]
        last = i == len(out)
        yield _output(
            request_id, ids, out[i - 1 : i], piece[len(shown) :], reason if last else None
        )
        shown = piece


class StandInEngine:
    """Stand-in for ``vllm.LLM().llm_engine`` (add_request / step / abort_request)."""

    def __init__(self, tokenizer: Any) -> None:
        self.tokenizer = tokenizer
        self.pending: dict[str, Iterator[Any]] = {}
        self.aborted: list[str] = []

    def add_request(self, request_id: str, prompt: Any, params: Any, **kwargs: Any) -> str:
        assert params.output_kind is RequestOutputKind.DELTA
        self.pending[request_id] = _deltas(
            request_id, prompt["prompt_token_ids"], params, self.tokenizer
        )
        return request_id

    def has_unfinished_requests(self) -> bool:
        return bool(self.pending)

    def step(self) -> list[Any]:
        outputs = []
        for request_id, stream in list(self.pending.items()):
            output = next(stream)
            outputs.append(output)
            if output.finished:
                del self.pending[request_id]
        return outputs

    def abort_request(self, request_ids: list[str], internal: bool = False) -> None:
        self.aborted += request_ids
        for request_id in request_ids:
            self.pending.pop(request_id, None)


class StandInLLM:
    """Stand-in for ``vllm.LLM``: checks its kwargs with the real EngineArgs, answers with real
    RequestOutput objects."""

    instances: ClassVar[list[StandInLLM]] = []
    tokenizer: ClassVar[Any] = None

    def __init__(self, **kwargs: Any) -> None:
        self.kwargs = kwargs
        self.model_config = EngineArgs(**kwargs).create_model_config()  # real vLLM validation
        self.calls: list[dict[str, Any]] = []
        self.llm_engine = StandInEngine(self.tokenizer)
        StandInLLM.instances.append(self)

    def generate(self, prompts: list[Any], sampling_params: Any, **kwargs: Any) -> list[Any]:
        assert sampling_params.output_kind is RequestOutputKind.FINAL_ONLY
        self.calls.append({"prompts": prompts, "params": sampling_params, **kwargs})
        outputs = []
        for n, prompt in enumerate(prompts):
            ids = prompt["prompt_token_ids"]
            out, text, reason = _reply(ids, sampling_params, self.tokenizer)
            outputs.append(_output(str(n), ids, out, text, reason))
        return outputs


class StandInAsyncLLM:
    """Stand-in for ``vllm.v1.engine.async_llm.AsyncLLM``."""

    def __init__(self, engine_args: Any) -> None:
        self.engine_args = engine_args
        self.request_ids: list[str] = []
        self.closed = False

    @classmethod
    def from_engine_args(cls, engine_args: Any) -> StandInAsyncLLM:
        return cls(engine_args)

    async def generate(
        self, prompt: Any, sampling_params: Any, request_id: str, **kwargs: Any
    ) -> AsyncIterator[Any]:
        self.request_ids.append(request_id)
        deltas = list(
            _deltas(request_id, prompt["prompt_token_ids"], sampling_params, StandInLLM.tokenizer)
        )
        if sampling_params.output_kind is RequestOutputKind.DELTA:
            for delta in deltas:
                yield delta
        else:
            final = deltas[0]
            for delta in deltas[1:]:
                final.add(delta, aggregate=True)
            yield final

    def shutdown(self) -> None:
        self.closed = True


@pytest.fixture
def llm(tiny_llama_dir: Path, monkeypatch: pytest.MonkeyPatch) -> LongContextLLM:  # noqa: F811
    import vllm
    import vllm.v1.engine.async_llm as async_llm

    monkeypatch.setattr(vllm, "LLM", StandInLLM)
    monkeypatch.setattr(async_llm, "AsyncLLM", StandInAsyncLLM)
    StandInLLM.instances = []
    model = LongContextLLM(
        tiny_llama_dir,
        context_length=8192,
        rope="yarn",
        backend="vllm",
        gpu_memory_utilization=0.5,
        tensor_parallel_size=1,
    )
    StandInLLM.tokenizer = model.tokenizer
    return model


# -- configuration against the real vLLM ------------------------------------------------------


@pytest.mark.parametrize("method", ["linear", "dynamic", "yarn"])
def test_engine_kwargs_give_the_scaled_window_in_real_vllm(
    tiny_llama_dir: Path,  # noqa: F811
    method: str,
) -> None:
    rope = RopeScaling.for_target(str(tiny_llama_dir), 8192, method)
    kwargs = engine_kwargs(
        str(tiny_llama_dir),
        context_window=8192,
        rope=rope,
        lora=None,
        dtype="auto",
        trust_remote_code=False,
    )
    args = EngineArgs(**kwargs)
    config = args.create_model_config()
    assert config.max_model_len == 8192
    assert config.hf_config.rope_parameters["rope_type"] == method
    assert config.hf_config.rope_parameters["rope_theta"] == 500_000.0
    assert args.enable_prefix_caching is True


def test_engine_kwargs_unscaled_and_caller_overrides(tiny_llama_dir: Path) -> None:  # noqa: F811
    kwargs = engine_kwargs(
        str(tiny_llama_dir),
        context_window=1024,
        rope=None,
        lora=None,
        dtype="auto",
        trust_remote_code=False,
        tensor_parallel_size=2,
        gpu_memory_utilization=0.6,
        enable_prefix_caching=False,
    )
    args = EngineArgs(**kwargs)
    assert (args.tensor_parallel_size, args.gpu_memory_utilization) == (2, 0.6)
    assert args.enable_prefix_caching is False  # the caller's choice wins
    assert args.trust_remote_code is False
    config = args.create_model_config()
    assert config.max_model_len == 1024
    assert config.hf_config.rope_parameters["rope_type"] == "default"


# -- the backend's code, with the stand-ins ---------------------------------------------------


def test_generate_sends_token_ids_and_sampling_params(llm: LongContextLLM) -> None:
    assert llm.backend_name == "vllm" and llm.context_window == 8192
    prompts = ["Romeo, Romeo", "But soft, what light through yonder window breaks"]
    gens = llm.generate(prompts, max_tokens=3, temperature=0.7, top_p=0.9, seed=3, stop=["zzz"])
    (engine,) = StandInLLM.instances
    assert engine.kwargs["gpu_memory_utilization"] == 0.5
    assert engine.kwargs["enable_prefix_caching"] is True
    assert engine.model_config.max_model_len == 8192  # real vLLM agreed with the window
    (call,) = engine.calls
    assert call["prompts"] == [{"prompt_token_ids": llm.encode(p)} for p in prompts]
    params = call["params"]
    assert (params.max_tokens, params.temperature, params.top_p, params.seed, params.stop) == (
        3,
        0.7,
        0.9,
        3,
        ["zzz"],
    )
    assert call["lora_request"] is None and call["use_tqdm"] is False
    for prompt, gen in zip(prompts, gens, strict=True):
        expected = list(reversed(llm.encode(prompt)))[:3]
        assert gen.text == llm.tokenizer.decode(expected, skip_special_tokens=True)
        assert (gen.prompt_tokens, gen.completion_tokens) == (llm.count_tokens(prompt), 3)
        assert gen.finish_reason == "length"


def test_chat_and_stop_reason(llm: LongContextLLM) -> None:
    messages = [{"role": "user", "content": "abc def"}]
    answer = llm.chat(messages, max_tokens=50)
    assert answer.prompt_tokens == llm.count_tokens(messages)
    stop = answer.text[3:5]
    stopped = llm.chat(messages, max_tokens=50, stop=[stop])
    assert stopped.finish_reason == "stop"
    assert stopped.text == answer.text[: answer.text.index(stop)]


def test_sync_stream_steps_the_engine(llm: LongContextLLM) -> None:
    prompt = "Romeo, Romeo, wherefore art thou Romeo"
    deltas = list(llm.stream(prompt, max_tokens=6))
    assert len(deltas) > 1
    assert "".join(deltas) == llm.generate(prompt, max_tokens=6)[0].text
    engine = StandInLLM.instances[0].llm_engine
    abandoned = llm.stream(prompt, max_tokens=6)
    next(abandoned)
    abandoned.close()  # type: ignore[attr-defined]
    assert len(engine.aborted) == 1 and not engine.pending


def test_streams_end_with_the_counts_of_the_delta_outputs(llm: LongContextLLM) -> None:
    """A stream's Generation adds up the token ids of vLLM's delta outputs: the same counts and
    finish reason as a non-streamed call."""
    prompt = "Romeo, Romeo, wherefore art thou Romeo"
    (expected,) = llm.generate(prompt, max_tokens=6)
    stream = llm.stream(prompt, max_tokens=6)
    assert "".join(stream) == expected.text
    assert stream.generation == expected
    messages = [{"role": "user", "content": "abc def"}]
    answer = llm.chat(messages, max_tokens=50, stop=["d"])
    chat_stream = llm.stream_chat(messages, max_tokens=50, stop=["d"])
    assert "".join(chat_stream) == answer.text
    assert chat_stream.generation == answer


async def test_async_streams_end_with_the_counts(llm: LongContextLLM) -> None:
    prompt = "Romeo, Romeo, wherefore art thou Romeo"
    (expected,) = await llm.agenerate(prompt, max_tokens=6)
    stream = llm.astream(prompt, max_tokens=6)
    assert "".join([d async for d in stream]) == expected.text
    assert stream.generation == expected


def test_threads_take_turns_on_the_sync_engine(llm: LongContextLLM) -> None:
    """A stream holds the engine: a generate() from another thread (LangChain's batch uses
    threads) waits for it, so neither steals the other's outputs."""
    import threading

    prompt = "Romeo, Romeo, wherefore art thou Romeo"
    expected = llm.generate(prompt, max_tokens=6)[0].text
    stream = llm.stream(prompt, max_tokens=6)
    first = next(stream)  # the stream now holds the engine
    results: list[str] = []
    other = threading.Thread(
        target=lambda: results.append(llm.generate("Juliet", max_tokens=4)[0].text)
    )
    other.start()
    other.join(timeout=0.5)
    assert other.is_alive() and not results, "generate() ran while a stream held the engine"
    assert first + "".join(stream) == expected  # nothing of the stream's was taken
    other.join(timeout=30)
    assert results == [llm.generate("Juliet", max_tokens=4)[0].text]


async def test_async_generation_and_streaming_use_async_llm(llm: LongContextLLM) -> None:
    prompt = "Romeo, Romeo, wherefore art thou Romeo"
    gens = await llm.agenerate([prompt, "Juliet"], max_tokens=6)
    assert not StandInLLM.instances  # async calls never built the sync engine
    deltas = [d async for d in llm.astream(prompt, max_tokens=6)]
    assert len(deltas) > 1 and "".join(deltas) == gens[0].text
    assert gens[0].completion_tokens == 6 and gens[0].finish_reason == "length"
    engine = llm._backend.async_llm  # type: ignore[attr-defined]
    assert isinstance(engine, StandInAsyncLLM)
    assert engine.engine_args.max_model_len == 8192
    assert len(set(engine.request_ids)) == 3  # one unique request id per request
    llm.close()
    assert engine.closed


def test_budget_is_checked_before_vllm_is_called(llm: LongContextLLM) -> None:
    small = LongContextLLM.__new__(LongContextLLM)
    small.__dict__.update(llm.__dict__, context_window=64)
    with pytest.raises(ContextWindowExceededError):
        small.generate("word " * 100, max_tokens=8)
    assert not StandInLLM.instances  # the engine was never even built
