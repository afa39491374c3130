"""``longcontext chunk``: JSON Lines out, one-line errors with exit code 2."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from splitter_fixtures import corpus_paths

from longcontext.cli import main


def test_chunk_writes_exact_json_lines(tmp_path: Path) -> None:
    sources = corpus_paths()[:2]
    output = tmp_path / "chunks.jsonl"
    code = main(["chunk", *map(str, sources), "--chunk-size", "128", "--overlap", "16",
                 "--output", str(output), "--quiet"])  # fmt: skip
    assert code == 0
    records = [json.loads(line) for line in output.read_text(encoding="utf-8").splitlines()]
    assert {r["source"] for r in records} == {str(p) for p in sources}
    texts = {str(p): p.read_text(encoding="utf-8") for p in sources}
    for record in records:
        assert set(record) == {"source", "index", "start", "end", "token_count", "text"}
        assert texts[record["source"]][record["start"] : record["end"]] == record["text"]
        assert record["token_count"] <= 128


def test_semantic_strategy(tmp_path: Path) -> None:
    source = tmp_path / "doc.md"
    source.write_text("# Title\n\nFirst paragraph.\n\nSecond paragraph.\n", encoding="utf-8")
    output = tmp_path / "out.jsonl"
    assert main(["chunk", str(source), "--strategy", "semantic", "-o", str(output), "-q"]) == 0
    records = [json.loads(line) for line in output.read_text(encoding="utf-8").splitlines()]
    assert "".join(r["text"] for r in records) == source.read_text(encoding="utf-8")


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "longcontext.cli", *args], capture_output=True, text=True
    )


def test_missing_file_is_one_line_exit_2(tmp_path: Path) -> None:
    result = _run("chunk", str(tmp_path / "nope.txt"))
    assert result.returncode == 2
    assert "nope.txt: no such file" in result.stderr
    assert "Traceback" not in result.stderr


def test_non_utf8_file_names_the_file_and_encoding_flag(tmp_path: Path) -> None:
    latin = tmp_path / "latin.txt"
    latin.write_bytes("café crème".encode("latin-1"))
    result = _run("chunk", str(latin), "--quiet")
    assert result.returncode == 2
    assert "latin.txt" in result.stderr and "--encoding" in result.stderr
    assert "Traceback" not in result.stderr
    ok = _run("chunk", str(latin), "--encoding", "latin-1", "--quiet")
    assert ok.returncode == 0
    assert json.loads(ok.stdout.splitlines()[0])["text"] == "café crème"


def test_bad_sizes_are_usage_errors(tmp_path: Path) -> None:
    doc = tmp_path / "doc.txt"
    doc.write_text("hello", encoding="utf-8")
    result = _run("chunk", str(doc), "--chunk-size", "10", "--overlap", "10")
    assert result.returncode == 2
    assert "chunk_overlap=10 must be smaller than chunk_size=10" in result.stderr


def test_progress_bar_on_stderr_unless_quiet(tmp_path: Path) -> None:
    doc = tmp_path / "doc.txt"
    doc.write_text("hello world " * 50, encoding="utf-8")
    loud = _run("chunk", str(doc))
    assert "chunking" in loud.stderr
    quiet = _run("chunk", str(doc), "--quiet")
    assert quiet.stderr == ""
