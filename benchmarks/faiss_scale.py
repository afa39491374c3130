"""FAISS index types at scale: recall@10 against exact search, build time, query latency, size.

Runs each index type of :mod:`longcontext.rag.ann` through the store's own code
(``ann.build`` with the settings ``auto`` would record, then ``VectorStore.search``: one question
at a time, candidates rescored exactly, as ``longcontext ask`` does) over synthetic unit vectors
clustered like embeddings of related chunks (``count / 100`` centres, Gaussian spread). Exact
search (flat) is the ground truth.

    .venv/bin/python benchmarks/faiss_scale.py --count 1000000      # the issue's scale
    .venv/bin/python benchmarks/faiss_scale.py --count 100000 --json results.json

Synthetic vectors are a stand-in for a real corpus: recall on real embeddings depends on how
they cluster, so check it on a sample of your own before relying on an approximate type.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path
from typing import Any

import numpy as np

from longcontext.rag import ann
from longcontext.rag.embeddings import EmbeddingsFingerprint
from longcontext.rag.store import IndexedChunk, VectorStore


def clustered(count: int, queries: int, dimension: int, seed: int = 0) -> tuple[Any, Any]:
    """``count`` unit vectors around ``count / 100`` centres, and ``queries`` more like them;
    generated in blocks so a million rows need no more than their own memory."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((max(1, count // 100), dimension)).astype(np.float32)
    total = count + queries
    out = np.empty((total, dimension), dtype=np.float32)
    for start in range(0, total, 100_000):
        stop = min(total, start + 100_000)
        block = centres[rng.integers(0, len(centres), stop - start)]
        block += 0.8 * rng.standard_normal(block.shape).astype(np.float32)
        block /= np.linalg.norm(block, axis=1, keepdims=True)
        out[start:stop] = block
    return out[:count], out[count:]


def measure(
    vectors: Any, queries: Any, kind: ann.IndexType, truth: list[set[int]]
) -> dict[str, Any]:
    import faiss

    count, dimension = vectors.shape
    params = ann.params_for(kind, count, dimension)
    began = time.perf_counter()
    index = ann.build(vectors, kind, params)
    build_s = time.perf_counter() - began
    size = len(faiss.serialize_index(index)) if kind != "flat" else count * dimension * 4
    store = VectorStore(
        corpus="/synthetic",
        embeddings=EmbeddingsFingerprint("synthetic", dimension),
        splitter={},
        chunks=[IndexedChunk("x", i, i + 1, 1, "") for i in range(count)],
        vectors=vectors,
        index_type=kind,
        index_kind=kind,
        index_params=params,
        _search_index=index,
    )
    store.search(queries[0], 10)  # warm-up
    latencies, recalls = [], []
    for query, expected in zip(queries, truth):
        began = time.perf_counter()
        hits = store.search(query, 10)
        latencies.append(time.perf_counter() - began)
        recalls.append(len({h.chunk.start for h in hits} & expected) / 10)
    return {
        "type": kind,
        "params": params,
        "build_s": round(build_s, 2),
        "recall_at_10": round(float(np.mean(recalls)), 4),
        "latency_ms_p50": round(float(np.median(latencies)) * 1000, 3),
        "latency_ms_p95": round(float(np.percentile(latencies, 95)) * 1000, 3),
        "index_mb": round(size / 2**20, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--count", type=int, default=1_000_000, help="vectors in the index")
    parser.add_argument("--dimension", type=int, default=384, help="all-MiniLM-L6-v2: 384")
    parser.add_argument("--queries", type=int, default=200, help="questions, searched one by one")
    parser.add_argument(
        "--types", nargs="+", default=list(ann.INDEX_TYPES), choices=ann.INDEX_TYPES
    )
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()

    import faiss

    vectors, queries = clustered(args.count, args.queries, args.dimension)
    exact = faiss.IndexFlatIP(args.dimension)
    exact.add(vectors)
    _, rows = exact.search(queries, 10)
    truth = [set(r.tolist()) for r in rows]
    del exact
    results = []
    print(
        f"{args.count:,} vectors of {args.dimension} dimensions, {args.queries} queries, "
        f"{os.cpu_count()} CPUs, faiss {faiss.__version__}",
        flush=True,
    )
    print("| type | settings | build (s) | recall@10 | latency p50 / p95 (ms) | index (MB) |")
    print("|---|---|---:|---:|---:|---:|", flush=True)
    for kind in args.types:
        r = measure(vectors, queries, kind, truth)
        results.append(r)
        settings = ", ".join(f"{k}={v}" for k, v in r["params"].items()) or "exact"
        print(
            f"| {kind} | {settings} | {r['build_s']} | {r['recall_at_10']:.3f} | "
            f"{r['latency_ms_p50']} / {r['latency_ms_p95']} | {r['index_mb']} |",
            flush=True,
        )
    if args.json:
        meta = {
            "count": args.count,
            "dimension": args.dimension,
            "queries": args.queries,
            "cpus": os.cpu_count(),
            "machine": platform.machine(),
            "faiss": faiss.__version__,
        }
        args.json.write_text(json.dumps({"setup": meta, "results": results}, indent=2))


if __name__ == "__main__":
    main()
