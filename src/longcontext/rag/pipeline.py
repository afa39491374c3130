"""Ask an index a question: retrieve, pack into the budget, reorder, prompt with numbered sources.

The prompt numbers each source by its retrieval rank (``[1]`` is the closest chunk), so the
reordered layout is visible in the prompt and the model's ``[n]`` citations map back to a file
and a character span.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from longcontext.rag.embeddings import (
    EmbeddingsFingerprint,
    canonical_name,
    check_backend,
    check_trusted,
    load_embedder,
)
from longcontext.rag.errors import RagError
from longcontext.rag.store import Hit, VectorStore
from longcontext.tokenizers import Tokenizer, get_tokenizer

if TYPE_CHECKING:
    from longcontext.llm import LongContextLLM

DEFAULT_MODEL = "Qwen/Qwen2.5-0.5B-Instruct"
DEFAULT_ROPE = "yarn"
STRETCH = 4  # the default RoPE target: this many times the model's own window
FALLBACK_WINDOW = 4096  # the window assumed for the budget when no model is loaded
FALLBACK_TOKENIZER = "cl100k_base"
NO_MODEL = "none"  # --model none: retrieve, pack and reorder only

SYSTEM_PROMPT = (
    "Answer the question using only the numbered sources. Cite every source you use by its "
    "number in brackets, like [2]. If the sources do not hold the answer, say so."
)
SOURCE_TEMPLATE = "[{number}] {source}\n{text}"


@dataclass(frozen=True, slots=True)
class Citation:
    """A source as the prompt numbers it: file, character span, similarity to the question."""

    number: int
    source: str
    start: int
    end: int
    score: float
    merged_from: int = 1

    def describe(self) -> str:
        merged = f", {self.merged_from} overlapping chunks merged" if self.merged_from > 1 else ""
        return (
            f"[{self.number}] {self.source}, characters {self.start}-{self.end} "
            f"(score {self.score:.3f}{merged})"
        )

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict: number, source, start, end, score, merged_from."""
        return asdict(self)


@dataclass(slots=True)
class PackedPrompt:
    """The prompt for one question, with what went into it and what it costs.

    Attributes:
        question: The question.
        messages: System and user messages, the user message holding the sources.
        citations: The sources in prompt order.
        retrieved: How many chunks retrieval returned.
        dropped: How many of them did not fit the budget.
        context_tokens: Tokens of the sources block.
        budget_tokens: The budget the sources were packed into.
        prompt_tokens: Tokens of the whole prompt as the model sees it.
        tokenizer: What counted the tokens.
        truncated: Whether the best passage was cut to fit.
    """

    question: str
    messages: list[dict[str, str]]
    citations: list[Citation]
    retrieved: int
    dropped: int
    context_tokens: int
    budget_tokens: int
    prompt_tokens: int
    tokenizer: str
    truncated: bool = False

    def render(self) -> str:
        """The messages as plain text, for a reader."""
        return "\n\n".join(f"<{m['role']}>\n{m['content']}" for m in self.messages)

    def summary(self) -> str:
        kept = len(self.citations)
        cut = "; the best passage was cut to fit" if self.truncated else ""
        return (
            f"packed {kept} source(s) from {self.retrieved} retrieved chunk(s) "
            f"({self.dropped} did not fit): {self.context_tokens} context tokens of a "
            f"{self.budget_tokens}-token budget, {self.prompt_tokens} prompt tokens in all, "
            f"counted with {self.tokenizer}{cut}"
        )


def messages_for(question: str, context: str) -> list[dict[str, str]]:
    """The chat messages: instructions, then the sources and the question."""
    return [
        {"role": "system", "content": SYSTEM_PROMPT},
        {"role": "user", "content": f"Sources:\n\n{context}\n\nQuestion: {question}"},
    ]


def retrieve(
    index_path: str | Path,
    question: str,
    top_k: int = 8,
    embeddings: str | None = None,
    backend: str | None = None,
) -> list[Hit]:
    """The ``top_k`` chunks of the index closest to ``question``, best first.

    Args:
        index_path: A folder written by ``longcontext index``.
        question: The question.
        top_k: How many chunks to retrieve.
        embeddings: Refuse the index unless it was built with these; None uses the index's own.
        backend: What embeds the question (``--embeddings-backend``); None uses the index's
            own, so an index built with ``onnx`` or ``onnx-int8`` is asked without torch.
            ``torch`` and ``onnx`` are interchangeable; ``onnx-int8`` only with itself.

    An index is data from anywhere, and loading an embeddings model runs what its folder holds,
    so only the bundled all-MiniLM-L6-v2 loads unasked: any other model the index names must be
    named in ``embeddings`` too. Nothing is downloaded from the Hugging Face Hub here.

    Raises:
        RagError: No index at ``index_path``, other embeddings than asked for
            (:class:`EmbeddingsMismatchError`), an index naming other embeddings than the bundled
            ones without ``embeddings``, an empty index (:class:`EmptyIndexError`), an empty
            question or ``top_k`` below 1.
    """
    if not question.strip():
        raise RagError("the question is empty: ask something, e.g. 'What is RoPE scaling?'")
    if top_k < 1:
        raise RagError(f"--top-k must be at least 1, got {top_k}")
    store = VectorStore.load(index_path)
    if embeddings is not None:
        store.check_embeddings(canonical_name(embeddings), index_path)
    check_trusted(store.embeddings.name, embeddings, index_path, "ask")
    store.check_not_empty()  # before loading a model
    backend = check_backend(backend or store.embeddings.backend)
    recorded = store.embeddings
    asked = EmbeddingsFingerprint(recorded.name, recorded.dimension, recorded.weights, backend)
    store.check_embeddings(asked, index_path, weights=False)  # the backend, before loading
    with hub_offline():
        embedder = load_embedder(store.embeddings.name, backend=backend)
    store.check_embeddings(embedder.fingerprint, index_path)
    return store.search(embedder.embed([question], progress=False)[0], top_k)


@contextmanager
def hub_offline() -> Iterator[None]:
    """Refuse every Hugging Face Hub request inside (as ``HF_HUB_OFFLINE=1`` does): a model id
    that an index names loads from the local cache or not at all, never by a download."""
    try:
        from huggingface_hub import constants
    except ImportError:  # without huggingface_hub nothing can be downloaded anyway
        yield
        return
    saved = constants.HF_HUB_OFFLINE
    constants.HF_HUB_OFFLINE = True  # read at every request, by huggingface_hub and transformers
    try:
        yield
    finally:
        constants.HF_HUB_OFFLINE = saved


def pack_prompt(
    question: str,
    hits: Sequence[Hit],
    budget_tokens: int,
    tokenizer: Any = FALLBACK_TOKENIZER,
    strategy: str = "important_first_last",
    count_prompt: Any = None,
) -> PackedPrompt:
    """Pack ``hits`` into ``budget_tokens`` with :func:`longcontext.pack` and build the prompt.

    Overlapping chunks of one file are merged into one span; the best passages that fit are kept
    and laid out by ``strategy`` against the lost-in-the-middle effect.

    Args:
        question: The question.
        hits: Retrieved chunks, best first.
        budget_tokens: Most tokens for the sources block.
        tokenizer: Counts the sources (anything :func:`longcontext.get_tokenizer` accepts).
        strategy: A :func:`longcontext.reorder` strategy.
        count_prompt: Counts the whole prompt from the messages (the model's chat template);
            None counts the rendered text with ``tokenizer``.

    Raises:
        RagError: An unknown strategy, or a budget that cannot hold any source text.
    """
    from longcontext.context import pack

    counter: Tokenizer = get_tokenizer(tokenizer)
    passages = [
        {
            "text": hit.chunk.text,
            "score": hit.score,
            "source": hit.chunk.source,
            "start": hit.chunk.start,
            "end": hit.chunk.end,
            "metadata": {"number": rank},
        }
        for rank, hit in enumerate(hits, start=1)
    ]
    try:
        packed = pack(passages, budget_tokens, counter, strategy=strategy, template=SOURCE_TEMPLATE)
    except ValueError as exc:
        raise RagError(str(exc)) from exc
    citations = [
        Citation(
            number=int(record.metadata["number"]),
            source=str(record.source),
            start=int(record.start or 0),
            end=int(record.end or 0),
            score=float(record.score or 0.0),
            merged_from=int(record.metadata.get("merged_from", 1)),
        )
        for record in packed.records
    ]
    messages = messages_for(question, packed.text)
    prompt_tokens = (
        count_prompt(messages)
        if count_prompt is not None
        else counter.count("\n\n".join(m["content"] for m in messages))
    )
    return PackedPrompt(
        question=question,
        messages=messages,
        citations=citations,
        retrieved=len(hits),
        dropped=len(packed.dropped),
        context_tokens=packed.token_count,
        budget_tokens=budget_tokens,
        prompt_tokens=prompt_tokens,
        tokenizer=counter.name,
        truncated=packed.truncated,
    )


@dataclass(slots=True)
class Model:
    """A loaded model, or the reason there is none (generation is then skipped)."""

    llm: LongContextLLM | None = None
    skipped: str | None = None
    notes: list[str] = field(default_factory=list)


def load_model(
    model: str | None,
    context_length: int | None = None,
    rope: str | None = DEFAULT_ROPE,
    required: bool = False,
) -> Model:
    """Load ``model`` with :class:`longcontext.LongContextLLM`, stretched with ``rope``.

    With ``rope`` and no ``context_length``, the target is four times the model's own window.
    Unless ``required``, a model that cannot load does not raise: the result says why instead,
    so a caller can still retrieve and pack.

    Args:
        model: A local model folder or a Hugging Face id; None or ``"none"`` loads nothing.
        context_length: The window to serve; None means the model's own (or 4x with ``rope``).
        rope: A RoPE scaling method (``yarn``, ``dynamic``, ``linear``, ``longrope``, ``llama3``)
            or None for no scaling.
        required: Raise when ``model`` cannot load (the user named it) instead of skipping.

    Raises:
        RagError: ``required`` and the model cannot load; the message says why.
    """
    if model is None or model == NO_MODEL:
        return Model(skipped="no model was given (--model none)")
    try:
        from longcontext.llm import LongContextLLM

        if rope is not None and context_length is None:
            from longcontext.rope import read_model_rope

            context_length = STRETCH * read_model_rope(model).window
        llm = LongContextLLM(model, context_length=context_length, rope=rope)
    except Exception as exc:  # offline, missing weights, bad config: all mean "no model here"
        message = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        reason = f"could not load model {model!r}: {type(exc).__name__}: {message}"
        if required:
            raise RagError(f"{reason}; give a local model folder, or --model {NO_MODEL}") from exc
        return Model(skipped=reason)
    scaled = f", RoPE {llm.rope.method}" if llm.rope is not None else ""
    note = f"model {model}: {llm.context_window}-token window{scaled}, {llm.backend_name} backend"
    return Model(llm=llm, notes=[note])


def prompt_for_model(
    question: str,
    hits: Sequence[Hit],
    llm: LongContextLLM,
    max_tokens: int,
    budget_tokens: int | None = None,
    strategy: str = "important_first_last",
) -> PackedPrompt:
    """Pack for a loaded model: the budget is what the window leaves after the answer and the
    instructions, counted with the model's own tokenizer and chat template.

    Raises:
        RagError: ``budget_tokens`` is more than the window leaves, or nothing fits.
    """
    try:
        limit = llm.prompt_limit(max_tokens)
    except ValueError as exc:
        raise RagError(str(exc)) from exc
    count = _prompt_counter(llm)
    overhead = count(messages_for(question, ""))
    room = limit - overhead
    if budget_tokens is not None and budget_tokens > room:
        raise RagError(
            f"--budget-tokens {budget_tokens} does not fit: the {llm.context_window}-token window "
            f"leaves {room} tokens for sources after {max_tokens} for the answer and {overhead} "
            "for the instructions and question; lower --budget-tokens, or raise --context-length"
        )
    budget = budget_tokens or room
    if budget < 1:
        raise RagError(
            f"the question and instructions take {overhead} tokens, leaving no room for sources "
            f"in {limit} prompt tokens; raise --context-length or shorten the question"
        )
    tokenizer = get_tokenizer(llm.tokenizer)
    for _ in range(3):  # joins can tokenize a little differently; shrink until the prompt fits
        packed = pack_prompt(question, hits, budget, tokenizer, strategy, count)
        excess = packed.prompt_tokens - limit
        if excess <= 0:
            return packed
        budget -= excess
    return packed


def prompt_without_model(
    question: str,
    hits: Sequence[Hit],
    max_tokens: int,
    context_length: int | None = None,
    budget_tokens: int | None = None,
    strategy: str = "important_first_last",
) -> PackedPrompt:
    """Pack when no model is loaded: tokens are counted with cl100k_base, and the window is
    ``context_length`` or 4096.

    Raises:
        RagError: Nothing fits.
    """
    tokenizer = get_tokenizer(FALLBACK_TOKENIZER)
    window = context_length or FALLBACK_WINDOW
    overhead = tokenizer.count("\n\n".join(m["content"] for m in messages_for(question, "")))
    budget = budget_tokens or window - max_tokens - overhead
    if budget < 1:
        raise RagError(
            f"a {window}-token window leaves no room for sources after {max_tokens} tokens for "
            f"the answer and {overhead} for the question; raise --context-length or --budget-tokens"
        )
    return pack_prompt(question, hits, budget, tokenizer, strategy)


def _prompt_counter(llm: LongContextLLM) -> Any:
    if getattr(llm.tokenizer, "chat_template", None):
        return llm.count_tokens
    return lambda messages: llm.count_tokens(_plain(messages))


def _plain(messages: Sequence[dict[str, str]]) -> str:
    return "\n\n".join(m["content"] for m in messages) + "\n\nAnswer:"


def generate(
    llm: LongContextLLM, prompt: PackedPrompt, max_tokens: int = 256, stream: bool = False
) -> Iterator[str]:
    """The answer to ``prompt``, as text deltas when ``stream`` is set, else in one piece.

    Uses the model's chat template when it has one, else a plain prompt.
    """
    chat = bool(getattr(llm.tokenizer, "chat_template", None))
    if stream:
        if chat:
            yield from llm.stream_chat(prompt.messages, max_tokens=max_tokens)
        else:
            yield from llm.stream(_plain(prompt.messages), max_tokens=max_tokens)
        return
    if chat:
        yield llm.chat(prompt.messages, max_tokens=max_tokens).text
    else:
        yield llm.generate(_plain(prompt.messages), max_tokens=max_tokens)[0].text
