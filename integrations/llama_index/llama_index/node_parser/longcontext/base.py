"""LlamaIndex node parsers over longcontext's core splitters, with exact character offsets.

Nodes get ``start_char_idx``/``end_char_idx`` straight from the core splitter (LlamaIndex's own
parsers search for each chunk's text afterwards, which can land on an earlier repeat), the
SOURCE/PREVIOUS/NEXT relationships of any LlamaIndex parser, and a budget that counts the
node's metadata: the text a node is embedded or prompted with, metadata included, fits.
"""

from __future__ import annotations

import warnings
from abc import abstractmethod
from collections.abc import Sequence
from typing import Any

from llama_index.core.base.embeddings.base import BaseEmbedding
from llama_index.core.bridge.pydantic import Field, PrivateAttr, model_validator
from llama_index.core.node_parser.interface import MetadataAwareTextSplitter
from llama_index.core.node_parser.node_utils import build_nodes_from_splits
from llama_index.core.schema import BaseNode, Document, MetadataMode
from llama_index.core.utils import get_tqdm_iterable

from longcontext import Chunk, Tokenizer, get_tokenizer
from longcontext import SemanticSplitter as CoreSemanticSplitter
from longcontext import TokenSplitter as CoreTokenSplitter

_DEFAULT_TEXT_TEMPLATE = "{metadata_str}\n\n{content}"

Splitter = CoreTokenSplitter | CoreSemanticSplitter


class _CoreBacked(MetadataAwareTextSplitter):
    """LlamaIndex's splitter hooks implemented by a core splitter sized per node."""

    tokenizer: Any = Field(
        default="cl100k_base",
        description="Anything longcontext.get_tokenizer accepts: a tiktoken name, a Hugging Face "
        "tokenizer or tokenizer.json path, or a callable str -> list[int].",
    )
    max_chars: int | None = Field(
        default=None,
        description="Most characters of text per node; None: 32 per token of the node's budget.",
    )
    _tokenizer: Tokenizer = PrivateAttr()

    def model_post_init(self, context: Any) -> None:
        super().model_post_init(context)
        self._tokenizer = get_tokenizer(self.tokenizer)
        self._core(self._budget)  # check the sizes now rather than at the first document

    @property
    @abstractmethod
    def _budget(self) -> int:
        """Most tokens a node's content may have, metadata included."""

    @abstractmethod
    def _core(self, budget: int) -> Splitter:
        """The core splitter for chunks of at most ``budget`` tokens."""

    def split_text(self, text: str) -> list[str]:
        return [c.text for c in self._core(self._budget).split(text)]

    def split_text_metadata_aware(self, text: str, metadata_str: str) -> list[str]:
        template = _DEFAULT_TEXT_TEMPLATE
        return [c.text for c in self._chunks(text, [metadata_str], template)]

    def _chunks(self, text: str, metadata_strs: Sequence[str], template: str) -> list[Chunk]:
        """Chunks whose content, rendered with each metadata string, fits the budget."""
        metadata_strs = [m.strip() for m in metadata_strs if m.strip()]
        if not metadata_strs:
            return self._core(self._budget).split(text)

        def longest(content: str) -> int:
            return max(
                self._tokenizer.count(template.format(metadata_str=m, content=content).strip())
                for m in metadata_strs
            )

        room = self._budget - longest("")
        while True:
            if room <= self._smallest_room:
                raise ValueError(
                    f"the metadata takes {longest('')} of the {self._budget} tokens a node may "
                    "have, leaving no room for text; raise the chunk size, shorten the metadata, "
                    "or leave keys out with excluded_embed_metadata_keys / "
                    "excluded_llm_metadata_keys"
                )
            chunks = self._core(room).split(text)
            # Tokens may merge differently where metadata meets text; shrink by any overshoot.
            over = max((longest(c.text) - self._budget for c in chunks), default=0)
            if over <= 0:
                return chunks
            room -= over

    @property
    def _smallest_room(self) -> int:
        return 0

    def _parse_nodes(
        self, nodes: Sequence[BaseNode], show_progress: bool = False, **kwargs: Any
    ) -> list[BaseNode]:
        parsed: list[BaseNode] = []
        for node in get_tqdm_iterable(nodes, show_progress, "Parsing nodes"):
            metadata_strs = (
                [node.get_metadata_str(MetadataMode.EMBED), node.get_metadata_str(MetadataMode.LLM)]
                if self.include_metadata
                else []
            )
            template = getattr(node, "text_template", _DEFAULT_TEXT_TEMPLATE)
            text = node.get_content(metadata_mode=MetadataMode.NONE)
            chunks = self._chunks(text, metadata_strs, template)
            built = build_nodes_from_splits([c.text for c in chunks], node, id_func=self.id_func)
            for new, chunk in zip(built, chunks, strict=True):
                new.start_char_idx, new.end_char_idx = chunk.start, chunk.end
            parsed.extend(built)
        return parsed

    def _postprocess_parsed_nodes(
        self, nodes: list[BaseNode], parent_doc_map: dict[str, Document]
    ) -> list[BaseNode]:
        # The base class re-derives offsets with str.find; keep the exact ones from the splitter.
        exact = [
            (getattr(n, "start_char_idx", None), getattr(n, "end_char_idx", None)) for n in nodes
        ]
        nodes = super()._postprocess_parsed_nodes(nodes, parent_doc_map)
        for node, (start, end) in zip(nodes, exact, strict=True):
            if start is not None:
                node.start_char_idx, node.end_char_idx = start, end  # type: ignore[attr-defined]
        return nodes


class TokenSplitter(_CoreBacked):
    """Windows of at most ``chunk_size`` tokens overlapping by ``chunk_overlap`` tokens.

    Each node's text is an exact slice of its source; with metadata included (the default),
    the node's content as embedded or prompted, metadata and all, fits ``chunk_size``.

    Attributes:
        tokenizer: Anything :func:`longcontext.get_tokenizer` accepts.
        chunk_size: Most tokens per node, metadata included.
        chunk_overlap: Tokens shared by neighbouring nodes.
        align: ``"token"``, ``"word"`` or ``"sentence"``: where a node may end.
        max_chars: Most characters of text per node; None: 32 per token of the budget left
            after the metadata, so that a run a tokenizer maps to one unknown token cannot make
            a node of a million characters.
    """

    chunk_size: int = Field(default=512, description="Most tokens per node, metadata included.")
    chunk_overlap: int = Field(default=64, description="Tokens shared by neighbouring nodes.")
    align: str = Field(default="token", description="Where a node may end: token, word, sentence.")

    @classmethod
    def class_name(cls) -> str:
        return "LongContextTokenSplitter"

    @property
    def _budget(self) -> int:
        return self.chunk_size

    @property
    def _smallest_room(self) -> int:
        return self.chunk_overlap

    def _core(self, budget: int) -> Splitter:
        return CoreTokenSplitter(
            self._tokenizer,
            budget,
            self.chunk_overlap,
            align=self.align,  # type: ignore[arg-type]
            max_chars=self.max_chars,
        )


class SemanticSplitter(_CoreBacked):
    """Nodes of at most ``chunk_size`` tokens that end at natural boundaries or shifts in meaning.

    Nodes tile the text: they never overlap, so there is no ``chunk_overlap``.

    Attributes:
        tokenizer: Anything :func:`longcontext.get_tokenizer` accepts.
        chunk_size: Most tokens per node, metadata included (``max_tokens``, its old name,
            still works with a DeprecationWarning).
        embeddings: Any LlamaIndex ``BaseEmbedding``; with it, nodes also break where the
            meaning of neighbouring sentences shifts.
        threshold: ``"percentile"``, ``"standard_deviation"``, ``"interquartile"`` or
            ``"gradient"``.
        threshold_amount: The threshold's parameter.
        buffer_size: Sentences on each side that form a sentence's window.
        min_tokens: Smaller nodes merge into a neighbour when the result fits.
        max_chars: Most characters of text per node; None: 32 per token of the budget.
    """

    chunk_size: int = Field(default=512, description="Most tokens per node, metadata included.")
    embeddings: BaseEmbedding | None = Field(
        default=None, description="Embedding model for breaks at shifts in meaning."
    )
    threshold: str = Field(default="percentile", description="How a shift in meaning is found.")
    threshold_amount: float | None = Field(default=None, description="The threshold's parameter.")
    buffer_size: int = Field(default=1, description="Sentences on each side in a window.")
    min_tokens: int = Field(default=0, description="Smaller nodes merge into a neighbour.")

    @model_validator(mode="before")
    @classmethod
    def _renamed_max_tokens(cls, data: Any) -> Any:
        if not isinstance(data, dict) or "max_tokens" not in data:
            return data
        data = dict(data)
        max_tokens = data.pop("max_tokens")
        if data.get("chunk_size") is not None:
            raise ValueError(
                f"got chunk_size={data['chunk_size']} and max_tokens={max_tokens}; max_tokens "
                "is the old name of chunk_size, give chunk_size only"
            )
        warnings.warn(_RENAMED, DeprecationWarning, stacklevel=_user_frame())
        data["chunk_size"] = max_tokens
        return data

    @property
    def max_tokens(self) -> int:
        """Deprecated name of ``chunk_size``."""
        warnings.warn(_RENAMED, DeprecationWarning, stacklevel=2)
        return self.chunk_size

    @classmethod
    def class_name(cls) -> str:
        return "LongContextSemanticSplitter"

    @property
    def _budget(self) -> int:
        return self.chunk_size

    @property
    def _smallest_room(self) -> int:
        return self.min_tokens

    def _core(self, budget: int) -> Splitter:
        return CoreSemanticSplitter(
            self._tokenizer,
            budget,
            embeddings=self.embeddings,
            threshold=self.threshold,  # type: ignore[arg-type]
            threshold_amount=self.threshold_amount,
            buffer_size=self.buffer_size,
            min_tokens=self.min_tokens,
            max_chars=self.max_chars,
        )


_RENAMED = "SemanticSplitter's max_tokens is now chunk_size; max_tokens will be removed"


def _user_frame() -> int:
    """The stack level, for ``warnings.warn`` in a validator, of the code that built the model."""
    import sys

    frame, level = sys._getframe(1), 1
    while frame.f_back is not None and frame.f_globals.get("__name__", "").startswith(
        ("pydantic", "llama_index.core", __name__)
    ):
        frame, level = frame.f_back, level + 1
    return level
