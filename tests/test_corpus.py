"""Reading a folder is safe: regular files under the folder only, each once, every file left out
reported with the reason. Real symbolic links, FIFOs, sockets and devices."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from longcontext.rag.corpus import Corpus, read_corpus
from longcontext.rag.indexer import build_index
from longcontext.rag.store import VectorStore

# A FIFO or a device read by mistake blocks or never ends: fail instead of hanging.
pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    """``docs/`` with two text files, and a secret next to it."""
    root = tmp_path / "docs"
    (root / "guide").mkdir(parents=True)
    (root / "intro.md").write_text("Welcome.")
    (root / "guide" / "setup.md").write_text("Install it.")
    (tmp_path / "secret.txt").write_text("the password is hunter2")
    return root


def texts(corpus: Corpus) -> dict[str, str]:
    return {f.path: f.text for f in corpus.files}


def test_links_out_of_the_folder_are_skipped_and_reported(tree: Path) -> None:
    (tree / "notes.md").symlink_to(tree.parent / "secret.txt")
    (tree / "guide" / "home").symlink_to(tree.parent)
    (tree / "zero").symlink_to("/dev/zero")
    found = read_corpus(tree)
    assert texts(found) == {"intro.md": "Welcome.", "guide/setup.md": "Install it."}
    assert found.skipped == [
        ("guide/home", f"a link to {tree.parent}, outside the folder"),
        ("notes.md", f"a link to {tree.parent / 'secret.txt'}, outside the folder"),
        ("zero", "a link to /dev/zero, outside the folder"),
    ]
    assert found.warnings() == [
        f"skipped 3 link(s) and special file(s): guide/home (a link to {tree.parent}, outside "
        f"the folder), notes.md (a link to {tree.parent / 'secret.txt'}, outside the folder), "
        "zero (a link to /dev/zero, outside the folder)"
    ]


def test_link_loops_end_and_every_file_is_read_once(tree: Path) -> None:
    (tree / "guide" / "up").symlink_to("..")
    (tree / "self").symlink_to(".")
    (tree / "more").mkdir()
    (tree / "more" / "to-guide").symlink_to("../guide")
    (tree / "guide" / "to-more").symlink_to("../more")
    (tree / "ping").symlink_to("pong")
    (tree / "pong").symlink_to("ping")
    (tree / "again.md").symlink_to("guide/setup.md")
    found = read_corpus(tree)
    assert texts(found) == {"intro.md": "Welcome.", "guide/setup.md": "Install it."}
    assert found.skipped == [
        ("again.md", "the same file as guide/setup.md"),
        ("guide/to-more", "a link to more/, already read"),
        ("guide/up", "a link to ./, already read"),
        ("more/to-guide", "a link to guide/, already read"),
        ("ping", "a link loop"),
        ("pong", "a link loop"),
        ("self", "a link to ./, already read"),
    ]


def test_a_link_to_a_folder_of_the_corpus_not_read_otherwise_is_followed(tree: Path) -> None:
    (tree / ".drafts").mkdir()
    (tree / ".drafts" / "plan.md").write_text("A plan.")
    (tree / "plans").symlink_to(".drafts")
    (tree / "setup.md").symlink_to("guide/setup.md")  # read at its own path, not twice
    found = read_corpus(tree)
    assert texts(found) == {
        "guide/setup.md": "Install it.",
        "intro.md": "Welcome.",
        "plans/plan.md": "A plan.",
    }
    assert found.skipped == [("setup.md", "the same file as guide/setup.md")]


def test_fifos_sockets_and_links_to_them_are_never_opened(tree: Path, tmp_path: Path) -> None:
    os.mkfifo(tree / "pipe")  # opened for reading, it would wait for a writer forever
    (tree / "guide" / "to-pipe").symlink_to("../pipe")
    server = socket.socket(socket.AF_UNIX)
    server.bind(str(tree / "sock"))
    try:
        found = read_corpus(tree)
    finally:
        server.close()
    assert texts(found) == {"intro.md": "Welcome.", "guide/setup.md": "Install it."}
    assert found.skipped == [
        ("guide/to-pipe", f"a link to {tree.resolve() / 'pipe'}, a FIFO"),
        ("pipe", "a FIFO, not a regular file"),
        ("sock", "a socket, not a regular file"),
    ]


def test_the_index_folder_and_links_into_it_are_not_indexed(tree: Path, tmp_path: Path) -> None:
    inside, outside = tree / "idx", tmp_path / "elsewhere"
    for index in (inside, outside):
        index.mkdir()
        (index / "manifest.json").write_text("{}")
    (tree / "index").symlink_to(inside)
    (tree / "manifest.md").symlink_to(outside / "manifest.json")
    found = read_corpus(tree, exclude=inside)
    assert texts(found) == {"intro.md": "Welcome.", "guide/setup.md": "Install it."}
    assert found.skipped == [  # idx/ itself is left out silently: it was named as the index
        ("index", "a link into the index folder"),
        ("manifest.md", f"a link to {outside / 'manifest.json'}, outside the folder"),
    ]
    found = read_corpus(tree, exclude=outside)
    assert "idx/manifest.json" in texts(found)
    assert ("manifest.md", "a link into the index folder") in found.skipped


@pytest.mark.skipif(os.geteuid() == 0, reason="root lists folders whatever their permissions")
def test_a_folder_that_cannot_be_listed_is_reported(tree: Path) -> None:
    (tree / "guide").chmod(0)
    try:
        found = read_corpus(tree)
    finally:
        (tree / "guide").chmod(0o700)
    assert found.unreadable == [("guide/", "Permission denied")]


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    links=st.lists(st.tuples(st.sampled_from(["", "a/", "a/b/"]), st.integers(0, 9)), max_size=8),
)
def test_any_links_end_read_inside_only_and_each_file_once(
    tmp_path_factory: pytest.TempPathFactory, links: list[tuple[str, int]]
) -> None:
    base = tmp_path_factory.mktemp("links")
    root = base / "root"
    (root / "a" / "b").mkdir(parents=True)
    (base / "out").mkdir()
    inside = {"f.md": "root file", "a/f.md": "a file", "a/b/f.md": "b file"}
    for name, text in {**inside, "../out/f.md": "outside file"}.items():
        (root / name).write_text(text)
    targets = ["", "a", "a/b", "f.md", "a/f.md", "a/b/f.md", "../out", "../out/f.md", "..", "x"]
    for number, (where, target) in enumerate(links):
        (root / where / f"l{number}").symlink_to(root / targets[target])
    found = read_corpus(root)
    read = [f.text for f in found.files]
    assert sorted(read) == sorted(inside.values())  # each once, nothing from outside
    names = [f.path for f in found.files] + [name for name, _ in found.skipped + found.unreadable]
    assert len(names) == len(set(names))


def test_the_index_command_reports_what_it_skipped(tree: Path, tmp_path: Path) -> None:
    (tree / "notes.md").symlink_to(tree.parent / "secret.txt")
    report = build_index(tree, tmp_path / "idx", progress=False)
    assert report.warnings == [
        "skipped 1 link(s) and special file(s): notes.md (a link to "
        f"{tree.parent / 'secret.txt'}, outside the folder)"
    ]
    store = VectorStore.load(tmp_path / "idx")
    assert set(store.files) == {"intro.md", "guide/setup.md"}
    assert not any("hunter2" in c.text for c in store.chunks)
