"""Build or update an index folder from a folder of documents, re-embedding only changed files."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import numpy as np

from longcontext.rag import ann
from longcontext.rag.corpus import SourceFile, read_corpus
from longcontext.rag.embeddings import (
    Embedder,
    canonical_name,
    check_backend,
    check_trusted,
    default_backend,
    load_embedder,
)
from longcontext.rag.errors import RagError
from longcontext.rag.store import (
    IndexedChunk,
    VectorStore,
    foreign_entries,
    locked,
    read_manifest,
    stack,
)

if TYPE_CHECKING:
    from longcontext.rag.ray_ingest import RaySettings
    from longcontext.tokenizers import Tokenizer

SplitterKind = Literal["token", "semantic"]
SPLITTERS: tuple[SplitterKind, ...] = ("token", "semantic")
DEFAULT_CHUNK_SIZE = 200


@dataclass(frozen=True, slots=True)
class SplitterSettings:
    """How documents are cut. Sizes count the embedding model's own tokens.

    Attributes:
        kind: ``token`` (overlapping windows, :class:`longcontext.TokenSplitter`) or ``semantic``
            (:class:`longcontext.SemanticSplitter` with the index's embeddings).
        chunk_size: Most tokens in a chunk.
        overlap: Tokens shared by consecutive chunks (token splitter only); None means a fifth
            of ``chunk_size`` for ``token`` and 0 for ``semantic``.
    """

    kind: SplitterKind = "token"
    chunk_size: int = DEFAULT_CHUNK_SIZE
    overlap: int | None = None

    def resolved(self) -> SplitterSettings:
        """The settings with the default overlap filled in, checked.

        Raises:
            RagError: An unknown kind, a size below 1, or an overlap the splitter cannot use.
        """
        if self.kind not in SPLITTERS:
            raise RagError(f"--splitter {self.kind!r} is not one of {', '.join(SPLITTERS)}")
        if self.chunk_size < 1:
            raise RagError(f"--chunk-size must be at least 1 token, got {self.chunk_size}")
        if self.kind == "semantic":
            if self.overlap:
                raise RagError(
                    f"--chunk-overlap {self.overlap} applies to --splitter token only: the "
                    "semantic splitter cuts between sections and sentences, without overlap"
                )
            return SplitterSettings("semantic", self.chunk_size, 0)
        overlap = self.chunk_size // 5 if self.overlap is None else self.overlap
        if not 0 <= overlap < self.chunk_size:
            raise RagError(
                f"--chunk-overlap {overlap} must be at least 0 and smaller than --chunk-size "
                f"{self.chunk_size}"
            )
        return SplitterSettings("token", self.chunk_size, overlap)


@dataclass(slots=True)
class IndexReport:
    """What one run of :func:`build_index` did."""

    path: Path
    files: int
    embedded: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    chunks: int = 0
    new_chunks: int = 0
    warnings: list[str] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (path, reason) left unread

    def summary(self) -> str:
        unchanged = self.files - len(self.embedded)
        return (
            f"indexed {self.files} file(s) into {self.path}: {len(self.embedded)} embedded "
            f"({self.new_chunks} chunks), {unchanged} unchanged, {len(self.removed)} removed; "
            f"{self.chunks} chunks in all"
        )


def build_index(
    folder: str | Path,
    index_path: str | Path,
    embeddings: str | None = None,
    splitter: SplitterSettings | None = None,
    progress: bool | None = None,
    index_type: str | None = None,
    ray: str | None = None,
    ray_workers: int | None = None,
    embeddings_backend: str | None = None,
) -> IndexReport:
    """Chunk, embed and store every text file under ``folder`` in the index at ``index_path``.

    Re-running on the same index re-embeds only files whose content changed (by SHA-256), drops
    files that are gone, and keeps the rest as they are. Changing the splitter settings re-chunks
    every file; a model folder whose files changed under the same name re-embeds every file. The
    run holds the index folder's lock, and publishes the new index in one atomic step.

    Args:
        folder: The documents: every UTF-8 text file under it, recursively, hidden ones left out
            (see :func:`longcontext.rag.corpus.read_corpus` for links and special files).
        index_path: The index folder; created when missing.
        embeddings: ``--embeddings NAME``; None means all-MiniLM-L6-v2, or the index's own
            embeddings when the index exists.
        splitter: How to cut documents; defaults to 200-token windows with 40 tokens of overlap.
        progress: Show a progress bar while embedding; None shows it on a terminal only.
        index_type: ``--index-type``: ``auto`` (exact up to 50,000 chunks, then HNSW, then
            IVF-SQ8 past 2,000,000), ``flat``, ``hnsw``, ``ivf-sq8`` or ``ivf-pq``; see
            :mod:`longcontext.rag.ann`. None asks what the index asked last time (``auto``
            for a new one).
        ray: ``--ray [ADDRESS]``: chunk and embed the changed files on Ray Data (``local``
            starts a Ray here; see :mod:`longcontext.rag.ray_ingest`); None runs in this process.
            The index is the same either way, and is written here.
        ray_workers: ``--ray-workers N``: Ray tasks and actors at once; None means the
            cluster's CPUs.
        embeddings_backend: ``--embeddings-backend``: ``torch``, ``onnx``, ``onnx-int8`` or
            ``openvino`` (see :mod:`longcontext.rag.embeddings`). None means the index's own
            backend, or :func:`~longcontext.rag.embeddings.default_backend` for a new index.
            Another backend than the index's re-embeds every file: vectors of two backends
            never mix.

    Raises:
        RagError: The folder is empty or holds no text, the index was built with other
            embeddings (:class:`EmbeddingsMismatchError`), ``index_path`` is not an index
            folder, another run is writing it (:class:`IndexLockedError`), or the settings do
            not fit the embedding model; Ray is missing or cannot be reached.
    """
    index_path = Path(index_path)
    settings = (splitter or SplitterSettings()).resolved()
    if index_path.exists() and not index_path.is_dir():
        raise RagError(f"--index {index_path} is a file, not an index folder: give a folder path")
    if index_type is not None and index_type not in ann.CHOICES:
        raise RagError(f"--index-type {index_type!r} is not one of {', '.join(ann.CHOICES)}")
    if embeddings_backend is not None:
        check_backend(embeddings_backend)
    on_ray = None
    if ray is not None:  # Ray missing or a bad address fails before any work
        from longcontext.rag.ray_ingest import check_ray, check_reachable

        on_ray = check_ray(ray, ray_workers)
        check_reachable(ray)
    with locked(index_path):
        return _build(
            Path(folder),
            index_path,
            embeddings,
            settings,
            progress,
            index_type,
            on_ray,
            embeddings_backend=embeddings_backend,
        )


def _build(
    folder: Path,
    index_path: Path,
    embeddings: str | None,
    settings: SplitterSettings,
    progress: bool | None,
    index_type: str | None = None,
    on_ray: RaySettings | None = None,
    embeddings_backend: str | None = None,
) -> IndexReport:
    """:func:`build_index` once it holds the index folder's lock."""
    manifest = read_manifest(index_path)
    foreign = foreign_entries(index_path)
    if manifest is None and foreign:
        raise RagError(
            f"{index_path} is not empty and holds no longcontext index ({', '.join(foreign)}): "
            "give a new or empty folder for --index"
        )
    old = VectorStore.load(index_path) if manifest is not None else None
    if old is not None and embeddings is not None:
        old.check_embeddings(canonical_name(embeddings), index_path)  # before loading a model
    elif old is not None:
        check_trusted(old.embeddings.name, embeddings, index_path, "index")

    corpus = read_corpus(folder, exclude=index_path)
    if not corpus.files:
        if not corpus.binary and not corpus.unreadable:
            raise RagError(
                f"{folder} is empty: there is nothing to index; give a folder of text files"
            )
        raise RagError(f"{folder} holds no readable text files: " + "; ".join(corpus.warnings()))

    backend = embeddings_backend or (old.embeddings.backend if old else default_backend())
    embedder = load_embedder(embeddings or (old.embeddings.name if old else None), backend=backend)
    warnings = corpus.warnings()
    reuse = old
    if old is not None:
        old.check_embeddings(embedder.fingerprint, index_path, weights=False, backend=False)
        if old.embeddings.changed(embedder.fingerprint):
            warnings.append(
                f"the files of embeddings {embedder.fingerprint.name} changed since the index "
                "was built: every file is embedded again"
            )
            reuse = None  # old vectors never mix with new ones
        elif old.embeddings.backend != backend:
            warnings.append(
                f"the index was embedded with backend {old.embeddings.backend}, this run uses "
                f"{backend}: every file is embedded again"
            )
            reuse = None
    if settings.chunk_size > embedder.max_tokens:
        raise RagError(
            f"--chunk-size {settings.chunk_size} is more than {embedder.fingerprint.name} reads "
            f"({embedder.max_tokens} tokens; it would ignore the rest of each chunk): use "
            f"--chunk-size {embedder.max_tokens} or less"
        )

    reusable = _reusable(reuse, settings)
    changed = [f for f in corpus.files if reusable.get(f.path, (None,))[0] != f.sha256]
    if on_ray is None:
        new_chunks = split_files(changed, settings, embedder.tokenizer, embedder)
        texts = [c.text for chunks in new_chunks.values() for c in chunks]
        new_vectors = embedder.embed(texts, progress=progress, description="embedding chunks")
    else:
        from longcontext.rag.ray_ingest import split_and_embed

        new_chunks, new_vectors = split_and_embed(changed, settings, embedder, on_ray, progress)

    # Assemble in corpus order: reused chunks keep their vectors, new ones take theirs in turn.
    chunks: list[IndexedChunk] = []
    parts = []
    row = 0
    for source in corpus.files:
        if source.path in new_chunks:
            count = len(new_chunks[source.path])
            chunks.extend(new_chunks[source.path])
            parts.append(new_vectors[row : row + count])
            row += count
        else:
            _, kept, vectors = reusable[source.path]
            chunks.extend(kept)
            parts.append(vectors)
    store = VectorStore(
        corpus=str(Path(folder).resolve()),
        embeddings=embedder.fingerprint,
        splitter=asdict(settings),
        files={f.path: f.sha256 for f in corpus.files},
        chunks=chunks,
        vectors=stack(parts, embedder.fingerprint.dimension),
        index_type=index_type or (old.index_type if old else "auto"),
    )
    try:
        store.save(index_path)
    except ValueError as exc:  # an IVF type asked for fewer chunks than it trains on
        raise RagError(str(exc)) from None
    present = {f.path for f in corpus.files}
    return IndexReport(
        path=index_path,
        files=len(corpus.files),
        embedded=[f.path for f in changed],
        removed=sorted(set(old.files) - present) if old else [],
        chunks=len(chunks),
        new_chunks=len(new_vectors),
        warnings=warnings,
        skipped=corpus.skipped_files(),
    )


Reusable = dict[str, tuple[str, list[IndexedChunk], np.ndarray]]


def _reusable(old: VectorStore | None, settings: SplitterSettings) -> Reusable:
    """Each indexed file's hash, chunks and vectors, when they were cut the way we cut now."""
    if old is None or old.splitter != asdict(settings):
        return {}
    by_file: dict[str, list[int]] = {}
    for row, chunk in enumerate(old.chunks):
        by_file.setdefault(chunk.source, []).append(row)
    return {
        path: (
            sha,
            [old.chunks[r] for r in by_file.get(path, [])],
            old.vectors[by_file.get(path, [])],
        )
        for path, sha in old.files.items()
    }


def split_files(
    files: list[SourceFile],
    settings: SplitterSettings,
    tokenizer: Tokenizer,
    embedder: Embedder | None,
    num_threads: int | None = None,
) -> dict[str, list[IndexedChunk]]:
    """Chunks of each file, sized in the embedding model's tokens (``tokenizer``, the
    embedder's own); the semantic splitter needs ``embedder``. Ray's chunking tasks call this
    too, so both paths cut the same chunks."""
    from longcontext.splitters import SemanticSplitter, TokenSplitter

    splitter: TokenSplitter | SemanticSplitter
    if settings.kind == "semantic":
        if embedder is None:
            raise ValueError("the semantic splitter needs the embedder")
        splitter = SemanticSplitter(tokenizer, settings.chunk_size, embeddings=embedder)
    else:
        splitter = TokenSplitter(tokenizer, settings.chunk_size, settings.overlap or 0)
    split = splitter.split_many([f.text for f in files], num_threads)
    return {
        source.path: [
            IndexedChunk(source.path, c.start, c.end, c.token_count, c.text)
            for c in chunks
            if c.text.strip()  # whitespace alone matches nothing; its neighbours keep the text
        ]
        for source, chunks in zip(files, split)
    }
