"""The error a prompt gets when it does not fit the model's context window."""

from __future__ import annotations


class ContextWindowExceededError(ValueError):
    """A prompt has more tokens than the context window leaves room for.

    Attributes:
        prompt_tokens: tokens in the prompt, counted with the model's own tokenizer.
        limit: the most prompt tokens allowed: the context window minus ``max_tokens``.
        context_window: the model's (scaled) context window.
        max_tokens: the completion budget that was reserved.
    """

    def __init__(
        self, prompt_tokens: int, limit: int, context_window: int, max_tokens: int
    ) -> None:
        self.prompt_tokens = prompt_tokens
        self.limit = limit
        self.context_window = context_window
        self.max_tokens = max_tokens
        super().__init__(
            f"the prompt has {prompt_tokens} tokens but at most {limit} fit (context window "
            f"{context_window} minus max_tokens={max_tokens}); shorten the prompt, pass "
            "truncate='left' or truncate='middle', lower max_tokens, or raise context_length "
            "(with rope='yarn' or another method to scale the model past its window)"
        )
