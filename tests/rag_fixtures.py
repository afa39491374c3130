"""Shared by the retrieval tests: a small corpus of real text, and the CLI run in-process."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from longcontext.cli import main

SHARED = Path(__file__).resolve().parent.parent.parent / "shared"
CORPORA = SHARED / "data" / "corpora"

# Three real documents on different subjects, cut at paragraph ends so they read naturally.
SOURCES = {
    "speech.md": ("state_of_the_union.md", 5000),
    "play/romeo.txt": ("romeo_and_juliet.txt", 5000),
    "spec/commonmark.md": ("commonmark_spec.md", 5000),
}


def excerpt(name: str, size: int) -> str:
    text = (CORPORA / name).read_text(encoding="utf-8")
    cut = text.rfind("\n\n", 0, size)
    return text[: cut if cut > 0 else size]


def write_corpus(folder: Path) -> dict[str, str]:
    """Write the three documents under ``folder``; return their texts by relative path."""
    texts = {}
    for relative, (name, size) in SOURCES.items():
        path = folder / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        texts[relative] = excerpt(name, size)
        path.write_text(texts[relative], encoding="utf-8")
    return texts


@dataclass
class Result:
    code: int
    out: str
    err: str


def run_cli(capsys: pytest.CaptureFixture[str], *argv: str | Path) -> Result:
    """Run ``longcontext ARGV`` in this process (the embedding model loads once per session)."""
    capsys.readouterr()
    code = main([str(a) for a in argv])
    captured = capsys.readouterr()
    return Result(code, captured.out, captured.err)


@pytest.fixture
def corpus(tmp_path: Path) -> tuple[Path, dict[str, str]]:
    folder = tmp_path / "docs"
    folder.mkdir()
    return folder, write_corpus(folder)
