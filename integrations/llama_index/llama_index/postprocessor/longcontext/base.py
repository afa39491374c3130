"""LostInTheMiddleReorder: a LlamaIndex node postprocessor over longcontext's reorder and pack."""

from __future__ import annotations

import uuid
from typing import Any

from llama_index.core.bridge.pydantic import Field, field_validator
from llama_index.core.postprocessor.types import BaseNodePostprocessor
from llama_index.core.schema import NodeRelationship, NodeWithScore, QueryBundle

from longcontext.context import Passage, pack, reorder

_FLAGS = ["merged_from", "truncated"]


class LostInTheMiddleReorder(BaseNodePostprocessor):
    """Lay out retrieved nodes so the most relevant sit first and last, never in the middle.

    Ranks by ``NodeWithScore.score``. Unlike LlamaIndex's ``LongContextReorder``, the most
    relevant node comes first for every number of nodes. Use it in a query engine's
    ``node_postprocessors=[...]``.

    With ``budget_tokens`` it also packs (see :func:`longcontext.pack`): nodes of one source
    document whose ``start_char_idx``/``end_char_idx`` spans overlap, and agree on the characters
    they share, are merged into one node with the exact source span, and only the most relevant
    that fit the budget are kept. A merged or cut node says so in its metadata (``merged_from``,
    ``truncated``; both are kept out of the embedded and prompted metadata). The budget counts
    each node's text rendered with ``template``, plus ``separator`` between nodes; metadata that
    a response synthesizer adds is not counted, so name it in the template or leave room for it.

    Attributes:
        strategy: ``"important_first_last"``, ``"reverse_rank"`` or ``"none"``.
        budget_tokens: Optional token budget for the nodes' text.
        tokenizer: What counts the budget (anything ``longcontext.get_tokenizer`` accepts).
        separator: Counted once between nodes.
        template: Optional per-node format string with ``{text}`` (and metadata keys).
    """

    strategy: str = Field(default="important_first_last", description="Layout of the nodes.")
    budget_tokens: int | None = Field(default=None, description="Token budget; None: no packing.")
    tokenizer: Any = Field(default="cl100k_base", description="Counts the budget's tokens.")
    separator: str = Field(default="\n\n", description="Counted between nodes.")
    template: str | None = Field(default=None, description="Per-node format with {text}.")

    @field_validator("strategy")
    @classmethod
    def _known_strategy(cls, strategy: str) -> str:
        reorder([], strategy=strategy)  # raises, naming the strategies, for an unknown one
        return strategy

    @classmethod
    def class_name(cls) -> str:
        return "LongContextLostInTheMiddleReorder"

    def _postprocess_nodes(
        self, nodes: list[NodeWithScore], query_bundle: QueryBundle | None = None
    ) -> list[NodeWithScore]:
        if self.budget_tokens is None:
            return reorder(nodes, [n.score for n in nodes], self.strategy)
        result = pack(
            nodes,
            budget_tokens=self.budget_tokens,
            tokenizer=self.tokenizer,
            strategy=self.strategy,
            separator=self.separator,
            template=self.template,
        )
        return [p if isinstance(p, NodeWithScore) else _node(p) for p in result.passages]


def _node(passage: Passage) -> NodeWithScore:
    """A node for a merged or cut passage: the most relevant member's node with the new text."""
    best: NodeWithScore = passage.origin[0]
    source = best.node.relationships.get(NodeRelationship.SOURCE)
    node = best.node.model_copy(
        update={
            "id_": str(uuid.uuid4()),
            "text": passage.text,
            "start_char_idx": passage.start,
            "end_char_idx": passage.end,
            "embedding": None,
            "metadata": dict(passage.metadata),
            "relationships": {} if source is None else {NodeRelationship.SOURCE: source},
            "excluded_embed_metadata_keys": [*best.node.excluded_embed_metadata_keys, *_FLAGS],
            "excluded_llm_metadata_keys": [*best.node.excluded_llm_metadata_keys, *_FLAGS],
        }
    )
    return NodeWithScore(node=node, score=passage.score)
