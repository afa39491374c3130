"""Progress of a sweep: a tqdm bar on a terminal, one plain line per point otherwise (a log file
or CI keeps readable lines, not carriage-return redraws)."""

from __future__ import annotations

import sys
from typing import Any, TextIO


class Progress:
    """Counts points as they finish (or are skipped as already done).

    Args:
        total: the number of points.
        desc: what is measured, e.g. ``"perplexity"``.
        enabled: ``False`` prints nothing.
        stream: where to write (standard error by default).
    """

    def __init__(
        self, total: int, desc: str, *, enabled: bool = True, stream: TextIO | None = None
    ) -> None:
        self.total, self.desc, self.count = total, desc, 0
        self.stream = stream or sys.stderr
        self.enabled = enabled
        self._bar: Any = None
        if enabled and self.stream.isatty():
            from tqdm import tqdm

            self._bar = tqdm(total=total, desc=desc, unit="point", file=self.stream)

    def update(self, label: str, result: str = "", *, skipped: bool = False) -> None:
        """One point finished: ``label`` names it, ``result`` says what it measured."""
        self.count += 1
        if not self.enabled:
            return
        if self._bar is not None:
            self._bar.set_postfix_str(f"{label} {result}".strip(), refresh=False)
            self._bar.update(1)
            return
        status = "done before, skipped" if skipped else result
        print(
            f"{self.desc} [{self.count}/{self.total}] {label}: {status}".rstrip(": "),
            file=self.stream,
            flush=True,
        )

    def close(self) -> None:
        """End the bar (a no-op for plain lines)."""
        if self._bar is not None:
            self._bar.close()
