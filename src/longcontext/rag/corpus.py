"""Read a folder of text files safely: regular files under the folder only, each once, and every
file left out reported with the reason."""

from __future__ import annotations

import hashlib
import os
import stat
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path

# Bytes read to decide whether a file is binary: a NUL byte this early means it is not text.
_SNIFF_BYTES = 8192
_KINDS = {
    stat.S_IFIFO: "a FIFO",
    stat.S_IFCHR: "a character device",
    stat.S_IFBLK: "a block device",
    stat.S_IFSOCK: "a socket",
}


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
    """The text files found under a folder, and the files that were skipped and why.

    Attributes:
        root: The folder.
        files: The text files, in path order.
        binary: Files that are not UTF-8 text.
        unreadable: Files and folders that could not be opened, with the OS's reason.
        skipped: Links and special files left out, with the reason: links out of the folder or
            into the index, links to what was already read (a loop, a second name), FIFOs,
            devices and sockets.
    """

    root: Path
    files: list[SourceFile] = field(default_factory=list)
    binary: list[str] = field(default_factory=list)
    unreadable: list[tuple[str, str]] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)

    def skipped_files(self) -> list[tuple[str, str]]:
        """Every file left out with the reason, in path order."""
        left_out = [(path, "binary or not UTF-8") for path in self.binary]
        return sorted([*left_out, *self.unreadable, *self.skipped])

    def warnings(self) -> list[str]:
        """One line for each kind of file left out, when there are any."""
        lines = []
        if self.binary:
            lines.append(
                f"skipped {len(self.binary)} binary or non-UTF-8 file(s): " + ", ".join(self.binary)
            )
        if self.unreadable:
            listed = ", ".join(f"{path} ({reason})" for path, reason in self.unreadable)
            lines.append(f"skipped {len(self.unreadable)} unreadable file(s): {listed}")
        if self.skipped:
            listed = ", ".join(f"{path} ({reason})" for path, reason in self.skipped)
            lines.append(f"skipped {len(self.skipped)} link(s) and special file(s): {listed}")
        return lines


def read_corpus(root: str | Path, exclude: str | Path | None = None) -> Corpus:
    """Read every UTF-8 text file under ``root``, recursively.

    Only regular files are read. Hidden files and folders (names starting with a dot) are left
    out, and so is ``exclude`` (the index folder, when it lives inside the corpus). Symbolic links
    are followed only to what lies under ``root``, outside ``exclude``, and was not read yet: the
    folder's own entries come first, then the links, so a file linked from elsewhere in the
    corpus is read at its own path, and a loop of links ends. Each other link, and every FIFO,
    device or socket, is listed in ``Corpus.skipped`` with the reason; binary and non-UTF-8
    files in ``Corpus.binary``; files that cannot be opened in ``Corpus.unreadable``. Nothing is
    dropped without being listed, the hidden entries and ``exclude`` aside.

    Raises:
        NotADirectoryError: ``root`` is missing or not a folder.
    """
    root = Path(root)
    if not root.is_dir():
        reason = "does not exist" if not root.exists() else "is not a folder"
        raise NotADirectoryError(f"{root} {reason}: give a folder of text files")
    real_root = root.resolve()
    excluded = Path(exclude).resolve() if exclude is not None else None
    corpus = Corpus(root=root)
    folders: deque[tuple[str, Path]] = deque([("", real_root)])  # (relative name, real path)
    links: deque[tuple[str, Path]] = deque()  # followed once the real tree is listed
    visited = {real_root}
    read: dict[tuple[int, int], str] = {}  # (device, inode) of each file read: its name
    while folders or links:
        if not folders:
            relative, link = links.popleft()
            target = _follow(corpus, relative, link, real_root, excluded, visited, read)
            if target is not None:
                folders.append((relative + "/", target))
            continue
        prefix, folder = folders.popleft()
        try:
            with os.scandir(folder) as listing:
                entries = sorted(listing, key=lambda e: e.name)
        except OSError as exc:
            corpus.unreadable.append((prefix or ".", exc.strerror or type(exc).__name__))
            continue
        for entry in entries:
            relative, path = prefix + entry.name, Path(entry.path)
            if entry.name.startswith(".") or path == excluded:
                continue
            if entry.is_symlink():
                links.append((relative, path))
            elif entry.is_dir(follow_symlinks=False):
                visited.add(path)
                folders.append((relative + "/", path))
            else:
                _read(corpus, relative, path, read)
    # Listed in the order of a depth-first walk, however links were reached.
    corpus.files.sort(key=lambda f: _parts(f.path))
    corpus.binary.sort(key=_parts)
    for listed in (corpus.unreadable, corpus.skipped):
        listed.sort(key=lambda item: _parts(item[0]))
    return corpus


def _parts(relative: str) -> list[str]:
    return relative.split("/")


def _follow(
    corpus: Corpus,
    relative: str,
    link: Path,
    root: Path,
    excluded: Path | None,
    visited: set[Path],
    read: dict[tuple[int, int], str],
) -> Path | None:
    """Read the file a link names, or return the folder it names, when the link may be followed;
    else list it in ``corpus.skipped`` (a broken link in ``corpus.unreadable``)."""
    try:
        target = link.resolve(strict=True)
    except FileNotFoundError as exc:
        corpus.unreadable.append((relative, exc.strerror or "No such file or directory"))
        return None
    except (OSError, RuntimeError):  # RuntimeError: Python 3.11's "Symlink loop"
        corpus.skipped.append((relative, "a link loop"))
        return None
    if excluded is not None and target.is_relative_to(excluded):
        corpus.skipped.append((relative, "a link into the index folder"))
    elif not target.is_relative_to(root):
        corpus.skipped.append((relative, f"a link to {target}, outside the folder"))
    elif target.is_dir():
        if target not in visited:
            visited.add(target)
            return target
        corpus.skipped.append((relative, f"a link to {_name(target, root)}/, already read"))
    else:
        _read(corpus, relative, target, read, linked=True)
    return None


def _read(
    corpus: Corpus,
    relative: str,
    path: Path,
    read: dict[tuple[int, int], str],
    linked: bool = False,
) -> None:
    """Read one file (``path`` is its real path) into ``corpus`` when it is a regular file not
    read yet, else list it."""
    try:
        if _special(corpus, relative, path, os.lstat(path).st_mode, linked):
            return  # never opened: a device may read without end, a FIFO wait for a writer
        # O_NONBLOCK and the second check: a file swapped for a FIFO meanwhile is refused too.
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOFOLLOW)
    except OSError as exc:
        corpus.unreadable.append((relative, exc.strerror or type(exc).__name__))
        return
    with os.fdopen(fd, "rb") as file:
        info = os.fstat(fd)
        if _special(corpus, relative, path, info.st_mode, linked):
            return
        key = (info.st_dev, info.st_ino)
        if key in read:
            corpus.skipped.append((relative, f"the same file as {read[key]}"))
            return
        read[key] = relative
        try:
            data = file.read()
        except OSError as exc:
            corpus.unreadable.append((relative, exc.strerror or type(exc).__name__))
            return
    text = _decode(data)
    if text is None:
        corpus.binary.append(relative)
        return
    corpus.files.append(SourceFile(relative, text, hashlib.sha256(data).hexdigest()))


def _special(corpus: Corpus, relative: str, path: Path, mode: int, linked: bool) -> bool:
    """List a file that is not a regular file in ``corpus.skipped``; say whether it was one."""
    if stat.S_ISREG(mode):
        return False
    kind = _KINDS.get(stat.S_IFMT(mode), "not a regular file")
    corpus.skipped.append(
        (relative, f"a link to {path}, {kind}" if linked else f"{kind}, not a regular file")
    )
    return True


def _name(path: Path, root: Path) -> str:
    """``path`` relative to ``root``, ``.`` for the root itself."""
    return path.relative_to(root).as_posix()


def _decode(data: bytes) -> str | None:
    """The text of a file, or None when the bytes are not UTF-8 text."""
    if b"\x00" in data[:_SNIFF_BYTES]:
        return None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return None
