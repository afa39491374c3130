"""Invariants of both splitters over arbitrary Unicode, with two real tokenizers.

Every chunk is an exact slice, re-tokenizes within the budget, keeps characters whole, and the
chunks cover the text in order. Hypothesis searches emoji with ZWJ, combining marks, CJK, RTL,
CRLF and NUL for a counter-example.
"""

from __future__ import annotations

import itertools

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from splitter_fixtures import byte_level_bpe, check_chunks, corpus_paths

from longcontext import SemanticSplitter, TokenSplitter, get_tokenizer
from longcontext.splitters import boundaries, slices
from longcontext.tokenizers import Tokenizer

TRICKY = [
    "😀",
    "👨‍👩‍👧",
    "🏳️‍🌈",
    "e\u0301",
    "今日は良い天気です。",
    "北京欢迎你！",
    "مرحبا بالعالم.",
    "שלום עולם",
    "\r\n",
    "\x00",
    " ",
    "\n\n",
    "# Header\n",
    "Hello world. ",
    "1234567890",
    "Ünïcödé",
    "   ",
    "\t",
]
# Markup and code: where pre-tokenizer pieces meet (" word", "\n/", ":\n", "'s", digits).
MARKUP = ["\n", "\n\n", "/", ":", " ", "word", "Word", "'s", "123", ".", "#", "```", "<p>", "-"]
TEXTS = st.one_of(
    st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=400),
    st.lists(st.one_of(st.sampled_from(TRICKY), st.text(max_size=12)), max_size=80).map("".join),
    st.lists(st.sampled_from(MARKUP + TRICKY[:3]), max_size=150).map("".join),
)
SETTINGS = settings(
    max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


@pytest.fixture(scope="module", params=["cl100k_base", "o200k_base", "hf-byte-level-bpe"])
def tokenizer(request: pytest.FixtureRequest) -> Tokenizer:
    return get_tokenizer(byte_level_bpe() if request.param.startswith("hf") else request.param)


@given(text=TEXTS, size=st.integers(8, 64), overlap_ratio=st.floats(0, 0.5))
@SETTINGS
def test_token_splitter_invariants(
    tokenizer: Tokenizer, text: str, size: int, overlap_ratio: float
) -> None:
    overlap = int(size * overlap_ratio)
    chunks = TokenSplitter(tokenizer, chunk_size=size, chunk_overlap=overlap).split(text)
    check_chunks(text, chunks, tokenizer, size)
    for before, after in itertools.pairwise(chunks):
        shared = tokenizer.count(text[after.start : before.end])
        # Overlap is the requested token count, give or take the tokens of one character.
        assert shared <= overlap + 4


# Runs of letters, contractions, digits and symbols with few spaces: where the encodings'
# patterns decide piece edges ("X's" + "'t...", "23" + "4", "&" + "quot", camelCase in o200k).
DENSE = st.lists(
    st.sampled_from(
        [
            "'s",
            "'t",
            "'ll",
            "'",
            "'title",
            "bar",
            "title",
            "B",
            "cd",
            "EF",
            "Gh",
            "1",
            "23",
            "456",
            "&",
            "quot",
            ";",
            ".",
            "/",
            "+",
            "=",
            "_",
            "-",
            "。",
            "漢字",
            "今日",
            "é",
            "e\u0301",
            "ß",
            "ʰ",
            "😀",
            "\u200d",
            "İ",
            " ",
            "\n",
        ]
    ),
    min_size=30,
    max_size=150,
).map("".join)


@given(text=st.one_of(TEXTS, DENSE), size=st.integers(8, 64), overlap=st.integers(0, 7))
@settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
def test_counts_stay_exact_with_cuts_from_the_encodings_own_pattern(
    tokenizer: Tokenizer, text: str, size: int, overlap: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Text without spaces (CJK, code, data) has no byte-level safe cut nearby; then the cuts
    come from the encoding's pre-tokenizer pattern; scanning one token, at once, makes that the
    rule."""
    monkeypatch.setattr(slices, "_SCAN", 1)
    monkeypatch.setattr(slices, "_MISSES_BEFORE_PATTERN", 0)
    check_chunks(text, TokenSplitter(tokenizer, size, overlap).split(text), tokenizer, size)
    check_chunks(text, SemanticSplitter(tokenizer, chunk_size=size).split(text), tokenizer, size)


@given(text=DENSE, encoding=st.sampled_from(["cl100k_base", "o200k_base"]))
@settings(
    max_examples=600, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
def test_every_short_slice_counts_exactly(
    text: str, encoding: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every slice between two tokens, up to 12 apart, against its own re-encoding."""
    monkeypatch.setattr(slices, "_SCAN", 1)
    monkeypatch.setattr(slices, "_MISSES_BEFORE_PATTERN", 0)
    tokenizer = get_tokenizer(encoding)
    spans = tokenizer.spans(text)
    counter = slices.SliceCounter(tokenizer, text, spans)
    n = len(spans)
    edges = [k for k in range(n + 1) if spans.is_char_boundary(k)]
    for a, i in enumerate(edges):
        for j in edges[a + 1 : a + 13]:
            end = len(text) if j == n else spans.start(j)
            piece = text[spans.start(i) : end]
            assert counter.count_span(i, j) == tokenizer.count(piece), piece


@given(text=TEXTS, size=st.integers(8, 64), align=st.sampled_from(["word", "sentence"]))
@SETTINGS
def test_aligned_token_splitter_invariants(
    tokenizer: Tokenizer, text: str, size: int, align: str
) -> None:
    chunks = TokenSplitter(tokenizer, chunk_size=size, chunk_overlap=size // 8, align=align).split(
        text
    )  # type: ignore[arg-type]
    check_chunks(text, chunks, tokenizer, size)


@given(text=TEXTS, size=st.integers(8, 64))
@SETTINGS
def test_semantic_splitter_invariants(tokenizer: Tokenizer, text: str, size: int) -> None:
    chunks = SemanticSplitter(tokenizer, chunk_size=size).split(text)
    check_chunks(text, chunks, tokenizer, size)
    for before, after in itertools.pairwise(chunks):
        assert after.start == before.end, "semantic chunks tile the text without overlap"


@given(text=TEXTS, size=st.integers(8, 40))
@settings(max_examples=40, deadline=None)
def test_callable_tokenizer_without_offsets(text: str, size: int) -> None:
    """A plain callable gives no offsets: the counting path must keep the same guarantees."""
    encoding = get_tokenizer("cl100k_base")
    counter = get_tokenizer(lambda s: encoding.encode(s))
    check_chunks(text, TokenSplitter(counter, size, size // 4).split(text), counter, size)
    check_chunks(text, SemanticSplitter(counter, chunk_size=size).split(text), counter, size)


@pytest.mark.parametrize("path", corpus_paths(), ids=lambda p: p.name)
def test_real_corpora_hold_every_invariant(path) -> None:  # type: ignore[no-untyped-def]
    text = path.read_text(encoding="utf-8")
    tokenizer = get_tokenizer("cl100k_base")
    token_chunks = TokenSplitter(tokenizer, 512, 64).split(text)
    check_chunks(text, token_chunks, tokenizer, 512)
    # All but the last window are full, and neighbours share the requested 64 tokens (+-1).
    assert all(c.token_count >= 500 for c in token_chunks[:-1])
    for before, after in itertools.pairwise(token_chunks):
        assert abs(tokenizer.count(text[after.start : before.end]) - 64) <= 2
    semantic_chunks = SemanticSplitter(tokenizer, chunk_size=256).split(text)
    check_chunks(text, semantic_chunks, tokenizer, 256)


@pytest.mark.parametrize("encoding", ["cl100k_base", "o200k_base"])
@pytest.mark.parametrize("path", corpus_paths(), ids=lambda p: p.name)
def test_small_chunks_of_real_corpora_count_exactly(path, encoding: str) -> None:  # type: ignore[no-untyped-def]
    """Small budgets put chunk edges everywhere: after newlines, in markup, inside words."""
    text = path.read_text(encoding="utf-8")
    tokenizer = get_tokenizer(encoding)
    for splitter in (
        TokenSplitter(tokenizer, 24, 5),
        TokenSplitter(tokenizer, 16, 3, align="word"),
        SemanticSplitter(tokenizer, chunk_size=32),
    ):
        check_chunks(
            text, splitter.split(text), tokenizer, 32 if "Semantic" in repr(splitter) else 40
        )


def test_split_many_matches_split() -> None:
    texts = [path.read_text(encoding="utf-8")[:30000] for path in corpus_paths()]
    splitter = TokenSplitter("cl100k_base", 128, 16)
    assert splitter.split_many(texts, num_threads=2) == [splitter.split(t) for t in texts]
    semantic = SemanticSplitter("cl100k_base", chunk_size=128)
    assert semantic.split_many(texts) == [semantic.split(t) for t in texts]


def test_sentence_alignment_ends_chunks_at_sentence_ends() -> None:
    text = " ".join(f"Sentence number {i} says something useful." for i in range(200))
    chunks = TokenSplitter("cl100k_base", 64, 8, align="sentence").split(text)
    assert all(c.text.rstrip().endswith(".") for c in chunks[:-1])
    word_chunks = TokenSplitter("cl100k_base", 64, 8, align="word").split(text)
    assert all(text[c.end] == " " or text[c.end - 1] == " " for c in word_chunks[:-1])


def test_semantic_splitter_prefers_paragraphs_and_headers() -> None:
    sections = [
        f"# Section {s}\n\n" + "\n\n".join(f"Paragraph {s}.{p} " + "word " * 30 for p in range(3))
        for s in range(6)
    ]
    text = "\n\n".join(sections)
    chunks = SemanticSplitter("cl100k_base", chunk_size=120).split(text)
    for chunk in chunks[1:]:
        # Every chunk starts at a paragraph or a header, never mid-sentence.
        assert chunk.text.startswith(("Paragraph", "# Section"))


def test_a_full_chunk_ends_at_the_strongest_boundary_in_its_second_half() -> None:
    """Greedy packing would top the first chunk up with sentences of the next paragraph."""
    first = " ".join(f"Opening sentence number {n} is here." for n in range(8))
    second = " ".join(f"Later sentence number {n} follows on." for n in range(40))
    text = f"{first}\n\n{second}"
    tokenizer = get_tokenizer("cl100k_base")
    budget = 100
    assert budget / 2 <= tokenizer.count(first + "\n\n") < budget  # the paragraph is eligible
    chunks = SemanticSplitter(tokenizer, chunk_size=budget).split(text)
    assert chunks[0].text == first + "\n\n"
    assert chunks[1].text.startswith("Later sentence number 0")
    assert all(c.text.endswith((". ", ".", "\n\n")) for c in chunks)  # never mid-sentence


def test_escaped_newlines_of_dumped_text_are_line_boundaries() -> None:
    dumped = r"{'content': 'First message.\nSecond line', 'role': 'user'}"
    cut = boundaries.cuts(dumped, "line", 0, len(dumped))
    assert [dumped[:c][-2:] for c in cut] == [r"\n"]
    assert boundaries.cuts(r"a path C:\\new", "line", 0, 13) == []  # an escaped backslash


def test_langchain_token_splitter_corrupts_cjk_but_ours_does_not() -> None:
    from langchain_text_splitters import TokenTextSplitter

    text = "今日は良い天気です。明日も晴れるでしょう。" * 40
    theirs = TokenTextSplitter(encoding_name="cl100k_base", chunk_size=25, chunk_overlap=5)
    assert any("\ufffd" in piece for piece in theirs.split_text(text)), "anchor behaviour changed"
    ours = TokenSplitter("cl100k_base", 25, 5).split(text)
    assert not any("\ufffd" in c.text for c in ours)
    check_chunks(text, ours, get_tokenizer("cl100k_base"), 25)


COOKING = [
    "Whisk the eggs with a pinch of salt until they turn pale.",
    "Melt the butter slowly in a heavy frying pan.",
    "Pour the eggs into the pan and stir them gently with a wooden spoon.",
    "Season the omelette with pepper and fresh chives before folding it.",
    "Serve the omelette warm with toasted bread and a green salad.",
    "Leftover batter keeps in the fridge for a day.",
]
ASTRONOMY = [
    "Jupiter is the largest planet in the solar system.",
    "Its Great Red Spot is a storm larger than the Earth.",
    "Galileo discovered four of its moons with an early telescope in 1610.",
    "The planet's magnetic field is the strongest of any planet.",
    "Spacecraft such as Juno have mapped its gravity and its clouds.",
    "Saturn, its neighbour, is famous for its bright rings.",
]


@pytest.mark.parametrize("budget", [60, 1000])
def test_embeddings_cut_where_the_topic_changes(budget: int) -> None:
    """Real MiniLM: the one big shift in meaning is a chunk boundary, whatever the budget;
    structure alone (one line of text) has no reason to cut there."""
    from retrieval_fixtures import minilm

    model = minilm()
    text = " ".join(COOKING + ASTRONOMY)
    shift = text.index(" " + ASTRONOMY[0])  # sentences end at their full stop
    tokenizer = get_tokenizer("cl100k_base")
    embedded = SemanticSplitter(tokenizer, chunk_size=budget, embeddings=model.encode)
    chunks = embedded.split(text)
    check_chunks(text, chunks, tokenizer, budget)
    assert shift in {c.start for c in chunks}
    structural = SemanticSplitter(tokenizer, chunk_size=budget).split(text)
    if budget == 1000:
        assert [c.text for c in structural] == [text]


FENCED = """# Install

Run the script:

```bash
# comment: not a header
./install.sh
```

~~~~python
# also a comment
```
# still inside: a shorter fence of the other kind does not close it
~~~~

# Usage

Call it.

```
# an unclosed block runs to the end
"""


def test_comments_in_fenced_code_are_not_headers() -> None:
    headers = boundaries.cuts(FENCED, "header", 0, len(FENCED))
    assert [FENCED[h:].split("\n", 1)[0] for h in headers] == ["# Usage"]
    # Only the stretch inside one block is asked for: the block is known from the whole text.
    inner = FENCED.index("# comment")
    assert boundaries.cuts(FENCED, "header", inner - 5, inner + 20) == []
    tokenizer = get_tokenizer("cl100k_base")
    for budget in (40, 60):  # a chunk ends at the strongest boundary: the real header
        chunks = SemanticSplitter(tokenizer, budget).split(FENCED)
        check_chunks(FENCED, chunks, tokenizer, budget)
        starts = {c.start for c in chunks}
        assert FENCED.index("# Usage") in starts
        for comment in ("# comment", "# also", "# still", "# an unclosed"):
            assert FENCED.index(comment) not in starts


def test_split_many_calls_the_embeddings_from_the_callers_thread_only() -> None:
    """Real MiniLM embeddings: split_many batches every text's sentences in this thread."""
    import threading

    from retrieval_fixtures import minilm

    model = minilm()
    threads: list[int] = []
    batches: list[int] = []

    def embed(texts: list[str]):  # type: ignore[no-untyped-def]
        threads.append(threading.get_ident())
        batches.append(len(texts))
        return model.encode(texts)

    texts = [" ".join(COOKING[k:] + ASTRONOMY[:k]) for k in range(4)] + ["   "]
    splitter = SemanticSplitter("cl100k_base", 60, embeddings=embed, batch_size=16)
    many = splitter.split_many(texts, num_threads=4)
    assert set(threads) == {threading.get_ident()}
    assert batches == [16, 8]  # 4 texts of 6 sentences, batched together
    assert many == [splitter.split(t) for t in texts]
    threads.clear()
    opted = SemanticSplitter("cl100k_base", 60, embeddings=embed, embed_in_threads=True)
    assert opted.split_many(texts, num_threads=4) == many
