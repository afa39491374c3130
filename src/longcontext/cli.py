"""The ``longcontext`` command: ``chunk``, ``index`` and ``ask`` subcommands.

Each subcommand lives in ``longcontext.commands.<name>`` and exposes ``HELP``,
``add_arguments(parser)`` and ``run(args) -> int``. Expected failures raise ``UsageError`` and
become one line on stderr with exit code 2, never a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import sys
from collections.abc import Sequence

from longcontext.commands import COMMANDS, UsageError


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="longcontext", description=__doc__.splitlines()[0])
    subparsers = parser.add_subparsers(dest="command", required=True)
    for name in COMMANDS:
        if importlib.util.find_spec(f"longcontext.commands.{name}") is None:
            continue  # a subcommand that this installation does not ship
        module = importlib.import_module(f"longcontext.commands.{name}")
        sub = subparsers.add_parser(name, help=module.HELP, description=module.HELP)
        module.add_arguments(sub)
        sub.set_defaults(run=module.run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        code: int = args.run(args)
    except UsageError as exc:
        print(f"longcontext {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    return code


if __name__ == "__main__":
    sys.exit(main())
