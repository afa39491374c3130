"""``longcontext index DIR --index PATH``: chunk, embed and store a folder of documents."""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import TYPE_CHECKING, Any

from longcontext.commands import add_deprecated_alias, at_least, printable
from longcontext.rag.embeddings import BACKENDS, DEFAULT_BACKEND

if TYPE_CHECKING:
    from longcontext.rag.indexer import IndexReport

HELP = "Chunk and embed a folder of text files into a FAISS index (re-embeds only changed files)."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("folder", metavar="DIR", help="folder of text files, read recursively")
    parser.add_argument("--index", required=True, metavar="PATH", help="index folder to write")
    parser.add_argument(
        "--splitter",
        choices=("token", "semantic"),
        default="token",
        help="overlapping token windows, or sections and sentences",
    )
    parser.add_argument(
        "--chunk-size",
        type=at_least(1),
        default=200,
        metavar="N",
        help="most tokens per chunk, in the embedding model's tokens",
    )
    parser.add_argument(
        "--chunk-overlap",
        type=at_least(0),
        default=None,
        metavar="N",
        help="tokens shared by consecutive chunks (token splitter; default: chunk size / 5)",
    )
    parser.add_argument(
        "--embeddings",
        default=None,
        metavar="NAME",
        help="sentence-transformers model: all-MiniLM-L6-v2 (default, offline) or a local folder",
    )
    parser.add_argument(
        "--index-type",
        choices=("auto", "flat", "hnsw", "ivf-sq8", "ivf-pq"),
        default=None,
        help="FAISS index: auto is exact (flat) up to 50,000 chunks, HNSW up to 2,000,000, "
        "then IVF-SQ8; ivf-pq only when asked, see docs/scaling.md (default: what the index "
        "asked last time, auto for a new one)",
    )
    parser.add_argument(
        "--ray",
        nargs="?",
        const="local",
        default=None,
        metavar="ADDRESS",
        help="chunk and embed the changed files on Ray Data: alone, a Ray started here (or "
        "$RAY_ADDRESS); or a cluster: auto, HOST:6379, ray://HOST:10001. Put it after DIR. "
        "The index is written here either way; see docs/ray.md (default: no Ray, all here)",
    )
    parser.add_argument(
        "--ray-workers",
        type=at_least(1),
        default=None,
        metavar="N",
        help="Ray chunking tasks and embedding actors at once (default: the cluster's CPUs; "
        "with GPUs, at most one actor per GPU)",
    )
    parser.add_argument(
        "--embeddings-backend",
        choices=BACKENDS,
        default=None,
        help="what runs the embedding model: torch, onnx (ONNX Runtime, float32: the same "
        "vectors as torch), onnx-int8 (quantized, faster on CPU) or openvino (bfloat16 where "
        "the CPU has it: fastest there); see docs/embeddings.md (default: the index's own; for "
        f"a new one openvino where the CPU computes in bfloat16, else {DEFAULT_BACKEND})",
    )
    parser.add_argument("--json", action="store_true", help="print a JSON report on stdout")
    add_deprecated_alias(parser, "--overlap", "--chunk-overlap", "chunk_overlap", type=at_least(0))


def run(args: argparse.Namespace) -> int:
    from longcontext.rag.indexer import SplitterSettings, build_index

    settings = SplitterSettings(args.splitter, args.chunk_size, args.chunk_overlap)
    began = time.perf_counter()
    report = build_index(
        args.folder,
        args.index,
        args.embeddings,
        settings,
        index_type=args.index_type,
        ray=args.ray,
        ray_workers=args.ray_workers,
        embeddings_backend=args.embeddings_backend,
    )
    seconds = time.perf_counter() - began
    if args.json:
        print(json.dumps(_as_json(report, args.folder, seconds), indent=2))
        return 0
    for warning in report.warnings:
        print(f"longcontext index: warning: {printable(warning)}", file=sys.stderr)
    print(printable(report.summary()))
    return 0


def _as_json(report: IndexReport, folder: str, seconds: float) -> dict[str, Any]:
    """The report as data (json.dumps escapes every control character in file names)."""
    return {
        "index": str(report.path),
        "folder": folder,
        "files": report.files,
        "embedded": report.embedded,
        "unchanged": report.files - len(report.embedded),
        "removed": report.removed,
        "skipped": [{"path": path, "reason": reason} for path, reason in report.skipped],
        "warnings": report.warnings,
        "chunks": report.chunks,
        "new_chunks": report.new_chunks,
        "seconds": round(seconds, 3),
    }
