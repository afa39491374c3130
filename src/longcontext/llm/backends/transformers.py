"""The transformers backend: ``generate`` on CPU or GPU, streamed by ``TextIteratorStreamer``."""

from __future__ import annotations

import asyncio
import dataclasses
import importlib.util
import logging
import threading
from collections.abc import AsyncIterator, Iterator, Sequence
from typing import TYPE_CHECKING, Any

from longcontext.llm.stops import StopScanner, cut_at_stop
from longcontext.llm.types import Generation, Sampling

if TYPE_CHECKING:
    import torch

    from longcontext.rope import RopeScaling

logger = logging.getLogger(__name__)


def pick_device(device: str | None) -> str:
    """``device`` as given, else ``"cuda"`` when a CUDA device exists, else ``"cpu"``."""
    import torch

    if device:
        return device
    return "cuda" if torch.cuda.is_available() else "cpu"


def pick_dtype(dtype: str, device: str) -> torch.dtype:
    """Resolve ``"auto"``: bfloat16 on GPUs that have it, else float16; float32 on CPU."""
    import torch

    if dtype != "auto":
        resolved = getattr(torch, dtype, None)
        if not isinstance(resolved, torch.dtype):
            raise ValueError(
                f"dtype={dtype!r} is not a torch dtype; use 'auto', 'bfloat16', 'float16' or "
                "'float32'"
            )
        return resolved
    if device.startswith("cuda"):
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.float32


def attention_candidates(device: str, dtype: torch.dtype) -> list[str]:
    """Attention implementations to try, best first.

    FlashAttention 2 needs the ``flash_attn`` package, an Ampere or newer GPU and a 16-bit dtype;
    ``sdpa`` is PyTorch's fused attention; ``eager`` always works.
    """
    import torch

    candidates = ["sdpa", "eager"]
    if (
        device.startswith("cuda")
        and importlib.util.find_spec("flash_attn") is not None
        and dtype in (torch.float16, torch.bfloat16)
        and torch.cuda.get_device_capability(torch.device(device))[0] >= 8
    ):
        candidates.insert(0, "flash_attention_2")
    return candidates


class _Cancelled:
    """A stopping criterion that ends ``generate`` when a stream's reader goes away."""

    def __init__(self) -> None:
        self.event = threading.Event()

    def __call__(self, input_ids: Any, scores: Any, **kwargs: Any) -> Any:
        import torch

        return torch.full(
            (input_ids.shape[0],), self.event.is_set(), dtype=torch.bool, device=input_ids.device
        )


class _SeededSampler:
    """The last logits processor: draws the next token with this call's own ``torch.Generator``
    (one per row, seeded with ``seed``, or afresh without one) and leaves only it possible.

    ``generate(do_sample=True)`` draws from torch's global generator, which every thread shares:
    two seeded calls at once would take each other's draws. Here each call owns its draws, so a
    seed gives the same text whatever else runs, and each row of a batch the text it gets alone
    (as vLLM seeds each request). Generation then runs greedily over the single finite logit.
    """

    def __init__(self, temperature: float, top_p: float, seed: int | None) -> None:
        from transformers import TemperatureLogitsWarper, TopPLogitsWarper

        self.seed = seed
        self.warpers: list[Any] = [TemperatureLogitsWarper(temperature)]
        if top_p < 1.0:
            self.warpers.append(TopPLogitsWarper(top_p))
        self.generators: list[torch.Generator] = []

    def __call__(self, input_ids: Any, scores: Any) -> Any:
        import torch

        if not self.generators:
            for _ in range(scores.shape[0]):
                generator = torch.Generator(device=scores.device)
                if self.seed is None:
                    generator.seed()
                else:
                    generator.manual_seed(self.seed)
                self.generators.append(generator)
        for warper in self.warpers:
            scores = warper(input_ids, scores)
        probs = torch.softmax(scores, dim=-1)
        chosen = torch.cat(
            [
                torch.multinomial(row, 1, generator=generator)
                for row, generator in zip(probs, self.generators, strict=True)
            ]
        )
        only = torch.full_like(scores, float("-inf"))
        return only.scatter_(1, chosen[:, None], 0.0)


class TransformersBackend:
    """Runs a causal LM with ``transformers``: batched with left padding, streamed from a thread.

    Args:
        model: local directory, hub id or ``.gguf`` file of the model.
        tokenizer: the model's tokenizer (already loaded by the engine).
        rope: RoPE scaling to write into the config (``rope_theta`` kept), or ``None``.
        dtype: ``"auto"`` or a torch dtype name.
        trust_remote_code: passed to ``from_pretrained`` as given.
        device: ``"cpu"``, ``"cuda"``, ``"cuda:1"``...; default: CUDA when there is one.
        attn_implementation: one attention implementation, or several to try in order, instead
            of the best that loads (``flash_attention_2``, then ``sdpa``, then ``eager``).
        **model_kwargs: passed to ``AutoModelForCausalLM.from_pretrained``.
    """

    name = "transformers"

    def __init__(
        self,
        model: str,
        tokenizer: Any,
        *,
        rope: RopeScaling | None,
        dtype: str,
        trust_remote_code: bool,
        device: str | None = None,
        attn_implementation: str | Sequence[str] | None = None,
        **model_kwargs: Any,
    ) -> None:
        from transformers import AutoConfig

        from longcontext.llm import gguf

        self.tokenizer = tokenizer
        self.device = pick_device(device)
        self.dtype = pick_dtype(dtype, self.device)
        if gguf.is_gguf(model):  # the config from the file's metadata, not a config.json
            config = gguf.load_config(model)
        else:
            config = AutoConfig.from_pretrained(model, trust_remote_code=trust_remote_code)
        if rope is not None:  # rope_parameters with rope_theta kept, and the scaled window
            config = rope.apply_to_hf_config(config)
        if isinstance(attn_implementation, str):
            candidates: Sequence[str] = [attn_implementation]
        else:
            candidates = attn_implementation or attention_candidates(self.device, self.dtype)
        self.model, self.attn_implementation = self._load(
            model, config, candidates, trust_remote_code, model_kwargs
        )
        self.pad_token_id = _pad_token_id(tokenizer, self.model)

    def _load(
        self,
        model: str,
        config: Any,
        candidates: Sequence[str],
        trust_remote_code: bool,
        model_kwargs: dict[str, Any],
    ) -> tuple[Any, str]:
        from transformers import AutoModelForCausalLM

        from longcontext.llm import gguf

        # A GGUF is dequantized into the model (transformers' GGUF loader).
        load = gguf.load_model if gguf.is_gguf(model) else AutoModelForCausalLM.from_pretrained
        errors: list[str] = []
        for implementation in candidates:
            try:
                loaded = load(
                    model,
                    config=config,
                    dtype=self.dtype,
                    attn_implementation=implementation,
                    trust_remote_code=trust_remote_code,
                    **model_kwargs,
                )
            except (ImportError, ValueError, RuntimeError) as error:
                logger.warning(
                    "attention %r did not load (%s); trying the next one", implementation, error
                )
                errors.append(f"{implementation}: {error}")
                continue
            logger.info(
                "transformers backend: %s on %s, %s", implementation, self.device, self.dtype
            )
            return loaded.to(self.device).eval(), implementation  # type: ignore[arg-type]
        raise RuntimeError(f"could not load {model!r} with any attention implementation: {errors}")

    def _generate_kwargs(self, sampling: Sampling) -> dict[str, Any]:
        # Sampling or not, transformers decodes greedily: with temperature > 0 the last logits
        # processor has already drawn the token (with the call's own generator) and masked the
        # rest. The model's generation_config sampling defaults (top_k...) are switched off, so
        # temperature and top_p mean what they mean on vLLM.
        kwargs: dict[str, Any] = {
            "max_new_tokens": sampling.max_tokens,
            "pad_token_id": self.pad_token_id,
            "do_sample": False,
            "temperature": None,
            "top_p": None,
            "top_k": None,
        }
        if sampling.temperature > 0:
            from transformers import LogitsProcessorList

            sampler = _SeededSampler(sampling.temperature, sampling.top_p, sampling.seed)
            kwargs["logits_processor"] = LogitsProcessorList([sampler])
        if sampling.stop:
            kwargs.update(stop_strings=list(sampling.stop), tokenizer=self.tokenizer)
        return kwargs

    def _batch(self, prompts: Sequence[list[int]]) -> dict[str, torch.Tensor]:
        """Left-pad so every prompt ends where generation starts."""
        import torch

        width = max(len(p) for p in prompts)
        ids = [[self.pad_token_id] * (width - len(p)) + p for p in prompts]
        mask = [[0] * (width - len(p)) + [1] * len(p) for p in prompts]
        return {
            "input_ids": torch.tensor(ids, device=self.device),
            "attention_mask": torch.tensor(mask, device=self.device),
        }

    def generate(self, prompts: Sequence[list[int]], sampling: Sampling) -> list[Generation]:
        """Complete all prompts in one left-padded batch."""
        import torch

        if not prompts:
            return []
        batch = self._batch(prompts)
        with torch.inference_mode():
            output = self.model.generate(**batch, **self._generate_kwargs(sampling))
        width = batch["input_ids"].shape[1]
        rows = [row[width:].tolist() for row in output]
        if len(rows) > 1 and self.pad_token_id not in _eos_ids(self.model):
            # Rows that finished early are padded up to the longest one.
            rows = [_strip_padding(row, self.pad_token_id) for row in rows]
        return [self._finish(p, row, sampling) for p, row in zip(prompts, rows, strict=True)]

    def _finish(self, prompt: list[int], new_ids: list[int], sampling: Sampling) -> Generation:
        eos = _eos_ids(self.model)
        # Padding after a finished row is not part of its completion.
        for i, token in enumerate(new_ids):
            if token in eos:
                new_ids, ended = new_ids[: i + 1], True
                break
        else:
            ended = False
        text = self.tokenizer.decode(new_ids, skip_special_tokens=True)
        text, hit_stop = cut_at_stop(text, sampling.stop)
        if hit_stop or ended:
            reason = "stop"
        else:
            reason = "length" if len(new_ids) >= sampling.max_tokens else "stop"
        return Generation(text, len(prompt), len(new_ids), reason)

    def stream(self, prompt: list[int], sampling: Sampling) -> Iterator[str | Generation]:
        """Generate in a thread and yield text as ``TextIteratorStreamer`` decodes it; then the
        ``Generation``, counted from the ids the thread generated, as ``generate`` counts."""
        import torch
        from transformers import StoppingCriteriaList, TextIteratorStreamer

        streamer = TextIteratorStreamer(self.tokenizer, skip_prompt=True, skip_special_tokens=True)
        cancelled = _Cancelled()
        kwargs = self._generate_kwargs(sampling)
        batch = self._batch([prompt])
        outputs: list[Any] = []
        errors: list[BaseException] = []

        def run() -> None:
            try:
                with torch.inference_mode():
                    outputs.append(
                        self.model.generate(
                            **batch,
                            **kwargs,
                            streamer=streamer,
                            stopping_criteria=StoppingCriteriaList([cancelled]),
                        )
                    )
            except BaseException as error:  # re-raised in the reader's thread below
                errors.append(error)
                streamer.end()  # type: ignore[no-untyped-call]

        thread = threading.Thread(target=run, name="longcontext-generate", daemon=True)
        thread.start()
        scanner = StopScanner(sampling.stop)
        shown: list[str] = []
        ended = False
        try:
            for delta in streamer:
                if text := scanner.feed(delta):
                    shown.append(text)
                    yield text
                if scanner.stopped:
                    break
            else:
                ended = True
            if tail := scanner.flush():
                shown.append(tail)
                yield tail
        finally:
            cancelled.event.set()
            if not ended:  # read to the end signal so the generating thread can finish
                for _ in streamer:
                    pass
            thread.join()
        if errors:
            raise errors[0]
        new_ids = outputs[0][0][batch["input_ids"].shape[1] :].tolist()
        whole = self._finish(prompt, new_ids, sampling)
        yield dataclasses.replace(whole, text="".join(shown))

    async def agenerate(self, prompts: Sequence[list[int]], sampling: Sampling) -> list[Generation]:
        """``generate`` in a worker thread, so the event loop keeps running."""
        return await asyncio.to_thread(self.generate, prompts, sampling)

    async def astream(
        self, prompt: list[int], sampling: Sampling
    ) -> AsyncIterator[str | Generation]:
        """``stream`` with each event fetched in a worker thread."""
        iterator = self.stream(prompt, sampling)
        try:  # the stream never yields None, so None marks its end
            while (event := await asyncio.to_thread(next, iterator, None)) is not None:
                yield event
        finally:
            await asyncio.to_thread(iterator.close)  # type: ignore[attr-defined]

    def close(self) -> None:
        """Drop the model so its memory can be freed."""
        self.model = None

    def score(
        self, ids: Sequence[int], first: int = 1, slice_tokens: int | None = None
    ) -> list[float]:
        """Natural-log likelihood of each token ``ids[first:]`` given every token before it.

        One forward pass computes the final hidden states (the model itself makes logits for the
        last position only); the LM head then runs over ``slice_tokens`` positions at a time
        (default: about 256 MB of float32 logits), so ``[len x vocab]`` logits never exist at
        once. The model's own last-position logits check the head path (softcapping, logit
        scales), so a model whose head this does not reproduce fails loudly, never silently.
        """
        import torch

        if not 1 <= first < len(ids):
            raise ValueError(f"first={first} must lie in [1, {len(ids)}) for {len(ids)} ids")
        captured: list[Any] = []
        hook = self.model.get_decoder().register_forward_hook(
            lambda _module, _args, output: captured.append(output[0])
        )
        try:
            with torch.inference_mode():
                batch = torch.tensor([list(ids)], device=self.device)
                own = self.model(input_ids=batch, logits_to_keep=1, use_cache=False).logits[0, -1]
        finally:
            hook.remove()
        hidden, head = captured[0][0], self.model.get_output_embeddings()
        config = self.model.config.get_text_config()
        cap = getattr(config, "final_logit_softcapping", None)

        def logits(rows: torch.Tensor) -> torch.Tensor:
            out: torch.Tensor = head(rows).float()
            if cap:  # Gemma 2/3
                out = torch.tanh(out / cap) * cap
            out = out * float(getattr(self.model, "logit_scale", 1.0))  # Cohere
            return out / float(getattr(config, "logits_scaling", 1.0))  # Granite

        with torch.inference_mode():
            mine = logits(hidden[-1:])[0]
            if not torch.allclose(mine, own.float(), rtol=1e-2, atol=1e-3 * float(own.abs().max())):
                raise NotImplementedError(
                    f"scoring {type(self.model).__name__}: its LM head output differs from the "
                    "model's own logits (an unknown post-processing); score with a model "
                    "whose head is linear (Llama, Qwen, Mistral, Gemma...)"
                )
            step = slice_tokens or max(1, 2**26 // int(config.vocab_size))
            targets = batch[0]
            scores: list[float] = []
            for start in range(first - 1, len(ids) - 1, step):
                end = min(start + step, len(ids) - 1)
                logprobs = torch.log_softmax(logits(hidden[start:end]), dim=-1)
                picked = logprobs.gather(1, targets[start + 1 : end + 1, None])[:, 0]
                scores.extend(picked.double().tolist())
        return scores


def _strip_padding(ids: list[int], pad: int) -> list[int]:
    end = len(ids)
    while end and ids[end - 1] == pad:
        end -= 1
    return ids[:end]


def _eos_ids(model: Any) -> set[int]:
    eos = model.generation_config.eos_token_id
    if eos is None:
        return set()
    return {eos} if isinstance(eos, int) else set(eos)


def _pad_token_id(tokenizer: Any, model: Any) -> int:
    """The pad id for left padding: the tokenizer's, else the model's, else end of sequence."""
    for candidate in (tokenizer.pad_token_id, model.generation_config.pad_token_id):
        if candidate is not None:
            return int(candidate)
    eos = sorted(_eos_ids(model)) or [tokenizer.eos_token_id]
    if eos[0] is None:
        raise ValueError("the model has no pad or end-of-sequence token to pad a batch with")
    return int(eos[0])
