"""What the chunking benchmarks share: offline set-up, the shared corpora and questions, tables.

The shared data lives next to the checkout (``../shared`` from the repository root); set
``LONGCONTEXT_SHARED`` to point elsewhere.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]
DOCS_FILE = REPO_ROOT / "docs" / "benchmarks.md"
CORPUS_FILES = (
    "state_of_the_union.md",
    "chatlogs.md",
    "romeo_and_juliet.txt",
    "room_with_a_view.txt",
    "commonmark_spec.md",
)


def shared_dir() -> Path:
    """The shared data folder: ``$LONGCONTEXT_SHARED``, else ``../shared`` from the repo root."""
    path = Path(os.environ.get("LONGCONTEXT_SHARED") or REPO_ROOT.parent / "shared").resolve()
    if not (path / "data" / "corpora").is_dir():
        raise SystemExit(
            f"shared data not found at {path}; set LONGCONTEXT_SHARED to the folder that holds "
            "data/corpora and data/questions"
        )
    return path


def setup_offline(one_thread: bool = False) -> None:
    """Point every library at local files so nothing reaches for the network.

    Call before importing tiktoken, tokenizers, transformers or LlamaIndex.
    """
    shared = shared_dir()
    os.environ.setdefault("TIKTOKEN_CACHE_DIR", str(shared / "data/tokenizers/tiktoken"))
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    if one_thread:
        for name in ("RAYON_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
            os.environ[name] = "1"
    _private_nltk_data()


def _private_nltk_data() -> None:
    """Give LlamaIndex's sentence splitter NLTK data it is allowed to open.

    llama-index-core bundles NLTK's punkt and stopwords, but nltk >= 3.10 refuses to open a
    file with more than one hard link, and uv installs packages as hard links to its cache.
    Copies in a temporary folder have a single link each.
    """
    if "NLTK_DATA" in os.environ:
        return
    try:
        import llama_index.core
    except ImportError:
        return
    bundled = Path(llama_index.core.__file__).parent / "_static" / "nltk_cache"
    if not bundled.is_dir():
        return
    target = Path(tempfile.mkdtemp(prefix="longcontext-nltk-")) / "nltk_data"
    shutil.copytree(bundled, target, ignore=shutil.ignore_patterns("*.zip"))
    os.environ["NLTK_DATA"] = str(target)


def load_corpora(names: Sequence[str] = CORPUS_FILES) -> dict[str, str]:
    """Corpus file name -> text, read as UTF-8 exactly as stored (no newline translation)."""
    folder = shared_dir() / "data" / "corpora"
    texts = {}
    for name in names:
        with open(folder / name, encoding="utf-8", newline="") as file:
            texts[name] = file.read()
    return texts


def load_questions() -> list[dict[str, Any]]:
    """The dev questions: ``question``, ``corpus_id`` and ``references`` with char offsets."""
    path = shared_dir() / "data" / "questions" / "dev_questions.jsonl"
    with open(path, encoding="utf-8") as file:
        return [json.loads(line) for line in file if line.strip()]


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join(" --- " for _ in headers) + "|"]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def write_docs_section(title: str, body: str) -> None:
    """Replace the ``## title`` section of docs/benchmarks.md (or append it), leaving the rest."""
    heading = f"## {title}"
    text = DOCS_FILE.read_text(encoding="utf-8") if DOCS_FILE.exists() else "# Benchmarks\n"
    section = f"{heading}\n\n{body.strip()}\n"
    pattern = re.compile(rf"^{re.escape(heading)}[ \t]*\n.*?(?=^## |\Z)", re.S | re.M)
    if pattern.search(text):
        text = pattern.sub(lambda _: section + "\n", text, count=1).rstrip("\n") + "\n"
    else:
        text = text.rstrip("\n") + "\n\n" + section
    DOCS_FILE.parent.mkdir(parents=True, exist_ok=True)
    DOCS_FILE.write_text(text, encoding="utf-8")
    print(f"wrote the {title!r} section of {DOCS_FILE.relative_to(REPO_ROOT)}")
