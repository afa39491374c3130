"""longcontext.pack: merging overlaps, the token budget, what is dropped, and bad input."""

from __future__ import annotations

import math
import os
import warnings
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from longcontext import Chunk, get_tokenizer
from longcontext.context import STRATEGIES, PackResult, Passage, as_passage, pack, reorder

SHARED = Path(os.environ.get("LONGCONTEXT_SHARED", Path(__file__).resolve().parents[2] / "shared"))
SOURCE = (SHARED / "data" / "corpora" / "state_of_the_union.md").read_text()[:20_000]
TOK = get_tokenizer("cl100k_base")


def piece(start: int, end: int, score: float | None = None, source: str = "sotu") -> dict[str, Any]:
    return {"text": SOURCE[start:end], "start": start, "end": end, "score": score, "source": source}


def assert_exact(result: PackResult, sources: dict[str, str]) -> None:
    for record in result.records:
        if record.start is not None and record.source in sources:
            assert sources[str(record.source)][record.start : record.end] == record.text


# ----------------------------------------------------------------------------------------- merge
def test_overlapping_pieces_merge_into_the_exact_span() -> None:
    a, b, c, far = (
        piece(0, 300, 0.5),
        piece(200, 500, 0.9),
        piece(450, 700, 0.4),
        piece(900, 1000, 0.1),
    )
    result = pack([a, b, c, far], budget_tokens=10_000)

    merged = [p for p in result.passages if isinstance(p, Passage)]
    assert len(merged) == 1
    assert merged[0].text == SOURCE[0:700]
    assert (merged[0].start, merged[0].end, merged[0].source) == (0, 700, "sotu")
    assert merged[0].metadata["merged_from"] == 3
    assert merged[0].score == 0.9  # its best member's score
    assert merged[0].origin == (b, a, c)  # most relevant first
    assert any(p is far for p in result.passages)  # untouched: the caller's own object
    assert result.text.count(SOURCE[200:300]) == 1
    assert result.dropped == []


def test_touching_pieces_are_not_merged() -> None:
    """Touching offsets are no evidence of one text: PDF pages split without overlap all
    start at 0 and carry the file as source, so page 2's [0, 500) touches page 1's [500, ...)."""
    a, b = piece(0, 300, 0.9), piece(300, 500, 0.5)
    result = pack([a, b], budget_tokens=10_000)
    assert result.passages == [a, b]


def test_a_contained_or_duplicated_piece_is_sent_once() -> None:
    outer, inner, duplicate = piece(0, 400, 0.2), piece(100, 200, 0.9), piece(0, 400, 0.1)
    result = pack([outer, inner, duplicate], budget_tokens=10_000)
    assert [r.text for r in result.records] == [SOURCE[0:400]]
    assert result.records[0].metadata["merged_from"] == 3


def test_same_offsets_in_different_sources_are_not_merged() -> None:
    other = "x" * 300
    a = piece(0, 300, 0.9)
    b = {"text": other, "start": 0, "end": 300, "score": 0.5, "source": "other"}
    result = pack([a, b], budget_tokens=10_000)
    assert result.passages == [a, b]


def test_pieces_that_disagree_on_shared_characters_stay_apart() -> None:
    a = piece(0, 300, 0.9)
    b = {**piece(200, 400, 0.5), "text": "Z" * 200}
    result = pack([a, b], budget_tokens=10_000)
    assert result.passages == [a, b]  # each with its own text and offsets, nothing raised
    assert [(r.start, r.end) for r in result.records] == [(0, 300), (200, 400)]


def test_pdf_pages_with_one_source_merge_only_within_a_page() -> None:
    """PyPDFLoader gives every page the file as ``source``; split with ``add_start_index``,
    offsets count from each page's start."""
    from langchain_core.documents import Document

    pages = [SOURCE[0:3000], SOURCE[5000:8000]]

    def doc(page: int, start: int, end: int, score: float) -> tuple[Document, float]:
        meta = {"source": "report.pdf", "page": page, "start_index": start}
        return Document(page_content=pages[page][start:end], metadata=meta), score

    items = [
        doc(0, 0, 400, 0.9),
        doc(1, 300, 700, 0.8),
        doc(0, 350, 800, 0.95),
        doc(1, 0, 300, 0.6),
    ]
    result = pack(items, budget_tokens=10_000, strategy="none")
    texts = sorted((r.metadata["page"], r.start, r.end, r.text) for r in result.records)
    assert (
        texts
        == [
            (0, 0, 800, pages[0][0:800]),  # two chunks of page 0 that agree on [350, 400)
            (1, 0, 300, pages[1][0:300]),  # touches page 1's next chunk: not merged
            (1, 300, 700, pages[1][300:700]),  # overlaps page 0's chunks but disagrees with them
        ]
    )
    merged = next(r for r in result.records if r.metadata["page"] == 0)
    # The best member ([350, 800)) gave its metadata; its start_index now describes the span.
    assert merged.metadata["start_index"] == 0 and merged.metadata["merged_from"] == 2


def test_llamaindex_nodes_with_section_offsets_never_mix_sections() -> None:
    """Nodes parsed from sections carry offsets within their section but the document's id."""
    from llama_index.core.schema import NodeRelationship, NodeWithScore, RelatedNodeInfo, TextNode

    sections = [SOURCE[:4000], SOURCE[4000:8000]]

    def node(section: int, start: int, end: int, score: float) -> NodeWithScore:
        text = sections[section][start:end]
        n = TextNode(text=text, start_char_idx=start, end_char_idx=end)
        n.relationships[NodeRelationship.SOURCE] = RelatedNodeInfo(node_id="doc-1")
        return NodeWithScore(node=n, score=score)

    nodes = [node(0, 0, 500, 0.9), node(1, 400, 900, 0.8), node(0, 450, 1000, 0.7)]
    result = pack(nodes, budget_tokens=10_000)
    assert sorted((r.start, r.end, r.text) for r in result.records) == [
        (0, 1000, sections[0][:1000]),
        (400, 900, sections[1][400:900]),
    ]


def test_merged_and_cut_passages_get_a_fresh_token_count() -> None:
    from langchain_core.documents import Document

    from longcontext import TokenSplitter

    chunks = TokenSplitter(TOK, chunk_size=64, chunk_overlap=16).split(SOURCE[:2000])
    docs = [
        Document(
            page_content=c.text,
            metadata={"source": "s", "start_index": c.start, "token_count": c.token_count},
        )
        for c in chunks[:3]
    ]
    (merged,) = pack(docs, budget_tokens=10_000).records
    assert merged.metadata["merged_from"] == 3
    assert merged.metadata["token_count"] == TOK.count(merged.text) > chunks[0].token_count
    assert merged.metadata["start_index"] == 0 == merged.start

    (cut,) = pack(docs[1:2], budget_tokens=20).records
    assert cut.metadata["truncated"]
    assert cut.metadata["token_count"] == TOK.count(cut.text) <= 20 < chunks[1].token_count
    assert (cut.metadata["start_index"], cut.start) == (chunks[1].start, chunks[1].start)


def test_offsets_that_do_not_match_the_text_are_an_error() -> None:
    with pytest.raises(ValueError, match="start=0, end=50 span 50 characters but its text has 10"):
        pack([{"text": SOURCE[:10], "start": 0, "end": 50, "source": "s"}], 100)


def test_passages_without_offsets_or_source_are_packed_but_not_merged() -> None:
    plain = SOURCE[0:300]
    no_source = {"text": SOURCE[0:300], "start": 0, "end": 300}
    result = pack([plain, no_source, piece(100, 300)], budget_tokens=10_000)
    assert len(result.passages) == 3
    assert result.passages[0] is plain
    assert any(p is no_source for p in result.passages)


# ---------------------------------------------------------------------------------------- budget
def test_budget_counts_separators_exactly() -> None:
    a, b = piece(0, 200, 0.9), piece(1000, 1200, 0.8)
    sep = "\n\n-----\n\n"
    # A passage costs its own tokens plus one separator's (pack's documented rule).
    exact = TOK.count(a["text"]) + TOK.count(sep) + TOK.count(b["text"])
    assert len(pack([a, b], exact, separator=sep).passages) == 2
    tight = pack([a, b], exact - 1, separator=sep)
    assert tight.passages == [a] and tight.dropped == [b]


def test_budget_counts_the_per_passage_template() -> None:
    a, b = piece(0, 200, 0.9), piece(1000, 1200, 0.8)
    template = "<doc source={source} score={score}>\n{text}\n</doc>"
    full = pack([a, b], 10_000, template=template, strategy="none")
    rendered_a = "<doc source=sotu score=0.9>\n" + a["text"] + "\n</doc>"
    rendered_b = "<doc source=sotu score=0.8>\n" + b["text"] + "\n</doc>"
    assert full.text == rendered_a + "\n\n" + rendered_b
    assert full.token_count == TOK.count(full.text)
    cost = TOK.count(rendered_a) + TOK.count("\n\n") + TOK.count(rendered_b)
    assert TOK.count(a["text"]) + TOK.count(b["text"]) + 2 < cost - 10  # the template counts
    assert len(pack([a, b], cost, template=template).passages) == 2
    assert len(pack([a, b], cost - 1, template=template).passages) == 1


def test_an_overlapping_passage_costs_only_the_text_it_adds() -> None:
    best, neighbour = piece(0, 400, 0.9), piece(300, 700, 0.8)
    span_tokens = TOK.count(SOURCE[0:700])
    assert TOK.count(best["text"]) + TOK.count(neighbour["text"]) > span_tokens + 10
    (merged,) = pack([best, neighbour], span_tokens).passages
    assert merged.text == SOURCE[0:700]
    alone = pack([best, neighbour], span_tokens - 1)
    assert alone.passages == [best] and alone.dropped == [neighbour]


def test_a_long_run_of_neighbours_does_not_crowd_out_the_best_of_them() -> None:
    # Four chained neighbours would make one long span; the budget only takes two of them,
    # so the two most relevant are kept (merged) and the others dropped, not the whole run.
    run = [piece(300 * k, 300 * k + 400, s) for k, s in enumerate([0.2, 0.9, 0.8, 0.1])]
    budget = TOK.count(SOURCE[300:1000])
    result = pack(run, budget)
    assert [r.text for r in result.records] == [SOURCE[300:1000]]
    assert result.dropped == [run[0], run[3]]


def test_keeps_the_most_relevant_that_fit_and_reports_the_rest() -> None:
    big, small_low, mid = piece(0, 2000, 0.8), piece(3000, 3100, 0.1), piece(5000, 5400, 0.5)
    top = piece(7000, 7400, 0.95)
    budget = TOK.count(top["text"]) + TOK.count(mid["text"]) + TOK.count(small_low["text"]) + 10
    result = pack([big, small_low, mid, top], budget)
    # big does not fit beside top, but the less relevant mid and small_low still do.
    assert result.dropped == [big]
    assert reorder([top, mid, small_low]) == result.passages
    assert result.token_count == TOK.count(result.text) <= budget
    assert not result.truncated


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_kept_passages_are_laid_out_by_the_strategy(strategy: str) -> None:
    pieces = [
        piece(1000 * i, 1000 * i + 100, score) for i, score in enumerate([0.3, 0.9, 0.5, 0.7])
    ]
    result = pack(pieces, 10_000, strategy=strategy)
    assert result.passages == reorder(pieces, [p["score"] for p in pieces], strategy)
    assert result.text == "\n\n".join(p["text"] for p in result.passages)


def test_no_scores_means_input_order_is_the_rank() -> None:
    texts = [SOURCE[i * 500 : i * 500 + 400] for i in range(4)]
    budget = TOK.count("\n\n".join(texts[:2])) + 1
    result = pack(texts, budget, strategy="none")
    assert result.passages == texts[:2]
    assert result.dropped == texts[2:]


# ------------------------------------------------------------------------------------- bad input
def test_none_and_nan_scores_rank_lowest_with_one_warning() -> None:
    a, b, c = piece(0, 100, None), piece(1000, 1100, 0.2), piece(2000, 2100, math.nan)
    d = piece(3000, 3100, 0.1)
    budget = TOK.count(b["text"] + "\n\n" + d["text"])
    with pytest.warns(RuntimeWarning, match="2 of 4 scores are None or NaN") as record:
        result = pack([a, b, c, d], budget, strategy="none")
    assert len(record) == 1
    assert result.passages == [b, d]
    assert result.dropped == [a, c]


def test_budget_below_the_best_passage_cuts_it_at_a_token_boundary_and_flags_it() -> None:
    best, other = piece(0, 2000, 0.9), piece(3000, 3100, 0.5)
    result = pack([other, best], budget_tokens=50)

    assert result.token_count == TOK.count(result.text) <= 50
    assert result.token_count >= 45  # cut close to the budget, not emptied
    (kept,) = result.passages
    assert isinstance(kept, Passage)
    assert kept.metadata["truncated"] is True and result.truncated
    assert kept.origin == (best,)
    assert SOURCE.startswith(kept.text) and kept.end == len(kept.text)
    token_ends = {int(e) for e in TOK.spans(best["text"]).ends}  # type: ignore[union-attr]
    assert len(kept.text) in token_ends
    assert result.dropped == [other]


def test_a_tiny_budget_cuts_the_best_passage_not_the_span_it_shares_with_others() -> None:
    low, best = piece(0, 1200, 0.1), piece(1000, 2500, 0.9)
    result = pack([low, best], budget_tokens=40)
    (kept,) = result.records
    assert kept.start == 1000 and kept.metadata["truncated"]
    assert SOURCE[kept.start : kept.end] == kept.text
    assert result.dropped == [low]  # merging it would not fit


def test_truncation_with_a_tokenizer_that_gives_no_offsets() -> None:
    def count_words(text: str) -> list[int]:
        return [len(w) for w in text.split()]

    result = pack([SOURCE[:3000]], budget_tokens=30, tokenizer=count_words)
    assert result.truncated
    assert len(result.text.split()) <= 30
    assert len(result.text.split()) >= 29
    assert SOURCE.startswith(result.text)


def test_unknown_strategy_lists_the_strategies() -> None:
    with pytest.raises(ValueError, match="important_first_last, reverse_rank, none"):
        pack(["text"], 100, strategy="best_last")


@pytest.mark.parametrize("budget", [0, -5])
def test_budget_must_be_positive(budget: int) -> None:
    with pytest.raises(ValueError, match=f"budget_tokens must be at least 1, got {budget}"):
        pack(["text"], budget)


def test_template_needs_a_text_field_and_known_fields() -> None:
    with pytest.raises(ValueError, match="no \\{text\\} field"):
        pack(["a"], 100, template="[{source}]")
    with pytest.raises(ValueError, match="'title' is not text, source, score"):
        pack(["a"], 100, template="{title}: {text}")


def test_a_budget_that_cannot_hold_even_the_template_is_an_error() -> None:
    with pytest.raises(ValueError, match="budget_tokens=3 cannot hold any of the most relevant"):
        pack([SOURCE[:500]], 3, template="<document>\n{text}\n</document>")


def test_unreadable_passage_type_names_the_type() -> None:
    with pytest.raises(TypeError, match="cannot read a passage from int"):
        pack([42], 100)


def test_empty_input_gives_an_empty_result() -> None:
    result = pack([], 100)
    assert (result.passages, result.dropped, result.text, result.token_count) == ([], [], "", 0)


# -------------------------------------------------------------------------------------- adapters
def test_adapters_read_chunks_and_framework_objects() -> None:
    from langchain_core.documents import Document
    from llama_index.core.schema import NodeRelationship, NodeWithScore, RelatedNodeInfo, TextNode

    chunk = Chunk(SOURCE[10:50], 10, 50, 8, 0, {"source": "sotu"})
    assert as_passage(chunk) == Passage(
        SOURCE[10:50], None, "sotu", 10, 50, {"source": "sotu"}, (chunk,)
    )

    doc = Document(page_content=SOURCE[5:25], metadata={"source": "f.md", "start_index": 5})
    assert (as_passage(doc).start, as_passage(doc).end, as_passage(doc).source) == (5, 25, "f.md")
    scored = as_passage((doc, 0.75))
    assert scored.score == 0.75 and scored.origin == ((doc, 0.75),)
    not_found = Document(page_content="abc", metadata={"start_index": -1, "relevance_score": 0.3})
    assert as_passage(not_found).start is None and as_passage(not_found).score == 0.3

    node = TextNode(text=SOURCE[100:140], start_char_idx=100, end_char_idx=140)
    node.relationships[NodeRelationship.SOURCE] = RelatedNodeInfo(node_id="doc-1")
    with_score = NodeWithScore(node=node, score=0.5)
    read = as_passage(with_score)
    assert (read.text, read.score, read.source, read.start, read.end) == (
        SOURCE[100:140],
        0.5,
        "doc-1",
        100,
        140,
    )
    assert read.origin == (with_score,)
    assert as_passage(node).score is None


def test_langchain_documents_with_start_index_merge() -> None:
    from langchain_core.documents import Document

    docs = [
        Document(page_content=SOURCE[s:e], metadata={"source": "sotu", "start_index": s, "k": s})
        for s, e in [(0, 300), (250, 600)]
    ]
    result = pack([(docs[0], 0.2), (docs[1], 0.8)], 10_000)
    (merged,) = result.passages
    assert merged.text == SOURCE[:600]
    assert merged.metadata["k"] == 250  # metadata of the most relevant member


def test_chunks_of_the_core_splitter_merge_back_into_the_source() -> None:
    from longcontext import TokenSplitter

    chunks = TokenSplitter(chunk_size=128, chunk_overlap=32).split(SOURCE[:6000])
    tagged = [
        Chunk(c.text, c.start, c.end, c.token_count, c.index, {"source": "s"}) for c in chunks
    ]
    result = pack(tagged, budget_tokens=100_000, strategy="none")
    assert [r.text for r in result.records] == [SOURCE[: chunks[-1].end]]
    assert result.token_count == TOK.count(SOURCE[: chunks[-1].end])
    assert result.token_count < sum(c.token_count for c in chunks)


# ------------------------------------------------------------------------------------ properties
spans = st.tuples(st.integers(0, 3000), st.integers(1, 600), st.sampled_from(["a", "b"]))
scores = st.one_of(st.none(), st.floats(0, 1), st.just(math.nan))


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    items=st.lists(st.tuples(spans, scores, st.booleans()), min_size=1, max_size=15),
    budget=st.integers(1, 1500),
    strategy=st.sampled_from(STRATEGIES),
    template=st.sampled_from([None, "[{source}] {text}"]),
)
def test_pack_never_sends_a_source_character_twice_and_stays_in_budget(
    items: list[tuple[tuple[int, int, str], float | None, bool]],
    budget: int,
    strategy: str,
    template: str | None,
) -> None:
    sources = {"a": SOURCE, "b": SOURCE[::-1]}
    passages: list[Any] = []
    for (start, length, source), score, with_offsets in items:
        text = sources[source][start : start + length]
        if with_offsets:
            passages.append({"text": text, "start": start, "end": start + length, "source": source})
        else:
            passages.append({"text": text, "source": source})
        passages[-1]["score"] = score
    assume(template is None or budget > 10)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        result = pack(passages, budget, strategy=strategy, template=template)

    assert result.token_count == TOK.count(result.text) <= budget
    assert result.records  # never silently empty
    assert_exact(result, sources)
    sent: dict[str, set[int]] = {"a": set(), "b": set()}
    for record in result.records:
        if record.start is not None and record.end is not None:
            covered = set(range(record.start, record.end))
            assert not covered & sent[str(record.source)]
            sent[str(record.source)] |= covered
    # Every input is accounted for exactly once: kept (maybe inside a merge) or dropped.
    kept = [o for r in result.records for o in r.origin]
    assert sorted(map(id, kept + result.dropped)) == sorted(map(id, passages))


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    items=st.lists(
        st.tuples(st.integers(0, 1500), st.integers(1, 400), st.integers(0, 2), st.floats(0, 1)),
        min_size=1,
        max_size=12,
    )
)
def test_one_source_id_over_several_texts_never_mixes_them(
    items: list[tuple[int, int, int, float]],
) -> None:
    """Pages of one file under one source id: every record is an exact slice of one page at
    its offsets, and its token_count is its own."""
    pages = [SOURCE[:2000], SOURCE[2000:4000], SOURCE[:1000] + SOURCE[3000:4000]]
    passages = [
        {
            "text": pages[page][start : start + length],
            "start": start,
            "end": start + len(pages[page][start : start + length]),
            "source": "file.pdf",
            "score": score,
            "metadata": {"token_count": -1},
        }
        for start, length, page, score in items
        if pages[page][start : start + length]
    ]
    assume(passages)
    result = pack(passages, 100_000)
    for record in result.records:
        assert any(page[record.start : record.end] == record.text for page in pages)
        if len(record.origin) > 1:
            assert record.metadata["token_count"] == TOK.count(record.text)
    kept = [o for r in result.records for o in r.origin]
    assert sorted(map(id, kept + result.dropped)) == sorted(map(id, passages))


def test_a_passage_agreeing_with_two_texts_under_one_source_id_joins_one() -> None:
    """Two pages that share their first 1000 characters, under one source id: a passage from
    that shared stretch agrees with a kept slice of each page, which differ from each other. It
    joins the best-ranked one; the merged record is an exact slice of one page."""
    first, second = SOURCE[:2000], SOURCE[:1000] + SOURCE[3000:4000]
    assert first[1000] != second[1000]

    def page_slice(page: str, start: int, end: int, score: float) -> dict[str, Any]:
        return {"text": page[start:end], "start": start, "end": end, "score": score,
                "source": "file.pdf"}  # fmt: skip

    passages = [
        page_slice(first, 601, 1001, 0.9),  # ends past the shared stretch, in page one
        page_slice(second, 602, 1002, 0.8),  # ends past it in page two: no merge with the first
        page_slice(first, 203, 603, 0.7),  # inside the shared stretch: agrees with both
    ]
    records = pack(passages, 100_000).records
    assert [(r.start, r.end, len(r.origin)) for r in records] == [(203, 1001, 2), (602, 1002, 1)]
    assert records[0].text == first[203:1001] and records[1].text == second[602:1002]
