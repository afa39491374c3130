"""longcontext.reorder: lost-in-the-middle layouts, ranks from scores, bad input."""

from __future__ import annotations

import math
import random
import subprocess
import sys
import warnings
from itertools import pairwise

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from longcontext.context import STRATEGIES, reorder


class Item:
    """A passage stand-in whose identity we can check (reorder returns the objects themselves)."""

    def __init__(self, rank: int) -> None:
        self.rank = rank

    def __repr__(self) -> str:
        return f"Item({self.rank})"


def expected_position(rank: int, n: int, strategy: str) -> int:
    """Where the item of a given rank (0 = most relevant) must land, written out per the spec."""
    if strategy == "important_first_last":
        # rank 0 -> first, rank 1 -> last, rank 2 -> second, rank 3 -> second to last, ...
        return rank // 2 if rank % 2 == 0 else n - 1 - rank // 2
    if strategy == "reverse_rank":
        return n - 1 - rank
    raise AssertionError(strategy)


def test_worked_example_from_the_seed() -> None:
    scores = [1.0, 0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2, 0.1]
    assert reorder(list(range(10)), scores) == [0, 2, 4, 6, 8, 9, 7, 5, 3, 1]


def test_worked_example_without_scores_uses_input_order_as_rank() -> None:
    assert reorder(list(range(10))) == [0, 2, 4, 6, 8, 9, 7, 5, 3, 1]


def test_strategies_are_exactly_the_seeds() -> None:
    assert STRATEGIES == ("important_first_last", "reverse_rank", "none")


@pytest.mark.parametrize("strategy", ["important_first_last", "reverse_rank"])
@pytest.mark.parametrize("n", range(1, 13))
def test_positions_with_scores_given_shuffled(n: int, strategy: str) -> None:
    items = [Item(r) for r in range(n)]
    scores = {item: 1.0 - item.rank / 20 for item in items}  # distinct, rank 0 highest
    shuffled = items[:]
    random.Random(n).shuffle(shuffled)

    out = reorder(shuffled, [scores[i] for i in shuffled], strategy=strategy)

    assert sorted(map(id, out)) == sorted(map(id, items))
    for position, item in enumerate(out):
        assert position == expected_position(item.rank, n, strategy), (n, [i.rank for i in out])


@pytest.mark.parametrize("strategy", ["important_first_last", "reverse_rank"])
@pytest.mark.parametrize("n", range(1, 13))
def test_positions_without_scores(n: int, strategy: str) -> None:
    items = [Item(r) for r in range(n)]
    out = reorder(items, strategy=strategy)
    assert [expected_position(i.rank, n, strategy) for i in out] == list(range(n))


@pytest.mark.parametrize("n", range(1, 13))
def test_none_keeps_the_input_order_with_or_without_scores(n: int) -> None:
    items = [Item(r) for r in range(n)]
    random.Random(n).shuffle(items)
    assert reorder(items, strategy="none") == items
    assert reorder(items, [float(i.rank) for i in items], strategy="none") == items


def test_returns_the_items_themselves_in_a_new_list() -> None:
    items = [{"text": "a"}, {"text": "b"}, {"text": "c"}]
    out = reorder(items, [0.1, 0.9, 0.5])
    assert out == [items[1], items[0], items[2]]
    assert all(any(o is i for i in items) for o in out)
    assert out is not items


def test_ties_keep_input_order() -> None:
    # All tied: input order is the rank, so the layout is the one for ranks 0..4.
    assert reorder(list("abcde"), [0.5] * 5) == list("acedb")
    # b and c tie below a: b (earlier) ranks above c, so b is last and c second.
    assert reorder(list("abcd"), [0.3, 0.9, 0.9, 0.1]) == ["b", "a", "d", "c"]


def _framework_orders(n: int) -> tuple[list[int], list[int]]:
    """LangChain's and LlamaIndex's LongContextReorder on n passages (0 = most relevant)."""
    from langchain_community.document_transformers import LongContextReorder as LangChainReorder
    from langchain_core.documents import Document
    from llama_index.core.postprocessor import LongContextReorder as LlamaIndexReorder
    from llama_index.core.schema import NodeWithScore, TextNode

    # LangChain's expects the retriever's order: most relevant first.
    docs = [Document(page_content=str(r)) for r in range(n)]
    langchain = [int(d.page_content) for d in LangChainReorder().transform_documents(docs)]
    nodes = [NodeWithScore(node=TextNode(text=str(r)), score=1.0 - r / 20) for r in range(n)]
    llama = [int(nw.node.get_content()) for nw in LlamaIndexReorder().postprocess_nodes(nodes)]
    return langchain, llama


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
@pytest.mark.parametrize("n", range(1, 13))
def test_most_relevant_first_for_every_n_unlike_the_frameworks(n: int) -> None:
    ours = reorder(list(range(n)), [1.0 - r / 20 for r in range(n)])
    assert ours[0] == 0
    if n > 1:
        assert ours[-1] == 1

    langchain, llama = _framework_orders(n)
    # Theirs: for even n the most relevant passage lands last, not first.
    for theirs in (langchain, llama):
        assert sorted(theirs) == list(range(n))
        if n % 2 == 0:
            assert theirs[-1] == 0 and theirs[0] != 0
        else:
            assert theirs[0] == 0


def test_none_and_nan_scores_rank_lowest_with_one_warning() -> None:
    with pytest.warns(RuntimeWarning, match="2 of 5 scores are None or NaN") as record:
        out = reorder(list("abcde"), [0.2, None, 0.9, math.nan, 0.5], strategy="reverse_rank")
    assert len(record) == 1
    # Ranks: c, e, a, then b and d (missing, in input order); reverse_rank puts rank 0 last.
    assert out == ["d", "b", "a", "e", "c"]


def test_all_scores_missing_means_input_order_without_warning() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert reorder(list("abc"), [None, None, None]) == ["a", "c", "b"]


def test_unknown_strategy_lists_the_strategies() -> None:
    with pytest.raises(ValueError) as excinfo:
        reorder([1, 2], strategy="middle_out")
    message = str(excinfo.value)
    assert "middle_out" in message
    assert all(s in message for s in STRATEGIES)


def test_score_count_must_match() -> None:
    with pytest.raises(ValueError, match="3 items but 2 scores"):
        reorder([1, 2, 3], [0.1, 0.2])


def test_non_numeric_score_is_a_type_error() -> None:
    with pytest.raises(TypeError, match="'high'"):
        reorder([1, 2], [0.5, "high"])  # type: ignore[list-item]


def test_empty_input() -> None:
    assert reorder([]) == []
    assert reorder([], []) == []


def test_importing_the_core_loads_no_framework() -> None:
    code = (
        "import sys, longcontext.context as c; c.reorder([1, 2]);"
        "heavy = [m for m in ('langchain_core', 'llama_index', 'torch', 'transformers') "
        "if m in sys.modules]; print(heavy); assert not heavy"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


scores_lists = st.lists(
    st.floats(min_value=-1e6, max_value=1e6, allow_nan=False) | st.integers(-100, 100),
    max_size=40,
)


@settings(max_examples=150, deadline=None)
@given(scores=scores_lists, strategy=st.sampled_from(STRATEGIES))
def test_output_is_a_permutation_of_the_input(scores: list[float], strategy: str) -> None:
    items = [Item(i) for i in range(len(scores))]
    out = reorder(items, scores, strategy=strategy)
    assert sorted(map(id, out)) == sorted(map(id, items))


@settings(max_examples=150, deadline=None)
@given(scores=scores_lists)
def test_important_first_last_is_a_valley_of_relevance(scores: list[float]) -> None:
    indices = list(range(len(scores)))
    out = [scores[i] for i in reorder(indices, scores)]
    if not out:
        return
    assert out[0] == max(scores)
    # Relevance falls from the front to the middle and rises from the middle to the back.
    lowest = out.index(min(out))
    assert all(a >= b for a, b in pairwise(out[: lowest + 1]))
    assert all(a <= b for a, b in pairwise(out[lowest:]))
    if len(out) > 1:
        assert out[-1] == sorted(scores, reverse=True)[1]


@settings(max_examples=150, deadline=None)
@given(scores=scores_lists, seed=st.integers(0, 2**32 - 1))
def test_reverse_rank_sorts_ascending_and_input_order_of_distinct_scores_does_not_matter(
    scores: list[float], seed: int
) -> None:
    indices = list(range(len(scores)))
    assert [scores[i] for i in reorder(indices, scores, "reverse_rank")] == sorted(scores)
    distinct = sorted(set(scores))
    shuffled = distinct[:]
    random.Random(seed).shuffle(shuffled)
    assert reorder(shuffled, shuffled) == reorder(distinct, distinct)
