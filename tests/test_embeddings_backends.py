"""Embeddings backends: torch, float32 ONNX and int8 ONNX of the real all-MiniLM-L6-v2.

The ONNX files are exported once into a private cache folder for this module; every test runs
the real model, real ONNX Runtime, real FAISS and the real CLI.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from rag_fixtures import corpus, run_cli  # noqa: F401 - pytest fixture
from retrieval_fixtures import corpus_excerpt, minilm_path

from longcontext.rag import onnx_export
from longcontext.rag.embeddings import (
    BACKENDS,
    Embedder,
    _load_onnx,
    default_backend,
    load_embedder,
)
from longcontext.rag.errors import EmbeddingsMismatchError, RagError
from longcontext.rag.indexer import build_index
from longcontext.rag.onnx_embeddings import read_layout
from longcontext.rag.pipeline import retrieve
from longcontext.rag.store import MANIFEST, VectorStore
from longcontext.splitters import TokenSplitter
from longcontext.tokenizers import Tokenizer

CORPORA = ("state_of_the_union.md", "chatlogs.md", "commonmark_spec.md", "romeo_and_juliet.txt")


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A private ONNX cache for this module (``LONGCONTEXT_CACHE_DIR``)."""
    folder = tmp_path_factory.mktemp("onnx-cache")
    saved = os.environ.get("LONGCONTEXT_CACHE_DIR")
    os.environ["LONGCONTEXT_CACHE_DIR"] = str(folder)
    _load_onnx.cache_clear()
    yield folder
    _load_onnx.cache_clear()
    if saved is None:
        del os.environ["LONGCONTEXT_CACHE_DIR"]
    else:
        os.environ["LONGCONTEXT_CACHE_DIR"] = saved


@pytest.fixture(scope="module")
def embedders(cache: Path) -> dict[str, Embedder]:
    return {b: load_embedder(None, backend=b) for b in BACKENDS}


def texts() -> list[str]:
    """Real passages of many lengths: a word, sentences, and some past the 256-token limit."""
    out = ["Verona", "", "a"]
    for name in CORPORA:
        text = corpus_excerpt(name, 20_000)
        out += [text[i : i + size] for i, size in zip(range(0, 18_000, 1500), (40, 300, 900, 2500))]
    return out


def test_onnx_float32_vectors_equal_torch(embedders: dict[str, Embedder]) -> None:
    sample = texts()
    torch_vectors = embedders["torch"].embed(sample, batch_size=7)
    onnx_vectors = embedders["onnx"].embed(sample, batch_size=7)
    assert onnx_vectors.shape == torch_vectors.shape == (len(sample), 384)
    np.testing.assert_allclose(onnx_vectors, torch_vectors, atol=1e-5)


def test_int8_vectors_stay_close_to_torch(embedders: dict[str, Embedder]) -> None:
    sample = [t for t in texts() if t.strip()]
    int8 = embedders["onnx-int8"].embed(sample)
    np.testing.assert_allclose(np.linalg.norm(int8, axis=1), 1.0, atol=1e-5)
    cosine = np.sum(embedders["torch"].embed(sample) * int8, axis=1)
    assert cosine.min() > 0.97, cosine.min()


def test_openvino_vectors_stay_close_to_torch(embedders: dict[str, Embedder]) -> None:
    """OpenVINO runs the float32 file in bfloat16 where the CPU has it, else in float32."""
    sample = [t for t in texts() if t.strip()]
    vectors = embedders["openvino"].embed(sample, batch_size=7)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    cosine = np.sum(embedders["torch"].embed(sample) * vectors, axis=1)
    assert cosine.min() > 0.995, cosine.min()
    # one text alone or among others: the same vector (no batch-dependent scales as in int8)
    alone = embedders["openvino"].embed(sample[3:4])
    np.testing.assert_allclose(alone[0], vectors[3], atol=2e-3)


def test_the_default_backend_follows_the_cpu() -> None:
    import openvino

    bf16 = "BF16" in openvino.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")
    assert default_backend() == ("openvino" if bf16 else "onnx-int8")


def test_fingerprints_name_the_backend(embedders: dict[str, Embedder]) -> None:
    prints = {b: e.fingerprint for b, e in embedders.items()}
    assert {b: p.backend for b, p in prints.items()} == {b: b for b in prints}
    assert len({(p.name, p.dimension, p.weights) for p in prints.values()}) == 1


def test_chunks_and_token_limit_equal_the_torch_path(embedders: dict[str, Embedder]) -> None:
    torch_embedder, onnx_embedder = embedders["torch"], embedders["onnx-int8"]
    assert onnx_embedder.max_tokens == torch_embedder.max_tokens == 254
    for name in CORPORA:
        text = corpus_excerpt(name, 30_000)
        ours = TokenSplitter(onnx_embedder.tokenizer, 200, 40).split(text)
        theirs = TokenSplitter(torch_embedder.tokenizer, 200, 40).split(text)
        assert [(c.start, c.end, c.token_count) for c in ours] == [
            (c.start, c.end, c.token_count) for c in theirs
        ], name


@pytest.fixture(scope="module")
def tokenizers(embedders: dict[str, Embedder]) -> tuple[Tokenizer, Tokenizer]:
    return embedders["onnx"].tokenizer, embedders["torch"].tokenizer


@given(text=st.text(st.characters(codec="utf-8"), max_size=200))
@settings(max_examples=100, deadline=None)
def test_token_ids_equal_the_torch_tokenizer(
    tokenizers: tuple[Tokenizer, Tokenizer], text: str
) -> None:
    ours, theirs = tokenizers
    assert ours.encode(text) == theirs.encode(text)


def test_index_with_int8_ask_with_its_backend_then_reindex_with_torch(
    embedders: dict[str, Embedder],
    corpus: tuple[Path, dict[str, str]],  # noqa: F811
    tmp_path: Path,
) -> None:
    folder, _ = corpus
    index = tmp_path / "idx"
    built = build_index(folder, index, embeddings_backend="onnx-int8")
    assert len(built.embedded) == 3
    assert VectorStore.load(index).embeddings.backend == "onnx-int8"
    question = "Who are the two households?"
    hits = retrieve(index, question, top_k=3)  # embedded with the index's own backend
    assert hits[0].chunk.source == "play/romeo.txt"
    with pytest.raises(EmbeddingsMismatchError, match="embedded with backend onnx-int8, and torch"):
        retrieve(index, question, backend="torch")

    same = build_index(folder, index)  # no backend asked: the index's own, nothing re-embedded
    assert same.embedded == [] and same.warnings == []
    again = build_index(folder, index, embeddings_backend="torch")
    assert sorted(again.embedded) == sorted(built.embedded)
    assert any("embedded with backend onnx-int8, this run uses torch" in w for w in again.warnings)
    store = VectorStore.load(index)
    assert store.embeddings.backend == "torch"
    torch_hits = retrieve(index, question, top_k=3)
    assert torch_hits[0].chunk.source == "play/romeo.txt"
    # torch and float32 ONNX make the same vectors: either asks a torch index.
    onnx_hits = retrieve(index, question, top_k=3, backend="onnx")
    assert [h.chunk for h in onnx_hits] == [h.chunk for h in torch_hits]
    assert [h.score for h in onnx_hits] == pytest.approx([h.score for h in torch_hits], abs=1e-5)


def test_an_index_without_a_recorded_backend_reads_as_torch(
    embedders: dict[str, Embedder],
    corpus: tuple[Path, dict[str, str]],  # noqa: F811
    tmp_path: Path,
) -> None:
    folder, _ = corpus
    build_index(folder, tmp_path / "idx", embeddings_backend="torch")
    manifest_path = tmp_path / "idx" / MANIFEST
    manifest = json.loads(manifest_path.read_text())
    del manifest["embeddings"]["backend"]  # as written before backends were recorded
    manifest_path.write_text(json.dumps(manifest))
    assert VectorStore.load(tmp_path / "idx").embeddings.backend == "torch"
    manifest["embeddings"]["backend"] = "tensorrt"
    manifest_path.write_text(json.dumps(manifest))
    with pytest.raises(RagError, match="names embeddings backend 'tensorrt'"):
        VectorStore.load(tmp_path / "idx")


def test_exported_files_are_cached_and_reused(
    embedders: dict[str, Embedder], cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    weights = embedders["onnx"].fingerprint.weights
    files = sorted(p.relative_to(cache).as_posix() for p in cache.rglob("*") if p.is_file())
    stem = f"onnx/{weights}-v{onnx_export.EXPORT_VERSION}"
    assert files == [f"{stem}/model-fp32.onnx", f"{stem}/model-int8.onnx"]  # no temporary files

    def no_export(*args: object) -> None:
        raise AssertionError("exported again")

    monkeypatch.setattr(onnx_export, "_export", no_export)
    monkeypatch.setattr(onnx_export, "_quantize", no_export)
    _load_onnx.cache_clear()
    reloaded = load_embedder("all-MiniLM-L6-v2", backend="onnx-int8")
    np.testing.assert_array_equal(
        reloaded.embed(["Verona"]), embedders["onnx-int8"].embed(["Verona"])
    )


def test_a_failed_export_leaves_no_file(
    cache: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A run killed or failing mid-export never leaves a file another run would take as whole."""
    monkeypatch.setenv("LONGCONTEXT_CACHE_DIR", str(tmp_path / "fresh"))

    def half_then_fail(folder: Path, target: Path) -> None:
        target.write_bytes(b"\x08\x07half an onnx file")
        raise RuntimeError("disk full")

    monkeypatch.setattr(onnx_export, "_export", half_then_fail)
    with pytest.raises(RagError, match=r"could not export .* disk full; use --embeddings-backend"):
        onnx_export.exported_model(Path(minilm_path()), "0" * 64, "onnx-int8")
    assert [p for p in (tmp_path / "fresh").rglob("*") if p.is_file()] == []


def test_unsupported_layouts_are_refused_with_the_way_out(tmp_path: Path) -> None:
    source = Path(minilm_path())
    for name in ("modules.json", "sentence_bert_config.json", "tokenizer.json"):
        (tmp_path / name).write_bytes((source / name).read_bytes())
    (tmp_path / "1_Pooling").mkdir()
    pooling = json.loads((source / "1_Pooling" / "config.json").read_text())
    (tmp_path / "1_Pooling" / "config.json").write_text(json.dumps(pooling))
    layout = read_layout(tmp_path)  # JSON files only: nothing is loaded
    assert (layout.pooling, layout.dimension, layout.max_seq_length) == ("mean", 384, 256)

    (tmp_path / "1_Pooling" / "config.json").write_text(
        json.dumps({**pooling, "pooling_mode_mean_tokens": False, "pooling_mode_max_tokens": True})
    )
    with pytest.raises(RagError, match=r"pooling is \['pooling_mode_max_tokens'\].*backend torch"):
        read_layout(tmp_path)
    (tmp_path / "1_Pooling" / "config.json").write_text(  # as sentence-transformers 6 writes it
        json.dumps({"embedding_dimension": 384, "pooling_mode": "cls", "include_prompt": True})
    )
    assert read_layout(tmp_path).pooling == "cls"
    modules = json.loads((source / "modules.json").read_text())
    dense = {"idx": 3, "name": "3", "path": "3_Dense", "type": "sentence_transformers.models.Dense"}
    (tmp_path / "modules.json").write_text(json.dumps([*modules, dense]))
    with pytest.raises(
        RagError, match=r"its modules are .*Dense.*; use --embeddings-backend torch"
    ):
        read_layout(tmp_path)


def test_ask_without_a_model_never_imports_torch(
    embedders: dict[str, Embedder],
    cache: Path,
    corpus: tuple[Path, dict[str, str]],  # noqa: F811
    tmp_path: Path,
) -> None:
    folder, _ = corpus
    build_index(folder, tmp_path / "idx", embeddings_backend="onnx-int8")
    runner = (
        "import json, sys\n"
        "from longcontext.cli import main\n"
        "code = main(['ask', sys.argv[1], 'Who are the two households?', '--model', 'none', "
        "'--json'])\n"
        "heavy = sorted(m for m in sys.modules if m.split('.')[0] in "
        "('torch', 'transformers', 'sentence_transformers'))\n"
        "print(json.dumps({'code': code, 'heavy': heavy}), file=sys.stderr)\n"
    )
    env = {**os.environ, "LONGCONTEXT_CACHE_DIR": str(cache)}
    result = subprocess.run(
        [sys.executable, "-c", runner, str(tmp_path / "idx")],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )
    report = json.loads(result.stderr.strip().splitlines()[-1])
    assert report == {"code": 0, "heavy": []}, result.stderr
    answer = json.loads(result.stdout)
    assert answer["citations"][0]["source"] == "play/romeo.txt"


@pytest.mark.parametrize("command", ["index", "ask"])
def test_a_bad_backend_name_is_one_line(tmp_path: Path, capsys, command: str) -> None:
    argv = {
        "index": ["index", str(tmp_path), "--index", str(tmp_path / "idx")],
        "ask": ["ask", str(tmp_path / "idx"), "Verona?"],
    }[command]
    with pytest.raises(SystemExit) as exited:
        run_cli(capsys, *argv, "--embeddings-backend", "openvino-int4")
    assert exited.value.code == 2
    (line,) = [x for x in capsys.readouterr().err.splitlines() if ": error: " in x]
    assert "argument --embeddings-backend: invalid choice: 'openvino-int4'" in line
    assert "torch" in line and "onnx-int8" in line


def test_a_bad_backend_name_from_the_library(tmp_path: Path) -> None:
    with pytest.raises(RagError, match="--embeddings-backend 'tensorrt' is not one of torch, onnx"):
        build_index(tmp_path, tmp_path / "idx", embeddings_backend="tensorrt")
    with pytest.raises(RagError, match="'fast' is not one of"):
        load_embedder(None, backend="fast")


def test_a_damaged_cached_file_is_named(
    embedders: dict[str, Embedder], cache: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LONGCONTEXT_CACHE_DIR", str(tmp_path))
    weights = embedders["onnx"].fingerprint.weights
    damaged = onnx_export.exported_path(weights, "onnx-int8")
    damaged.parent.mkdir(parents=True)
    damaged.write_bytes(b"not an onnx file")
    _load_onnx.cache_clear()
    with pytest.raises(RagError, match=f"cannot load the cached ONNX file {damaged} .*delete it"):
        load_embedder(None, backend="onnx-int8")


def test_without_onnxruntime_the_way_out_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # as if not installed
    _load_onnx.cache_clear()
    with pytest.raises(RagError, match=r"needs onnxruntime: pip install 'longcontext\[rag\]'"):
        load_embedder(None, backend="onnx")
