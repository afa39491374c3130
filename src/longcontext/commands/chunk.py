"""``longcontext chunk``: split files into JSON Lines chunks."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import TextIO

from longcontext.commands import UsageError

HELP = "Split files into token-bounded chunks, written as JSON Lines."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("paths", nargs="+", metavar="PATH", help="text files to split")
    parser.add_argument("--strategy", choices=("token", "semantic"), default="token")
    parser.add_argument("--tokenizer", default="cl100k_base", help="tiktoken name or HF tokenizer")
    parser.add_argument("--chunk-size", type=int, default=512, help="max tokens per chunk")
    parser.add_argument("--overlap", type=int, default=64, help="token overlap (token strategy)")
    parser.add_argument("--output", "-o", help="output file (default: standard output)")
    parser.add_argument("--encoding", default="utf-8", help="text encoding of the input files")
    parser.add_argument("--quiet", "-q", action="store_true", help="no progress bar")


def _read(path: Path, encoding: str) -> str:
    try:
        return path.read_text(encoding=encoding)
    except FileNotFoundError:
        raise UsageError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise UsageError(f"{path}: is a directory, not a file") from None
    except PermissionError:
        raise UsageError(f"{path}: permission denied") from None
    except UnicodeDecodeError as exc:
        raise UsageError(
            f"{path}: not valid {encoding} (byte {exc.start}); pass --encoding to read it"
        ) from None
    except LookupError:
        raise UsageError(f"unknown --encoding {encoding!r}") from None


def run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from longcontext.splitters import SemanticSplitter, TokenSplitter
    from longcontext.splitters.base import Splitter

    paths = [Path(p) for p in args.paths]
    texts = [_read(p, args.encoding) for p in paths]  # fail before writing anything
    splitter: Splitter
    try:
        if args.strategy == "token":
            splitter = TokenSplitter(args.tokenizer, args.chunk_size, args.overlap)
        else:
            splitter = SemanticSplitter(args.tokenizer, max_tokens=args.chunk_size)
    except (ValueError, TypeError) as exc:
        raise UsageError(str(exc)) from None
    out: TextIO = sys.stdout if args.output is None else open(args.output, "w", encoding="utf-8")  # noqa: SIM115
    try:
        progress = tqdm(paths, desc="chunking", unit="file", disable=args.quiet, file=sys.stderr)
        for path, text in zip(progress, texts):
            for chunk in splitter.split(text):
                record = {
                    "source": str(path),
                    "index": chunk.index,
                    "start": chunk.start,
                    "end": chunk.end,
                    "token_count": chunk.token_count,
                    "text": chunk.text,
                }
                out.write(json.dumps(record, ensure_ascii=False) + "\n")
    finally:
        if out is not sys.stdout:
            out.close()
    return 0
