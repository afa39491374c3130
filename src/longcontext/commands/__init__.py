"""Subcommands of the ``longcontext`` CLI, one module each, and what they share."""

from __future__ import annotations

import argparse
import sys
import unicodedata
from collections.abc import Callable, Sequence
from typing import Any

# Subcommand names; each lives in the module of that name with "-" written "_".
COMMANDS = ("chunk", "index", "ask", "eval", "finetune", "serve-args")
STDIN = "-"  # a path or question of "-" is read from standard input


class UsageError(Exception):
    """An expected failure (bad file, bad option): printed as one line, exit code 2."""


def at_least(minimum: int) -> Callable[[str], int]:
    """An argparse ``type``: a whole number of at least ``minimum``, else argparse exits 2."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be at least {minimum}, got {value}")
        return value

    parse.__name__ = "int"  # argparse names the type in some messages
    return parse


class _DeprecatedAlias(argparse.Action):
    """An old flag that still works, hidden from help, with a warning naming its replacement."""

    def __init__(self, option_strings: Sequence[str], dest: str, replacement: str, **kw: Any):
        super().__init__(option_strings, dest, **kw)
        self.replacement = replacement

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: Any,
        option_string: str | None = None,
    ) -> None:
        print(
            f"{parser.prog}: warning: {option_string} is deprecated, use {self.replacement}",
            file=sys.stderr,
        )
        setattr(namespace, self.dest, values)


def add_deprecated_alias(
    parser: argparse.ArgumentParser, old: str, replacement: str, dest: str, **kw: Any
) -> None:
    """Accept ``old`` as a hidden alias of the flag ``replacement`` (same dest, type, choices)."""
    parser.add_argument(
        old,
        dest=dest,
        action=_DeprecatedAlias,
        replacement=replacement,
        default=argparse.SUPPRESS,  # the replacement's default stands
        help=argparse.SUPPRESS,
        **kw,
    )


# Bidirectional overrides and isolates reorder what a terminal shows (CVE-2021-42574).
_BIDI = frozenset("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")


def printable(text: str, keep: str = "") -> str:
    """``text`` with control characters (C0, DEL, C1, ESC) and bidi overrides escaped like repr,
    so a hostile file name or document cannot drive the terminal; ``keep`` lists ones left as is
    (``"\\n\\t"`` for multi-line text)."""
    if text.isprintable() and not _BIDI.intersection(text):
        return text
    return "".join(
        ch
        if ch in keep or (unicodedata.category(ch) != "Cc" and ch not in _BIDI)
        else repr(ch)[1:-1]
        for ch in text
    )
