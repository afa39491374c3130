"""Long documents in RAG, from the command line: one subcommand per job.

Each subcommand lives in ``longcontext.commands.<name>`` and exposes ``HELP``,
``add_arguments(parser)`` and ``run(args) -> int``. Every expected failure (a bad option, a file
that cannot be read or written, a missing index) is one line on stderr and exit code 2, never a
traceback.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import os
import sys
from collections.abc import Sequence

from longcontext import __version__
from longcontext.commands import COMMANDS, UsageError, printable
from longcontext.rag.errors import RagError


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows every option's default; an option whose help already says it is left as written
    (a default of None means "computed", which the help explains)."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help or ""
        unset = action.default is None or action.default is False  # 0 is a default to show
        if "default" in text or unset or action.default == argparse.SUPPRESS:
            return text
        return super()._get_help_string(action)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="longcontext", description=__doc__.splitlines()[0], formatter_class=HelpFormatter
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    subparsers = parser.add_subparsers(dest="command", required=True)
    for name in COMMANDS:
        module_name = f"longcontext.commands.{name.replace('-', '_')}"
        if importlib.util.find_spec(module_name) is None:
            continue  # a subcommand that this installation does not ship
        module = importlib.import_module(module_name)
        sub = subparsers.add_parser(
            name, help=module.HELP, description=module.HELP, formatter_class=HelpFormatter
        )
        module.add_arguments(sub)
        sub.set_defaults(run=module.run)
    _show_defaults(parser)
    return parser


def _show_defaults(parser: argparse.ArgumentParser) -> None:
    """Every parser, nested subcommands (``eval perplexity``) included, shows its defaults."""
    parser.formatter_class = HelpFormatter
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                _show_defaults(sub)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        code: int = args.run(args)
    except (UsageError, RagError) as exc:
        return _fail(args.command, str(exc))
    except BrokenPipeError:  # `longcontext chunk ... | head`: the reader left, nothing to say
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    except OSError as exc:  # a full disk, a vanished file: the OS's reason, with the file
        where = f"{exc.filename}: " if exc.filename else ""
        return _fail(args.command, f"{where}{exc.strerror or exc}")
    except KeyboardInterrupt:
        return 130
    return code


def _fail(command: str, message: str) -> int:
    first = message.strip().splitlines()[0] if message.strip() else "failed"
    print(f"longcontext {command}: error: {printable(first)}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
