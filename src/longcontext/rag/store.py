"""A FAISS index and its chunk records, saved together in one folder.

Layout of an index folder:

- ``manifest.json``: format version, the corpus folder, the embeddings fingerprint (model name and
  dimension), the splitter settings, and each file's content hash and chunk count;
- ``chunks.jsonl``: one chunk per line, in vector order: source file, character span, tokens, text;
- ``vectors.faiss``: a FAISS inner-product index over unit vectors (scores are cosine similarity).

The manifest is written last, so a folder with a manifest always holds a complete index.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from longcontext.rag.embeddings import EmbeddingsFingerprint, Matrix
from longcontext.rag.errors import EmbeddingsMismatchError, EmptyIndexError, RagError

FORMAT = 1
MANIFEST = "manifest.json"
CHUNKS = "chunks.jsonl"
VECTORS = "vectors.faiss"


@dataclass(frozen=True, slots=True)
class IndexedChunk:
    """A chunk as the index keeps it: ``source`` file text ``[start:end] == text``."""

    source: str
    start: int
    end: int
    token_count: int
    text: str


@dataclass(frozen=True, slots=True)
class Hit:
    """A retrieved chunk and its cosine similarity to the question."""

    chunk: IndexedChunk
    score: float


@dataclass(slots=True)
class VectorStore:
    """Chunks of a corpus with one unit vector each.

    Attributes:
        corpus: The folder the chunks were read from.
        embeddings: What the vectors were made with.
        splitter: The splitter settings the chunks were cut with.
        files: Content hash of each indexed file, by its path relative to ``corpus``.
        chunks: The chunks, row ``i`` of ``vectors`` belonging to ``chunks[i]``.
        vectors: A float32 array of shape ``(len(chunks), dimension)``.
    """

    corpus: str
    embeddings: EmbeddingsFingerprint
    splitter: dict[str, Any]
    files: dict[str, str] = field(default_factory=dict)
    chunks: list[IndexedChunk] = field(default_factory=list)
    vectors: Matrix = field(default_factory=lambda: np.zeros((0, 0), dtype=np.float32))

    def check_embeddings(self, asked: EmbeddingsFingerprint | str, path: str | Path) -> None:
        """Refuse embeddings other than the index's own.

        Args:
            asked: A fingerprint, or just a canonical model name (checked before loading it).
            path: The index folder, named in the message.

        Raises:
            EmbeddingsMismatchError: The name or the dimension differs.
        """
        name = asked if isinstance(asked, str) else asked.name
        same = name == self.embeddings.name and (
            isinstance(asked, str) or asked.dimension == self.embeddings.dimension
        )
        if not same:
            wanted = asked if isinstance(asked, str) else asked.describe()
            raise EmbeddingsMismatchError(
                f"the index at {path} was built with embeddings {self.embeddings.describe()}, "
                f"not {wanted}: use --embeddings {self.embeddings.name}, or a new --index folder "
                "for other embeddings"
            )

    def check_not_empty(self) -> None:
        """Raise :class:`EmptyIndexError` when there is nothing to retrieve."""
        if not self.chunks:
            raise EmptyIndexError(
                f"the index of {self.corpus} holds no chunks (its files hold no text): add text "
                "files and run `longcontext index` again"
            )

    def search(self, query: Matrix, top_k: int) -> list[Hit]:
        """The ``top_k`` chunks closest to ``query`` (one unit vector), best first.

        Raises:
            EmptyIndexError: The index holds no chunks.
        """
        self.check_not_empty()
        import faiss

        index = faiss.IndexFlatIP(self.embeddings.dimension)
        index.add(self.vectors)
        scores, rows = index.search(np.asarray(query, dtype=np.float32).reshape(1, -1), top_k)
        return [
            Hit(self.chunks[row], float(score))
            for score, row in zip(scores[0], rows[0])
            if row >= 0  # FAISS pads with -1 when top_k exceeds the number of vectors
        ]

    def save(self, path: str | Path) -> None:
        """Write the index folder (created if missing); the manifest goes last."""
        import faiss

        folder = Path(path)
        folder.mkdir(parents=True, exist_ok=True)
        index = faiss.IndexFlatIP(self.embeddings.dimension)
        if len(self.chunks):
            index.add(self.vectors)
        _replace(folder / VECTORS, lambda tmp: faiss.write_index(index, str(tmp)))
        lines = "".join(json.dumps(asdict(c), ensure_ascii=False) + "\n" for c in self.chunks)
        _replace(folder / CHUNKS, lambda tmp: tmp.write_text(lines, encoding="utf-8"))
        manifest = {
            "format": FORMAT,
            "corpus": self.corpus,
            "embeddings": {"name": self.embeddings.name, "dimension": self.embeddings.dimension},
            "splitter": self.splitter,
            "chunks": len(self.chunks),
            "files": self.files,
        }
        text = json.dumps(manifest, indent=2, ensure_ascii=False)
        _replace(folder / MANIFEST, lambda tmp: tmp.write_text(text, encoding="utf-8"))

    @classmethod
    def load(cls, path: str | Path) -> VectorStore:
        """Read an index folder written by :meth:`save`.

        Raises:
            RagError: ``path`` holds no index, or a damaged one.
        """
        folder = Path(path)
        manifest = read_manifest(folder)
        if manifest is None:
            raise RagError(
                f"no index at {folder}: build one with `longcontext index DIR --index {folder}`"
            )
        import faiss

        try:
            with (folder / CHUNKS).open(encoding="utf-8") as lines:
                chunks = [IndexedChunk(**json.loads(line)) for line in lines]
            index = faiss.read_index(str(folder / VECTORS))
            vectors = index.reconstruct_n(0, index.ntotal) if index.ntotal else None
        except (OSError, RuntimeError, TypeError, ValueError) as exc:
            raise RagError(
                f"the index at {folder} is damaged ({exc}): run `longcontext index` again "
                "with a new --index folder"
            ) from exc
        fingerprint = EmbeddingsFingerprint(**manifest["embeddings"])
        if vectors is None:
            vectors = np.zeros((0, fingerprint.dimension), dtype=np.float32)
        if not len(chunks) == len(vectors) == manifest["chunks"]:
            raise RagError(
                f"the index at {folder} is damaged: {len(chunks)} chunks but {len(vectors)} "
                "vectors; run `longcontext index` again with a new --index folder"
            )
        return cls(
            corpus=manifest["corpus"],
            embeddings=fingerprint,
            splitter=manifest["splitter"],
            files=manifest["files"],
            chunks=chunks,
            vectors=np.asarray(vectors, dtype=np.float32),
        )


def read_manifest(folder: Path) -> dict[str, Any] | None:
    """The manifest of an index folder, or None when ``folder`` holds no index.

    Raises:
        RagError: ``folder`` is a file, or its manifest is unreadable or of another format.
    """
    if folder.exists() and not folder.is_dir():
        raise RagError(f"--index {folder} is a file, not an index folder: give a folder path")
    manifest_path = folder / MANIFEST
    if not manifest_path.is_file():
        return None
    try:
        manifest: dict[str, Any] = json.loads(manifest_path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise RagError(f"cannot read {manifest_path}: {exc}") from exc
    if manifest.get("format") != FORMAT:
        raise RagError(
            f"{manifest_path} has format {manifest.get('format')!r}, this version reads {FORMAT}: "
            "build the index again with a new --index folder"
        )
    return manifest


def stack(parts: Sequence[Matrix], dimension: int) -> Matrix:
    """Rows of several vector blocks as one float32 array (an empty one keeps its width)."""
    blocks = [p for p in parts if len(p)]
    if not blocks:
        return np.zeros((0, dimension), dtype=np.float32)
    return np.concatenate(blocks).astype(np.float32, copy=False)


def _replace(target: Path, write: Any) -> None:
    """Write through a temporary file and rename it, so a reader never sees half a file."""
    tmp = target.with_name(f".{target.name}.tmp")
    write(tmp)
    os.replace(tmp, target)
