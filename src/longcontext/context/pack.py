"""Pack retrieved passages into a token budget: merge overlaps, keep the best, lay them out.

Overlapping chunks (a 512/64 split retrieves neighbours that share 64 tokens) would send the same
source text twice. ``pack`` first merges passages that overlap or touch in the same source into
the exact source span, then keeps the most relevant passages that fit the budget, then reorders
them with :func:`longcontext.context.reorder.reorder`'s strategies.
"""

from __future__ import annotations

import numbers
from collections import defaultdict
from collections.abc import Callable, Hashable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from longcontext.context.passages import DEFAULT_SCORE_KEY, Passage, as_passage
from longcontext.context.reorder import check_strategy, layout, rank
from longcontext.tokenizers import Tokenizer, TokenizerLike, get_tokenizer


@dataclass(frozen=True, slots=True)
class PackResult:
    """What :func:`pack` sends and what it leaves out.

    Attributes:
        passages: Kept passages in their final order: the caller's own objects, or a
            :class:`Passage` where several were merged into one span or one was cut to fit.
        records: The same passages as :class:`Passage` records, in the same order.
        dropped: The caller's objects that did not fit, most relevant first.
        text: The context: the passages (rendered with the template) joined by the separator.
        token_count: Tokens in ``text``; never more than ``budget_tokens``.
        budget_tokens: The budget the context was packed into.
    """

    passages: list[Any]
    records: list[Passage]
    dropped: list[Any]
    text: str
    token_count: int
    budget_tokens: int

    @property
    def truncated(self) -> bool:
        """Whether a passage was cut to fit (its metadata then says ``truncated=True``)."""
        return any(r.metadata.get("truncated") for r in self.records)


@dataclass(slots=True)
class _Unit:
    """A candidate for the context: one passage, or several merged into one source span."""

    passage: Passage
    rank: int  # best rank among its members
    first_input: int  # earliest input position among its members, for strategy "none"
    members: list[int] = field(default_factory=list)  # input positions, most relevant first


def _merge(records: Sequence[Passage], rank_of: Sequence[int]) -> list[_Unit]:
    """Merge passages that overlap or touch in the same source; return units by rank."""
    units: list[_Unit] = []
    by_source: dict[Hashable, list[int]] = defaultdict(list)
    for i, record in enumerate(records):
        if record.has_span:
            by_source[record.source].append(i)
        else:
            units.append(_Unit(record, rank_of[i], i, [i]))
    for indices in by_source.values():
        indices.sort(key=lambda i: (records[i].start, records[i].end))
        group = [indices[0]]
        for i in indices[1:]:
            if _start(records[i]) <= max(_end(records[j]) for j in group):
                group.append(i)
            else:
                units.append(_join(records, rank_of, group))
                group = [i]
        units.append(_join(records, rank_of, group))
    units.sort(key=lambda u: u.rank)
    return units


def _start(p: Passage) -> int:
    assert p.start is not None
    return p.start


def _end(p: Passage) -> int:
    assert p.end is not None
    return p.end


def _join(records: Sequence[Passage], rank_of: Sequence[int], group: list[int]) -> _Unit:
    """One unit for a group of passages sorted by start: the exact source span they cover."""
    members = sorted(group, key=lambda i: rank_of[i])
    if len(group) == 1:
        i = group[0]
        return _Unit(records[i], rank_of[i], i, members)
    first = records[group[0]]
    span_start, span_end, text = _start(first), _end(first), first.text
    for i in group[1:]:
        piece = records[i]
        shared = min(span_end, _end(piece)) - _start(piece)
        # Both passages claim these characters of one source; they must agree on them.
        if text[len(text) - (span_end - _start(piece)) :][:shared] != piece.text[:shared]:
            raise ValueError(
                f"passages from source {piece.source!r} disagree on characters "
                f"{_start(piece)}..{_start(piece) + shared}; passages with one source id must be "
                "exact slices of one text"
            )
        if _end(piece) > span_end:
            text += piece.text[span_end - _start(piece) :]
            span_end = _end(piece)
    best = records[members[0]]
    merged = Passage(
        text=text,
        score=best.score,
        source=first.source,
        start=span_start,
        end=span_end,
        metadata={**best.metadata, "merged_from": len(group)},
        origin=tuple(o for i in members for o in records[i].origin or (records[i],)),
    )
    return _Unit(merged, rank_of[members[0]], min(group), members)


def _renderer(template: str | None) -> Callable[[Passage], str]:
    if template is None:
        return lambda p: p.text
    if "{text}" not in template:
        raise ValueError(f"template {template!r} has no {{text}} field; add one for the passage")

    def render(p: Passage) -> str:
        fields = {**p.metadata, "text": p.text, "source": p.source, "score": p.score}
        try:
            return template.format_map(fields)
        except (KeyError, IndexError) as exc:
            raise ValueError(
                f"template field {exc} is not text, source, score or a metadata key of the "
                f"passage (metadata keys: {sorted(p.metadata)})"
            ) from exc

    return render


def _cut(
    unit: _Unit,
    records: Sequence[Passage],
    budget: int,
    tok: Tokenizer,
    render: Callable[[Passage], str],
) -> Passage:
    """Cut a unit's passage at a token boundary so that it fits ``budget``; flag it truncated.

    A merged span is cut from where its most relevant member starts, so that member survives.
    """
    passage, best = unit.passage, records[unit.members[0]]
    offset = 0
    if passage.start is not None and best.start is not None and best.source == passage.source:
        offset = best.start - passage.start
    text = passage.text[offset:]

    def cut_at(chars: int) -> Passage:
        start = None if passage.start is None else passage.start + offset
        return replace(
            passage,
            text=text[:chars],
            start=start,
            end=None if start is None else start + chars,
            metadata={**passage.metadata, "truncated": True},
        )

    def fits(chars: int) -> bool:
        return tok.count(render(cut_at(chars))) <= budget

    spans = tok.spans(text)
    if spans is not None:
        # Token k ends at ends[k-1]; walk back from the estimate to a whole-character cut that fits.
        k = min(len(spans), max(budget - tok.count(render(cut_at(0))), 0))
        while k > 0 and not (spans.is_char_boundary(k) and fits(int(spans.ends[k - 1]))):
            k -= 1
        chars = int(spans.ends[k - 1]) if k > 0 else 0
    else:
        # A tokenizer without offsets: the longest prefix that fits, by counting.
        low, high = 0, len(text)
        while low < high:
            mid = (low + high + 1) // 2
            low, high = (mid, high) if fits(mid) else (low, mid - 1)
        chars = low
    if chars == 0 and text:
        raise ValueError(
            f"budget_tokens={budget} cannot hold any of the most relevant passage (with the "
            "template, if any); raise the budget"
        )
    return cut_at(chars)


def pack(
    passages: Iterable[Any],
    budget_tokens: int,
    tokenizer: TokenizerLike = "cl100k_base",
    strategy: str = "important_first_last",
    separator: str = "\n\n",
    template: str | None = None,
    score_key: str = DEFAULT_SCORE_KEY,
) -> PackResult:
    """Fit the most relevant passages into ``budget_tokens`` without sending any text twice.

    1. Passages with the same source id whose character spans overlap or touch are merged into
       one passage whose text is the exact source span (the shared text appears once). Its score
       is its best member's. Passages without a source id or offsets are never merged.
    2. Passages are taken from most to least relevant, each kept if its cost still fits the
       budget; a less relevant passage may fill room a larger one left. A passage costs the
       tokens of its template-rendered text plus, after the first, one separator's tokens.
       (The joined text is then checked: tokens merging across a join can only save room, and
       in the rare opposite case the least relevant passage is dropped.) Without scores, input
       order is the rank; a None or NaN score ranks lowest, with one warning.
    3. The kept passages are laid out by ``strategy`` (see :func:`reorder`).

    The most relevant passage is always sent: if it alone exceeds the budget, it is cut at a
    token boundary and its metadata says ``truncated=True``.

    Args:
        passages: Anything :func:`as_passage` reads: dicts, strings, ``Chunk``, LangChain
            ``Document`` or ``(Document, score)``, LlamaIndex ``NodeWithScore``.
        budget_tokens: Most tokens the context (``PackResult.text``) may have.
        tokenizer: Counts tokens; anything :func:`longcontext.get_tokenizer` accepts.
        strategy: One of :data:`STRATEGIES`.
        separator: Put between passages; its tokens count against the budget.
        template: Optional format string per passage with a ``{text}`` field, and optionally
            ``{source}``, ``{score}`` or metadata keys, e.g. ``"[{source}]\\n{text}"``.
        score_key: Metadata key with the score of a LangChain Document.

    Raises:
        ValueError: for an unknown strategy, a budget below 1, a template without ``{text}``,
            offsets that do not match a passage's text, or a budget that cannot hold a single
            character of the most relevant passage.
    """
    check_strategy(strategy)
    if isinstance(budget_tokens, bool) or not isinstance(budget_tokens, numbers.Integral):
        raise TypeError(f"budget_tokens must be an int, got {budget_tokens!r}")
    budget_tokens = int(budget_tokens)
    if budget_tokens < 1:
        raise ValueError(f"budget_tokens must be at least 1, got {budget_tokens}")
    tok = get_tokenizer(tokenizer)
    render = _renderer(template)
    records = [as_passage(p, score_key) for p in passages]
    order = rank([r.score for r in records], len(records))
    rank_of = [0] * len(records)
    for r, i in enumerate(order):
        rank_of[i] = r
    units = _merge(records, rank_of)

    costs = tok.count_many([render(u.passage) for u in units])
    separator_cost = tok.count(separator)
    kept: list[_Unit] = []
    dropped: list[_Unit] = []
    used = 0
    for unit, cost in zip(units, costs, strict=True):
        extra = cost + (separator_cost if kept else 0)
        if used + extra <= budget_tokens:
            kept.append(unit)
            used += extra
        elif not kept:  # the most relevant passage alone is over budget: cut it
            unit.passage = _cut(unit, records, budget_tokens, tok, render)
            kept.append(unit)
            used = tok.count(render(unit.passage))
        else:
            dropped.append(unit)

    # Token counts of joined texts can differ from the sum of the parts; check the real text.
    while True:
        laid_out = _lay_out(kept, strategy)
        text = separator.join(render(u.passage) for u in laid_out)
        token_count = tok.count(text)
        if token_count <= budget_tokens:
            break
        if len(kept) > 1:
            dropped.append(kept.pop())
        else:
            over = token_count - budget_tokens
            budget = tok.count(render(kept[0].passage)) - over
            kept[0].passage = _cut(kept[0], records, budget, tok, render)

    passages_out = [
        u.passage if u.passage is not records[u.members[0]] else _original(u.passage)
        for u in laid_out
    ]
    dropped.sort(key=lambda u: u.rank)
    return PackResult(
        passages=passages_out,
        records=[u.passage for u in laid_out],
        dropped=[_original(records[i]) for u in dropped for i in u.members],
        text=text,
        token_count=token_count,
        budget_tokens=budget_tokens,
    )


def _lay_out(kept: list[_Unit], strategy: str) -> list[_Unit]:
    if strategy == "none":
        return sorted(kept, key=lambda u: u.first_input)
    by_rank = sorted(kept, key=lambda u: u.rank)
    return [by_rank[r] for r in layout(len(by_rank), strategy)]


def _original(record: Passage) -> Any:
    """The caller's object a record was read from (the record itself if it was a Passage)."""
    return record.origin[0] if len(record.origin) == 1 else record
