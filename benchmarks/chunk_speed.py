"""Chunking speed: MB/s on one thread over the shared corpora, longcontext beside the anchors.

Every chunker works at 512 tokens of cl100k_base with 64 tokens of overlap where its API has
overlap. The floor is one tiktoken ``encode_ordinary`` pass per text: a token-aware chunker cannot
beat reading the text into tokens once. Each timed run builds its chunker afresh (some memoize
token counts across calls) and chunks all five corpora; runs of all chunkers are interleaved so
that noise from a shared machine falls on all of them alike, and the median run counts.

    python benchmarks/chunk_speed.py [--runs 7] [--write-docs]
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from _common import load_corpora, markdown_table, setup_offline, write_docs_section

setup_offline(one_thread=True)

import tiktoken  # noqa: E402  (after the offline set-up)

CHUNK_SIZE = 512
OVERLAP = 64
ENCODING = "cl100k_base"

Run = Callable[[list[str]], int]  # chunks every text, returns how many chunks it made


@dataclass
class Contender:
    name: str
    build: Callable[[], Run]
    kind: str  # "floor", "ours", "token" (fixed windows) or "structural"
    note: str = ""
    times: list[float] = field(default_factory=list)
    error: str = ""
    chunks: int = 0


def _floor() -> Run:
    encoding = tiktoken.get_encoding(ENCODING)
    return lambda texts: sum(len(encoding.encode_ordinary(t)) > 0 for t in texts)


def _ours_token() -> Run:
    from longcontext import TokenSplitter

    splitter = TokenSplitter(ENCODING, chunk_size=CHUNK_SIZE, chunk_overlap=OVERLAP)
    return lambda texts: sum(map(len, splitter.split_many(texts, num_threads=1)))


def _ours_semantic() -> Run:
    from longcontext import SemanticSplitter

    splitter = SemanticSplitter(ENCODING, chunk_size=CHUNK_SIZE)
    return lambda texts: sum(map(len, splitter.split_many(texts, num_threads=1)))


def _langchain_token() -> Run:
    from langchain_text_splitters import TokenTextSplitter

    splitter = TokenTextSplitter(
        encoding_name=ENCODING, chunk_size=CHUNK_SIZE, chunk_overlap=OVERLAP
    )
    return lambda texts: sum(len(splitter.split_text(t)) for t in texts)


def _langchain_recursive() -> Run:
    from langchain_text_splitters import RecursiveCharacterTextSplitter

    splitter = RecursiveCharacterTextSplitter.from_tiktoken_encoder(
        encoding_name=ENCODING, chunk_size=CHUNK_SIZE, chunk_overlap=OVERLAP
    )
    return lambda texts: sum(len(splitter.split_text(t)) for t in texts)


def _llamaindex_sentence() -> Run:
    from llama_index.core.node_parser import SentenceSplitter

    encoding = tiktoken.get_encoding(ENCODING)
    splitter = SentenceSplitter(
        chunk_size=CHUNK_SIZE, chunk_overlap=OVERLAP, tokenizer=encoding.encode
    )
    return lambda texts: sum(len(splitter.split_text(t)) for t in texts)


def _chonkie_token() -> Run:
    from chonkie import TokenChunker

    # A tiktoken Encoding object: the name "cl100k_base" makes Chonkie download from the Hub.
    chunker = TokenChunker(
        tokenizer=tiktoken.get_encoding(ENCODING), chunk_size=CHUNK_SIZE, chunk_overlap=OVERLAP
    )
    return lambda texts: sum(len(chunker.chunk(t)) for t in texts)


def _chonkie_recursive() -> Run:
    from chonkie import RecursiveChunker

    chunker = RecursiveChunker(tokenizer=tiktoken.get_encoding(ENCODING), chunk_size=CHUNK_SIZE)
    return lambda texts: sum(len(chunker.chunk(t)) for t in texts)


def _semchunk() -> Run:
    import semchunk

    chunker = semchunk.chunkerify(tiktoken.get_encoding(ENCODING), CHUNK_SIZE)
    return lambda texts: sum(len(chunker(t, overlap=OVERLAP)) for t in texts)


def _semantic_text_splitter() -> Run:
    from semantic_text_splitter import TextSplitter

    # tiktoken-rs embeds the cl100k_base ranks; "gpt-4" is its name for that encoding.
    splitter = TextSplitter.from_tiktoken_model("gpt-4", CHUNK_SIZE, overlap=OVERLAP)
    return lambda texts: sum(len(splitter.chunks(t)) for t in texts)


CONTENDERS = [
    Contender("tiktoken `encode_ordinary` (floor)", _floor, "floor"),
    Contender("longcontext TokenSplitter", _ours_token, "ours"),
    Contender("longcontext SemanticSplitter (structural)", _ours_semantic, "ours"),
    Contender("LangChain TokenTextSplitter", _langchain_token, "token"),
    Contender(
        "LangChain RecursiveCharacterTextSplitter.from_tiktoken_encoder",
        _langchain_recursive,
        "structural",
    ),
    Contender("LlamaIndex SentenceSplitter", _llamaindex_sentence, "structural"),
    Contender("Chonkie TokenChunker", _chonkie_token, "token"),
    Contender("Chonkie RecursiveChunker", _chonkie_recursive, "structural", "no overlap in API"),
    Contender("semchunk", _semchunk, "structural"),
    Contender("semantic-text-splitter TextSplitter", _semantic_text_splitter, "structural"),
]


def measure(texts: list[str], runs: int) -> None:
    for contender in CONTENDERS:  # warm-up: imports, regex compilation, encoder load
        try:
            contender.chunks = contender.build()(texts)
        except Exception as error:  # reported in the table, never dropped silently
            contender.error = f"{type(error).__name__}: {error}".splitlines()[0][:160]
    live = [c for c in CONTENDERS if not c.error]
    for _ in range(runs):
        for contender in live:
            began = time.perf_counter()
            contender.build()(texts)
            contender.times.append(time.perf_counter() - began)


def report(total_bytes: int, runs: int) -> tuple[str, str]:
    def rate(c: Contender) -> float:
        return total_bytes / statistics.median(c.times) / 1e6

    floor = rate(CONTENDERS[0])
    rows = []
    for c in CONTENDERS:
        if c.error:
            rows.append([c.name, "—", "—", "—", f"did not run: {c.error}"])
            continue
        spread = (max(c.times) - min(c.times)) / statistics.median(c.times)
        note = "; ".join(x for x in (c.note, f"spread {spread:.0%}") if x)
        chunks = "—" if c.kind == "floor" else c.chunks
        rows.append([c.name, f"{rate(c):.2f}", f"{rate(c) / floor:.2f}x", chunks, note])
    table = markdown_table(["chunker", "MB/s", "vs floor", "chunks", "notes"], rows)

    by_name = {c.name: c for c in CONTENDERS}
    token = by_name["longcontext TokenSplitter"]
    semantic = by_name["longcontext SemanticSplitter (structural)"]
    structural = [c for c in CONTENDERS if c.kind == "structural" and not c.error]
    best = max(structural, key=rate)
    lines = []
    if not token.error:
        ratio = rate(token) / floor
        met = "met" if ratio >= 0.9 else "**missed**"
        lines.append(f"- TokenSplitter at least 0.9x the floor: {ratio:.2f}x, {met}.")
    if not semantic.error:
        ratio = rate(semantic) / floor
        met = "met" if ratio >= 0.75 else "**missed**"
        lines.append(
            f"- SemanticSplitter (structural) at least 0.75x the floor: {ratio:.2f}x, {met}."
        )
        ahead = rate(semantic) / rate(best)
        met = "met" if ahead > 1 else "**missed**"
        lines.append(
            f"- SemanticSplitter ahead of the fastest structural anchor ({best.name}, "
            f"{rate(best):.2f} MB/s): {ahead:.2f}x of it, {met}."
        )
    return table, "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=11, help="timed runs per chunker (>= 5)")
    parser.add_argument("--write-docs", action="store_true", help="update docs/benchmarks.md")
    args = parser.parse_args()
    if args.runs < 5:
        parser.error(f"--runs={args.runs}: the protocol takes the median of at least 5 runs")

    corpora = load_corpora()
    texts = list(corpora.values())
    total_bytes = sum(len(t.encode("utf-8")) for t in texts)
    measure(texts, args.runs)
    table, targets = report(total_bytes, args.runs)
    print(table)
    print()
    print(targets)
    if args.write_docs:
        write_docs_section("Chunking speed", _docs(table, targets, total_bytes, args.runs))


def _docs(table: str, targets: str, total_bytes: int, runs: int) -> str:
    import importlib.metadata as meta

    def version(dist: str) -> str:
        try:
            return meta.version(dist)
        except meta.PackageNotFoundError:
            return "?"

    versions = ", ".join(
        f"{d} {version(d)}"
        for d in (
            "tiktoken",
            "langchain-text-splitters",
            "llama-index-core",
            "chonkie",
            "semchunk",
            "semantic-text-splitter",
        )
    )
    return f"""\
`python benchmarks/chunk_speed.py --write-docs` ({runs} timed runs, median). All five shared
corpora ({total_bytes / 1e6:.2f} MB of UTF-8: a speech, chat logs, a play, a novel, the
CommonMark spec), 512 tokens of cl100k_base, 64 tokens of overlap where the API has one.
One thread: `RAYON_NUM_THREADS=1`, `TOKENIZERS_PARALLELISM=false`, `split_many(num_threads=1)`.
Each timed run builds the chunker afresh and chunks all five texts; the floor is one
tiktoken `encode_ordinary` pass per text. Runs of all chunkers are interleaved; "spread" is
(slowest - fastest) / median, a gauge of the noise on a shared machine.

{table}

Targets:

{targets}

Measured on {platform.processor() or platform.machine()}, Python {platform.python_version()},
{versions}. Absolute MB/s move with the machine and its load; the ratios to the floor are
what carry over.
"""


if __name__ == "__main__":
    main()
