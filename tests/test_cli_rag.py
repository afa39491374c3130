"""`longcontext index` and `longcontext ask` end to end: real files, real all-MiniLM-L6-v2
embeddings, real FAISS, a tiny real model for generation; and every kind of bad input."""

from __future__ import annotations

import itertools
import json
import os
import re
from pathlib import Path

import numpy as np
import pytest
import rag_fixtures
import tiny_models
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from rag_fixtures import run_cli

from longcontext.rag.corpus import read_corpus
from longcontext.rag.indexer import SplitterSettings, build_index
from longcontext.rag.store import VectorStore

CITATION = re.compile(r"\[(\d+)\] (\S+), characters (\d+)-(\d+) \(score (-?[\d.]+)")
Corpus = tuple[Path, dict[str, str]]
corpus = rag_fixtures.corpus  # fixtures shared with other test modules
tiny_qwen2_dir = tiny_models.tiny_qwen2_dir


def citations(output: str) -> list[tuple[int, str, int, int, float]]:
    sources = output.split("\nSources:\n", 1)[1]
    return [
        (int(n), source, int(a), int(b), float(s))
        for n, source, a, b, s in CITATION.findall(sources)
    ]


def errors(err: str) -> list[str]:
    return [line for line in err.splitlines() if ": error: " in line]


# ------------------------------------------------------------------------------------ the job
def test_index_stores_exact_chunks_with_metadata(corpus: Corpus, tmp_path: Path, capsys) -> None:
    folder, texts = corpus
    result = run_cli(capsys, "index", folder, "--index", tmp_path / "idx", "--chunk-size", "120")
    assert result.code == 0, result.err
    assert "indexed 3 file(s)" in result.out and "3 embedded" in result.out

    store = VectorStore.load(tmp_path / "idx")
    assert store.embeddings.name == "sentence-transformers/all-MiniLM-L6-v2"
    assert store.embeddings.dimension == 384 == store.vectors.shape[1]
    assert len(store.chunks) == len(store.vectors) > 3
    assert {c.source for c in store.chunks} == set(texts)
    for chunk in store.chunks:
        assert texts[chunk.source][chunk.start : chunk.end] == chunk.text
        assert chunk.token_count <= 120
    assert np.allclose(np.linalg.norm(store.vectors, axis=1), 1.0, atol=1e-4)
    # Chunks cover each file in order; only whitespace may fall between or after them.
    for source, text in texts.items():
        own = [c for c in store.chunks if c.source == source]
        assert own[0].start == 0 and not text[own[-1].end :].strip()
        for a, b in itertools.pairwise(own):
            assert a.start < b.start and (b.start <= a.end or not text[a.end : b.start].strip())


def test_ask_without_a_model_prints_the_packed_prompt(
    corpus: Corpus, tmp_path: Path, capsys
) -> None:
    folder, texts = corpus
    assert run_cli(capsys, "index", folder, "--index", tmp_path / "idx").code == 0
    question = "Who are the two households in fair Verona?"
    result = run_cli(capsys, "ask", tmp_path / "idx", question, "--model", "none", "--top-k", "4")
    assert result.code == 0, result.err
    assert "=== packed prompt ===" in result.out
    assert f"Question: {question}" in result.out
    assert "generation skipped: no model was given (--model none)" in result.out
    summary = re.search(
        r"packed (\d+) source\(s\) from (\d+) retrieved.*?(\d+) context tokens of "
        r"a (\d+)-token budget, (\d+) prompt tokens",
        result.out,
    )
    assert summary is not None
    kept, retrieved, context, budget, prompt = map(int, summary.groups())
    assert retrieved == 4 and 1 <= kept <= 4 and 0 < context <= budget and prompt > context

    cited = citations(result.out)
    assert len(cited) == kept
    # The closest chunk is from the play, it is cited as [1], and it sits first in the prompt.
    assert cited[0][0] == 1 and cited[0][1] == "play/romeo.txt"
    for number, source, start, end, _ in cited:
        span = texts[source][start:end]
        assert f"[{number}] {source}\n{span}" in result.out  # the prompt holds the exact span


def test_ask_reports_why_the_default_model_did_not_load(
    corpus: Corpus, tmp_path: Path, capsys
) -> None:
    folder, _ = corpus
    assert run_cli(capsys, "index", folder, "--index", tmp_path / "idx").code == 0
    result = run_cli(capsys, "ask", tmp_path / "idx", "What is Markdown?")  # offline: no weights
    assert result.code == 0, result.err
    skipped = [line for line in result.out.splitlines() if line.startswith("generation skipped")]
    assert len(skipped) == 1
    assert "Qwen/Qwen2.5-0.5B-Instruct" in skipped[0] and "could not load" in skipped[0]
    assert citations(result.out)


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "streamed"])
def test_ask_generates_with_a_tiny_model_and_cites(
    corpus: Corpus, tmp_path: Path, capsys, tiny_qwen2_dir: Path, stream: bool
) -> None:
    folder, texts = corpus
    assert run_cli(capsys, "index", folder, "--index", tmp_path / "idx").code == 0
    argv = [
        "ask",
        tmp_path / "idx",
        "What does the president say about the economy?",
        "--model",
        tiny_qwen2_dir,
        "--max-tokens",
        "8",
        "--top-k",
        "3",
    ]
    result = run_cli(capsys, *argv, *(["--stream"] if stream else []))
    assert result.code == 0, result.err
    # The tiny model's window is 2048; YaRN stretches it to 4x by default.
    assert "8192-token window, RoPE yarn, transformers backend" in result.err
    assert "generation skipped" not in result.out
    answer = result.out.split("\nSources:\n", 1)[0]
    assert answer.strip()  # random weights: some text, not a meaningful answer
    cited = citations(result.out)
    assert cited and cited[0][1] == "speech.md"
    assert all(texts[s][a:b] for _, s, a, b, _ in cited)


def test_budget_larger_than_the_window_is_refused(
    corpus: Corpus, tmp_path: Path, capsys, tiny_qwen2_dir: Path
) -> None:
    folder, _ = corpus
    assert run_cli(capsys, "index", folder, "--index", tmp_path / "idx").code == 0
    result = run_cli(
        capsys,
        "ask",
        tmp_path / "idx",
        "Verona?",
        "--model",
        tiny_qwen2_dir,
        "--rope",
        "none",
        "--budget",
        "5000",
    )
    assert result.code == 2
    (line,) = errors(result.err)
    assert "--budget 5000 does not fit: the 2048-token window" in line


def test_small_budget_keeps_fewer_sources(corpus: Corpus, tmp_path: Path, capsys) -> None:
    folder, _ = corpus
    assert run_cli(capsys, "index", folder, "--index", tmp_path / "idx").code == 0
    result = run_cli(
        capsys,
        "ask",
        tmp_path / "idx",
        "Verona",
        "--model",
        "none",
        "--budget",
        "150",
        "--strategy",
        "reverse_rank",
    )
    assert result.code == 0, result.err
    context = int(re.search(r"(\d+) context tokens of a 150-token budget", result.out).group(1))
    assert context <= 150
    numbers = [n for n, *_ in citations(result.out)]
    assert numbers == sorted(numbers, reverse=True)  # reverse_rank: the best comes last


# ------------------------------------------------------------------------- incremental index
def test_reindex_embeds_only_changed_files(corpus: Corpus, tmp_path: Path) -> None:
    folder, texts = corpus
    index = tmp_path / "idx"
    first = build_index(folder, index, progress=False)
    assert sorted(first.embedded) == sorted(texts)
    before = VectorStore.load(index)

    again = build_index(folder, index, progress=False)
    assert again.embedded == [] and again.new_chunks == 0 and again.chunks == first.chunks

    (folder / "speech.md").write_text(texts["speech.md"] + "\n\nA new closing line.\n")
    (folder / "notes.txt").write_text("Overlap repeats the end of one chunk at the next start.\n")
    (folder / "spec" / "commonmark.md").unlink()
    third = build_index(folder, index, progress=False)
    assert sorted(third.embedded) == ["notes.txt", "speech.md"]
    assert third.removed == ["spec/commonmark.md"]

    after = VectorStore.load(index)
    assert {c.source for c in after.chunks} == {"speech.md", "notes.txt", "play/romeo.txt"}
    # The unchanged file keeps its chunks and its vectors bit for bit.
    old_rows = [i for i, c in enumerate(before.chunks) if c.source == "play/romeo.txt"]
    new_rows = [i for i, c in enumerate(after.chunks) if c.source == "play/romeo.txt"]
    assert [before.chunks[i] for i in old_rows] == [after.chunks[i] for i in new_rows]
    assert np.array_equal(before.vectors[old_rows], after.vectors[new_rows])
    assert after.chunks[[c.source for c in after.chunks].index("speech.md")].start == 0
    assert any("A new closing line." in c.text for c in after.chunks)


def test_changed_splitter_settings_rechunk_every_file(
    corpus: Corpus, tmp_path: Path, capsys
) -> None:
    folder, texts = corpus
    assert run_cli(capsys, "index", folder, "--index", tmp_path / "idx").code == 0
    result = run_cli(
        capsys,
        "index",
        folder,
        "--index",
        tmp_path / "idx",
        "--splitter",
        "semantic",
        "--chunk-size",
        "150",
    )
    assert result.code == 0, result.err
    assert "3 embedded" in result.out
    manifest = json.loads((tmp_path / "idx" / "manifest.json").read_text())
    assert manifest["splitter"] == {"kind": "semantic", "chunk_size": 150, "overlap": 0}
    store = VectorStore.load(tmp_path / "idx")
    assert all(texts[c.source][c.start : c.end] == c.text for c in store.chunks)
    assert all(c.token_count <= 150 for c in store.chunks)


# -------------------------------------------------------------------------------- bad input
def test_empty_folder_is_refused(tmp_path: Path, capsys) -> None:
    (tmp_path / "empty").mkdir()
    result = run_cli(capsys, "index", tmp_path / "empty", "--index", tmp_path / "idx")
    assert result.code == 2
    (line,) = errors(result.err)
    assert "is empty: there is nothing to index" in line
    assert "Traceback" not in result.err
    assert not (tmp_path / "idx").exists()


def test_missing_folder_is_refused(tmp_path: Path, capsys) -> None:
    result = run_cli(capsys, "index", tmp_path / "nowhere", "--index", tmp_path / "idx")
    assert result.code == 2
    (line,) = errors(result.err)
    assert "nowhere does not exist" in line


def test_binary_files_are_skipped_and_listed_in_one_warning(
    corpus: Corpus, tmp_path: Path, capsys
) -> None:
    folder, texts = corpus
    (folder / "logo.png").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(range(256)))
    (folder / "play" / "latin1.txt").write_bytes("café crème".encode("latin-1"))
    result = run_cli(capsys, "index", folder, "--index", tmp_path / "idx")
    assert result.code == 0, result.err
    warnings = [line for line in result.err.splitlines() if "warning:" in line]
    assert warnings == [
        "longcontext index: warning: skipped 2 binary or non-UTF-8 file(s): logo.png, "
        "play/latin1.txt"
    ]
    assert set(VectorStore.load(tmp_path / "idx").files) == set(texts)


def test_folder_of_only_binary_files_is_refused(tmp_path: Path, capsys) -> None:
    folder = tmp_path / "bin"
    folder.mkdir()
    (folder / "a.bin").write_bytes(b"\x00\x01\x02")
    result = run_cli(capsys, "index", folder, "--index", tmp_path / "idx")
    assert result.code == 2
    (line,) = errors(result.err)
    assert "holds no readable text files" in line and "a.bin" in line


def test_broken_link_is_reported_unreadable(corpus: Corpus, tmp_path: Path, capsys) -> None:
    folder, texts = corpus
    (folder / "gone.md").symlink_to(tmp_path / "deleted.md")
    result = run_cli(capsys, "index", folder, "--index", tmp_path / "idx")
    assert result.code == 0, result.err
    warnings = [line for line in result.err.splitlines() if "warning:" in line]
    assert warnings == [
        "longcontext index: warning: skipped 1 unreadable file(s): gone.md (No such file or "
        "directory)"
    ]
    assert set(VectorStore.load(tmp_path / "idx").files) == set(texts)


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads files whatever their permissions")
def test_file_without_read_permission_is_reported_unreadable(corpus: Corpus) -> None:
    folder, _ = corpus
    secret = folder / "secret.md"
    secret.write_text("private")
    secret.chmod(0)
    try:
        found = read_corpus(folder)
    finally:
        secret.chmod(0o600)
    assert found.unreadable == [("secret.md", "Permission denied")]


def test_index_with_other_embeddings_is_refused(corpus: Corpus, tmp_path: Path, capsys) -> None:
    folder, _ = corpus
    assert run_cli(capsys, "index", folder, "--index", tmp_path / "idx").code == 0
    other = tmp_path / "other-embeddings"
    other.mkdir()
    for command in (
        ["index", folder, "--index", tmp_path / "idx", "--embeddings", other],
        ["ask", tmp_path / "idx", "Verona?", "--model", "none", "--embeddings", other],
    ):
        result = run_cli(capsys, *command)
        assert result.code == 2
        (line,) = errors(result.err)
        assert (
            f"was built with embeddings sentence-transformers/all-MiniLM-L6-v2 (384 dimensions), "
            f"not {other}" in line
        )
    # The same embeddings under another spelling are accepted.
    again = run_cli(
        capsys, "index", folder, "--index", tmp_path / "idx", "--embeddings", "all-MiniLM-L6-v2"
    )
    assert again.code == 0 and "0 embedded" in again.out


def test_question_against_an_empty_index_is_refused(tmp_path: Path, capsys) -> None:
    folder = tmp_path / "blank"
    folder.mkdir()
    (folder / "empty.md").write_text("")
    (folder / "spaces.txt").write_text("   \n\n  \n")
    built = run_cli(capsys, "index", folder, "--index", tmp_path / "idx")
    assert built.code == 0 and "0 chunks in all" in built.out
    result = run_cli(capsys, "ask", tmp_path / "idx", "Anything?", "--model", "none")
    assert result.code == 2
    (line,) = errors(result.err)
    assert "holds no chunks" in line


def test_ask_without_an_index_and_empty_question(corpus: Corpus, tmp_path: Path, capsys) -> None:
    result = run_cli(capsys, "ask", tmp_path / "nothing", "Verona?", "--model", "none")
    assert result.code == 2
    assert "no index at" in errors(result.err)[0]
    folder, _ = corpus
    assert run_cli(capsys, "index", folder, "--index", tmp_path / "idx").code == 0
    result = run_cli(capsys, "ask", tmp_path / "idx", "  ", "--model", "none")
    assert result.code == 2
    assert "the question is empty" in errors(result.err)[0]


def test_index_refuses_a_folder_that_is_not_an_index(
    corpus: Corpus, tmp_path: Path, capsys
) -> None:
    folder, _ = corpus
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "thesis.tex").write_text("keep me")
    result = run_cli(capsys, "index", folder, "--index", busy)
    assert result.code == 2
    assert "is not empty and holds no longcontext index" in errors(result.err)[0]
    assert (busy / "thesis.tex").read_text() == "keep me"


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (
            ["--chunk-size", "300"],
            "--chunk-size 300 is more than sentence-transformers/all-MiniLM"
            "-L6-v2 reads (254 tokens",
        ),
        (
            ["--chunk-size", "100", "--overlap", "100"],
            "--overlap 100 must be at least 0 and smaller",
        ),
        (["--splitter", "semantic", "--overlap", "20"], "--overlap 20 applies to --splitter token"),
        (["--chunk-size", "0"], "--chunk-size must be at least 1 token, got 0"),
    ],
)
def test_bad_chunking_options_are_refused(
    corpus: Corpus, tmp_path: Path, capsys, options: list[str], message: str
) -> None:
    folder, _ = corpus
    result = run_cli(capsys, "index", folder, "--index", tmp_path / "idx", *options)
    assert result.code == 2
    (line,) = errors(result.err)
    assert message in line


def test_index_inside_the_corpus_is_not_indexed(corpus: Corpus, capsys) -> None:
    folder, texts = corpus
    assert run_cli(capsys, "index", folder, "--index", folder / "idx").code == 0
    assert run_cli(capsys, "index", folder, "--index", folder / "idx").code == 0
    assert set(VectorStore.load(folder / "idx").files) == set(texts)


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=st.binary(max_size=300) | st.text(max_size=200).map(lambda t: t.encode("utf-8")))
def test_a_file_is_either_read_exactly_or_listed(tmp_path_factory, data: bytes) -> None:
    folder = tmp_path_factory.mktemp("one")
    (folder / "f").write_bytes(data)
    found = read_corpus(folder)
    if found.files:
        assert found.files[0].text.encode("utf-8") == data and not found.binary
    else:
        assert found.binary == ["f"]
        assert b"\x00" in data or _not_utf8(data)


def _not_utf8(data: bytes) -> bool:
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return True
    return False


def test_splitter_settings_defaults() -> None:
    assert SplitterSettings().resolved() == SplitterSettings("token", 200, 40)
    assert SplitterSettings("semantic", 100).resolved().overlap == 0
