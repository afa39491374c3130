"""Pack retrieved passages into a token budget: merge overlaps, keep the best, lay them out.

Overlapping chunks (a 512/64 split retrieves neighbours that share 64 tokens) would send the same
source text twice. ``pack`` takes passages from most to least relevant, merges each with the kept
passages of the same source that it overlaps and agrees with into the exact source span, keeps
it if the context still fits the budget, and finally lays the kept passages out with
:func:`longcontext.context.reorder.reorder`'s strategies.
"""

from __future__ import annotations

import numbers
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
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
    """A piece of the context: one passage, or several merged into one source span."""

    passage: Passage
    members: list[int]  # input positions, most relevant first
    rank: int  # its best member's rank
    first_input: int  # its earliest member's input position, for strategy "none"
    cost: int  # tokens of the rendered passage


def _start(p: Passage) -> int:
    assert p.start is not None
    return p.start


def _end(p: Passage) -> int:
    assert p.end is not None
    return p.end


def _join(pieces: Sequence[Passage], ranks: Sequence[int]) -> Passage:
    """The exact source span that overlapping pieces of one source cover.

    The pieces agree on every character they share (:func:`_agree`); ``ranks`` orders them by
    relevance, and the merged passage takes the best one's score and metadata. Text shared by
    two pieces appears once.
    """
    if len(pieces) == 1:
        return pieces[0]
    by_start = sorted(pieces, key=lambda p: (_start(p), _end(p)))
    first = by_start[0]
    span_start, span_end, text = _start(first), _end(first), first.text
    for piece in by_start[1:]:
        if _end(piece) > span_end:
            text += piece.text[span_end - _start(piece) :]
            span_end = _end(piece)
    by_rank = [p for _, p in sorted(zip(ranks, pieces, strict=True), key=lambda rp: rp[0])]
    best = by_rank[0]
    return Passage(
        text=text,
        score=best.score,
        source=first.source,
        start=span_start,
        end=span_end,
        metadata={**best.metadata, "merged_from": len(pieces)},
        origin=tuple(o for p in by_rank for o in p.origin or (p,)),
    )


def _agree(a: Passage, b: Passage) -> bool:
    """Whether two passages of one source share characters and agree on all of them.

    One source id can name several texts (a PDF's pages all carry the file as ``source``;
    LlamaIndex nodes give offsets in a section but name the document): passages whose shared
    characters differ are slices of different texts, and passages that only touch give no
    evidence that they are neighbours in one text. Neither is merged.
    """
    low, high = max(_start(a), _start(b)), min(_end(a), _end(b))
    if low >= high:
        return False
    return a.text[low - _start(a) : high - _start(a)] == b.text[low - _start(b) : high - _start(b)]


def _conflict(a: Passage, b: Passage) -> bool:
    """Whether two passages of one source share characters and differ on some: two texts."""
    low, high = max(_start(a), _start(b)), min(_end(a), _end(b))
    return low < high and not _agree(a, b)


def _refreshed(passage: Passage, tok: Tokenizer) -> Passage:
    """A merged or cut passage with metadata that describes its own text.

    The metadata comes from the best member, so a splitter's ``token_count`` and LangChain's
    ``start_index``/``end_index`` would describe that member, not this text.
    """
    metadata = dict(passage.metadata)
    if "token_count" in metadata:
        metadata["token_count"] = tok.count(passage.text)
    if passage.start is not None:
        for key, value in (("start_index", passage.start), ("end_index", passage.end)):
            if key in metadata:
                metadata[key] = value
    return replace(passage, metadata=metadata)


class _Context:
    """The units chosen so far and their cost: rendered tokens plus a separator between units."""

    def __init__(
        self, tok: Tokenizer, render: Callable[[Passage], str], separator_cost: int
    ) -> None:
        self.tok, self.render, self.separator_cost = tok, render, separator_cost
        self.units: list[_Unit] = []
        self.pieces: dict[int, Passage] = {}  # input position -> the passage kept for it
        self.rank_of: dict[int, int] = {}

    def cost(self, units: Sequence[_Unit]) -> int:
        return sum(u.cost for u in units) + self.separator_cost * max(len(units) - 1, 0)

    def with_piece(self, i: int, piece: Passage, rank: int) -> list[_Unit]:
        """The units if ``piece`` (input ``i``) joined: merged with the units its span meets."""
        candidates = [
            u
            for u in self.units
            if piece.has_span
            and u.passage.has_span
            and u.passage.source == piece.source
            and _agree(u.passage, piece)
        ]
        # a piece can agree with two kept units that disagree with each other (slices of two
        # texts under one source id that share its characters): it joins the best-ranked of
        # them and those consistent with it, never both texts
        meets: list[_Unit] = []
        for unit in sorted(candidates, key=lambda u: u.rank):
            if not any(_conflict(unit.passage, m.passage) for m in meets):
                meets.append(unit)
        members = sorted([i, *(m for u in meets for m in u.members)], key=self._rank(i, rank))
        pieces = [piece if m == i else self.pieces[m] for m in members]
        ranks = [rank if m == i else self.rank_of[m] for m in members]
        passage = _join(pieces, ranks)
        if len(pieces) > 1:
            passage = _refreshed(passage, self.tok)
        unit = _Unit(
            passage,
            members,
            min(ranks),
            min(members),
            self.tok.count(self.render(passage)),
        )
        return [u for u in self.units if not any(u is m for m in meets)] + [unit]

    def _rank(self, i: int, rank: int) -> Callable[[int], int]:
        return lambda m: rank if m == i else self.rank_of[m]

    def keep(self, i: int, piece: Passage, rank: int, units: list[_Unit]) -> None:
        self.units = units
        self.pieces[i] = piece
        self.rank_of[i] = rank


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
    passage: Passage, budget: int, tok: Tokenizer, render: Callable[[Passage], str]
) -> Passage:
    """Cut a passage at a token boundary so that it fits ``budget``; flag it truncated.

    A merged span is cut from where its most relevant member starts, so that member survives.
    """
    offset = 0
    best = as_passage(passage.origin[0]) if passage.origin else passage
    if passage.start is not None and best.start is not None and best.source == passage.source:
        offset = max(best.start - passage.start, 0)
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
    return _refreshed(cut_at(chars), tok)


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

    1. Passages are taken from most to least relevant: by score, or without scores in input
       order; a None or NaN score ranks lowest, with one warning.
    2. A passage that overlaps a kept passage of the same source (same source id, by
       character offsets) and agrees with it on every shared character is merged with it into
       one passage whose text is the exact source span: shared text appears once and costs
       only what the passage adds. A merged passage has its best member's score and metadata,
       plus ``merged_from``. Passages without a source id or offsets, passages that only
       touch, and passages whose shared characters differ (one source id naming several
       texts, such as a PDF's pages) are never merged: each keeps its own text and offsets.
       A merged or cut passage's ``token_count``, ``start_index`` and ``end_index`` metadata,
       where present, describe its new text (counted with ``tokenizer``).
    3. The passage is kept if the context still fits: the tokens of every kept passage rendered
       with the template, plus one separator's tokens between passages. Otherwise it is
       dropped and a less relevant one may still fill the room. (The joined text is checked at
       the end: tokens merging across a join can only save room, and in the rare opposite case
       the least relevant passage goes.)
    4. The kept passages are laid out by ``strategy`` (see :func:`reorder`).

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
            offsets whose length does not match a passage's text, or a budget that cannot hold
            a single character of the most relevant passage.
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

    context = _Context(tok, render, tok.count(separator))
    not_kept: list[int] = []
    for r, i in enumerate(order):
        piece = records[i]
        units = context.with_piece(i, piece, r)
        if context.cost(units) > budget_tokens and not context.units:
            # The most relevant passage alone is over budget: send as much of it as fits.
            piece = _cut(piece, budget_tokens, tok, render)
            units = context.with_piece(i, piece, r)
        if context.cost(units) <= budget_tokens:
            context.keep(i, piece, r, units)
        else:
            not_kept.append(i)

    # Token counts of joined texts can differ from the sum of the parts; check the real text.
    kept = sorted(context.units, key=lambda u: u.rank)
    while True:
        laid_out = _lay_out(kept, strategy)
        text = separator.join(render(u.passage) for u in laid_out)
        token_count = tok.count(text)
        if token_count <= budget_tokens or not kept:
            break
        if len(kept) > 1:
            not_kept.extend(kept.pop().members)
        else:
            kept[0].passage = _cut(kept[0].passage, budget_tokens, tok, render)

    rank_of = {i: r for r, i in enumerate(order)}
    return PackResult(
        passages=[
            _original(u.passage) if u.passage is records[u.members[0]] else u.passage
            for u in laid_out
        ],
        records=[u.passage for u in laid_out],
        dropped=[_original(records[i]) for i in sorted(not_kept, key=rank_of.__getitem__)],
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
