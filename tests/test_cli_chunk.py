"""``longcontext chunk`` (JSON Lines out, one-line errors with exit code 2) and what every
command shares: ``--version``, defaults in help, deprecated aliases."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from splitter_fixtures import corpus_paths

import longcontext
from longcontext.chunk import Chunk
from longcontext.cli import build_parser, main


def test_chunk_writes_exact_json_lines(tmp_path: Path) -> None:
    sources = corpus_paths()[:2]
    output = tmp_path / "chunks.jsonl"
    code = main(["chunk", *map(str, sources), "--chunk-size", "128", "--chunk-overlap", "16",
                 "--output", str(output), "--quiet"])  # fmt: skip
    assert code == 0
    records = [json.loads(line) for line in output.read_text(encoding="utf-8").splitlines()]
    assert {r["source"] for r in records} == {str(p) for p in sources}
    texts = {str(p): p.read_text(encoding="utf-8") for p in sources}
    for record in records:
        # One record shape: Chunk.to_dict() plus the source.
        assert set(record) == {"source", *Chunk("", 0, 0, 0, 0).to_dict()}
        assert texts[record["source"]][record["start"] : record["end"]] == record["text"]
        assert record["token_count"] <= 128


def test_semantic_splitter(tmp_path: Path) -> None:
    source = tmp_path / "doc.md"
    source.write_text("# Title\n\nFirst paragraph.\n\nSecond paragraph.\n", encoding="utf-8")
    output = tmp_path / "out.jsonl"
    assert main(["chunk", str(source), "--splitter", "semantic", "-o", str(output), "-q"]) == 0
    records = [json.loads(line) for line in output.read_text(encoding="utf-8").splitlines()]
    assert "".join(r["text"] for r in records) == source.read_text(encoding="utf-8")


def _run(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "longcontext.cli", *args],
        capture_output=True,
        text=True,
        input=stdin,
    )


def _one_error_line(result: subprocess.CompletedProcess[str], *needles: str) -> None:
    """Exit 2, one `error:` line on stderr holding every needle, and no traceback."""
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    (line,) = [line for line in result.stderr.splitlines() if ": error: " in line]
    for needle in needles:
        assert needle in line


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
    result = _run("chunk", str(doc), "--chunk-size", "10", "--chunk-overlap", "10")
    assert result.returncode == 2
    assert "chunk_overlap=10 must be smaller than chunk_size=10" in result.stderr
    semantic = _run("chunk", str(doc), "--splitter", "semantic", "--chunk-overlap", "5")
    assert semantic.returncode == 2
    assert "--chunk-overlap 5 applies to --splitter token only" in semantic.stderr


def test_default_overlap_scales_with_the_chunk_size(tmp_path: Path) -> None:
    doc = tmp_path / "doc.txt"
    doc.write_text("Some words here and there. " * 40, encoding="utf-8")
    small = _run("chunk", str(doc), "--chunk-size", "16", "-q")  # was: overlap 64 >= size 16
    assert small.returncode == 0, small.stderr
    records = [json.loads(line) for line in small.stdout.splitlines()]
    assert len(records) > 1 and all(r["token_count"] <= 16 for r in records)
    assert records[0]["end"] > records[1]["start"]  # 16 // 8 = 2 tokens shared


def test_progress_bar_on_stderr_unless_quiet(tmp_path: Path) -> None:
    doc = tmp_path / "doc.txt"
    doc.write_text("hello world " * 50, encoding="utf-8")
    loud = _run("chunk", str(doc))
    assert "chunking" in loud.stderr
    quiet = _run("chunk", str(doc), "--quiet")
    assert quiet.stderr == ""


def test_dash_reads_standard_input() -> None:
    text = "Standard input is a file too. It has two sentences.\n"
    result = _run("chunk", "-", "--chunk-size", "8", "--chunk-overlap", "2", "-q", stdin=text)
    assert result.returncode == 0, result.stderr
    records = [json.loads(line) for line in result.stdout.splitlines()]
    assert records and {r["source"] for r in records} == {"<stdin>"}
    assert all(text[r["start"] : r["end"]] == r["text"] for r in records)
    _one_error_line(_run("chunk", "-", "-", stdin=text), "can be given once only")


@pytest.mark.parametrize(
    ("old", "new", "value"),
    [("--strategy", "--splitter", "semantic"), ("--overlap", "--chunk-overlap", "3")],
)
def test_old_flags_still_work_hidden_and_warn(tmp_path: Path, old: str, new: str, value: str):
    doc = tmp_path / "doc.md"
    doc.write_text("# A\n\nOne sentence here. Another one here.\n", encoding="utf-8")
    old_run = _run("chunk", str(doc), old, value, "--chunk-size", "8", "-q")
    new_run = _run("chunk", str(doc), new, value, "--chunk-size", "8", "-q")
    assert old_run.returncode == new_run.returncode == 0, old_run.stderr
    assert old_run.stdout == new_run.stdout
    assert old_run.stderr == f"longcontext chunk: warning: {old} is deprecated, use {new}\n"
    assert new_run.stderr == ""
    assert old not in _run("chunk", "--help").stdout


def test_unwritable_output_and_unreadable_inputs(tmp_path: Path) -> None:
    doc = tmp_path / "doc.txt"
    doc.write_text("hello", encoding="utf-8")
    missing_dir = tmp_path / "no" / "out.jsonl"
    _one_error_line(_run("chunk", str(doc), "-o", str(missing_dir)), "cannot write --output")
    assert not missing_dir.parent.exists()
    _one_error_line(_run("chunk", str(tmp_path)), "is a directory, not a file")
    _one_error_line(_run("chunk", str(doc), "--encoding", "klingon"), "unknown --encoding")
    if os.geteuid() != 0:  # root reads files whatever their permissions
        doc.chmod(0)
        try:
            _one_error_line(_run("chunk", str(doc)), "doc.txt: permission denied")
        finally:
            doc.chmod(0o600)


@pytest.mark.parametrize(
    ("flag", "value", "message"),
    [
        ("--chunk-size", "abc", "argument --chunk-size: 'abc' is not a whole number"),
        ("--chunk-size", "0", "argument --chunk-size: must be at least 1, got 0"),
        ("--chunk-overlap", "-1", "argument --chunk-overlap: must be at least 0, got -1"),
    ],
)
def test_bad_ints_are_usage_errors(tmp_path: Path, flag: str, value: str, message: str) -> None:
    doc = tmp_path / "doc.txt"
    doc.write_text("hello", encoding="utf-8")
    _one_error_line(_run("chunk", str(doc), flag, value), message)


def test_version() -> None:
    result = _run("--version")
    assert result.returncode == 0
    assert result.stdout.strip() == f"longcontext {longcontext.__version__}"


def _parsers(
    name: str, parser: argparse.ArgumentParser
) -> Iterator[tuple[str, argparse.ArgumentParser]]:
    """Every (sub)command's parser, nested ones (``eval perplexity``) included."""
    yield name, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub_name, sub in action.choices.items():
                yield from _parsers(f"{name} {sub_name}".strip(), sub)


def test_every_option_shows_its_default_in_help() -> None:
    parsers = dict(_parsers("", build_parser()))
    commands = {"chunk", "index", "ask", "eval", "finetune", "serve-args"}
    assert commands | {"eval perplexity", "eval passkey"} <= set(parsers)
    for name, sub in parsers.items():
        formatter = sub._get_formatter()
        for action in sub._actions:
            shown = action.help is not argparse.SUPPRESS
            valued = action.option_strings and action.nargs != 0 and not action.required
            if shown and valued and action.dest != "help":
                text = formatter._expand_help(action)  # the help as printed, %(default)s filled
                assert "default" in text, f"longcontext {name} {action.option_strings[0]}: {text}"
