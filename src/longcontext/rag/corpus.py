"""Read a folder of text files: UTF-8 text is kept, binary and unreadable files are reported."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

# Bytes read to decide whether a file is binary: a NUL byte this early means it is not text.
_SNIFF_BYTES = 8192


@dataclass(frozen=True, slots=True)
class SourceFile:
    """One text file of a corpus.

    Attributes:
        path: The file's path relative to the corpus folder, with forward slashes: the source id
            that chunks and citations carry.
        text: The whole file, decoded as UTF-8.
        sha256: Hash of the file's bytes, so re-indexing can tell changed files from unchanged.
    """

    path: str
    text: str
    sha256: str


@dataclass(slots=True)
class Corpus:
    """The text files found under a folder, and the files that were skipped and why."""

    root: Path
    files: list[SourceFile] = field(default_factory=list)
    binary: list[str] = field(default_factory=list)
    unreadable: list[tuple[str, str]] = field(default_factory=list)

    def warnings(self) -> list[str]:
        """One line for the binary files and one for the unreadable files, when there are any."""
        lines = []
        if self.binary:
            lines.append(
                f"skipped {len(self.binary)} binary or non-UTF-8 file(s): " + ", ".join(self.binary)
            )
        if self.unreadable:
            listed = ", ".join(f"{path} ({reason})" for path, reason in self.unreadable)
            lines.append(f"skipped {len(self.unreadable)} unreadable file(s): {listed}")
        return lines


def _walk(root: Path, exclude: Path | None) -> Iterator[Path]:
    """Files of ``root`` in a stable order, without hidden entries and the ``exclude`` folder."""
    for path in sorted(root.iterdir()):
        if path.name.startswith(".") or (exclude is not None and path == exclude):
            continue
        if path.is_dir():
            yield from _walk(path, exclude)
        elif path.is_file() or path.is_symlink():  # a broken link is reported as unreadable
            yield path


def _decode(data: bytes) -> str | None:
    """The text of a file, or None when the bytes are not UTF-8 text."""
    if b"\x00" in data[:_SNIFF_BYTES]:
        return None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return None


def read_corpus(root: str | Path, exclude: str | Path | None = None) -> Corpus:
    """Read every UTF-8 text file under ``root``, recursively.

    Hidden files and folders (names starting with a dot) are skipped, and so is ``exclude`` (the
    index folder, when it lives inside the corpus). Binary files and files that are not UTF-8 are
    listed in ``Corpus.binary``; files that cannot be opened in ``Corpus.unreadable``, each with
    the reason. Nothing is dropped without being listed.

    Raises:
        NotADirectoryError: ``root`` is missing or not a folder.
    """
    root = Path(root)
    if not root.is_dir():
        reason = "does not exist" if not root.exists() else "is not a folder"
        raise NotADirectoryError(f"{root} {reason}: give a folder of text files")
    excluded = Path(exclude).resolve() if exclude is not None else None
    corpus = Corpus(root=root)
    for path in _walk(root.resolve(), excluded):
        relative = path.relative_to(root.resolve()).as_posix()
        try:
            data = path.read_bytes()
        except OSError as exc:
            corpus.unreadable.append((relative, exc.strerror or type(exc).__name__))
            continue
        text = _decode(data)
        if text is None:
            corpus.binary.append(relative)
            continue
        corpus.files.append(SourceFile(relative, text, hashlib.sha256(data).hexdigest()))
    return corpus
