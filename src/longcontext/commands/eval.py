"""``longcontext eval``: does long context work? Perplexity against length and passkey retrieval
for a model served as ``LongContextLLM`` serves it, written as JSON Lines, a Markdown table and a
PNG plot in ``--output``."""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path
from typing import Any

from longcontext.commands import UsageError, at_least

HELP = "Measure long-context quality: perplexity vs length, passkey, needle, lost in the middle."
BACKENDS = ("auto", "vllm", "transformers")
_LENGTH = re.compile(r"(\d+)([kK]?)")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    tasks = parser.add_subparsers(dest="task", required=True, metavar="TASK")
    perplexity = tasks.add_parser(
        "perplexity",
        help="perplexity against context length, one curve per RoPE method",
        description="Perplexity against context length, one curve per RoPE method.",
    )
    _common(perplexity)
    perplexity.add_argument(
        "--text", nargs="+", required=True, metavar="FILE", help="documents to score (UTF-8)"
    )
    perplexity.add_argument(
        "--mode",
        choices=("disjoint", "sliding", "full"),
        default="disjoint",
        help="disjoint windows scored whole; sliding windows scored on their newest --stride "
        "tokens; or the first window of each document",
    )
    perplexity.add_argument(
        "--windows", type=at_least(1), default=4, metavar="N", help="most windows per length"
    )
    perplexity.add_argument(
        "--stride",
        type=at_least(1),
        default=None,
        metavar="S",
        help="step of --mode sliding (default: half the length)",
    )
    passkey = tasks.add_parser(
        "passkey",
        help="find a pass key hidden at a random depth of filler text",
        description="Passkey retrieval (landmark attention): accuracy per length.",
    )
    _common(passkey)
    passkey.add_argument(
        "--trials", type=at_least(1), default=5, metavar="N", help="prompts per length"
    )
    passkey.add_argument("--seed", type=int, default=0, help="draws the keys and their depths")
    needle = tasks.add_parser(
        "needle",
        help="find a needle sentence at each depth of a real text",
        description="Needle in a haystack over real text, exact match: accuracy per length "
        "and depth.",
    )
    _common(needle)
    needle.add_argument(
        "--haystack", required=True, metavar="FILE", help="the text to hide the needle in"
    )
    needle.add_argument(
        "--depths",
        default="0,0.25,0.5,0.75,1",
        metavar="D,D,...",
        help="needle depths, shares of the haystack (0 = start, 1 = end)",
    )
    needle.add_argument(
        "--trials", type=at_least(1), default=1, metavar="N", help="prompts per length and depth"
    )
    needle.add_argument("--seed", type=int, default=0, help="draws the needles' numbers")
    position = tasks.add_parser(
        "position",
        help="lost in the middle: key-value retrieval by position, with and without reorder",
        description="Key-value retrieval with the asked pair at each position, as given and "
        "after longcontext.reorder (Liu et al. 2023): accuracy per position.",
    )
    _common(position, lengths=False)
    position.add_argument(
        "--documents", type=at_least(2), default=20, metavar="K", help="key/value pairs"
    )
    position.add_argument(
        "--positions",
        default=None,
        metavar="P,P,...",
        help="positions of the asked pair, 0-based (default: first, quarters, middle, last)",
    )
    position.add_argument(
        "--noise", type=float, default=0.5, help="spread of the retrieval scores given to reorder"
    )
    position.add_argument("--trials", type=at_least(1), default=1, metavar="N")
    position.add_argument("--seed", type=int, default=0, help="draws the keys, values, scores")
    report = tasks.add_parser(
        "report",
        help="rebuild the tables and plots of a results folder from its JSON Lines",
        description="Rebuild each task's Markdown table and PNG plot from the rows in DIR (for a "
        "run stopped before it wrote them); measures nothing.",
    )
    report.add_argument("folder", metavar="DIR", help="a results folder (an --output)")


def _common(parser: argparse.ArgumentParser, lengths: bool = True) -> None:
    parser.add_argument("model", metavar="MODEL", help="model directory or Hugging Face id")
    if lengths:
        parser.add_argument(
            "--lengths",
            required=True,
            metavar="N,N,...",
            help="context lengths in tokens, comma-separated (1k = 1024)",
        )
    parser.add_argument(
        "--rope",
        default="none",
        metavar="METHOD,...",
        help="RoPE methods to compare: none (unscaled), linear, dynamic, yarn, longrope, llama3",
    )
    parser.add_argument(
        "--context-length",
        type=at_least(1),
        default=None,
        metavar="N",
        help="scale once to N tokens for every length (default: to each length past the window)",
    )
    parser.add_argument("--backend", choices=BACKENDS, default="auto", help="inference engine")
    parser.add_argument("--dtype", default="auto", help="auto, bfloat16, float16 or float32")
    parser.add_argument("--device", default=None, help="transformers device (default: cuda if any)")
    parser.add_argument(
        "--output", "-o", default="longcontext-eval", metavar="DIR", help="results folder"
    )
    parser.add_argument("--quiet", "-q", action="store_true", help="no progress output")


def parse_lengths(text: str) -> list[int]:
    """``"512,1k,4K"`` -> ``[512, 1024, 4096]``; anything else is a ``UsageError``."""
    items = [item.strip() for item in text.split(",") if item.strip()]
    if not items:
        raise UsageError(f"--lengths {text!r} is empty; pass token counts such as 1024,2048,4096")
    lengths = []
    for item in items:
        match = _LENGTH.fullmatch(item)
        if match is None:
            raise UsageError(f"--lengths: {item!r} is not a token count (such as 4096 or 4k)")
        lengths.append(int(match[1]) * (1024 if match[2] else 1))
    return lengths


def parse_ropes(text: str) -> list[str]:
    ropes = [item.strip().lower() for item in text.split(",") if item.strip()]
    if not ropes:
        raise UsageError(f"--rope {text!r} is empty; pass methods such as none,linear,yarn")
    return ropes


def parse_depths(text: str) -> list[float]:
    """``"0,0.5,1"`` -> ``[0.0, 0.5, 1.0]``; anything else is a ``UsageError``."""
    items = [item.strip() for item in text.split(",") if item.strip()]
    if not items:
        raise UsageError(f"--depths {text!r} is empty; pass shares such as 0,0.25,0.5,0.75,1")
    try:
        return [float(item) for item in items]
    except ValueError:
        raise UsageError(f"--depths {text!r}: pass numbers between 0 and 1") from None


def _positions(text: str | None) -> list[int] | None:
    if text is None:
        return None
    try:
        return [int(item) for item in text.split(",") if item.strip()]
    except ValueError:
        raise UsageError(f"--positions {text!r}: pass 0-based indexes such as 0,9,19") from None


def _read(path: str, flag: str = "--text") -> str:
    try:
        return Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise UsageError(f"{flag} {path}: no such file") from None
    except IsADirectoryError:
        raise UsageError(f"{flag} {path}: is a directory, not a file") from None
    except UnicodeDecodeError as error:
        raise UsageError(f"{flag} {path}: not valid UTF-8 (byte {error.start})") from None
    except OSError as error:
        raise UsageError(f"{flag} {path}: {error.strerror or error}") from None


def run(args: argparse.Namespace) -> int:
    if args.task == "report":
        return _report(args.folder)
    from longcontext.evaluation import EvaluationError

    common: dict[str, Any] = {
        "context_length": args.context_length,
        "backend": args.backend,
        "output": args.output,
        "progress": not args.quiet,
        "dtype": args.dtype,
    }
    if args.device:
        common["device"] = args.device
    ropes = parse_ropes(args.rope)
    lengths = parse_lengths(args.lengths) if args.task != "position" else []
    try:
        _run_task(args, ropes, lengths, common)
    except EvaluationError as error:
        raise UsageError(str(error)) from None
    except KeyboardInterrupt:  # stopped by hand: the rows measured so far get their table
        _report_interrupted(args.output)
        raise
    if not args.quiet:
        print(f"results in {args.output}/{args.task}.jsonl, .md and .png")
    return 0


def _run_task(
    args: argparse.Namespace, ropes: list[str], lengths: list[int], common: dict[str, Any]
) -> None:
    from longcontext.evaluation import run_needle, run_passkey, run_perplexity, run_position

    if args.task == "perplexity":
        texts = [_read(path) for path in args.text]
        run_perplexity(
            args.model,
            texts,
            lengths,
            ropes,
            mode=args.mode,
            windows_per_length=args.windows,
            stride=args.stride,
            **common,
        )
    elif args.task == "needle":
        haystack = _read(args.haystack, "--haystack")
        depths = parse_depths(args.depths)
        run_needle(
            args.model,
            haystack,
            lengths,
            depths,
            ropes,
            trials=args.trials,
            seed=args.seed,
            **common,
        )
    elif args.task == "position":
        run_position(
            args.model,
            args.documents,
            _positions(args.positions),
            ropes,
            trials=args.trials,
            noise=args.noise,
            seed=args.seed,
            **common,
        )
    else:
        run_passkey(args.model, lengths, ropes, trials=args.trials, seed=args.seed, **common)


def _report_interrupted(folder: str) -> None:
    from longcontext.evaluation import EvaluationError
    from longcontext.evaluation.report import rebuild

    try:
        rebuild(folder)
    except (EvaluationError, OSError):
        return  # nothing measured yet, or the folder is gone: nothing to report
    print(f"longcontext eval: interrupted; tables and plots of the rows so far in {folder}",
          file=sys.stderr)  # fmt: skip


def _report(folder: str) -> int:
    from longcontext.evaluation import EvaluationError
    from longcontext.evaluation.report import rebuild

    if not Path(folder).is_dir():
        raise UsageError(f"{folder}: no such results folder; pass an eval --output folder")
    try:
        written = rebuild(folder)
    except EvaluationError as error:
        raise UsageError(str(error)) from None
    print("\n".join(str(path) for path in written))
    return 0
