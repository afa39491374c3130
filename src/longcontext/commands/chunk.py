"""``longcontext chunk``: split files (or standard input) into JSON Lines chunks."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

from longcontext.commands import STDIN, UsageError, add_deprecated_alias, at_least

if TYPE_CHECKING:
    from longcontext.splitters.base import Splitter

HELP = "Split files into token-bounded chunks, written as JSON Lines."
SPLITTERS = ("token", "semantic")
OVERLAP_SHARE = 8  # default overlap: an eighth of the chunk size (64 tokens of 512)
STDIN_SOURCE = "<stdin>"  # the "source" of chunks read from standard input


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "paths", nargs="+", metavar="PATH", help=f"text files to split; {STDIN} reads stdin"
    )
    parser.add_argument(
        "--splitter",
        choices=SPLITTERS,
        default="token",
        help="overlapping token windows, or sections, paragraphs and sentences",
    )
    parser.add_argument("--tokenizer", default="cl100k_base", help="tiktoken name or HF tokenizer")
    parser.add_argument(
        "--chunk-size", type=at_least(1), default=512, metavar="N", help="most tokens per chunk"
    )
    parser.add_argument(
        "--chunk-overlap",
        type=at_least(0),
        default=None,
        metavar="N",
        help=f"tokens shared by consecutive chunks; token splitter only (default: chunk size "
        f"/ {OVERLAP_SHARE}, 64 for 512)",
    )
    parser.add_argument("--output", "-o", help="output file (default: standard output)")
    parser.add_argument("--encoding", default="utf-8", help="text encoding of the input files")
    parser.add_argument("--quiet", "-q", action="store_true", help="no progress bar")
    add_deprecated_alias(parser, "--strategy", "--splitter", "splitter", choices=SPLITTERS)
    add_deprecated_alias(parser, "--overlap", "--chunk-overlap", "chunk_overlap", type=at_least(0))


def _read(path: str, encoding: str) -> str:
    name = STDIN_SOURCE if path == STDIN else path
    try:
        data = sys.stdin.buffer.read() if path == STDIN else Path(path).read_bytes()
        return data.decode(encoding)
    except FileNotFoundError:
        raise UsageError(f"{name}: no such file") from None
    except IsADirectoryError:
        raise UsageError(f"{name}: is a directory, not a file") from None
    except PermissionError:
        raise UsageError(f"{name}: permission denied") from None
    except UnicodeDecodeError as exc:
        raise UsageError(
            f"{name}: not valid {encoding} (byte {exc.start}); pass --encoding to read it"
        ) from None
    except LookupError:
        raise UsageError(f"unknown --encoding {encoding!r}") from None
    except OSError as exc:
        raise UsageError(f"{name}: {exc.strerror or exc}") from None


def _splitter(args: argparse.Namespace) -> Splitter:
    from longcontext.splitters import SemanticSplitter, TokenSplitter

    try:
        if args.splitter == "token":
            overlap = args.chunk_overlap
            if overlap is None:  # scales with the size, so a small --chunk-size alone works
                overlap = args.chunk_size // OVERLAP_SHARE
            return TokenSplitter(args.tokenizer, args.chunk_size, overlap)
        if args.chunk_overlap:
            raise UsageError(
                f"--chunk-overlap {args.chunk_overlap} applies to --splitter token only: the "
                "semantic splitter cuts between sections and sentences, without overlap"
            )
        return SemanticSplitter(args.tokenizer, args.chunk_size)
    except (ValueError, TypeError) as exc:
        raise UsageError(str(exc)) from None


def _open(output: str | None) -> TextIO:
    if output is None or output == STDIN:
        return sys.stdout
    try:
        return open(output, "w", encoding="utf-8")  # closed by run()
    except OSError as exc:
        raise UsageError(f"cannot write --output {output}: {exc.strerror or exc}") from None


def run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    if args.paths.count(STDIN) > 1:
        raise UsageError(f"{STDIN} (standard input) can be given once only")
    texts = [_read(p, args.encoding) for p in args.paths]  # fail before writing anything
    splitter = _splitter(args)
    out = _open(args.output)
    try:
        progress = tqdm(
            args.paths, desc="chunking", unit="file", disable=args.quiet, file=sys.stderr
        )
        for path, text in zip(progress, texts):
            source = STDIN_SOURCE if path == STDIN else path
            for chunk in splitter.split(text):
                record = {"source": source, **chunk.to_dict()}
                out.write(json.dumps(record, ensure_ascii=False) + "\n")
    finally:
        if out is not sys.stdout:
            out.close()
    return 0
