"""``LongContextLLM``: one entry for a long-context model, whatever engine runs it.

The facade owns what is the same for every engine: finding the model, choosing the RoPE scaling
and the window, the token budget (count with the model's own tokenizer and chat template, refuse
or truncate a prompt that does not fit) and the sync/async/stream surface. Backends get token ids
that already fit and only generate.
"""

from __future__ import annotations

import importlib.util
import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Unpack

from longcontext.llm.backends.base import Backend
from longcontext.llm.errors import ContextWindowExceededError
from longcontext.llm.gguf import is_gguf
from longcontext.llm.parallel import Parallelism
from longcontext.llm.streams import AsyncTextStream, TextStream
from longcontext.llm.types import Generation, Sampling, SamplingArgs

if TYPE_CHECKING:
    from longcontext.rope import RopeScaling

logger = logging.getLogger(__name__)

BackendName = Literal["auto", "vllm", "transformers", "openai"]
Truncate = Literal["error", "left", "middle"]
Messages = Sequence[Mapping[str, str]]

_TRUNCATE = ("error", "left", "middle")
_BACKENDS = ("auto", "vllm", "transformers", "openai")


class LongContextLLM:
    """A causal language model served past (or within) its training window.

    Args:
        model: a local model directory, a Hugging Face model id or a ``.gguf`` file. A LongLoRA
            *merged* checkpoint is just a model directory. A GGUF loads with its own tokenizer
            and dequantized weights on transformers; vLLM 0.33 has no GGUF loader, so the vLLM
            backend serves a model folder exported from it once (cached under
            ``~/.cache/longcontext/gguf``, or ``gguf_cache_dir=...``).
        context_length: the window to serve. Above the model's own window it needs ``rope``; within
            it nothing is scaled (a log line says so) and the window is capped at this length.
        rope: a RoPE scaling method name (one of ``RopeScaling.METHODS``, e.g. ``"yarn"``; needs
            ``context_length``) or a ready ``RopeScaling``.
        backend: ``"vllm"``, ``"transformers"``, ``"auto"`` (vLLM when it imports and a CUDA
            device exists, else transformers) or ``"openai"``: a server with an OpenAI-compatible
            API (``vllm serve``, see ``longcontext serve-args``) generates, at ``base_url``;
            ``model`` then only names the tokenizer that counts prompts (loaded here) and the
            window is the server's ``max_model_len`` (or ``context_length``). See
            docs/openai-server.md.
        lora: a LoRA adapter directory: a plain peft adapter, a peft adapter with
            ``modules_to_save`` or a LongLoRA adapter (with ``trainable_params.bin``). An
            adapter made by ``longcontext finetune`` also brings the ``context_length`` and
            ``rope`` it was trained for, when neither is given.
        dtype: ``"auto"`` or a dtype name such as ``"bfloat16"``.
        trust_remote_code: run code shipped with the model; off unless asked.
        truncate: what to do with a prompt that does not fit the window minus ``max_tokens``:
            ``"error"`` raises ``ContextWindowExceededError``; ``"left"`` drops the oldest tokens;
            ``"middle"`` keeps the head and the tail and drops the middle. Truncation is logged.
        tensor_parallel_size: GPUs each layer is split across (vLLM); must divide the model's
            attention heads.
        pipeline_parallel_size: stages the layers are cut into, one per GPU or machine (vLLM).
        data_parallel_size: engine replicas; above 1 only with
            ``distributed_executor_backend="external_launcher"`` (else use ``vllm serve``).
        distributed_executor_backend: ``"mp"``, ``"ray"`` (across machines), ``"uni"`` or
            ``"external_launcher"``; None lets vLLM choose. See
            :class:`longcontext.llm.parallel.Parallelism`: all four are checked against the
            model's config before any weights load.
        base_url: the OpenAI-compatible API's address (``"openai"`` backend), e.g.
            ``"http://gpu-box:8000/v1"``; default ``OPENAI_BASE_URL``.
        api_key: the server's API key (``"openai"`` backend); default ``OPENAI_API_KEY``.
        api_model: the name the server serves the model under (``"openai"`` backend), when it
            differs from ``model`` (``vllm serve --served-model-name``, a LoRA module's name).
        **engine_kwargs: passed to the engine: for vLLM
            ``gpu_memory_utilization``, ``enable_prefix_caching`` (on by default)...; for
            transformers ``device``, ``attn_implementation`` and ``from_pretrained`` arguments.
            ``merge_cache_dir`` sets where merged LoRA checkpoints are kept,
            ``gguf_cache_dir`` where folders exported from a GGUF for vLLM are; for openai
            ``timeout``, ``max_retries``, ``prompt_format``, ``extra_body``, ``max_concurrency``
            (see :class:`longcontext.llm.backends.openai.OpenAIBackend`).

    Attributes:
        context_window: the real window in tokens (scaled when ``rope`` is set).
        backend_name: ``"vllm"``, ``"transformers"`` or ``"openai"``.
        tokenizer: the model's own Hugging Face tokenizer.
        rope: the ``RopeScaling`` applied, or ``None``.
    """

    def __init__(
        self,
        model: str | os.PathLike[str],
        context_length: int | None = None,
        rope: str | RopeScaling | None = None,
        backend: BackendName = "auto",
        lora: str | os.PathLike[str] | None = None,
        dtype: str = "auto",
        trust_remote_code: bool = False,
        truncate: Truncate = "error",
        tensor_parallel_size: int = 1,
        pipeline_parallel_size: int = 1,
        data_parallel_size: int = 1,
        distributed_executor_backend: str | None = None,
        base_url: str | None = None,
        api_key: str | None = None,
        api_model: str | None = None,
        **engine_kwargs: Any,
    ) -> None:
        if truncate not in _TRUNCATE:
            raise ValueError(f"truncate={truncate!r} is not one of {_TRUNCATE}")
        if backend not in _BACKENDS:
            raise ValueError(f"backend={backend!r} is not one of {_BACKENDS}")
        if context_length is not None and context_length < 1:
            raise ValueError(f"context_length={context_length} must be a positive token count")
        parallel = Parallelism(
            tensor_parallel_size,
            pipeline_parallel_size,
            data_parallel_size,
            distributed_executor_backend,
        )
        self.model = resolve_model(model)
        self.truncate: Truncate = truncate
        self.trust_remote_code = trust_remote_code
        remote = {"base_url": base_url, "api_key": api_key, "api_model": api_model}
        if backend == "openai":
            unserved = {"rope": rope, "lora": lora, "dtype": None if dtype == "auto" else dtype}
            self._connect(context_length, unserved, parallel, remote, engine_kwargs)
            return
        if any(value is not None for value in remote.values()):
            given = ", ".join(name for name, value in remote.items() if value is not None)
            raise ValueError(f"{given}: only for backend='openai' (a model served by vllm serve)")
        if lora is not None and context_length is None and rope is None:
            from longcontext.llm.lora import trained_window

            context_length, rope = trained_window(lora)  # a finetune adapter knows its window
        config = _load_config(self.model, trust_remote_code)
        self.tokenizer = _load_tokenizer(self.model, trust_remote_code, config)
        self.rope, self.context_window = _resolve_window(config, context_length, rope)
        self.backend_name: Literal["vllm", "transformers", "openai"] = choose_backend(backend)
        parallel.check_engine(self.backend_name)
        parallel.check_in_process()
        parallel.check_model(config)
        self._backend = self._build_backend(
            lora, dtype, {**engine_kwargs, **parallel.vllm_kwargs()}
        )

    def _connect(
        self,
        context_length: int | None,
        unserved: Mapping[str, Any],
        parallel: Parallelism,
        remote: Mapping[str, Any],
        engine_kwargs: dict[str, Any],
    ) -> None:
        """``backend="openai"``: the server holds the weights, their RoPE scaling and the window;
        here only the tokenizer is loaded, to count and fit prompts as the model sees them."""
        rope = unserved["rope"]
        if rope is not None:
            method = getattr(rope, "method", rope)
            raise ValueError(
                f"rope={rope!r} cannot be applied with backend='openai': the server's model "
                "config is the server's; start it with the flags that `longcontext serve-args "
                f"{self.model} --context-length N --rope {method}` prints"
            )
        refused = [f"{name}={value!r}" for name, value in unserved.items() if value is not None]
        if not parallel.is_default:
            refused += [f"{name}={value!r}" for name, value in parallel.vllm_kwargs().items()]
        if refused:
            raise ValueError(
                f"{', '.join(refused)} cannot be set with backend='openai': the server loads the "
                "model with its own flags (longcontext serve-args prints them; a LoRA is served "
                "with vllm serve --lora-modules NAME=PATH and asked for with api_model=NAME)"
            )
        from longcontext.llm.backends.openai import OpenAIBackend

        self.tokenizer = _load_tokenizer(self.model, self.trust_remote_code)
        self.rope = None
        self.backend_name = "openai"
        backend = OpenAIBackend(
            self.model, self.tokenizer, context_length=context_length, **remote, **engine_kwargs
        )
        self.context_window = backend.context_window
        self._backend = backend

    def _build_backend(
        self, lora: str | os.PathLike[str] | None, dtype: str, engine_kwargs: dict[str, Any]
    ) -> Backend:
        from longcontext.llm import lora as lora_module

        cache_dir = engine_kwargs.pop("merge_cache_dir", None)
        gguf_cache_dir = engine_kwargs.pop("gguf_cache_dir", None)
        model, plain_lora = self.model, None
        if lora is not None and is_gguf(self.model):
            raise ValueError(
                "LoRA adapters cannot be applied to a GGUF file; load the model's safetensors "
                "folder instead, or merge the adapter before converting to GGUF"
            )
        if self.backend_name == "vllm" and is_gguf(self.model):
            from longcontext.llm import gguf

            # vLLM 0.33 has no GGUF loader: serve a folder exported from the file (cached).
            model = str(gguf.export_folder(self.model, cache_dir=gguf_cache_dir))
        if lora is not None:
            adapter = lora_module.inspect_adapter(lora)
            lora_module.check_adapter_fits(self.model, adapter)
            if self.backend_name == "vllm" and adapter.is_plain_lora:
                plain_lora = adapter
            else:
                merged = lora_module.merged_checkpoint(
                    self.model,
                    adapter,
                    cache_dir=cache_dir,
                    trust_remote_code=self.trust_remote_code,
                )
                model = str(merged)
                self.tokenizer = _load_tokenizer(model, self.trust_remote_code)
        if self.backend_name == "vllm":
            from longcontext.llm.backends.vllm import VLLMBackend

            return VLLMBackend(
                model,
                context_window=self.context_window,
                rope=self.rope,
                lora=plain_lora,
                dtype=dtype,
                trust_remote_code=self.trust_remote_code,
                **engine_kwargs,
            )
        from longcontext.llm.backends.transformers import TransformersBackend

        return TransformersBackend(
            model,
            self.tokenizer,
            rope=self.rope,
            dtype=dtype,
            trust_remote_code=self.trust_remote_code,
            **engine_kwargs,
        )

    # -- tokens -------------------------------------------------------------------------------

    def apply_chat_template(self, messages: Messages) -> str:
        """Render chat messages as the model's prompt text, ending with the assistant's turn."""
        if not getattr(self.tokenizer, "chat_template", None):
            raise ValueError(
                f"the tokenizer of {self.model!r} has no chat template; use generate() with a "
                "prompt string, or load a model whose tokenizer_config carries one"
            )
        return str(
            self.tokenizer.apply_chat_template(
                [dict(m) for m in messages], tokenize=False, add_generation_prompt=True
            )
        )

    def encode(self, text_or_messages: str | Messages) -> list[int]:
        """Token ids the model sees: a string with the tokenizer's special tokens (BOS), messages
        through the chat template (which writes its own special tokens)."""
        if isinstance(text_or_messages, str):
            return list(self.tokenizer(text_or_messages)["input_ids"])
        text = self.apply_chat_template(text_or_messages)
        return list(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def count_tokens(self, text_or_messages: str | Messages) -> int:
        """Tokens in a prompt string or a chat conversation, counted as the model will see them."""
        return len(self.encode(text_or_messages))

    def prompt_limit(self, max_tokens: int) -> int:
        """The most prompt tokens that leave room for ``max_tokens`` in the window."""
        if max_tokens < 1:
            raise ValueError(f"max_tokens={max_tokens} must be at least 1")
        if max_tokens >= self.context_window:
            raise ValueError(
                f"max_tokens={max_tokens} leaves no room for a prompt in the context window of "
                f"{self.context_window} tokens; lower max_tokens or raise context_length"
            )
        return self.context_window - max_tokens

    def fit(self, ids: list[int], max_tokens: int) -> list[int]:
        """``ids`` if they fit the window minus ``max_tokens``; else truncated as ``truncate`` says,
        or ``ContextWindowExceededError``."""
        limit = self.prompt_limit(max_tokens)
        if len(ids) <= limit:
            return ids
        if self.truncate == "error":
            raise ContextWindowExceededError(len(ids), limit, self.context_window, max_tokens)
        from longcontext.llm.budget import truncate_ids

        kept = truncate_ids(ids, limit, self.truncate, self.tokenizer)
        logger.warning(
            "prompt of %d tokens truncated (%s) to %d to leave %d for the completion",
            len(ids),
            self.truncate,
            len(kept),
            max_tokens,
        )
        return kept

    # -- generation ---------------------------------------------------------------------------
    #
    # Eight methods, one path: ``_prepare`` checks the input, encodes it (chat messages through
    # the template), fits it to the window and settles the sampling; the method then only picks
    # the backend call.

    def generate(
        self,
        prompts: str | Sequence[str],
        sampling: Sampling | None = None,
        **overrides: Unpack[SamplingArgs],
    ) -> list[Generation]:
        """Complete one prompt or a batch; one ``Generation`` per prompt, in order.

        ``sampling`` (a ``Sampling``; its defaults when omitted) says how to sample; keyword
        arguments such as ``max_tokens=64`` or ``temperature=0.7`` override its fields. Every
        prompt is checked against the window before the engine is called.
        """
        batch = [prompts] if isinstance(prompts, str) else list(prompts)
        ids, options = self._prepare(batch, sampling, overrides, chat=False)
        return self._backend.generate(ids, options)

    def stream(
        self,
        prompt: str,
        sampling: Sampling | None = None,
        **overrides: Unpack[SamplingArgs],
    ) -> TextStream:
        """Stream the completion of ``prompt`` as text deltas; once it ends, the stream's
        ``generation`` holds the token counts."""
        [ids], options = self._prepare([prompt], sampling, overrides, chat=False)
        return TextStream(self._backend.stream(ids, options))

    def chat(
        self,
        messages: Messages,
        sampling: Sampling | None = None,
        **overrides: Unpack[SamplingArgs],
    ) -> Generation:
        """Answer a conversation (``[{"role": ..., "content": ...}, ...]``) as the assistant."""
        [ids], options = self._prepare([messages], sampling, overrides, chat=True)
        return self._backend.generate([ids], options)[0]

    def stream_chat(
        self,
        messages: Messages,
        sampling: Sampling | None = None,
        **overrides: Unpack[SamplingArgs],
    ) -> TextStream:
        """Stream the assistant's answer to a conversation as text deltas."""
        [ids], options = self._prepare([messages], sampling, overrides, chat=True)
        return TextStream(self._backend.stream(ids, options))

    async def agenerate(
        self,
        prompts: str | Sequence[str],
        sampling: Sampling | None = None,
        **overrides: Unpack[SamplingArgs],
    ) -> list[Generation]:
        """Async form of ``generate``."""
        batch = [prompts] if isinstance(prompts, str) else list(prompts)
        ids, options = self._prepare(batch, sampling, overrides, chat=False)
        return await self._backend.agenerate(ids, options)

    def astream(
        self,
        prompt: str,
        sampling: Sampling | None = None,
        **overrides: Unpack[SamplingArgs],
    ) -> AsyncTextStream:
        """Async form of ``stream`` (``async for delta in llm.astream(...)``)."""
        [ids], options = self._prepare([prompt], sampling, overrides, chat=False)
        return AsyncTextStream(self._backend.astream(ids, options))

    async def achat(
        self,
        messages: Messages,
        sampling: Sampling | None = None,
        **overrides: Unpack[SamplingArgs],
    ) -> Generation:
        """Async form of ``chat``."""
        [ids], options = self._prepare([messages], sampling, overrides, chat=True)
        return (await self._backend.agenerate([ids], options))[0]

    def astream_chat(
        self,
        messages: Messages,
        sampling: Sampling | None = None,
        **overrides: Unpack[SamplingArgs],
    ) -> AsyncTextStream:
        """Async form of ``stream_chat``."""
        [ids], options = self._prepare([messages], sampling, overrides, chat=True)
        return AsyncTextStream(self._backend.astream(ids, options))

    def _prepare(
        self,
        inputs: Sequence[object],
        sampling: Sampling | None,
        overrides: Mapping[str, Any],
        *,
        chat: bool,
    ) -> tuple[list[list[int]], Sampling]:
        """The token ids of each prompt (or conversation), fitted to the window, and the
        sampling settled: everything is checked before the backend sees anything."""
        options = Sampling.resolve(sampling, overrides)
        check = _messages if chat else _text
        ids = [self.fit(self.encode(check(item)), options.max_tokens) for item in inputs]
        return ids, options

    def close(self) -> None:
        """Free the engine (GPU memory, worker processes)."""
        self._backend.close()

    def __repr__(self) -> str:
        rope = f", rope={self.rope!r}" if self.rope is not None else ""
        return (
            f"LongContextLLM(model={self.model!r}, context_window={self.context_window}, "
            f"backend={self.backend_name!r}{rope})"
        )

    def score(self, ids: Sequence[int], first: int = 1) -> list[float]:
        """Natural-log likelihood of each token ``ids[first:]`` given all the tokens before it,
        for perplexity. Nothing is fitted to ``context_window``: ids past it are scored as the
        model extrapolates on the transformers backend (the unscaled baseline of a length
        sweep); vLLM refuses ids past the window it serves. The transformers backend runs the LM
        head in slices and vLLM returns prompt log-probabilities, so the ``[len x vocab]``
        logits are never held at once."""
        scorer = getattr(self._backend, "score", None)
        if scorer is None:
            raise NotImplementedError(
                f"scoring tokens needs backend='transformers' or 'vllm'; the "
                f"{self.backend_name} backend only generates"
            )
        return list(scorer(list(ids), first))


# -- construction helpers ---------------------------------------------------------------------


def resolve_model(model: str | os.PathLike[str]) -> str:
    """A local directory or ``.gguf`` file as an absolute path, or a hub id unchanged; a missing
    path is an error.

    Anything that reads as a filesystem path (a ``PathLike``, absolute, ``./``, ``~`` or with more
    than one ``/``) must exist; ``owner/name`` is taken for a Hugging Face model id.
    """
    text = os.fspath(model)
    path = Path(text).expanduser()
    if is_gguf(text):  # a GGUF is always a local file (download a hub one first)
        from longcontext.llm import gguf

        return gguf.check_file(path)
    if path.exists():
        if not path.is_dir():
            raise NotADirectoryError(
                f"model={text!r} is a file; pass the model's directory (with config.json) "
                "or a .gguf file"
            )
        return str(path.resolve())
    looks_like_path = (
        not isinstance(model, str)
        or path.is_absolute()
        or text.startswith((".", "~"))
        or text.count("/") > 1
    )
    if looks_like_path:
        raise FileNotFoundError(
            f"model path {text!r} does not exist; pass a local model directory or a Hugging Face "
            "model id such as 'meta-llama/Llama-3.1-8B-Instruct'"
        )
    return text


def _load_tokenizer(model: str, trust_remote_code: bool, config: Any = None) -> Any:
    from transformers import AutoTokenizer

    if is_gguf(model):
        from longcontext.llm import gguf

        return gguf.load_tokenizer(model, config if config is not None else gguf.load_config(model))
    try:
        return AutoTokenizer.from_pretrained(model, trust_remote_code=trust_remote_code)
    except (OSError, ValueError) as error:
        raise OSError(f"could not load the tokenizer of model {model!r}: {error}") from error


def _load_config(model: str, trust_remote_code: bool) -> Any:
    from transformers import AutoConfig

    if is_gguf(model):
        from longcontext.llm import gguf

        return gguf.load_config(model)
    try:
        return AutoConfig.from_pretrained(model, trust_remote_code=trust_remote_code)
    except (OSError, ValueError) as error:
        raise OSError(f"could not load the config of model {model!r}: {error}") from error


def native_window(config: Any) -> int:
    """The window the checkpoint serves as it is, any scaling already in its config included."""
    from longcontext.rope import read_model_rope

    return read_model_rope(config).window


def _resolve_window(
    config: Any, context_length: int | None, rope: str | RopeScaling | None
) -> tuple[RopeScaling | None, int]:
    """The RoPE scaling to apply (or ``None``) and the window it gives."""
    window = native_window(config)
    if rope is None:
        if context_length is None:
            return None, window
        if context_length > window:
            raise ValueError(
                f"context_length={context_length} is past the model's window of {window} tokens; "
                "pass rope='yarn' (or 'linear', 'dynamic', 'longrope', 'llama3') to scale it"
            )
        return None, context_length
    from longcontext.rope import RopeScaling

    if isinstance(rope, RopeScaling):
        if context_length is not None and context_length != rope.target_context:
            raise ValueError(
                f"context_length={context_length} disagrees with rope.target_context="
                f"{rope.target_context}; pass one of them"
            )
        return rope, _target(rope)
    if not isinstance(rope, str):
        raise TypeError(f"rope must be a method name or a RopeScaling, got {type(rope).__name__}")
    if rope not in RopeScaling.METHODS:
        raise ValueError(f"unknown rope method {rope!r}; choose one of {RopeScaling.METHODS}")
    if context_length is None:
        raise ValueError(f"rope={rope!r} needs context_length, the window to scale the model to")
    if context_length <= window:
        logger.warning(
            "context_length=%d is within the model's window of %d tokens: no RoPE scaling is "
            "needed, so none is applied (rope=%r ignored)",
            context_length,
            window,
            rope,
        )
        return None, context_length
    scaling = RopeScaling.for_target(config, context_length, rope)
    logger.info("RoPE scaling %r: %d -> %d tokens", rope, window, scaling.target_context)
    return scaling, _target(scaling)


def _target(rope: RopeScaling) -> int:
    assert rope.target_context is not None  # RopeScaling settles it at construction
    return rope.target_context


def choose_backend(backend: BackendName) -> Literal["vllm", "transformers"]:
    """Resolve ``"auto"`` (vLLM when it imports and a CUDA device exists; never a server) and
    log why."""
    if backend == "openai":
        raise ValueError("backend='openai' is not chosen here: LongContextLLM connects to it")
    if backend != "auto":
        logger.info("backend %r chosen by the caller", backend)
        return backend
    if importlib.util.find_spec("vllm") is None:
        logger.info("backend 'transformers': vllm is not installed")
        return "transformers"
    import torch

    if not torch.cuda.is_available():
        logger.info("backend 'transformers': vllm is installed but there is no CUDA device")
        return "transformers"
    logger.info("backend 'vllm': vllm is installed and a CUDA device is available")
    return "vllm"


def _text(prompt: object) -> str:
    if not isinstance(prompt, str):
        raise TypeError(f"a prompt must be a str, got {type(prompt).__name__}")
    return prompt


def _messages(messages: object) -> Messages:
    if isinstance(messages, str) or not isinstance(messages, Sequence):
        raise TypeError(
            "messages must be a list of {'role': ..., 'content': ...} mappings, got "
            f"{type(messages).__name__}"
        )
    for message in messages:
        if not isinstance(message, Mapping) or "role" not in message or "content" not in message:
            raise TypeError(f"each message needs 'role' and 'content', got {message!r}")
    return messages
