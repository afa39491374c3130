"""Measure whether long context works: perplexity against length, passkey retrieval, a needle
in a haystack and lost in the middle (with and without reorder), on the engine the application
uses (``LongContextLLM``).

Each task writes one JSON line per measured point as soon as it is measured (a rerun with the
same output folder skips the points already there), a Markdown table and a PNG plot. Nothing
heavy is imported until a task runs.
"""

from __future__ import annotations

from longcontext.evaluation.errors import EvaluationError
from longcontext.evaluation.needle import run_needle
from longcontext.evaluation.passkey import run_passkey
from longcontext.evaluation.perplexity import run_perplexity
from longcontext.evaluation.position import run_position
from longcontext.evaluation.results import ResultsFile

__all__ = [
    "EvaluationError",
    "ResultsFile",
    "run_needle",
    "run_passkey",
    "run_perplexity",
    "run_position",
]
