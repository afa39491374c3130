"""``longcontext index DIR --index PATH``: chunk, embed and store a folder of documents."""

from __future__ import annotations

import argparse
import sys

from longcontext.commands import UsageError

HELP = "Chunk and embed a folder of text files into a FAISS index (re-embeds only changed files)."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("folder", metavar="DIR", help="folder of text files, read recursively")
    parser.add_argument("--index", required=True, metavar="PATH", help="index folder to write")
    parser.add_argument(
        "--splitter",
        choices=("token", "semantic"),
        default="token",
        help="overlapping token windows, or sections and sentences (default: token)",
    )
    parser.add_argument(
        "--chunk-size",
        type=int,
        default=200,
        metavar="N",
        help="most tokens per chunk, in the embedding model's tokens (default: 200)",
    )
    parser.add_argument(
        "--overlap",
        type=int,
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


def run(args: argparse.Namespace) -> int:
    from longcontext.rag import RagError
    from longcontext.rag.indexer import SplitterSettings, build_index

    settings = SplitterSettings(args.splitter, args.chunk_size, args.overlap)
    try:
        report = build_index(args.folder, args.index, args.embeddings, settings)
    except (RagError, NotADirectoryError) as exc:
        raise UsageError(str(exc)) from exc
    for warning in report.warnings:
        print(f"longcontext index: warning: {warning}", file=sys.stderr)
    print(report.summary())
    return 0
