"""langchain_longcontext's splitters and reorderer with real LangChain objects.

Real all-MiniLM-L6-v2 embeddings, a real langchain-community FAISS store, real LCEL chains.
"""

from __future__ import annotations

import itertools
import threading

import pytest
from langchain_community.vectorstores import FAISS
from langchain_core.documents import Document
from langchain_core.load import dumps, loads
from langchain_core.runnables import RunnableLambda
from langchain_longcontext import LostInTheMiddleReorder, SemanticSplitter, TokenSplitter
from langchain_text_splitters import TextSplitter, TokenTextSplitter
from retrieval_fixtures import MiniLMEmbeddings, corpus_excerpt

from longcontext import get_tokenizer
from longcontext.context import reorder

TOK = get_tokenizer("cl100k_base")
TEXT = corpus_excerpt()
QUESTION = "What did the president say about Ukraine and Putin?"


@pytest.fixture(scope="module")
def chunks() -> list[Document]:
    return TokenSplitter(chunk_size=128, chunk_overlap=32).create_documents(
        [TEXT], [{"source": "state_of_the_union.md"}]
    )


@pytest.fixture(scope="module")
def store(chunks: list[Document]) -> FAISS:
    # IndexFlatL2 returns squared distances; for unit vectors d = 2 - 2cos, so 1 - d/4 maps
    # cosine similarity onto [0, 1] as similarity_search_with_relevance_scores expects.
    return FAISS.from_documents(chunks, MiniLMEmbeddings(), relevance_score_fn=lambda d: 1 - d / 4)


# ------------------------------------------------------------------------------------- splitters
def test_token_splitter_is_a_langchain_text_splitter_with_exact_offsets_under_overlap() -> None:
    splitter = TokenSplitter(chunk_size=64, chunk_overlap=16)
    assert isinstance(splitter, TextSplitter)
    docs = splitter.create_documents([TEXT[:5000]], [{"source": "sotu"}])

    assert len(docs) > 10
    for i, doc in enumerate(docs):
        meta = doc.metadata
        assert TEXT[meta["start_index"] : meta["end_index"]] == doc.page_content
        assert meta["token_count"] == TOK.count(doc.page_content) <= 64
        assert meta["chunk_index"] == i and meta["source"] == "sotu"
    # Neighbours overlap: each starts before the previous one ends.
    for a, b in itertools.pairwise(docs):
        assert b.metadata["start_index"] < a.metadata["end_index"]
    assert splitter.split_text(TEXT[:5000]) == [d.page_content for d in docs]


def test_langchain_token_text_splitter_loses_start_index_with_overlap_and_ours_does_not() -> None:
    text = TEXT[:5000]
    theirs = TokenTextSplitter(
        encoding_name="cl100k_base", chunk_size=64, chunk_overlap=16, add_start_index=True
    ).create_documents([text])
    ours = TokenSplitter(chunk_size=64, chunk_overlap=16, add_start_index=True).create_documents(
        [text]
    )
    their_starts = [d.metadata["start_index"] for d in theirs]
    assert their_starts.count(-1) >= len(theirs) // 3  # -1: "not found" where chunks overlap
    assert all(d.metadata["start_index"] >= 0 for d in ours)
    assert all(text[d.metadata["start_index"] :].startswith(d.page_content) for d in ours)


def test_non_ascii_text_stays_exact_where_decoded_tokens_would_break_characters() -> None:
    text = "Café naïve — 北京欢迎你！Ünïcödé 😀 " * 40
    theirs = TokenTextSplitter(encoding_name="cl100k_base", chunk_size=16, chunk_overlap=4)
    assert any("\ufffd" in t for t in theirs.split_text(text))  # decoded half characters
    docs = TokenSplitter(chunk_size=16, chunk_overlap=4).create_documents([text])
    assert all("\ufffd" not in d.page_content for d in docs)
    assert all(
        text[d.metadata["start_index"] : d.metadata["end_index"]] == d.page_content for d in docs
    )


def test_split_documents_and_transform_documents_keep_each_documents_metadata() -> None:
    splitter = TokenSplitter(chunk_size=48, chunk_overlap=8)
    originals = [
        Document(page_content=TEXT[:1500], metadata={"source": "a", "tags": ["x"]}),
        Document(page_content=TEXT[1500:3000], metadata={"source": "b"}),
    ]
    for docs in (splitter.split_documents(originals), splitter.transform_documents(originals)):
        by_source = {s: [d for d in docs if d.metadata["source"] == s] for s in "ab"}
        for source, original in zip("ab", originals, strict=True):
            assert [d.metadata["chunk_index"] for d in by_source[source]] == list(
                range(len(by_source[source]))
            )
            for d in by_source[source]:
                span = slice(d.metadata["start_index"], d.metadata["end_index"])
                assert original.page_content[span] == d.page_content
    docs[0].metadata["tags"].append("changed")
    assert originals[0].metadata["tags"] == ["x"]  # metadata is copied, not shared


def test_semantic_splitter_with_real_langchain_embeddings() -> None:
    text = TEXT[:6000]
    splitter = SemanticSplitter(chunk_size=200, embeddings=MiniLMEmbeddings())
    assert isinstance(splitter, TextSplitter)
    docs = splitter.create_documents([text])

    assert len(docs) >= 6
    assert all(d.metadata["token_count"] == TOK.count(d.page_content) <= 200 for d in docs)
    assert all(
        text[d.metadata["start_index"] : d.metadata["end_index"]] == d.page_content for d in docs
    )
    # No overlap and no gap: the chunks tile the text.
    assert docs[0].metadata["start_index"] == 0 and docs[-1].metadata["end_index"] == len(text)
    for a, b in itertools.pairwise(docs):
        assert a.metadata["end_index"] == b.metadata["start_index"]


def test_semantic_splitter_calls_the_users_embeddings_from_the_callers_thread_only() -> None:
    threads: set[int] = set()

    class Recording(MiniLMEmbeddings):
        def embed_documents(self, texts: list[str]) -> list[list[float]]:
            threads.add(threading.get_ident())
            return super().embed_documents(texts)

    texts = [TEXT[i : i + 1500] for i in range(0, 6000, 1500)]
    docs = SemanticSplitter(chunk_size=120, embeddings=Recording()).create_documents(texts)
    assert threads == {threading.get_ident()}  # LangChain Embeddings need not be thread-safe
    assert len({d.metadata["chunk_index"] for d in docs}) > 1


def test_bad_sizes_raise_the_cores_errors() -> None:
    with pytest.raises(ValueError, match="chunk_overlap=64 must be smaller than chunk_size=64"):
        TokenSplitter(chunk_size=64, chunk_overlap=64)
    with pytest.raises(ValueError, match="must be a positive number of tokens"):
        SemanticSplitter(chunk_size=0)
    with pytest.raises(TypeError, match="text must be str"):
        TokenSplitter().split_text(b"bytes")  # type: ignore[arg-type]


# ------------------------------------------------------------------------------------- reorderer
def test_reorders_scored_hits_from_a_real_faiss_store(store: FAISS) -> None:
    hits = store.similarity_search_with_relevance_scores(QUESTION, k=8)
    scores = [score for _, score in hits]
    assert scores == sorted(scores, reverse=True) and len(set(scores)) == 8

    out = LostInTheMiddleReorder().transform_documents(hits)

    ranked = [doc.page_content for doc, _ in hits]
    assert [d.page_content for d in out] == reorder(ranked, scores)
    assert out[0].page_content == ranked[0] and out[-1].page_content == ranked[1]
    assert [d.metadata["relevance_score"] for d in out] == reorder(scores, scores)


def test_langchains_own_reorder_puts_the_best_hit_last_for_even_k(store: FAISS) -> None:
    from langchain_community.document_transformers import LongContextReorder

    docs = [doc for doc, _ in store.similarity_search_with_relevance_scores(QUESTION, k=8)]
    theirs = LongContextReorder().transform_documents(docs)
    ours = LostInTheMiddleReorder().transform_documents(docs)  # no scores: input order is rank
    assert theirs[-1] == docs[0] and ours[0] == docs[0]


def test_in_an_lcel_chain_with_budget_packing(store: FAISS) -> None:
    budget = 600
    reorderer = LostInTheMiddleReorder(budget_tokens=budget)
    chain = (
        RunnableLambda(lambda q: store.similarity_search_with_relevance_scores(q, k=10))
        | reorderer
        | RunnableLambda(lambda docs: "\n\n".join(d.page_content for d in docs))
    )
    context = chain.invoke(QUESTION)

    hits = store.similarity_search_with_relevance_scores(QUESTION, k=10)
    docs = reorderer.invoke(hits)
    assert context == "\n\n".join(d.page_content for d in docs)
    assert TOK.count(context) <= budget
    assert hits[0][0].page_content in docs[0].page_content  # the best hit comes first
    # Every document is an exact source span, and no source character is sent twice.
    spans = sorted((d.metadata["start_index"], d.metadata["end_index"]) for d in docs)
    assert all(a_end <= b_start for (_, a_end), (b_start, _) in itertools.pairwise(spans))
    for d in docs:
        assert TEXT[d.metadata["start_index"] : d.metadata["end_index"]] == d.page_content
        assert d.metadata["token_count"] == TOK.count(d.page_content)  # never the old chunk's
    # Neighbours of the 128/32 split overlap and the question hits several of them: those
    # were merged into one span instead of sending their shared 32 tokens twice.
    hit_spans = sorted((d.metadata["start_index"], d.metadata["end_index"]) for d, _ in hits)
    assert any(b_start < a_end for (_, a_end), (b_start, _) in itertools.pairwise(hit_spans))
    assert any(d.metadata.get("merged_from", 1) > 1 for d in docs)


async def test_retriever_chain_runs_async_and_batched(store: FAISS) -> None:
    chain = store.as_retriever(search_kwargs={"k": 6}) | LostInTheMiddleReorder()
    retrieved = store.as_retriever(search_kwargs={"k": 6}).invoke(QUESTION)
    expected = reorder(retrieved)
    assert await chain.ainvoke(QUESTION) == expected
    assert chain.batch([QUESTION, QUESTION]) == [expected, expected]


def test_score_key_and_strategy_are_configurable() -> None:
    docs = [
        Document(page_content=str(i), metadata={"score": s}) for i, s in enumerate([0.1, 0.9, 0.5])
    ]
    out = LostInTheMiddleReorder(score_key="score", strategy="reverse_rank").invoke(docs)
    assert [d.page_content for d in out] == ["0", "2", "1"]
    with pytest.raises(ValueError, match="important_first_last, reverse_rank, none"):
        LostInTheMiddleReorder(strategy="middle")


def test_tiny_budget_cuts_the_best_document_and_flags_it(store: FAISS) -> None:
    hits = store.similarity_search_with_relevance_scores(QUESTION, k=4)
    (doc,) = LostInTheMiddleReorder(budget_tokens=20).invoke(hits)
    assert doc.metadata["truncated"] is True
    assert doc.metadata["token_count"] == TOK.count(doc.page_content) <= 20
    assert TEXT[doc.metadata["start_index"] : doc.metadata["end_index"]] == doc.page_content


def test_reorderer_round_trips_through_langchains_dumps_and_loads(store: FAISS) -> None:
    original = LostInTheMiddleReorder(
        strategy="reverse_rank", budget_tokens=400, template="[{source}] {text}", score_key="s"
    )
    serialized = dumps(original)
    # loads imports only from trusted namespaces, and only the classes it is allowed.
    with pytest.raises(ValueError, match="not allowed"):
        loads(serialized, valid_namespaces=["langchain_longcontext"], allowed_objects="all")
    loaded = loads(
        serialized,
        valid_namespaces=["langchain_longcontext"],
        allowed_objects=[LostInTheMiddleReorder],
    )
    assert isinstance(loaded, LostInTheMiddleReorder) and loaded == original
    hits = store.similarity_search_with_relevance_scores(QUESTION, k=6)
    assert loaded.invoke(hits) == original.invoke(hits)
    chain = RunnableLambda(lambda q: store.similarity_search_with_relevance_scores(q, k=6)) | loaded
    assert chain.invoke(QUESTION) == original.invoke(hits)
    default = LostInTheMiddleReorder()
    assert (
        loads(
            dumps(default),
            valid_namespaces=["langchain_longcontext"],
            allowed_objects=[LostInTheMiddleReorder],
        )
        == default
    )
