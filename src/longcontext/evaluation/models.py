"""Which model serves each measured point, checked before any weights load, and loaded once.

A point asks for a RoPE method (or ``"none"``) at a length. ``plan`` turns that into a
``Setting``: the ``LongContextLLM`` arguments that serve it. Without ``context_length`` each
length past the model's window gets its own scaling (factor = length / window); a length within
the window is served unscaled, whatever the method (no scaling is needed there, as
``LongContextLLM`` itself decides). With ``context_length`` one scaling serves every length up to
it. ``Models`` keeps the last loaded model and reuses it while the setting stays the same.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from longcontext.evaluation.errors import EvaluationError

if TYPE_CHECKING:
    from longcontext.llm import LongContextLLM

logger = logging.getLogger(__name__)

NONE = "none"  # the --rope value for the unscaled model


@dataclass(frozen=True)
class Setting:
    """How one point is served.

    Attributes:
        rope: the method to scale with, or ``None`` for the unscaled model.
        context_length: the window asked of ``LongContextLLM`` (``None``: the model's own).
    """

    rope: str | None
    context_length: int | None


def model_window(model: str | os.PathLike[str]) -> int:
    """The model's own window in tokens, read from its config; a model that cannot be found is
    an ``EvaluationError``."""
    from longcontext.llm.engine import resolve_model
    from longcontext.rope import read_model_rope

    try:
        return read_model_rope(resolve_model(model)).window
    except (OSError, ValueError, TypeError) as error:
        raise EvaluationError(f"model {os.fspath(model)!r} cannot be loaded: {error}") from None


def plan(
    model: str | os.PathLike[str],
    rope: str,
    length: int,
    window: int,
    *,
    context_length: int | None = None,
    past_window: bool = False,
) -> Setting:
    """The setting that serves ``length`` tokens with ``rope`` (a method name or ``"none"``).

    ``past_window`` lets the unscaled model run past its window (perplexity's baseline, which
    only scores tokens); generation needs the window to hold the prompt.

    Raises:
        EvaluationError: a length the model and this RoPE setting cannot hold, or a method the
            model does not support.
    """
    method = None if rope == NONE else rope
    if context_length is not None:
        if length > context_length:
            raise EvaluationError(
                f"length {length} is above --context-length {context_length}; lower the length "
                "or raise --context-length"
            )
        if context_length <= window:
            return Setting(None, None)
        if method is None:
            raise EvaluationError(
                f"--context-length {context_length} is past the model's window of {window} "
                "tokens with --rope none; pick a method (yarn, linear, dynamic...) to scale it"
            )
        target = context_length
    elif length <= window:
        return Setting(None, None)
    elif method is None:
        if past_window:
            return Setting(None, None)
        raise EvaluationError(
            f"length {length} is past the model's window of {window} tokens with --rope none "
            "(no room for the prompt); pick a method (yarn, linear, dynamic...) or lower it"
        )
    else:
        target = length
    _check_scaling(model, method, target)
    return Setting(method, target)


def _check_scaling(model: str | os.PathLike[str], method: str, target: int) -> None:
    """Build the scaling from the config alone, so a bad method fails before weights load."""
    from longcontext.llm.engine import resolve_model
    from longcontext.rope import RopeScaling

    if method not in RopeScaling.METHODS:
        raise EvaluationError(
            f"unknown --rope {method!r}; choose from {NONE}, {', '.join(RopeScaling.METHODS)}"
        )
    try:
        RopeScaling.for_target(resolve_model(model), target, method)
    except (ValueError, TypeError, OSError) as error:
        raise EvaluationError(f"--rope {method} to {target} tokens: {error}") from None


def factor(setting: Setting, window: int) -> float:
    """The scaling factor of a setting (1.0 unscaled)."""
    if setting.rope is None or setting.context_length is None:
        return 1.0
    return setting.context_length / window


def load_tokenizer(model: str | os.PathLike[str]) -> Any:
    """The tokenizer ``LongContextLLM`` would load for ``model``; a ``.gguf`` file carries its
    own."""
    from transformers import AutoTokenizer

    from longcontext.llm.engine import resolve_model

    name = os.fspath(model)
    try:
        if name.endswith(".gguf") and os.path.isfile(name):
            folder, file = os.path.split(os.path.abspath(name))
            return AutoTokenizer.from_pretrained(folder, gguf_file=file)
        return AutoTokenizer.from_pretrained(resolve_model(model))
    except (OSError, ValueError) as error:
        raise EvaluationError(
            f"the tokenizer of model {name!r} cannot be loaded: {error}"
        ) from None


class Models:
    """Loads ``LongContextLLM`` per setting, keeping only the last one in memory.

    Args:
        model: the model path or id.
        backend: ``"auto"``, ``"transformers"`` or ``"vllm"``.
        **engine_kwargs: more ``LongContextLLM`` arguments (``dtype``, ``device``...).
    """

    def __init__(self, model: str | os.PathLike[str], backend: str = "auto", **engine_kwargs: Any):
        self.model, self.backend, self.engine_kwargs = model, backend, engine_kwargs
        self._setting: Setting | None = None
        self._llm: LongContextLLM | None = None
        self._tokenizer: Any = None

    def tokenizer(self) -> Any:
        """The model's tokenizer, loaded alone (no weights), so the text can be checked first."""
        if self._tokenizer is None:
            self._tokenizer = load_tokenizer(self.model)
        return self._tokenizer

    def get(self, setting: Setting) -> LongContextLLM:
        """The model for ``setting``, loaded unless the last one serves it."""
        from longcontext.llm import LongContextLLM

        if self._llm is not None and self._setting == setting:
            return self._llm
        self.close()
        logger.info("loading %s with %s", self.model, setting)
        try:
            self._llm = LongContextLLM(
                self.model,
                context_length=setting.context_length,
                rope=setting.rope,
                backend=self.backend,  # type: ignore[arg-type]
                **self.engine_kwargs,
            )
        except (OSError, ValueError) as error:
            raise EvaluationError(f"model {os.fspath(self.model)!r}: {error}") from None
        self._setting = setting
        return self._llm

    def close(self) -> None:
        """Free the loaded model."""
        if self._llm is not None:
            self._llm.close()
        self._llm = self._setting = None

    def __enter__(self) -> Models:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
