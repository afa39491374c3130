"""Stop sequences for backends whose streams do not cut them: hold back what may start one."""

from __future__ import annotations

from collections.abc import Sequence


def cut_at_stop(text: str, stops: Sequence[str]) -> tuple[str, bool]:
    """Cut ``text`` before the earliest stop sequence; say whether one was found."""
    hits = [i for i in (text.find(s) for s in stops if s) if i >= 0]
    return (text[: min(hits)], True) if hits else (text, False)


class StopScanner:
    """Turn a stream of text deltas into deltas that never show any part of a stop sequence.

    Text that could be the start of a stop sequence is held back until the next delta decides it;
    once a stop sequence is complete, ``stopped`` is true and everything after it is dropped.
    """

    def __init__(self, stops: Sequence[str]) -> None:
        self._stops = [s for s in stops if s]
        self._held = ""
        self.stopped = False

    def feed(self, delta: str) -> str:
        """Take the next delta; return the text that is now safe to show."""
        if self.stopped:
            return ""
        text, self.stopped = cut_at_stop(self._held + delta, self._stops)
        if self.stopped:
            self._held = ""
            return text
        keep = self._longest_stop_prefix_suffix(text)
        self._held = text[len(text) - keep :] if keep else ""
        return text[: len(text) - keep]

    def flush(self) -> str:
        """The text still held back when the stream ends without a stop sequence."""
        held, self._held = self._held, ""
        return "" if self.stopped else held

    def _longest_stop_prefix_suffix(self, text: str) -> int:
        best = 0
        for stop in self._stops:
            for n in range(min(len(stop) - 1, len(text)), best, -1):
                if text.endswith(stop[:n]):
                    best = n
                    break
        return best
