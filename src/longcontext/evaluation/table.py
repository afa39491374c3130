"""Markdown tables of results: one row per x value, one column per series."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any


def pivot(
    rows: Sequence[Mapping[str, Any]],
    index: str,
    columns: str,
    value: str,
    fmt: Callable[[Any], str] = str,
) -> str:
    """A Markdown table with a row per distinct ``rows[index]`` (sorted) and a column per
    distinct ``rows[columns]`` (in first-seen order); a cell is ``fmt(rows[value])``, blank
    when no row has that pair (the last row of a pair wins)."""
    xs = sorted({row[index] for row in rows})
    series = list(dict.fromkeys(row[columns] for row in rows))
    cells = {(row[index], row[columns]): row[value] for row in rows}
    lines = [
        "| " + " | ".join([index, *map(str, series)]) + " |",
        "| " + " | ".join(["---:"] * (len(series) + 1)) + " |",
    ]
    for x in xs:
        values = [fmt(cells[x, s]) if (x, s) in cells else "" for s in series]
        lines.append("| " + " | ".join([str(x), *values]) + " |")
    return "\n".join(lines) + "\n"
