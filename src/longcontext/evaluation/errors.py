"""The one error type of ``longcontext.evaluation``: bad input, said in one line."""

from __future__ import annotations


class EvaluationError(ValueError):
    """An evaluation that cannot run as asked (a text shorter than one window, a length the
    model and RoPE setting cannot hold, a model that cannot be found, an empty list); the
    message names the bad value and the fix. The CLI prints it as one line."""
