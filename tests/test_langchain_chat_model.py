"""LangChain ``ChatLongContext`` and ``LongContextLLM`` on a tiny real Llama (transformers, CPU).

The model has random weights, so its text is gibberish; the tests check what the wrappers promise
(the engine's output passed through unchanged, stop sequences, usage, token counts, LangChain's
contracts), not what the model says. One engine is loaded per module and shared by every wrapper.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import pytest
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import (
    AIMessage,
    AIMessageChunk,
    ChatMessage,
    HumanMessage,
    SystemMessage,
    ToolMessage,
)
from langchain_core.output_parsers import StrOutputParser
from langchain_core.prompts import ChatPromptTemplate
from langchain_longcontext import ChatLongContext, LongContextLLM
from langchain_tests.integration_tests import ChatModelIntegrationTests
from langchain_tests.unit_tests import ChatModelUnitTests
from pydantic import ValidationError
from tiny_models import tiny_llama_dir  # noqa: F401  (session fixture)
from transformers import AutoTokenizer

from longcontext import ContextWindowExceededError
from longcontext import LongContextLLM as Engine

MAX_TOKENS = 8


@pytest.fixture(scope="module")
def engine(tiny_llama_dir: Path) -> Engine:  # noqa: F811
    return Engine(tiny_llama_dir, backend="transformers", dtype="float32")


@pytest.fixture(scope="module")
def chat(engine: Engine) -> ChatLongContext:
    return ChatLongContext(engine=engine, max_tokens=MAX_TOKENS)


# -- LangChain's standard suites ----------------------------------------------------------------


class _SharedEngine:
    """Gives the standard suites the module's loaded model instead of loading one per test."""

    _engine: Engine

    @pytest.fixture(autouse=True)
    def _use_engine(self, engine: Engine) -> None:
        self._engine = engine

    @property
    def chat_model_class(self) -> type[BaseChatModel]:
        return ChatLongContext

    @property
    def chat_model_params(self) -> dict[str, Any]:
        return {"engine": self._engine}

    @property
    def supports_model_override(self) -> bool:
        # One wrapper serves the one model it loaded; another model is another wrapper.
        return False


class TestChatLongContextUnit(_SharedEngine, ChatModelUnitTests):
    """Tool calling, structured output, JSON mode and multimodal inputs are off by the suite's
    own detection (``bind_tools`` / ``with_structured_output`` are not overridden) and defaults."""


class TestChatLongContextIntegration(_SharedEngine, ChatModelIntegrationTests):
    """Runs generation for real on the tiny model (greedy, ``max_tokens=8``)."""

    @property
    def chat_model_params(self) -> dict[str, Any]:
        return {"engine": self._engine, "max_tokens": MAX_TOKENS}


def test_standard_suites_see_no_tool_calling_or_multimodal() -> None:
    suite = TestChatLongContextIntegration()
    assert not suite.has_tool_calling
    assert not suite.has_structured_output
    assert not suite.supports_json_mode
    assert not suite.supports_image_inputs
    assert suite.returns_usage_metadata


# -- generation ---------------------------------------------------------------------------------


def test_invoke_passes_the_engine_generation_through(chat: ChatLongContext, engine: Engine) -> None:
    messages = [SystemMessage("Be brief."), HumanMessage("Name a city in Italy.")]
    role_dicts = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Name a city in Italy."},
    ]
    expected = engine.chat(role_dicts, max_tokens=MAX_TOKENS)

    result = chat.invoke(messages)

    assert isinstance(result, AIMessage)
    assert result.content == expected.text
    assert result.usage_metadata == {
        "input_tokens": engine.count_tokens(role_dicts),
        "output_tokens": expected.completion_tokens,
        "total_tokens": engine.count_tokens(role_dicts) + expected.completion_tokens,
    }
    assert 0 < expected.completion_tokens <= MAX_TOKENS
    assert result.response_metadata["model_name"] == engine.model
    assert result.response_metadata["finish_reason"] == expected.finish_reason


def test_chat_messages_with_roles_reach_the_chat_template(
    chat: ChatLongContext, engine: Engine
) -> None:
    messages = [ChatMessage(role="user", content="hi"), AIMessage("hello"), HumanMessage("bye")]
    role_dicts = [
        {"role": "user", "content": "hi"},
        {"role": "assistant", "content": "hello"},
        {"role": "user", "content": "bye"},
    ]
    assert chat.get_num_tokens_from_messages(messages) == engine.count_tokens(role_dicts)
    assert chat.invoke(messages).content == engine.chat(role_dicts, max_tokens=MAX_TOKENS).text


def test_per_call_max_tokens_is_honoured(chat: ChatLongContext) -> None:
    result = chat.invoke("Hello", max_tokens=2)
    assert result.usage_metadata is not None
    assert result.usage_metadata["output_tokens"] <= 2


def test_stream_yields_the_same_text_as_invoke_and_usage_on_the_last_chunk(
    chat: ChatLongContext, engine: Engine
) -> None:
    chunks = list(chat.stream("Tell me a story."))

    assert all(isinstance(c, AIMessageChunk) for c in chunks)
    assert len(chunks) >= 2
    assert "".join(str(c.content) for c in chunks) == chat.invoke("Tell me a story.").content
    *body, last = chunks
    assert last.chunk_position == "last"
    assert all(c.usage_metadata is None for c in body)
    assert last.usage_metadata is not None
    prompt = [{"role": "user", "content": "Tell me a story."}]
    assert last.usage_metadata["input_tokens"] == engine.count_tokens(prompt)
    assert last.usage_metadata["total_tokens"] == (
        last.usage_metadata["input_tokens"] + last.usage_metadata["output_tokens"]
    )


@pytest.mark.parametrize("stop", [None, "e"])
def test_streamed_usage_is_what_the_engine_generated(engine: Engine, stop: str | None) -> None:
    """Sampling with a seed, a stream and an invoke generate the same tokens, and the stream's
    usage reports them as the engine counted them (the streamed text counted again is another
    number: a stop sequence's tokens are cut from the text, sampled tokens re-merge)."""
    chat = ChatLongContext(
        engine=engine, max_tokens=16, temperature=1.0, seed=11, stop=[stop] if stop else None
    )
    prompt = [{"role": "user", "content": "Tell me a story."}]
    expected = engine.chat(prompt, chat.sampling(None, {}))

    invoked = chat.invoke("Tell me a story.")
    chunks = list(chat.stream("Tell me a story."))
    streamed = chunks[0]
    for chunk in chunks[1:]:
        streamed += chunk

    assert streamed.content == invoked.content == expected.text
    assert (
        streamed.usage_metadata
        == invoked.usage_metadata
        == {
            "input_tokens": expected.prompt_tokens,
            "output_tokens": expected.completion_tokens,
            "total_tokens": expected.total_tokens,
        }
    )
    assert streamed.response_metadata["finish_reason"] == expected.finish_reason


async def test_async_streamed_usage_equals_ainvoke(engine: Engine) -> None:
    chat = ChatLongContext(engine=engine, max_tokens=12, temperature=1.0, seed=4)
    invoked = await chat.ainvoke("Tell me a story.")
    chunks = [c async for c in chat.astream("Tell me a story.")]
    assert "".join(str(c.content) for c in chunks) == invoked.content
    assert chunks[-1].usage_metadata == invoked.usage_metadata


def test_streaming_flag_routes_invoke_through_the_stream(chat: ChatLongContext) -> None:
    streaming = ChatLongContext(engine=chat.client, max_tokens=MAX_TOKENS, streaming=True)
    tokens: list[str] = []

    from langchain_core.callbacks import BaseCallbackHandler

    class Collect(BaseCallbackHandler):
        def on_llm_new_token(self, token: Any, **kwargs: Any) -> None:
            tokens.append(str(token))

    result = streaming.invoke("Hello", config={"callbacks": [Collect()]})
    assert result.content == chat.invoke("Hello").content
    assert "".join(tokens) == result.content
    assert result.usage_metadata is not None


def test_stop_sequences_cut_the_text_before_the_first_stop(chat: ChatLongContext) -> None:
    full = str(chat.invoke("Once upon a time", max_tokens=12).content)
    stop = full[len(full) // 2 : len(full) // 2 + 2]
    assert stop, f"the tiny model produced too little text to test stops: {full!r}"
    expected = full[: full.find(stop)]

    assert chat.invoke("Once upon a time", max_tokens=12, stop=[stop]).content == expected
    streamed = "".join(
        str(c.content) for c in chat.stream("Once upon a time", max_tokens=12, stop=[stop])
    )
    assert streamed == expected
    preset = ChatLongContext(engine=chat.client, max_tokens=12, stop=[stop])
    assert preset.invoke("Once upon a time").content == expected


def test_lcel_chain_prompt_chat_parser(chat: ChatLongContext) -> None:
    prompt = ChatPromptTemplate.from_messages(
        [("system", "Answer in one word."), ("human", "What is {thing}?")]
    )
    chain = prompt | chat | StrOutputParser()

    answer = chain.invoke({"thing": "Verona"})

    direct = chat.invoke(prompt.invoke({"thing": "Verona"}).to_messages())
    assert isinstance(answer, str)
    assert answer == direct.content


async def test_async_invoke_and_stream_match_sync(chat: ChatLongContext) -> None:
    sync = chat.invoke("Hello there")

    result = await chat.ainvoke("Hello there")
    chunks = [c async for c in chat.astream("Hello there")]

    assert result.content == sync.content
    assert result.usage_metadata == sync.usage_metadata
    assert "".join(str(c.content) for c in chunks) == sync.content
    assert chunks[-1].chunk_position == "last"
    assert chunks[-1].usage_metadata is not None


def test_a_prompt_over_the_window_raises_before_generation(engine: Engine) -> None:
    small = Engine(engine.model, context_length=64, backend="transformers", dtype="float32")
    chat = ChatLongContext(engine=small, max_tokens=MAX_TOKENS)
    with pytest.raises(ContextWindowExceededError) as caught:
        chat.invoke("Verona " * 200)
    assert caught.value.limit == 64 - MAX_TOKENS


# -- token counting -----------------------------------------------------------------------------


def test_get_num_tokens_uses_the_model_tokenizer_not_gpt2(
    chat: ChatLongContext,
    tiny_llama_dir: Path,  # noqa: F811
) -> None:
    tokenizer = AutoTokenizer.from_pretrained(tiny_llama_dir)
    text = "Two households, both alike in dignity — in fair Verona, où nous posons la scène. 🌹"
    with warnings.catch_warnings():
        # LangChain's fallback warns "Using fallback GPT-2 tokenizer"; it must not be reached.
        warnings.simplefilter("error")
        count = chat.get_num_tokens(text)
        ids = chat.get_token_ids(text)
    assert ids == tokenizer(text)["input_ids"]
    assert count == len(ids) > len(text) // 8  # a 512-token vocabulary: many tokens per word


def test_get_num_tokens_from_messages_counts_the_chat_template(
    chat: ChatLongContext,
    tiny_llama_dir: Path,  # noqa: F811
) -> None:
    tokenizer = AutoTokenizer.from_pretrained(tiny_llama_dir)
    messages = [SystemMessage("Be brief."), HumanMessage("Where is Verona?")]
    rendered = tokenizer.apply_chat_template(
        [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "Where is Verona?"},
        ],
        tokenize=False,
        add_generation_prompt=True,
    )
    expected = len(tokenizer(rendered, add_special_tokens=False)["input_ids"])
    assert chat.get_num_tokens_from_messages(messages) == expected
    # The template's role markers and BOS are counted, not just the words.
    assert expected > chat.get_num_tokens("Be brief.") + chat.get_num_tokens("Where is Verona?")


# -- tracing parameters and identity --------------------------------------------------------------


def test_ls_params(engine: Engine) -> None:
    chat = ChatLongContext(engine=engine, max_tokens=17, temperature=0.3, stop=["\n\n"])
    assert chat._get_ls_params() == {
        "ls_provider": "longcontext",
        "ls_model_name": engine.model,
        "ls_model_type": "chat",
        "ls_temperature": 0.3,
        "ls_max_tokens": 17,
        "ls_stop": ["\n\n"],
    }
    per_call = chat._get_ls_params(stop=["END"], max_tokens=5, temperature=0.0)
    assert (per_call["ls_stop"], per_call["ls_max_tokens"], per_call["ls_temperature"]) == (
        ["END"],
        5,
        0.0,
    )
    assert chat._llm_type == "longcontext-chat"
    assert chat._identifying_params["model"] == engine.model
    assert chat._identifying_params["max_tokens"] == 17


def test_the_engine_is_built_lazily_once(tiny_llama_dir: Path) -> None:  # noqa: F811
    chat = ChatLongContext(model=str(tiny_llama_dir), backend="transformers", max_tokens=2)
    assert chat._client is None  # constructing the wrapper loads nothing
    first = chat.client
    assert chat.client is first
    assert first.model == str(tiny_llama_dir.resolve())
    assert first.backend_name == "transformers"


# -- bad input ----------------------------------------------------------------------------------


def test_no_model_and_no_engine_is_an_error() -> None:
    with pytest.raises(ValidationError, match="pass model="):
        ChatLongContext()


def test_a_shared_engine_keeps_its_own_loading_settings(engine: Engine) -> None:
    with pytest.raises(ValidationError, match="context_length, rope given together with engine="):
        ChatLongContext(engine=engine, context_length=8192, rope="yarn")
    with pytest.raises(ValidationError, match="but the engine serves"):
        ChatLongContext(engine=engine, model="meta-llama/Llama-3.1-8B-Instruct")
    assert ChatLongContext(engine=engine, model=engine.model).client is engine
    with pytest.raises(ValidationError, match="instance of LongContextLLM"):
        ChatLongContext(engine="not an engine")


def test_tool_messages_and_images_are_refused(chat: ChatLongContext) -> None:
    with pytest.raises(ValueError, match="ToolMessage is not supported"):
        chat.invoke([HumanMessage("hi"), ToolMessage("42", tool_call_id="1")])
    image = HumanMessage(
        content=[
            {"type": "text", "text": "what is this?"},
            {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}},
        ]
    )
    with pytest.raises(ValueError, match=r"'image_url' .* text only"):
        chat.invoke([image])


def test_text_blocks_are_joined(chat: ChatLongContext, engine: Engine) -> None:
    blocks = HumanMessage(content=[{"type": "text", "text": "Hello "}, "there"])
    assert chat.get_num_tokens_from_messages([blocks]) == engine.count_tokens(
        [{"role": "user", "content": "Hello there"}]
    )


def test_unknown_call_arguments_and_another_model_are_refused(chat: ChatLongContext) -> None:
    with pytest.raises(TypeError, match=r"\['top_k'\]"):
        chat.invoke("hi", top_k=5)
    with pytest.raises(ValueError, match="create another ChatLongContext"):
        chat.invoke("hi", model="some/other-model")


# -- LongContextLLM (text completion) -----------------------------------------------------------


@pytest.fixture(scope="module")
def llm(engine: Engine) -> LongContextLLM:
    return LongContextLLM(engine=engine, max_tokens=MAX_TOKENS)


def test_llm_batch_is_one_engine_call_with_usage(llm: LongContextLLM, engine: Engine) -> None:
    prompts = ["Two households", "In fair Verona"]
    expected = engine.generate(prompts, max_tokens=MAX_TOKENS)

    result = llm.generate(prompts)

    assert [g[0].text for g in result.generations] == [g.text for g in expected]
    assert result.llm_output is not None
    usage = result.llm_output["token_usage"]
    assert usage["prompt_tokens"] == sum(engine.count_tokens(p) for p in prompts)
    assert usage["completion_tokens"] == sum(g.completion_tokens for g in expected)
    assert result.llm_output["model_name"] == engine.model


def test_llm_invoke_stream_and_async_agree(llm: LongContextLLM) -> None:
    text = llm.invoke("Two households")
    assert "".join(llm.stream("Two households")) == text
    assert llm.get_num_tokens("Two households") == llm.client.count_tokens("Two households")


async def test_llm_async(llm: LongContextLLM) -> None:
    text = llm.invoke("From ancient grudge")
    assert await llm.ainvoke("From ancient grudge") == text
    assert "".join([c async for c in llm.astream("From ancient grudge")]) == text


def test_llm_stream_reports_the_engine_counts(engine: Engine) -> None:
    """The text-completion model's stream ends with the same generation_info (finish reason and
    token counts from the engine) as a non-streamed call with the same seed."""
    from langchain_core.callbacks import BaseCallbackHandler
    from langchain_core.outputs import LLMResult

    ends: list[LLMResult] = []

    class Ends(BaseCallbackHandler):
        def on_llm_end(self, response: LLMResult, **kwargs: Any) -> None:
            ends.append(response)

    llm = LongContextLLM(engine=engine, max_tokens=12, temperature=1.0, seed=9)
    text = llm.invoke("Two households", config={"callbacks": [Ends()]})
    streamed = "".join(llm.stream("Two households", config={"callbacks": [Ends()]}))

    assert streamed == text
    invoked_info, streamed_info = (end.generations[0][0].generation_info for end in ends)
    assert streamed_info == invoked_info
    assert invoked_info is not None and invoked_info["completion_tokens"] > 0


def test_llm_stop_and_ls_params(llm: LongContextLLM) -> None:
    full = llm.invoke("Where civil blood", max_tokens=12)
    stop = full[len(full) // 2 : len(full) // 2 + 2]
    assert stop, f"the tiny model produced too little text to test stops: {full!r}"
    assert llm.invoke("Where civil blood", max_tokens=12, stop=[stop]) == full[: full.find(stop)]
    params = llm._get_ls_params(stop=[stop])
    assert params["ls_model_type"] == "llm"
    assert params["ls_provider"] == "longcontext"
    assert params["ls_stop"] == [stop]
    assert llm._llm_type == "longcontext"
