"""Real tokenizers for splitter tests: tiktoken offline and a byte-level BPE trained on the fly."""

from __future__ import annotations

import itertools
from functools import cache
from pathlib import Path

from conftest import SHARED
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

from longcontext import Chunk
from longcontext import Tokenizer as LongcontextTokenizer

CORPORA = SHARED / "data" / "corpora"

TRAINING_TEXT = [
    "The quick brown fox jumps over the lazy dog. " * 20,
    "Long documents need careful chunking; overlap keeps context across boundaries.\n\n",
    "今日は良い天気です。明日も晴れるでしょう。北京欢迎你！",
    "مرحبا بالعالم. שלום עולם. Привет, мир! Ünïcödé ñ café naïve.",
    "def split(text):\n    return [text[i:i + 10] for i in range(0, len(text), 10)]\n",
    "😀👨‍👩‍👧 emoji and ZWJ sequences, e\u0301 combining marks, \r\n line endings.",
]


@cache
def byte_level_bpe() -> Tokenizer:
    """A GPT-2-style byte-level BPE trained here: every string encodes, offsets are exact."""
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=600,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    corpus = list(TRAINING_TEXT)
    for path in sorted(CORPORA.glob("*"))[:2]:
        corpus.append(path.read_text(encoding="utf-8")[:20000])
    tokenizer.train_from_iterator(corpus, trainer=trainer)
    return tokenizer


def corpus_text(name: str) -> str:
    return (CORPORA / name).read_text(encoding="utf-8")


def corpus_paths() -> list[Path]:
    return sorted(CORPORA.glob("*"))


def check_chunks(
    text: str,
    chunks: list[Chunk],
    tokenizer: LongcontextTokenizer,
    budget: int,
    max_chars: int | None = None,
) -> None:
    """Every chunk is an exact, non-empty slice with its exact token count within the budget
    (and ``max_chars``); chunks advance and cover the text from its first character to its
    last, so their non-overlapping parts put together are the text."""
    if not text.strip():
        assert chunks == []
        return
    assert chunks[0].start == 0
    assert chunks[-1].end == len(text)
    for index, chunk in enumerate(chunks):
        assert chunk.index == index
        assert text[chunk.start : chunk.end] == chunk.text
        assert chunk.text, "no empty chunks"
        count = tokenizer.count(chunk.text)
        assert count == chunk.token_count
        assert count <= budget
        if max_chars is not None:
            assert len(chunk.text) <= max_chars
        if "\ufffd" not in text:
            assert "\ufffd" not in chunk.text
    for before, after in itertools.pairwise(chunks):
        assert before.start < after.start, "chunks advance"
        assert after.start <= before.end, "no gap between chunks: the text is covered"
    parts = [text[c.start : n.start] for c, n in itertools.pairwise(chunks)]
    assert "".join(parts) + chunks[-1].text == text
