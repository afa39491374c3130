"""Subcommands of the ``longcontext`` CLI, one module each."""

from __future__ import annotations

COMMANDS = ("chunk", "index", "ask")


class UsageError(Exception):
    """An expected failure (bad file, bad option): printed as one line, exit code 2."""
