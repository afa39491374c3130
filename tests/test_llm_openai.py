"""The openai backend against a REAL OpenAI-compatible server running on CPU here.

The server is ``transformers serve`` (transformers' own FastAPI app under uvicorn, on a real
socket) serving a tiny Llama; nothing about it is stubbed. It takes text prompts only and does
not report the model's window, so what vLLM does there is reached through a STAND-IN, named
``StandIn*`` below, that sits in front of the real server: ``GET /v1/models`` answers with
vLLM's own response classes (``ModelList`` / ``ModelCard`` with ``max_model_len``) and ``POST
/v1/completions`` takes token-id prompts, as ``vllm serve`` does, writes them as text for the
real server behind it, and answers unknown model names with vLLM's ``ErrorResponse``.
Everything the model generates comes from the real server.
"""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from conftest import ROOT
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tiny_models import tiny_llama_dir  # noqa: F401 - pytest fixture

from longcontext.llm import ContextWindowExceededError, Generation, LongContextLLM
from longcontext.llm.backends.openai import ServerError, text_for_ids
from longcontext.llm.engine import choose_backend

pytest.importorskip("openai", reason="the [openai] extra is not installed")
pytest.importorskip("fastapi", reason="transformers serve needs fastapi and uvicorn")

PROMPTS = ["Romeo, Romeo, wherefore art thou", "But soft, what light"]
MESSAGES = [
    {"role": "system", "content": "You are terse."},
    {"role": "user", "content": "Who is Juliet?"},
]
SERVED_NAME = "tiny-served"  # the stand-in's --served-model-name
STAND_IN_WINDOW = 96  # the stand-in's max_model_len
UPSTREAM_FIELDS = {
    "model",
    "prompt",
    "max_tokens",
    "temperature",
    "top_p",
    "seed",
    "stop",
    "stream",
}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Server:
    """``transformers serve MODEL --host 127.0.0.1 --port PORT --device cpu``: transformers' own
    CLI class, whose FastAPI app uvicorn serves on a real socket. It runs in a thread of this
    process (the CLI's ``non_blocking`` mode, which transformers' own tests use) rather than a
    subprocess, so that torch and transformers, already imported here, are not imported a second
    time: that alone took 20-35 s on this 2-core machine."""

    def __init__(self, model: Path) -> None:
        from transformers.cli.serve import Serve

        self.model = str(model)  # the pinned model: the only one it serves, named by this path
        self.port = _free_port()
        self.serve = Serve(
            self.model,
            host="127.0.0.1",
            port=self.port,
            device="cpu",
            dtype="float32",
            non_blocking=True,
        )
        self.url = f"http://127.0.0.1:{self.port}/v1"
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/health", timeout=1):
                    break
            except OSError:
                if time.monotonic() > deadline:
                    self.stop()
                    pytest.fail("transformers serve did not answer /health within 60 s")
                time.sleep(0.1)

    def stop(self) -> None:
        self.serve.kill_server()


@pytest.fixture(scope="module")
def server(tiny_llama_dir: Path) -> Iterator[Server]:  # noqa: F811
    from huggingface_hub import constants

    # transformers serve lists the hub cache's models on /v1/models; where that folder does not
    # exist (a fresh machine) it answers 500 and drops the connection, which the client then
    # finds reset. An empty cache folder gives the same answer everywhere: no models, no window.
    Path(constants.HF_HUB_CACHE).mkdir(parents=True, exist_ok=True)
    started = Server(tiny_llama_dir)
    yield started
    started.stop()


@pytest.fixture(scope="module")
def local(tiny_llama_dir: Path) -> Iterator[LongContextLLM]:  # noqa: F811
    """The same tiny model on the in-process transformers backend: the reference."""
    llm = LongContextLLM(tiny_llama_dir, backend="transformers")
    yield llm
    llm.close()


def _connect(server: Server, **kwargs: Any) -> LongContextLLM:
    """The model of ``server`` through the openai backend. transformers serve lists the hub
    cache's models, not the one it is pinned to, so the served name is given; without a hub
    cache its /v1/models answers 500, which the client would retry twice (max_retries)."""
    return LongContextLLM(
        server.model,
        backend="openai",
        base_url=server.url,
        api_model=server.model,
        max_retries=0,
        **kwargs,
    )


@pytest.fixture(scope="module")
def remote(server: Server) -> Iterator[LongContextLLM]:
    llm = _connect(server, context_length=1024)
    yield llm
    llm.close()


# -- against the real server ------------------------------------------------------------------


def test_connects_with_the_given_window_and_sends_text(remote: LongContextLLM) -> None:
    assert remote.backend_name == "openai"
    assert remote.context_window == 1024  # transformers serve reports no max_model_len
    assert remote.rope is None
    # transformers serve refuses token ids ("prompt must be a string"): the start-up probe saw it
    assert remote._backend.prompt_format == "text"  # type: ignore[attr-defined]


def test_greedy_output_and_counts_equal_the_transformers_backend(
    remote: LongContextLLM, local: LongContextLLM
) -> None:
    (got,) = remote.generate(PROMPTS[0], max_tokens=6)
    (want,) = local.generate(PROMPTS[0], max_tokens=6)
    assert isinstance(got, Generation)
    assert got == want
    assert got.prompt_tokens == remote.count_tokens(PROMPTS[0]) == local.count_tokens(PROMPTS[0])
    assert got.completion_tokens == 6
    assert got.finish_reason == "length"


def test_a_batch_is_one_request_per_prompt_with_its_own_counts(
    remote: LongContextLLM, local: LongContextLLM
) -> None:
    batch = remote.generate(PROMPTS, max_tokens=5)
    assert [g.prompt_tokens for g in batch] == [remote.count_tokens(p) for p in PROMPTS]
    assert batch == [local.generate(p, max_tokens=5)[0] for p in PROMPTS]


def test_chat_goes_through_the_template_once(remote: LongContextLLM, local: LongContextLLM) -> None:
    # The template writes <|begin|>; sent as text, it must not come back doubled.
    got = remote.chat(MESSAGES, max_tokens=5)
    assert got.prompt_tokens == remote.count_tokens(MESSAGES)
    assert got == local.chat(MESSAGES, max_tokens=5)


def test_stream_gives_the_text_and_usage_of_generate(remote: LongContextLLM) -> None:
    whole = remote.generate(PROMPTS[1], max_tokens=8)[0]
    stream = remote.stream(PROMPTS[1], max_tokens=8)
    deltas = list(stream)
    assert len(deltas) > 1
    assert "".join(deltas) == whole.text
    assert stream.generation == whole  # counts from the server's closing usage chunk


def test_a_stream_closed_early_leaves_the_server_serving(remote: LongContextLLM) -> None:
    stream = remote.stream(PROMPTS[0], max_tokens=40)
    first = next(stream)
    stream.close()  # the connection closes; the server cancels that generation
    assert stream.generation is None
    assert remote.generate(PROMPTS[0], max_tokens=40)[0].text.startswith(first)


def test_stop_sequences_are_cut_in_generate_and_stream(remote: LongContextLLM) -> None:
    free = remote.generate(PROMPTS[0], max_tokens=12)[0].text
    stop = next(
        free[i : i + 2]
        for i in range(1, len(free) - 1)
        if free[i : i + 2].strip() and "\ufffd" not in free[i : i + 2]
    )
    cut = remote.generate(PROMPTS[0], max_tokens=12, stop=[stop])[0]
    assert cut.text == free[: free.index(stop)]
    assert cut.finish_reason == "stop"
    assert "".join(remote.stream(PROMPTS[0], max_tokens=12, stop=[stop])) == cut.text


def test_async_generate_and_stream(remote: LongContextLLM) -> None:
    want = remote.generate(PROMPTS, max_tokens=5)

    async def run() -> tuple[list[Generation], str, Generation | None]:
        got = await remote.agenerate(PROMPTS, max_tokens=5)
        stream = remote.astream(PROMPTS[0], max_tokens=5)
        text = "".join([delta async for delta in stream])
        return got, text, stream.generation

    got, text, streamed = asyncio.run(run())
    assert got == want
    # This random model ends mid-character here: transformers serve's stream never sends the
    # held-back bytes (its DecodeStream is not flushed), where the whole text shows U+FFFD.
    assert text == want[0].text.rstrip("\ufffd")
    assert streamed is not None
    assert (streamed.prompt_tokens, streamed.completion_tokens) == (
        want[0].prompt_tokens,
        want[0].completion_tokens,
    )


def test_a_prompt_past_the_window_fails_before_any_request(
    tiny_llama_dir: Path,  # noqa: F811
    server: Server,
) -> None:
    llm = _connect(server, context_length=16)
    with pytest.raises(ContextWindowExceededError, match="at most 12 fit") as error:
        llm.generate(" ".join(PROMPTS * 3), max_tokens=4)
    assert "\n" not in str(error.value)
    llm.close()


def test_a_server_that_reports_no_window_needs_context_length(
    tiny_llama_dir: Path,  # noqa: F811
    server: Server,
) -> None:
    with pytest.raises(ValueError, match="pass context_length=") as error:
        _connect(server)
    assert "\n" not in str(error.value)


def test_a_wrong_model_name_is_one_line(tiny_llama_dir: Path, server: Server) -> None:  # noqa: F811
    with pytest.raises(ServerError, match="api_model=") as error:
        LongContextLLM(
            tiny_llama_dir,
            backend="openai",
            base_url=server.url,
            api_model="no-such-model",
            context_length=64,
        )
    assert "no-such-model" in str(error.value)
    assert "\n" not in str(error.value)


# -- text for a server that takes text only ---------------------------------------------------


@pytest.fixture(scope="module")
def tokenizers(tiny_llama_dir: Path) -> dict[str, Any]:  # noqa: F811
    """The tiny model's tokenizer (adds nothing), the same with a BOS added to every text (as
    Llama 3's and Gemma's do), and the real Qwen2.5 tokenizer from the shared data."""
    from tokenizers.processors import TemplateProcessing
    from transformers import AutoTokenizer, PreTrainedTokenizerFast

    plain = AutoTokenizer.from_pretrained(tiny_llama_dir)
    with_bos = AutoTokenizer.from_pretrained(tiny_llama_dir)
    with_bos._tokenizer.post_processor = TemplateProcessing(
        single=f"{with_bos.bos_token} $A", special_tokens=[(with_bos.bos_token, 1)]
    )
    found = {"tiny": plain, "tiny+bos": with_bos}
    qwen = ROOT.parent / "shared" / "data" / "tokenizers" / "qwen2.5" / "tokenizer.json"
    if qwen.exists():
        found["qwen2.5"] = PreTrainedTokenizerFast(tokenizer_file=str(qwen))
    return found


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(text=st.text(max_size=80), user=st.text(max_size=30))
def test_text_sent_for_ids_encodes_back_to_the_same_ids(
    tokenizers: dict[str, Any], text: str, user: str
) -> None:
    assert tokenizers["tiny+bos"]("a")["input_ids"][0] == 1  # the BOS really is added
    for name, tokenizer in tokenizers.items():
        ids = list(tokenizer(text)["input_ids"])  # what the engine counts for a prompt string
        assert tokenizer(text_for_ids(tokenizer, ids))["input_ids"] == ids, name
    tiny = tokenizers["tiny+bos"]  # a chat prompt: the template writes the BOS as text
    chat = tiny.apply_chat_template([{"role": "user", "content": user}], tokenize=False)
    ids = list(tiny(chat, add_special_tokens=False)["input_ids"])
    assert tiny(text_for_ids(tiny, ids))["input_ids"] == ids


# -- errors without a server ------------------------------------------------------------------


def test_connection_refused_is_one_line(tiny_llama_dir: Path) -> None:  # noqa: F811
    url = f"http://127.0.0.1:{_free_port()}/v1"  # nothing listens there
    with pytest.raises(ConnectionError, match="cannot reach the server at") as error:
        LongContextLLM(tiny_llama_dir, backend="openai", base_url=url, max_retries=0)
    assert url in str(error.value)
    assert "\n" not in str(error.value)


def test_server_side_settings_are_refused_before_connecting(tiny_llama_dir: Path) -> None:  # noqa: F811
    url = "http://127.0.0.1:9/v1"  # never contacted: each call fails before
    with pytest.raises(ValueError, match=r"longcontext serve-args .* --rope yarn"):
        LongContextLLM(
            tiny_llama_dir, backend="openai", base_url=url, context_length=8192, rope="yarn"
        )
    with pytest.raises(ValueError, match="tensor_parallel_size=2 cannot be set"):
        LongContextLLM(tiny_llama_dir, backend="openai", base_url=url, tensor_parallel_size=2)
    with pytest.raises(ValueError, match="only for backend='openai'"):
        LongContextLLM(tiny_llama_dir, backend="transformers", base_url=url)


def test_base_url_from_the_environment_or_an_error(
    tiny_llama_dir: Path,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    with pytest.raises(ValueError, match="OPENAI_BASE_URL"):
        LongContextLLM(tiny_llama_dir, backend="openai")
    url = f"http://127.0.0.1:{_free_port()}"  # no /v1: added
    monkeypatch.setenv("OPENAI_BASE_URL", url)
    with pytest.raises(ConnectionError, match=f"{url}/v1"):
        LongContextLLM(tiny_llama_dir, backend="openai", max_retries=0)


def test_auto_never_picks_a_server() -> None:
    assert choose_backend("auto") in ("vllm", "transformers")


# -- vLLM's side, through the stand-in --------------------------------------------------------


class StandInVLLM:
    """STAND-IN for ``vllm serve tiny --served-model-name tiny-served --max-model-len 96``
    in front of the real server: vLLM's ``/v1/models`` body, every request parsed with vLLM's
    own ``CompletionRequest`` (as its API server does), vLLM's acceptance of token-id
    prompts (written as text for the real server, which must count the same ids), vLLM's 404
    for an unknown model. Requests it received are kept in ``bodies``."""

    def __init__(self, upstream: str, pinned: str, tokenizer: Any) -> None:
        from pydantic import ValidationError
        from vllm.entrypoints.openai.completion.protocol import CompletionRequest
        from vllm.entrypoints.serve.engine.protocol import (
            ErrorInfo,
            ErrorResponse,
            ModelCard,
            ModelList,
            ModelPermission,
        )

        models = ModelList(
            data=[
                ModelCard(
                    id=SERVED_NAME,
                    max_model_len=STAND_IN_WINDOW,
                    root=pinned,
                    permission=[ModelPermission()],
                )
            ]
        ).model_dump_json()
        self.bodies: list[dict[str, Any]] = []
        stand_in = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:  # quiet
                pass

            def _send(self, status: int, body: bytes, kind: str = "application/json") -> None:
                self.send_response(status)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self) -> None:
                if self.path != "/v1/models":
                    return self._send(404, b"{}")
                self._send(200, models.encode())

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                stand_in.bodies.append(body)
                try:  # vLLM's own request model, as its API server parses the body
                    CompletionRequest.model_validate(body)
                except ValidationError as invalid:
                    error = ErrorResponse(
                        error=ErrorInfo(message=str(invalid), type="BadRequestError", code=400)
                    )
                    return self._send(400, error.model_dump_json().encode())
                if body["model"] != SERVED_NAME:
                    error = ErrorResponse(
                        error=ErrorInfo(
                            message=f"The model `{body['model']}` does not exist.",
                            type="NotFoundError",
                            code=404,
                        )
                    )
                    return self._send(404, error.model_dump_json().encode())
                prompt = body["prompt"]
                if isinstance(prompt, list):  # token ids, as vLLM takes them
                    text = tokenizer.decode(prompt, skip_special_tokens=False)
                    assert tokenizer(text)["input_ids"] == prompt  # the real server sees them
                    body = {**body, "prompt": text}
                # What transformers serve takes; vLLM's own options (top_k...) stop here.
                body = {k: v for k, v in body.items() if k in UPSTREAM_FIELDS}
                body["model"] = pinned
                request = urllib.request.Request(
                    f"{upstream}/completions",
                    data=json.dumps(body).encode(),
                    headers={"Content-Type": "application/json"},
                )
                try:
                    with urllib.request.urlopen(request) as answer:
                        kind = answer.headers["Content-Type"]
                        self._send(answer.status, answer.read(), kind)
                except urllib.error.HTTPError as refused:
                    self._send(refused.code, refused.read())

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture(scope="module")
def stand_in(server: Server, remote: LongContextLLM) -> Iterator[StandInVLLM]:
    pytest.importorskip("vllm", reason="vLLM's own response classes")
    proxy = StandInVLLM(server.url, server.model, remote.tokenizer)
    yield proxy
    proxy.stop()


def test_window_and_model_name_are_read_from_vllm_models(
    tiny_llama_dir: Path,  # noqa: F811
    stand_in: StandInVLLM,
    local: LongContextLLM,
) -> None:
    llm = LongContextLLM(tiny_llama_dir, backend="openai", base_url=stand_in.url)
    assert llm.context_window == STAND_IN_WINDOW
    assert llm._backend.api_model == SERVED_NAME  # type: ignore[attr-defined]  # the only one
    assert llm._backend.prompt_format == "ids"  # type: ignore[attr-defined]
    stand_in.bodies.clear()
    got = llm.generate(PROMPTS[0], max_tokens=6)[0]
    # what was sent is exactly what was counted, as ids; what came back is the real model's
    assert stand_in.bodies[0]["prompt"] == llm.encode(PROMPTS[0])
    assert got == local.generate(PROMPTS[0], max_tokens=6)[0]
    stream = llm.stream(PROMPTS[0], max_tokens=6)
    assert "".join(stream) == got.text
    assert stream.generation == got

    with pytest.raises(ContextWindowExceededError, match=f"context window {STAND_IN_WINDOW}"):
        llm.generate(" ".join(PROMPTS * 12), max_tokens=8)
    assert len(stand_in.bodies) == 2  # refused before sending
    llm.close()

    capped = LongContextLLM(
        tiny_llama_dir, backend="openai", base_url=stand_in.url, context_length=64
    )
    assert capped.context_window == 64
    capped.close()
    with pytest.raises(ValueError, match="max_model_len=96") as error:
        LongContextLLM(tiny_llama_dir, backend="openai", base_url=stand_in.url, context_length=200)
    assert "\n" not in str(error.value)


def test_sampling_and_extra_body_reach_the_request(
    tiny_llama_dir: Path,  # noqa: F811
    stand_in: StandInVLLM,
) -> None:
    llm = LongContextLLM(
        tiny_llama_dir, backend="openai", base_url=stand_in.url, extra_body={"top_k": 5}
    )
    stand_in.bodies.clear()
    llm.generate(PROMPTS[1], max_tokens=3, temperature=0.5, top_p=0.9, seed=7, stop=["zz"])
    sent = stand_in.bodies[0]
    assert sent["model"] == SERVED_NAME
    assert (sent["max_tokens"], sent["temperature"], sent["top_p"]) == (3, 0.5, 0.9)
    assert (sent["seed"], sent["stop"], sent["top_k"]) == (7, ["zz"], 5)
    llm.close()
    with pytest.raises(TypeError, match=r"\['gpu_memory_utilization'\] are not options"):
        LongContextLLM(
            tiny_llama_dir, backend="openai", base_url=stand_in.url, gpu_memory_utilization=0.5
        )


def test_vllm_404_for_an_unknown_model_is_one_line(
    tiny_llama_dir: Path,  # noqa: F811
    stand_in: StandInVLLM,
) -> None:
    with pytest.raises(
        ServerError, match="answered 404: The model `other` does not exist"
    ) as error:
        LongContextLLM(tiny_llama_dir, backend="openai", base_url=stand_in.url, api_model="other")
    assert error.value.status_code == 404
    assert f"it lists ['{SERVED_NAME}']" in str(error.value)
    assert "\n" not in str(error.value)


# -- the framework wrappers, pointed at the server ----------------------------------------------


def test_langchain_and_llamaindex_wrappers_reach_the_server(
    server: Server, remote: LongContextLLM
) -> None:
    pytest.importorskip("langchain_longcontext", reason="the LangChain package is not installed")
    pytest.importorskip("llama_index.llms.longcontext", reason="no LlamaIndex package")
    from langchain_longcontext import ChatLongContext
    from llama_index.core.base.llms.types import ChatMessage, MessageRole
    from llama_index.llms.longcontext import LongContextLLM as LlamaIndexLLM

    settings: dict[str, Any] = {
        "model": server.model,
        "backend": "openai",
        "base_url": server.url,
        "api_key": "secret-key",
        "api_model": server.model,
        "context_length": 1024,
        "max_tokens": 5,
    }
    want = remote.chat(MESSAGES, max_tokens=5)

    chat = ChatLongContext(**settings)
    answer = chat.invoke([("system", MESSAGES[0]["content"]), ("human", MESSAGES[1]["content"])])
    assert answer.content == want.text
    assert answer.usage_metadata is not None
    assert answer.usage_metadata["input_tokens"] == want.prompt_tokens
    assert "secret-key" not in repr(chat) and "secret-key" not in str(chat.model_dump())

    llm = LlamaIndexLLM(**settings)
    assert llm.metadata.context_window == 1024
    reply = llm.chat(
        [
            ChatMessage(role=MessageRole.SYSTEM, content=MESSAGES[0]["content"]),
            ChatMessage(role=MessageRole.USER, content=MESSAGES[1]["content"]),
        ]
    )
    assert reply.message.content == want.text
    assert "secret-key" not in str(llm.to_dict())
