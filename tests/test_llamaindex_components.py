"""llama-index-longcontext's node parsers and reorder postprocessor with real LlamaIndex objects.

Real all-MiniLM-L6-v2 embeddings (llama-index-embeddings-huggingface), a real VectorStoreIndex,
retriever and IngestionPipeline. The query engine's LLM is MockLLM, a stand-in for generation
only: what is under test is which nodes reach the synthesizer, and in what order.
"""

from __future__ import annotations

import itertools
import pickle
from typing import Any

import pytest
from llama_index.core import Document, Settings, VectorStoreIndex
from llama_index.core.bridge.pydantic import Field
from llama_index.core.callbacks import (
    CallbackManager,
    CBEventType,
    EventPayload,
    LlamaDebugHandler,
    TokenCountingHandler,
)
from llama_index.core.ingestion import IngestionPipeline
from llama_index.core.instrumentation import get_dispatcher
from llama_index.core.instrumentation.event_handlers import BaseEventHandler
from llama_index.core.instrumentation.events.embedding import EmbeddingEndEvent
from llama_index.core.llms import MockLLM
from llama_index.core.node_parser import NodeParser
from llama_index.core.postprocessor import LongContextReorder
from llama_index.core.postprocessor.types import BaseNodePostprocessor
from llama_index.core.schema import MetadataMode, NodeRelationship, NodeWithScore, TextNode
from llama_index.node_parser.longcontext import SemanticSplitter, TokenSplitter
from llama_index.postprocessor.longcontext import LostInTheMiddleReorder
from retrieval_fixtures import corpus_excerpt, minilm_path

from longcontext import get_tokenizer
from longcontext.context import reorder

TOK = get_tokenizer("cl100k_base")
TEXT = corpus_excerpt()
QUESTION = "What did the president say about Ukraine and Putin?"
METADATA = {"title": "State of the Union address, 2024", "speaker": "President Joe Biden"}


@pytest.fixture(scope="module")
def embed_model() -> Any:
    from llama_index.embeddings.huggingface import HuggingFaceEmbedding

    return HuggingFaceEmbedding(model_name=minilm_path(), device="cpu")


@pytest.fixture(scope="module")
def document() -> Document:
    return Document(text=TEXT, metadata=METADATA, id_="sotu")


@pytest.fixture(scope="module")
def index(embed_model: Any, document: Document) -> VectorStoreIndex:
    splitter = TokenSplitter(chunk_size=128, chunk_overlap=32)
    return VectorStoreIndex.from_documents(
        [document], transformations=[splitter], embed_model=embed_model
    )


def embedded_tokens(node: Any) -> int:
    return max(TOK.count(node.get_content(mode)) for mode in (MetadataMode.EMBED, MetadataMode.LLM))


# ---------------------------------------------------------------------------------- node parsers
def test_token_splitter_nodes_have_exact_offsets_relationships_and_fit_with_metadata(
    document: Document,
) -> None:
    parser = TokenSplitter(chunk_size=96, chunk_overlap=16)
    assert isinstance(parser, NodeParser)
    nodes = parser.get_nodes_from_documents([document])

    assert len(nodes) > 20
    for i, node in enumerate(nodes):
        assert TEXT[node.start_char_idx : node.end_char_idx] == node.text
        assert node.metadata == METADATA
        assert node.ref_doc_id == "sotu"
        assert embedded_tokens(node) <= 96  # metadata included, as the embedder sees it
        prev = node.relationships.get(NodeRelationship.PREVIOUS)
        nxt = node.relationships.get(NodeRelationship.NEXT)
        assert (prev is None) == (i == 0) and (nxt is None) == (i == len(nodes) - 1)
        if prev is not None:
            assert prev.node_id == nodes[i - 1].node_id
            assert node.start_char_idx < nodes[i - 1].end_char_idx  # the overlap
    # The metadata takes room: the text alone is well under the chunk size.
    assert max(TOK.count(n.text) for n in nodes) < 96 - TOK.count(str(METADATA["title"]))


def test_without_metadata_the_text_gets_the_whole_budget(document: Document) -> None:
    parser = TokenSplitter(chunk_size=96, chunk_overlap=16, include_metadata=False)
    nodes = parser.get_nodes_from_documents([document])
    assert max(TOK.count(n.text) for n in nodes) == 96


def test_offsets_stay_exact_where_searching_for_the_text_would_find_an_earlier_repeat() -> None:
    text = "The motion carries. " * 120
    nodes = TokenSplitter(chunk_size=40, chunk_overlap=8).get_nodes_from_documents(
        [Document(text=text, id_="minutes")]
    )
    core = TokenSplitter(chunk_size=40, chunk_overlap=8, include_metadata=False)
    expected = [(c.start, c.end) for c in core._core(40).split(text)]
    assert [(n.start_char_idx, n.end_char_idx) for n in nodes] == expected
    # LlamaIndex's own post-processing searches from the previous start + 1, which in repeating
    # text finds a match one period later instead of where the chunk was cut.
    found = [text.find(n.text, p.start_char_idx + 1) for p, n in itertools.pairwise(nodes)]
    assert found != [n.start_char_idx for n in nodes[1:]]


def test_metadata_that_leaves_no_room_is_an_error() -> None:
    document = Document(text=TEXT[:2000], metadata={"summary": TEXT[:600]})
    with pytest.raises(ValueError, match=r"the metadata takes \d+ of the 64 tokens"):
        TokenSplitter(chunk_size=64, chunk_overlap=8).get_nodes_from_documents([document])


def test_nodes_are_bounded_in_characters_too() -> None:
    run = "Before the run. " + "a" * 200_000 + " after it."  # WordPiece: one [UNK] token
    for parser in (
        TokenSplitter(tokenizer=minilm_path(), chunk_size=64, chunk_overlap=8),
        SemanticSplitter(tokenizer=minilm_path(), chunk_size=64),
    ):
        nodes = parser.get_nodes_from_documents([Document(text=run)])
        assert max(len(n.text) for n in nodes) <= 64 * 32  # type: ignore[attr-defined]
        assert all(run[n.start_char_idx : n.end_char_idx] == n.text for n in nodes)  # type: ignore[attr-defined]
    for parser in (
        TokenSplitter(chunk_size=64, chunk_overlap=8, max_chars=100),
        SemanticSplitter(chunk_size=64, max_chars=100),
    ):
        nodes = parser.get_nodes_from_documents([Document(text=TEXT[:4000], metadata=METADATA)])
        assert max(len(n.text) for n in nodes) <= 100  # type: ignore[attr-defined]
        assert all(TEXT[n.start_char_idx : n.end_char_idx] == n.text for n in nodes)  # type: ignore[attr-defined]


def test_bad_sizes_are_rejected_at_construction() -> None:
    with pytest.raises(ValueError, match="chunk_overlap=32 must be smaller than chunk_size=32"):
        TokenSplitter(chunk_size=32, chunk_overlap=32)


def test_semantic_splitter_with_a_real_llamaindex_embedding(embed_model: Any) -> None:
    text = TEXT[:6000]
    parser = SemanticSplitter(chunk_size=200, embeddings=embed_model)
    nodes = parser.get_nodes_from_documents([Document(text=text, metadata=METADATA)])
    assert len(nodes) >= 6
    assert all(embedded_tokens(n) <= 200 for n in nodes)
    assert all(text[n.start_char_idx : n.end_char_idx] == n.text for n in nodes)
    assert nodes[0].start_char_idx == 0 and nodes[-1].end_char_idx == len(text)
    for a, b in itertools.pairwise(nodes):
        assert a.end_char_idx == b.start_char_idx


def test_ingestion_pipeline_runs_the_parser_and_a_real_embedder(
    embed_model: Any, document: Document
) -> None:
    pipeline = IngestionPipeline(
        transformations=[TokenSplitter(chunk_size=256, chunk_overlap=32), embed_model]
    )
    nodes = pipeline.run(documents=[document])
    assert len(nodes) > 5
    assert all(len(n.embedding or []) == 384 for n in nodes)
    assert all(TEXT[n.start_char_idx : n.end_char_idx] == n.text for n in nodes)  # type: ignore[attr-defined]


class EventRecorder(BaseEventHandler):
    """Keeps every instrumentation event LlamaIndex dispatches."""

    events: list[Any] = Field(default_factory=list)

    def handle(self, event: Any, **kwargs: Any) -> None:
        self.events.append(event)


def test_vector_store_index_with_the_parser_under_callbacks_and_instrumentation(
    embed_model: Any, document: Document, monkeypatch: pytest.MonkeyPatch
) -> None:
    counter = TokenCountingHandler(tokenizer=TOK.encode)
    debug = LlamaDebugHandler()
    manager = CallbackManager([counter, debug])
    monkeypatch.setattr(Settings, "callback_manager", manager)
    recorder = EventRecorder()
    dispatcher = get_dispatcher()
    dispatcher.add_event_handler(recorder)
    embed_callbacks = embed_model.callback_manager
    try:
        parser = TokenSplitter(chunk_size=96, chunk_overlap=16, callback_manager=manager)
        index = VectorStoreIndex.from_documents(
            [document], transformations=[parser], embed_model=embed_model
        )
    finally:
        dispatcher.event_handlers.remove(recorder)
        embed_model.callback_manager = embed_callbacks

    nodes = list(index.docstore.docs.values())
    assert len(nodes) > 20
    assert all(TEXT[n.start_char_idx : n.end_char_idx] == n.text for n in nodes)  # type: ignore[attr-defined]
    # The node-parsing callback event carries our nodes.
    (parsed,) = debug.get_event_pairs(CBEventType.NODE_PARSING)
    assert [n.node_id for n in parsed[1].payload[EventPayload.NODES]] == [n.node_id for n in nodes]
    # What the embedder was sent, per LlamaIndex's own instrumentation, is each node's embed
    # content (metadata included), and LlamaIndex's token counter finds each within the size.
    sent = [c for e in recorder.events if isinstance(e, EmbeddingEndEvent) for c in e.chunks]
    assert sorted(sent) == sorted(n.get_content(MetadataMode.EMBED) for n in nodes)
    counts = [e.total_token_count for e in counter.embedding_token_counts]
    assert len(counts) == len(nodes) and max(counts) <= 96
    assert counter.total_embedding_token_count == sum(TOK.count(c) for c in sent)
    # And the index answers through the same path.
    hits = index.as_retriever(similarity_top_k=3).retrieve(QUESTION)
    assert len(hits) == 3 and all(h.node.node_id in index.docstore.docs for h in hits)


def test_ingestion_pipeline_caches_by_the_parsers_settings(document: Document) -> None:
    pipeline = IngestionPipeline(transformations=[TokenSplitter(chunk_size=128, chunk_overlap=16)])
    first = pipeline.run(documents=[document])
    again = pipeline.run(documents=[document])
    assert [n.node_id for n in again] == [n.node_id for n in first]  # served from the cache
    other = IngestionPipeline(
        transformations=[TokenSplitter(chunk_size=64, chunk_overlap=16)], cache=pipeline.cache
    ).run(documents=[document])
    assert len(other) > len(first)  # another chunk size is another cache entry


@pytest.mark.parametrize(
    "parser",
    [
        TokenSplitter(chunk_size=80, chunk_overlap=8, align="word"),
        SemanticSplitter(chunk_size=80, min_tokens=10),
    ],
    ids=["token", "semantic"],
)
def test_parsers_serialize_for_llamaindex_and_pickle_for_worker_processes(parser: Any) -> None:
    # to_dict/to_json feed IngestionPipeline's cache keys; pickling is how run(num_workers=...)
    # ships transformations. (from_dict fails on id_func for LlamaIndex's own parsers too.)
    assert parser.to_dict()["class_name"] == parser.class_name()
    assert '"chunk_size": 80' in parser.to_json()
    loaded = pickle.loads(pickle.dumps(parser))
    assert loaded.to_dict() == parser.to_dict()
    doc = Document(text=TEXT[:4000], id_="d")
    expected = [(n.text, n.start_char_idx) for n in parser.get_nodes_from_documents([doc])]
    assert [(n.text, n.start_char_idx) for n in loaded.get_nodes_from_documents([doc])] == (
        expected
    )


def test_semantic_parser_takes_chunk_size_and_the_old_max_tokens_with_a_warning() -> None:
    doc = Document(text=TEXT[:4000], id_="d")
    new = SemanticSplitter(chunk_size=90)
    with pytest.warns(DeprecationWarning, match="max_tokens is now chunk_size"):
        old = SemanticSplitter(max_tokens=90)
    assert old.chunk_size == 90 and old.to_dict() == new.to_dict()
    assert [n.text for n in old.get_nodes_from_documents([doc])] == [
        n.text for n in new.get_nodes_from_documents([doc])
    ]
    with pytest.warns(DeprecationWarning):
        assert SemanticSplitter.from_dict({"max_tokens": 70}).chunk_size == 70
    with pytest.warns(DeprecationWarning):
        assert new.max_tokens == 90
    with pytest.raises(ValueError, match="give chunk_size only"):
        SemanticSplitter(chunk_size=90, max_tokens=90)


# --------------------------------------------------------------------------------- postprocessor
def test_reorders_a_real_retrievers_nodes_best_first_unlike_llamaindexs(
    index: VectorStoreIndex,
) -> None:
    hits = index.as_retriever(similarity_top_k=8).retrieve(QUESTION)
    scores = [h.score for h in hits]
    assert scores == sorted(scores, reverse=True)  # type: ignore[type-var]

    ours = LostInTheMiddleReorder().postprocess_nodes(hits)
    theirs = LongContextReorder().postprocess_nodes(hits)

    assert isinstance(LostInTheMiddleReorder(), BaseNodePostprocessor)
    assert ours == reorder(hits, scores)
    assert ours[0] is hits[0] and ours[-1] is hits[1]
    assert theirs[-1] is hits[0]  # 8 nodes: LlamaIndex's puts the best one last


def test_budget_packing_merges_overlapping_nodes_into_exact_spans(index: VectorStoreIndex) -> None:
    hits = index.as_retriever(similarity_top_k=10).retrieve(QUESTION)
    packed = LostInTheMiddleReorder(budget_tokens=600).postprocess_nodes(hits)

    assert TOK.count("\n\n".join(n.node.get_content() for n in packed)) <= 600
    assert hits[0].node.get_content() in packed[0].node.get_content()
    spans = sorted((n.node.start_char_idx, n.node.end_char_idx) for n in packed)  # type: ignore[attr-defined]
    assert all(a_end <= b_start for (_, a_end), (b_start, _) in itertools.pairwise(spans))
    merged = [n for n in packed if n.node.metadata.get("merged_from", 1) > 1]
    assert merged  # neighbours of the 128/32 split overlap, and several were retrieved
    for n in merged:
        node = n.node
        assert isinstance(node, TextNode)
        assert TEXT[node.start_char_idx : node.end_char_idx] == node.text
        assert node.ref_doc_id == "sotu"
        assert "merged_from" not in node.get_content(MetadataMode.LLM)  # bookkeeping stays out


def test_in_a_query_engine(index: VectorStoreIndex) -> None:
    # MockLLM stands in for generation; the postprocessor's output is what we check.
    engine = index.as_query_engine(
        llm=MockLLM(),
        similarity_top_k=6,
        node_postprocessors=[LostInTheMiddleReorder(strategy="reverse_rank")],
    )
    response = engine.query(QUESTION)
    hits = index.as_retriever(similarity_top_k=6).retrieve(QUESTION)
    assert [n.node.node_id for n in response.source_nodes] == [
        n.node.node_id for n in reversed(hits)
    ]


async def test_async_postprocessing_and_missing_scores_warn_once() -> None:
    nodes = [NodeWithScore(node=TextNode(text=t), score=s) for t, s in [("a", 0.2), ("b", None)]]
    with pytest.warns(RuntimeWarning, match="1 of 2 scores are None") as record:
        out = await LostInTheMiddleReorder().apostprocess_nodes(nodes)
    assert len(record) == 1 and out == nodes


def test_unknown_strategy_lists_the_strategies() -> None:
    with pytest.raises(ValueError, match="important_first_last, reverse_rank, none"):
        LostInTheMiddleReorder(strategy="random")


def test_merged_and_cut_nodes_get_a_fresh_token_count(index: VectorStoreIndex) -> None:
    # Nodes that carry a token_count from an earlier step (a tagging transformation, say).
    hits = [
        NodeWithScore(
            node=h.node.model_copy(
                update={"metadata": {**h.node.metadata, "token_count": TOK.count(h.node.text)}}  # type: ignore[attr-defined]
            ),
            score=h.score,
        )
        for h in index.as_retriever(similarity_top_k=10).retrieve(QUESTION)
    ]
    for budget in (600, 20):
        packed = LostInTheMiddleReorder(budget_tokens=budget).postprocess_nodes(hits)
        changed = [
            n
            for n in packed
            if n.node.metadata.get("merged_from", 1) > 1 or n.node.metadata.get("truncated")
        ]
        assert changed
        for n in packed:
            assert n.node.metadata["token_count"] == TOK.count(n.node.text)  # type: ignore[attr-defined]
