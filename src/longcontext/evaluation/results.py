"""``ResultsFile``: one JSON line per measured point, flushed as it is done, resumable.

A rerun with the same file skips the points already there: each point is known by its key, the
values of the fields that define it (task, model, rope, length...). A line cut short by a crash
is dropped when the file is opened again, so the file always holds whole rows.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

Row = dict[str, Any]


class ResultsFile:
    """Rows of one task in a JSON Lines file.

    Args:
        path: the ``.jsonl`` file; created (with its folder) when missing.
        key_fields: the fields that identify a point; two rows with the same values for them
            measure the same thing.
    """

    def __init__(self, path: str | os.PathLike[str], key_fields: Sequence[str]) -> None:
        self.path = Path(path)
        self.key_fields = tuple(key_fields)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.rows: list[Row] = self._read()
        self._done = {self.key(row) for row in self.rows}

    def key(self, point: Mapping[str, Any]) -> str:
        """The identity of a point (or a row) as a canonical JSON string of its key fields."""
        return json.dumps([point.get(name) for name in self.key_fields], sort_keys=True)

    def done(self, point: Mapping[str, Any]) -> bool:
        """Whether a row for this point is already in the file."""
        return self.key(point) in self._done

    def append(self, row: Row) -> None:
        """Write one row as a line and flush it to disk before returning."""
        line = json.dumps(row, ensure_ascii=False, sort_keys=False)
        with self.path.open("a", encoding="utf-8") as out:
            out.write(line + "\n")
            out.flush()
            os.fsync(out.fileno())
        self.rows.append(row)
        self._done.add(self.key(row))

    def _read(self) -> list[Row]:
        if not self.path.exists():
            return []
        data = self.path.read_bytes()
        if data and not data.endswith(b"\n"):  # a run stopped mid-line: drop the partial row
            cut = data.rfind(b"\n") + 1
            logger.warning("%s: dropping an unfinished last line", self.path)
            with self.path.open("r+b") as out:
                out.truncate(cut)
            data = data[:cut]
        rows = []
        for number, line in enumerate(data.decode("utf-8").splitlines(), 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as error:
                raise ValueError(
                    f"{self.path}:{number} is not a JSON row ({error.msg}); pass another "
                    "output folder or remove the line"
                ) from None
            rows.append(row)
        return rows
