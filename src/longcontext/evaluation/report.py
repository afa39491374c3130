"""Rebuild each task's Markdown table and plot from its JSON Lines, without measuring anything.

A task writes its table and plot when its sweep ends; a run stopped early (a time limit, a lost
machine) keeps every measured row but not those two files. ``rebuild`` writes them again from the
rows alone, for the model (and perplexity mode) of the newest row, as the run would have.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from longcontext.evaluation import needle, passkey, perplexity, position
from longcontext.evaluation.common import output_files
from longcontext.evaluation.errors import EvaluationError
from longcontext.evaluation.results import ResultsFile

Rows = Sequence[Mapping[str, Any]]


def _perplexity(rows: Rows, table: Path, plot: Path) -> None:
    newest = rows[-1]
    perplexity.write_report(
        rows, table, plot, model=newest["model"], mode=newest["mode"], window=newest.get("window")
    )


def _writer(write: Callable[..., None]) -> Callable[[Rows, Path, Path], None]:
    return lambda rows, table, plot: write(rows, table, plot, model=rows[-1]["model"])


REPORTS: dict[str, Callable[[Rows, Path, Path], None]] = {
    "perplexity": _perplexity,
    "passkey": _writer(passkey.write_report),
    "needle": _writer(needle.write_report),
    "position": _writer(position.write_report),
}


def rebuild(folder: str | os.PathLike[str]) -> list[Path]:
    """Write ``<task>.md`` and ``<task>.png`` for every ``<task>.jsonl`` with rows in ``folder``.

    Returns the files written. Raises ``EvaluationError`` when the folder holds no results.
    """
    written: list[Path] = []
    for task, write in REPORTS.items():
        files = output_files(folder, task)
        assert files is not None
        if not files[0].is_file():
            continue
        rows = ResultsFile(files[0], key_fields=()).rows
        if rows:
            write(rows, files[1], files[2])
            written += files[1:]
    if not written:
        names = ", ".join(f"{task}.jsonl" for task in REPORTS)
        raise EvaluationError(f"no results in {os.fspath(folder)}: expected one of {names}")
    return written
