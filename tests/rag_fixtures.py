"""Shared by the retrieval tests: a small corpus of real text, the CLI run in-process, and one
index of the corpus built once per session (tests that change an index work on a copy)."""

from __future__ import annotations

import contextlib
import io
import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

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


@dataclass(frozen=True)
class BuiltIndex:
    """A corpus folder, its texts by relative path, an index of it (default settings) and the
    JSON report of the `longcontext index --json` run that built it."""

    folder: Path
    texts: dict[str, str]
    index: Path
    report: dict[str, Any]

    def copy(self, destination: Path) -> BuiltIndex:
        """The corpus and the index copied under ``destination``, for a test that changes them."""
        folder = shutil.copytree(self.folder, destination / "docs")
        index = shutil.copytree(self.index, destination / "idx")
        return BuiltIndex(Path(folder), dict(self.texts), Path(index), self.report)


@pytest.fixture(scope="session")
def built_index(tmp_path_factory: pytest.TempPathFactory) -> BuiltIndex:
    """Built once per session: embedding is the slow part of these tests. Read it, never change
    it; `index_copy` is the one to change."""
    root = tmp_path_factory.mktemp("rag")
    folder = root / "docs"
    folder.mkdir()
    texts = write_corpus(folder)
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(["index", str(folder), "--index", str(root / "idx"), "--json"])
    assert code == 0, err.getvalue()
    return BuiltIndex(folder, texts, root / "idx", json.loads(out.getvalue()))


@pytest.fixture
def index_copy(built_index: BuiltIndex, tmp_path: Path) -> BuiltIndex:
    """A private copy of the session's corpus and index."""
    return built_index.copy(tmp_path)
