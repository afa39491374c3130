"""LangChain text splitters over longcontext's core splitters, with exact offsets in metadata.

Every Document these splitters create carries ``token_count`` and ``chunk_index`` and, unless
``add_start_index=False``, ``start_index`` and ``end_index`` (so that
``text[start_index:end_index] == page_content``, overlapping or stripped chunks included). The
splitting itself is :mod:`longcontext.splitters`.
"""

from __future__ import annotations

import copy
import dataclasses
import warnings
from collections.abc import Callable, Collection, Iterable, Sequence
from collections.abc import Set as AbstractSet
from typing import Any, Literal, Self

from langchain_core.documents import Document
from langchain_core.embeddings import Embeddings
from langchain_text_splitters import TextSplitter

from longcontext import Chunk, Tokenizer
from longcontext import SemanticSplitter as CoreSemanticSplitter
from longcontext import TokenSplitter as CoreTokenSplitter

_DEFAULT_TOKENIZER = "cl100k_base"
# Anything longcontext.get_tokenizer accepts: a name, a tokenizer object, a path, a callable.
TokenizerLike = Any
_OFFSET_KEYS = ("start_index", "end_index")

# tiktoken's allowed_special / disallowed_special: "all", a set of token strings, or none.
Specials = Literal["all"] | Collection[str] | None


class _CoreBacked(TextSplitter):
    """Implements LangChain's hooks by delegating to a core splitter.

    Holds what ``TextSplitter`` adds on top of the chunks (offsets in metadata, whitespace
    stripping, tiktoken's special-token check) so both splitters mean the same by them.
    """

    core: CoreTokenSplitter | CoreSemanticSplitter
    _disallowed: frozenset[str] = frozenset()

    def _setup(
        self,
        core: CoreTokenSplitter | CoreSemanticSplitter,
        *,
        chunk_size: int,
        chunk_overlap: int,
        add_start_index: bool,
        strip_whitespace: bool,
        allowed_special: Specials,
        disallowed_special: Specials,
        length_function: Callable[[str], int] | None,
        kwargs: dict[str, Any],
    ) -> None:
        self.core = core
        if length_function is not None:
            # TokenTextSplitter also ignores it (it splits by its encoding's tokens); say so.
            warnings.warn(
                f"{type(self).__name__} ignores length_function: chunk_size counts the "
                "tokenizer's tokens; pass tokenizer=, encoding_name= or model_name= instead",
                UserWarning,
                stacklevel=3,
            )
        self._disallowed = _disallowed_specials(core.tokenizer, allowed_special, disallowed_special)
        TextSplitter.__init__(
            self,
            chunk_size=chunk_size,
            chunk_overlap=chunk_overlap,
            length_function=core.tokenizer.count,
            add_start_index=add_start_index,
            strip_whitespace=strip_whitespace,
            **kwargs,
        )

    @classmethod
    def from_tiktoken_encoder(
        cls,
        encoding_name: str | None = None,
        model_name: str | None = None,
        allowed_special: Specials = None,
        disallowed_special: Specials = "all",
        **kwargs: Any,
    ) -> Self:
        """A splitter over a tiktoken encoding (by name, or the one ``model_name`` uses).

        As ``TokenTextSplitter.from_tiktoken_encoder``, except that without a name the encoding
        is cl100k_base rather than gpt2.
        """
        make: Callable[..., Self] = cls  # both subclasses take these; TextSplitter does not
        return make(
            encoding_name=encoding_name,
            model_name=model_name,
            allowed_special=allowed_special,
            disallowed_special=disallowed_special,
            **kwargs,
        )

    @classmethod
    def from_huggingface_tokenizer(cls, tokenizer: Any, **kwargs: Any) -> Self:
        """A splitter that cuts and counts with a Hugging Face tokenizer.

        ``TokenTextSplitter.from_huggingface_tokenizer`` only measures with it and still cuts
        gpt2 tokens; here the chunks are windows of this tokenizer's own tokens.
        """
        make: Callable[..., Self] = cls  # both subclasses take a tokenizer
        return make(tokenizer=tokenizer, **kwargs)

    def split_text(self, text: str) -> list[str]:
        return [chunk.text for chunk in self._split([text])[0]]

    def create_documents(
        self, texts: list[str], metadatas: list[dict[Any, Any]] | None = None
    ) -> list[Document]:
        """One Document per chunk; each copies its text's metadata and adds the chunk's own."""
        metadatas = metadatas or [{}] * len(texts)
        if len(metadatas) != len(texts):
            raise ValueError(f"got {len(texts)} texts but {len(metadatas)} metadatas")
        return [
            Document(page_content=chunk.text, metadata=self._metadata(chunk, metadata))
            for chunks, metadata in zip(self._split(texts), metadatas, strict=True)
            for chunk in chunks
        ]

    def split_documents(self, documents: Iterable[Document]) -> list[Document]:
        documents = list(documents)
        return self.create_documents(
            [d.page_content for d in documents], [d.metadata for d in documents]
        )

    def _split(self, texts: Sequence[str]) -> list[list[Chunk]]:
        for text in texts:
            if isinstance(text, str):  # the core rejects the rest, naming the type
                _check_specials(text, self._disallowed)
        batches = self.core.split_many(texts)
        if not self._strip_whitespace:
            return batches
        return [_stripped(chunks, self.core) for chunks in batches]

    def _metadata(self, chunk: Chunk, metadata: dict[Any, Any]) -> dict[Any, Any]:
        new = copy.deepcopy(metadata)
        # Offsets copied from a split document would point into it, not into this chunk.
        for key in _OFFSET_KEYS:
            new.pop(key, None)
        if self._add_start_index:
            new.update(start_index=chunk.start, end_index=chunk.end)
        new.update(token_count=chunk.token_count, chunk_index=chunk.index)
        return new


def _resolve_tokenizer(
    tokenizer: TokenizerLike | None, encoding_name: str | None, model_name: str | None
) -> TokenizerLike:
    """The tokenizer the arguments name; ``model_name`` wins over ``encoding_name``, as there."""
    if tokenizer is not None and (encoding_name is not None or model_name is not None):
        raise ValueError(
            "give the tokenizer once: tokenizer=, or encoding_name=/model_name= as in "
            f"TokenTextSplitter (got tokenizer={tokenizer!r}, encoding_name={encoding_name!r}, "
            f"model_name={model_name!r})"
        )
    if model_name is not None:
        from tiktoken.model import encoding_name_for_model

        return encoding_name_for_model(model_name)
    if encoding_name is not None:
        return encoding_name
    return _DEFAULT_TOKENIZER if tokenizer is None else tokenizer


def _disallowed_specials(
    tokenizer: Tokenizer, allowed: Specials, disallowed: Specials
) -> frozenset[str]:
    """The special tokens whose text may not appear, by tiktoken's own rule for ``encode``.

    Only tiktoken encodings have them, as only TokenTextSplitter's tiktoken path checks them.
    """
    encoding = getattr(tokenizer, "encoding", None)
    specials: AbstractSet[str] | None = getattr(encoding, "special_tokens_set", None)
    if specials is None:
        return frozenset()
    allowed_set = specials if allowed == "all" else set(allowed or ())
    return frozenset(specials - allowed_set if disallowed == "all" else set(disallowed or ()))


def _check_specials(text: str, disallowed: frozenset[str]) -> None:
    for token in sorted(disallowed):
        if token in text:
            raise ValueError(
                f"the text contains the special token {token!r}, which disallowed_special "
                f"forbids (as tiktoken and TokenTextSplitter do); pass "
                f"allowed_special={{{token!r}}} or disallowed_special=() to split it as text"
            )


def _stripped(
    chunks: list[Chunk], splitter: CoreTokenSplitter | CoreSemanticSplitter
) -> list[Chunk]:
    """Chunks without leading and trailing whitespace: still exact slices, renumbered.

    Offsets move with the text (LangChain's splitters strip and then search for the text,
    which can land on an earlier repeat); all-whitespace chunks go, as in ``TextSplitter``.
    """
    kept: list[Chunk] = []

    def keep(chunk: Chunk) -> None:
        text = chunk.text.strip()
        if not text:
            return
        start = chunk.start + len(chunk.text) - len(chunk.text.lstrip())
        count = chunk.token_count if text == chunk.text else splitter.tokenizer.count(text)
        if count > splitter.chunk_size:
            # Without its edge whitespace a text can take more tokens (cl100k: " 😀word" is 2,
            # "😀word" 3): split it again. Each piece is shorter, so this ends.
            for piece in splitter.split(text):
                keep(dataclasses.replace(piece, start=start + piece.start, end=start + piece.end))
            return
        end = start + len(text)
        kept.append(
            dataclasses.replace(
                chunk, text=text, start=start, end=end, token_count=count, index=len(kept)
            )
        )

    for chunk in chunks:
        keep(chunk)
    return kept


class TokenSplitter(_CoreBacked):
    """Windows of at most ``chunk_size`` tokens that overlap by ``chunk_overlap`` tokens.

    A drop-in for LangChain's ``TokenTextSplitter``: every argument and classmethod of it
    works with the same meaning, but chunks are exact slices of the text (never decoded tokens,
    so no broken characters) and ``start_index`` is exact also with overlap. On text whose
    token windows decode to whole characters, the chunks are the ones ``TokenTextSplitter``
    makes.

    Where it differs:

    - Defaults: cl100k_base (not gpt2), ``chunk_size=512``, ``chunk_overlap=64``,
      ``add_start_index=True`` (offsets are exact, and :class:`LostInTheMiddleReorder` packs
      with them) and ``strip_whitespace=False``.
    - ``strip_whitespace``: ``TokenTextSplitter`` accepts it but never strips. Here True strips
      each chunk as ``TextSplitter`` documents, and ``start_index``/``end_index`` are the exact
      offsets of the stripped text; chunks that are only whitespace are left out.
    - ``allowed_special``: text of an allowed special token is split and counted as the text it
      is (never as one special token), so a chunk can only come out shorter.
    - ``from_huggingface_tokenizer`` cuts by that tokenizer's tokens (``TokenTextSplitter``'s
      counts with it but cuts gpt2 tokens).
    - ``length_function`` and ``keep_separator`` have no effect, as in ``TokenTextSplitter``.

    Args:
        tokenizer: Anything :func:`longcontext.get_tokenizer` accepts ("cl100k_base", a Hugging
            Face tokenizer, a tokenizer.json path, a callable ``str -> list[int]``).
        chunk_size: Most tokens per chunk.
        chunk_overlap: Tokens shared by neighbouring chunks.
        add_start_index: Add ``start_index`` and ``end_index`` to each Document's metadata.
        align: ``"token"``, ``"word"`` or ``"sentence"``: where a chunk may end.
        encoding_name: A tiktoken encoding, as in ``TokenTextSplitter`` (instead of
            ``tokenizer``).
        model_name: A model whose tiktoken encoding to use; wins over ``encoding_name``.
        allowed_special: Special tokens whose text may appear (``"all"`` or a set).
        disallowed_special: Special tokens whose text raises ValueError (default ``"all"``:
            every special token not allowed), as tiktoken's ``encode`` does. Pass ``()`` to
            split such text like any other.
        strip_whitespace: Strip whitespace from both ends of every chunk (see above).
        length_function: Accepted for LangChain's signature; warns that it is not used.
        max_chars: Most characters per chunk; None: ``chunk_size * 32``, so that a run a
            tokenizer maps to one unknown token cannot make a chunk of a million characters.
        **kwargs: Other ``TextSplitter`` arguments (``keep_separator``).
    """

    def __init__(
        self,
        tokenizer: TokenizerLike | None = None,
        chunk_size: int = 512,
        chunk_overlap: int = 64,
        add_start_index: bool = True,
        align: str = "token",
        *,
        encoding_name: str | None = None,
        model_name: str | None = None,
        allowed_special: Specials = None,
        disallowed_special: Specials = "all",
        strip_whitespace: bool = False,
        length_function: Callable[[str], int] | None = None,
        max_chars: int | None = None,
        **kwargs: Any,
    ) -> None:
        core = CoreTokenSplitter(
            _resolve_tokenizer(tokenizer, encoding_name, model_name),
            chunk_size,
            chunk_overlap,
            align=align,  # type: ignore[arg-type]  # the core checks it and names the choices
            max_chars=max_chars,
        )
        self._setup(
            core,
            chunk_size=chunk_size,
            chunk_overlap=chunk_overlap,
            add_start_index=add_start_index,
            strip_whitespace=strip_whitespace,
            allowed_special=allowed_special,
            disallowed_special=disallowed_special,
            length_function=length_function,
            kwargs=kwargs,
        )


class SemanticSplitter(_CoreBacked):
    """Chunks of at most ``chunk_size`` tokens that end at natural boundaries or shifts in meaning.

    Chunks tile the text (no overlap). ``add_start_index``, ``strip_whitespace``, the tokenizer
    arguments and classmethods mean what they mean for :class:`TokenSplitter`.

    Args:
        tokenizer: Anything :func:`longcontext.get_tokenizer` accepts.
        chunk_size: Hard cap on every chunk's tokens (``max_tokens``, its old name, still works
            with a DeprecationWarning).
        embeddings: Any LangChain ``Embeddings``; with it, chunks also break where the meaning
            of neighbouring sentences shifts. Without it, only structure (headers, paragraphs,
            sentences) decides.
        threshold: ``"percentile"``, ``"standard_deviation"``, ``"interquartile"`` or
            ``"gradient"``, as in LangChain's ``SemanticChunker``.
        threshold_amount: The threshold's parameter.
        buffer_size: Sentences on each side that form a sentence's window.
        min_tokens: Smaller chunks merge into a neighbour when the result fits.
        add_start_index: Add ``start_index`` and ``end_index`` to each Document's metadata.
        encoding_name: A tiktoken encoding (instead of ``tokenizer``).
        model_name: A model whose tiktoken encoding to use.
        allowed_special: Special tokens whose text may appear.
        disallowed_special: Special tokens whose text raises ValueError.
        strip_whitespace: Strip whitespace from both ends of every chunk.
        length_function: Accepted for LangChain's signature; warns that it is not used.
        max_chars: Most characters per chunk; None: ``chunk_size * 32``.
        max_tokens: Deprecated name of ``chunk_size``.
        **kwargs: Other ``TextSplitter`` arguments (``keep_separator``).
    """

    def __init__(
        self,
        tokenizer: TokenizerLike | None = None,
        chunk_size: int | None = None,
        embeddings: Embeddings | None = None,
        threshold: str = "percentile",
        threshold_amount: float | None = None,
        buffer_size: int = 1,
        min_tokens: int = 0,
        add_start_index: bool = True,
        *,
        encoding_name: str | None = None,
        model_name: str | None = None,
        allowed_special: Specials = None,
        disallowed_special: Specials = "all",
        strip_whitespace: bool = False,
        length_function: Callable[[str], int] | None = None,
        max_chars: int | None = None,
        max_tokens: int | None = None,
        **kwargs: Any,
    ) -> None:
        chunk_size = _renamed_chunk_size(chunk_size, max_tokens)
        core = CoreSemanticSplitter(
            _resolve_tokenizer(tokenizer, encoding_name, model_name),
            chunk_size,
            embeddings=embeddings,
            threshold=threshold,  # type: ignore[arg-type]  # the core checks it
            threshold_amount=threshold_amount,
            buffer_size=buffer_size,
            min_tokens=min_tokens,
            max_chars=max_chars,
        )
        self._setup(
            core,
            chunk_size=chunk_size,
            chunk_overlap=0,
            add_start_index=add_start_index,
            strip_whitespace=strip_whitespace,
            allowed_special=allowed_special,
            disallowed_special=disallowed_special,
            length_function=length_function,
            kwargs=kwargs,
        )


def _renamed_chunk_size(chunk_size: int | None, max_tokens: int | None) -> int:
    if max_tokens is None:
        return 512 if chunk_size is None else chunk_size
    if chunk_size is not None:
        raise ValueError(
            f"got chunk_size={chunk_size} and max_tokens={max_tokens}; max_tokens is the old "
            "name of chunk_size, give chunk_size only"
        )
    warnings.warn(
        "SemanticSplitter(max_tokens=) is now chunk_size=; max_tokens will be removed",
        DeprecationWarning,
        stacklevel=3,
    )
    return max_tokens
