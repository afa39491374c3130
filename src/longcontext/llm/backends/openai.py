"""The OpenAI-compatible backend: a model served elsewhere (``vllm serve``), reached over HTTP.

The engine still encodes, counts and fits every prompt with the model's own tokenizer; this
backend only sends it to ``/v1/completions``: as token ids where the server takes them (vLLM
does), else as text that the same tokenizer turns back into exactly those ids. What the server
runs (weights, RoPE scaling, parallel layout) is its own business; its window is read from
``GET /v1/models`` (vLLM's ``max_model_len``) or given as ``context_length``.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import urlsplit

from longcontext.llm.stops import StopScanner, cut_at_stop
from longcontext.llm.types import Generation, Sampling

if TYPE_CHECKING:
    import openai

logger = logging.getLogger(__name__)

PromptFormat = Literal["auto", "ids", "text"]
PROMPT_FORMATS = ("auto", "ids", "text")
# What this backend takes besides the engine's own arguments (``LongContextLLM(**engine_kwargs)``).
OPTIONS = ("timeout", "max_retries", "prompt_format", "extra_body", "max_concurrency")
_PROBE_TEXT = "Hello"


class ServerError(RuntimeError):
    """The server answered a request with an HTTP error.

    Attributes:
        status_code: the HTTP status (400 bad request, 404 unknown model, 500...).
    """

    def __init__(self, message: str, status_code: int) -> None:
        super().__init__(message)
        self.status_code = status_code


def resolve_base_url(base_url: str | None) -> str:
    """``base_url``, else ``OPENAI_BASE_URL``, checked; a bare ``http://host:port`` gets the
    ``/v1`` that vLLM and ``transformers serve`` put their API under."""
    url = base_url or os.environ.get("OPENAI_BASE_URL")
    if not url:
        raise ValueError(
            "backend='openai' needs the server's address: pass base_url='http://HOST:8000/v1' "
            "or set OPENAI_BASE_URL"
        )
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError(f"base_url={url!r} is not an http(s) URL such as 'http://HOST:8000/v1'")
    if parts.path in ("", "/"):
        url = url.rstrip("/") + "/v1"
    return url.rstrip("/")


def text_for_ids(tokenizer: Any, ids: list[int]) -> str:
    """Text that ``tokenizer`` encodes to exactly ``ids``, for a server that takes text only and
    tokenizes it with the same tokenizer, adding its special tokens (``transformers serve`` and
    vLLM do).

    Safe because it is checked: the ids are decoded with their special tokens written out (a
    chat template's markers encode back to the same ids) and without the special tokens the
    tokenizer adds itself (a BOS, which would otherwise come back doubled), and the text is
    encoded again. When no text gives the same ids back (a tokenizer that normalises text, or
    ids cut where the text would tokenize otherwise) it is still sent, with a warning: the
    ``Generation`` then reports the server's own count.
    """
    prefix, suffix = _added_tokens(tokenizer)
    core = ids[len(prefix) :] if prefix and ids[: len(prefix)] == prefix else ids
    core = core[: len(core) - len(suffix)] if suffix and core[-len(suffix) :] == suffix else core
    texts = [
        tokenizer.decode(c, skip_special_tokens=False, clean_up_tokenization_spaces=False)
        for c in ([core, ids] if core != ids else [ids])
    ]
    for text in texts:
        if list(tokenizer(text)["input_ids"]) == ids:
            return str(text)
    logger.warning(
        "a prompt of %d tokens does not survive decoding and encoding again with the model's "
        "tokenizer; the server may count it differently",
        len(ids),
    )
    return str(texts[0])


def _added_tokens(tokenizer: Any) -> tuple[list[int], list[int]]:
    """The ids the tokenizer puts before and after any text it encodes (a BOS, an EOS)."""
    plain = list(tokenizer("a", add_special_tokens=False)["input_ids"])
    full = list(tokenizer("a")["input_ids"])
    for start in range(len(full) - len(plain) + 1):
        if full[start : start + len(plain)] == plain:
            return full[:start], full[start + len(plain) :]
    return [], []


class OpenAIBackend:
    """Generates with a model behind an OpenAI-compatible ``/v1/completions`` endpoint.

    Args:
        model: the tokenizer's source as the engine resolved it; also the served model name
            when ``api_model`` is not given and the server does not list exactly one model.
        tokenizer: the model's own tokenizer (loaded by the engine), which counts every prompt.
        base_url: the API's address, e.g. ``http://gpu-box:8000/v1``; default ``OPENAI_BASE_URL``.
        api_key: default ``OPENAI_API_KEY``; a server started without ``--api-key`` takes any.
        api_model: the name the server serves the model under (``vllm serve
            --served-model-name``), when it differs from ``model``.
        context_length: the window, for a server that does not report ``max_model_len``; below
            the reported one it caps the window, above it is refused.
        timeout: seconds to wait for an answer (the ``openai`` client's default otherwise).
        max_retries: retries of a failed connection or a 429/5xx answer (default 2).
        prompt_format: ``"ids"`` (send token ids), ``"text"`` or ``"auto"``: one 1-token request
            at start-up tries token ids and falls back to text when the server refuses them.
        extra_body: more request fields for the server's own sampling options, e.g.
            ``{"top_k": 20, "repetition_penalty": 1.1}`` for vLLM.
        max_concurrency: requests in flight at once for a batch (one request per prompt, so each
            completion gets its own token counts; the server batches them).
    """

    name = "openai"

    def __init__(
        self,
        model: str,
        tokenizer: Any,
        *,
        base_url: str | None = None,
        api_key: str | None = None,
        api_model: str | None = None,
        context_length: int | None = None,
        timeout: float | None = None,
        max_retries: int = 2,
        prompt_format: PromptFormat = "auto",
        extra_body: Mapping[str, Any] | None = None,
        max_concurrency: int = 16,
        **unknown: Any,
    ) -> None:
        if unknown:
            raise TypeError(
                f"{sorted(unknown)} are not options of backend='openai': the server is started "
                "with its own settings (vllm serve --gpu-memory-utilization ...); this backend "
                f"takes {', '.join(OPTIONS)}"
            )
        if prompt_format not in PROMPT_FORMATS:
            raise ValueError(f"prompt_format={prompt_format!r} is not one of {PROMPT_FORMATS}")
        if isinstance(max_concurrency, bool) or not isinstance(max_concurrency, int):
            raise TypeError(f"max_concurrency={max_concurrency!r} must be an int")
        if max_concurrency < 1:
            raise ValueError(f"max_concurrency={max_concurrency} must be at least 1")
        import openai

        self.tokenizer = tokenizer
        self.base_url = resolve_base_url(base_url)
        self.extra_body = dict(extra_body or {})
        self.max_concurrency = max_concurrency
        self._client_kwargs: dict[str, Any] = {
            "base_url": self.base_url,
            # vLLM started without --api-key takes any key, but the client refuses none at all.
            "api_key": api_key or os.environ.get("OPENAI_API_KEY") or "EMPTY",
            "max_retries": max_retries,
        }
        if timeout is not None:
            self._client_kwargs["timeout"] = timeout
        self.client = openai.OpenAI(**self._client_kwargs)
        self._listed: list[dict[str, Any]] = []
        self._warned_count = False
        try:
            cards = self._list_models()
            self.api_model = self._pick_model(api_model, model, cards)
            # The probe first: a wrong model name is said as such, not as an unknown window.
            self.prompt_format = prompt_format if prompt_format != "auto" else self._probe()
            self.context_window = self._window(cards, context_length)
        except BaseException:
            self.client.close()
            raise
        logger.info(
            "openai backend: %r at %s, window %d, prompts sent as %s",
            self.api_model,
            self.base_url,
            self.context_window,
            "token ids" if self.prompt_format == "ids" else "text",
        )

    # -- what the server serves ---------------------------------------------------------------

    def _list_models(self) -> list[dict[str, Any]] | None:
        """``GET /v1/models`` as dicts (extra fields such as vLLM's ``max_model_len`` kept), or
        ``None`` when the server cannot list its models (``transformers serve`` without a hub
        cache answers 500): then the probe decides whether the model is there."""
        import openai

        try:
            page = self.client.models.list()
        except (openai.APIConnectionError, openai.AuthenticationError) as error:
            raise self._error(error) from error
        except openai.APIStatusError as error:
            logger.warning(
                "GET %s/models answered %d (%s): the served models and their window are unknown",
                self.base_url,
                error.status_code,
                _message(error),
            )
            return None
        cards = [card.model_dump() for card in page.data]
        self._listed = cards
        return cards

    def _pick_model(
        self, api_model: str | None, model: str, cards: list[dict[str, Any]] | None
    ) -> str:
        """The name to request: ``api_model``; else ``model`` when listed; else the server's only
        model; else ``model`` (a server that lists nothing useful is asked by the probe)."""
        if api_model is not None:
            return api_model
        names = [str(card.get("id")) for card in cards or ()]
        if model in names:
            return model
        bases = [str(card.get("id")) for card in cards or () if not card.get("parent")]
        if len(bases) == 1:
            logger.info("the server at %s serves one model, %r: using it", self.base_url, bases[0])
            return bases[0]
        if len(bases) > 1:
            raise ValueError(
                f"the server at {self.base_url} serves {names}, not {model!r}: pass "
                "api_model= with the name to use"
            )
        return model

    def _window(self, cards: list[dict[str, Any]] | None, context_length: int | None) -> int:
        """vLLM's ``max_model_len`` for the model (a LoRA's card lacks it: its base model's), capped
        by ``context_length``; or ``context_length`` alone for a server that does not say."""
        by_name = {str(card.get("id")): card for card in cards or ()}
        card = by_name.get(self.api_model, {})
        served = card.get("max_model_len") or by_name.get(str(card.get("parent")), {}).get(
            "max_model_len"
        )
        if served is None:
            if context_length is None:
                raise ValueError(
                    f"the server at {self.base_url} does not report the window of "
                    f"{self.api_model!r} (vLLM's GET /v1/models gives max_model_len; this server "
                    "does not): pass context_length= with the window the server serves"
                )
            return context_length
        served = int(served)
        if context_length is not None and context_length > served:
            raise ValueError(
                f"context_length={context_length} is past the window the server at "
                f"{self.base_url} serves {self.api_model!r} with (max_model_len={served}); "
                "restart it with a larger --max-model-len (see longcontext serve-args) or drop "
                "context_length"
            )
        return context_length or served

    def _probe(self) -> Literal["ids", "text"]:
        """Ask for one token of a short prompt sent as token ids; a server that refuses ids (400
        or 422) but takes the same prompt as text gets text from now on. Also tells a wrong
        model name or an unreachable server at start-up instead of at the first question."""
        import openai

        ids = list(self.tokenizer(_PROBE_TEXT)["input_ids"])
        probe: dict[str, Any] = {"model": self.api_model, "max_tokens": 1, "temperature": 0.0}
        try:
            self.client.completions.create(prompt=ids, **probe)
            return "ids"
        except (openai.BadRequestError, openai.UnprocessableEntityError) as refused:
            try:
                self.client.completions.create(prompt=self.to_text(ids), **probe)
            except openai.APIError as error:
                raise self._error(error) from error
            logger.info(
                "the server at %s takes text prompts only (token ids: %s); prompts are sent as "
                "text that the model's tokenizer encodes back to the counted ids",
                self.base_url,
                _message(refused),
            )
            return "text"
        except openai.APIError as error:
            raise self._error(error) from error

    # -- requests -----------------------------------------------------------------------------

    def to_text(self, ids: list[int]) -> str:
        """The prompt as text, for a server that takes text only (see ``text_for_ids``)."""
        return text_for_ids(self.tokenizer, ids)

    def _stream_request(self, prompt: list[int], sampling: Sampling) -> dict[str, Any]:
        """``_request`` streamed, with the usage sent in the last chunk."""
        return {
            **self._request(prompt, sampling),
            "stream": True,
            "stream_options": {"include_usage": True},
        }

    def _request(self, prompt: list[int], sampling: Sampling) -> dict[str, Any]:
        """The ``completions.create`` arguments: every ``Sampling`` field has its API field."""
        request: dict[str, Any] = {
            "model": self.api_model,
            "prompt": prompt if self.prompt_format == "ids" else self.to_text(prompt),
            "max_tokens": sampling.max_tokens,
            "temperature": sampling.temperature,
            "top_p": sampling.top_p,
        }
        if sampling.seed is not None:
            request["seed"] = sampling.seed
        if sampling.stop:
            request["stop"] = list(sampling.stop)
        if self.extra_body:
            request["extra_body"] = self.extra_body
        return request

    def _prompt_tokens(self, prompt: list[int], usage: Any) -> int:
        """The server's count of the prompt (what the model saw) when it reports one; a count
        other than the tokenizer's is logged once: another tokenizer, or a text round trip lost."""
        counted = getattr(usage, "prompt_tokens", None)
        if counted is None:
            return len(prompt)
        if counted != len(prompt) and not self._warned_count:
            self._warned_count = True
            logger.warning(
                "the server counted %d prompt tokens where the model's tokenizer counts %d: "
                "does the server run another tokenizer than %r?",
                counted,
                len(prompt),
                getattr(self.tokenizer, "name_or_path", "the engine's"),
            )
        return int(counted)

    def _completion_tokens(self, raw_text: str, usage: Any) -> int:
        counted = getattr(usage, "completion_tokens", None)
        if counted is not None:
            return int(counted)
        # A server that reports no usage: the generated text counted with the model's tokenizer.
        return len(self.tokenizer(raw_text, add_special_tokens=False)["input_ids"])

    def _generation(self, prompt: list[int], response: Any, sampling: Sampling) -> Generation:
        choice = response.choices[0]
        # vLLM cuts stop sequences; transformers serve stops on them but leaves them in.
        text, cut = cut_at_stop(choice.text, sampling.stop)
        return Generation(
            text=text,
            prompt_tokens=self._prompt_tokens(prompt, response.usage),
            completion_tokens=self._completion_tokens(choice.text, response.usage),
            finish_reason="stop" if cut else choice.finish_reason,
        )

    def _error(self, error: openai.APIError) -> Exception:
        """One line saying what went wrong with the server and what to do about it."""
        import openai

        where = f"the server at {self.base_url}"
        if isinstance(error, openai.APITimeoutError):
            return TimeoutError(f"{where} did not answer in time: raise timeout= (seconds)")
        if isinstance(error, openai.APIConnectionError):
            cause = _one_line(error.__cause__ or error)
            return ConnectionError(
                f"cannot reach {where} ({cause}): start it (vllm serve, see longcontext "
                "serve-args) or fix base_url / OPENAI_BASE_URL"
            )
        if not isinstance(error, openai.APIStatusError):
            return ServerError(f"{where} sent an error: {_message(error)}", 0)
        status, message = error.status_code, _message(error)
        if status in (401, 403):
            hint = "pass api_key= or set OPENAI_API_KEY"
        elif status == 404 or self.api_model in message:  # vLLM 404s; transformers serve 400s
            listed = [str(card.get("id")) for card in self._listed]
            hint = f"it lists {listed}: " if listed else ""
            hint += "pass api_model= with the name the server serves the model under"
        else:
            hint = f"model {self.api_model!r}"
        return ServerError(f"{where} answered {status}: {message} ({hint})", status)

    # -- the Backend protocol -----------------------------------------------------------------

    def _complete(self, prompt: list[int], sampling: Sampling) -> Generation:
        import openai

        try:
            response = self.client.completions.create(**self._request(prompt, sampling))
        except openai.APIError as error:
            raise self._error(error) from error
        return self._generation(prompt, response, sampling)

    def generate(self, prompts: Sequence[list[int]], sampling: Sampling) -> list[Generation]:
        """One request per prompt, up to ``max_concurrency`` at once (the OpenAI API reports one
        usage for a batched request; per-prompt requests give each completion its own)."""
        if len(prompts) <= 1:
            return [self._complete(ids, sampling) for ids in prompts]
        with ThreadPoolExecutor(min(len(prompts), self.max_concurrency)) as pool:
            return list(pool.map(lambda ids: self._complete(ids, sampling), prompts))

    def stream(self, prompt: list[int], sampling: Sampling) -> Iterator[str | Generation]:
        """Server-sent text deltas (stop sequences held back and cut), then the ``Generation``
        with the usage the server sends last (``stream_options={"include_usage": True}``)."""
        import openai

        totals = _StreamTotals(sampling.stop)
        try:
            response = self.client.completions.create(**self._stream_request(prompt, sampling))
            try:
                for chunk in response:
                    if text := totals.add(chunk):
                        yield text
            finally:  # a reader that stops early closes the connection: the server aborts
                response.close()
        except openai.APIError as error:
            raise self._error(error) from error
        yield from totals.ending(self, prompt)

    def _async_client(self) -> openai.AsyncOpenAI:
        # One per call: an async client's connections belong to the event loop that made them,
        # and each asyncio.run() is a new loop.
        import openai

        return openai.AsyncOpenAI(**self._client_kwargs)

    async def agenerate(self, prompts: Sequence[list[int]], sampling: Sampling) -> list[Generation]:
        """Every prompt's request in flight at once (up to ``max_concurrency``)."""
        import openai

        if not prompts:
            return []
        limit = asyncio.Semaphore(self.max_concurrency)
        async with self._async_client() as client:

            async def one(ids: list[int]) -> Generation:
                async with limit:
                    try:
                        response = await client.completions.create(**self._request(ids, sampling))
                    except openai.APIError as error:
                        raise self._error(error) from error
                return self._generation(ids, response, sampling)

            return list(await asyncio.gather(*(one(ids) for ids in prompts)))

    async def astream(
        self, prompt: list[int], sampling: Sampling
    ) -> AsyncIterator[str | Generation]:
        """Async form of ``stream``."""
        import openai

        totals = _StreamTotals(sampling.stop)
        async with self._async_client() as client:
            try:
                response = await client.completions.create(**self._stream_request(prompt, sampling))
                try:
                    async for chunk in response:
                        if text := totals.add(chunk):
                            yield text
                finally:
                    await response.close()
            except openai.APIError as error:
                raise self._error(error) from error
        for item in totals.ending(self, prompt):
            yield item

    def close(self) -> None:
        """Close the HTTP connections (the server and its model stay up)."""
        self.client.close()


class _StreamTotals:
    """What a stream of completion chunks adds up to. After a stop sequence the rest of the
    stream is still read (a server that honours ``stop`` ends it at once) for its usage."""

    def __init__(self, stops: Sequence[str]) -> None:
        self.scanner = StopScanner(stops)
        self.raw: list[str] = []
        self.shown: list[str] = []
        self.finish_reason: str | None = None
        self.usage: Any = None

    def add(self, chunk: Any) -> str:
        """Take one chunk; return the text now safe to show."""
        if chunk.usage is not None:
            self.usage = chunk.usage
        shown = ""
        for choice in chunk.choices:
            self.raw.append(choice.text or "")
            self.finish_reason = choice.finish_reason or self.finish_reason
            shown += self.scanner.feed(choice.text or "")
        if shown:
            self.shown.append(shown)
        return shown

    def ending(self, backend: OpenAIBackend, prompt: list[int]) -> list[str | Generation]:
        """What a stream yields after its last chunk: the text held back while it could have
        begun a stop sequence (if any), then the ``Generation``."""
        items: list[str | Generation] = []
        if tail := self.scanner.flush():
            self.shown.append(tail)
            items.append(tail)
        items.append(self.generation(backend, prompt))
        return items

    def generation(self, backend: OpenAIBackend, prompt: list[int]) -> Generation:
        return Generation(
            text="".join(self.shown),
            prompt_tokens=backend._prompt_tokens(prompt, self.usage),
            completion_tokens=backend._completion_tokens("".join(self.raw), self.usage),
            finish_reason="stop" if self.scanner.stopped else self.finish_reason,
        )


def _one_line(value: object) -> str:
    return " ".join(str(value).split())


def _message(error: openai.APIError) -> str:
    """The server's own message: vLLM's ``{"error": {"message": ...}}``, FastAPI's
    ``{"detail": ...}``, else the client's text."""
    body = error.body
    if isinstance(body, Mapping):
        inner = body.get("error", body)
        if isinstance(inner, Mapping):
            inner = inner.get("message") or inner.get("detail") or body.get("detail")
        if inner:
            return _one_line(inner)
    return _one_line(error.message)
