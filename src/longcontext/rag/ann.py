"""Which FAISS index searches the vectors: exact up to a size, approximate past it.

Every index holds unit vectors under inner product, so scores are cosine similarities. The store
always keeps the exact vectors too (``vectors.faiss``): an approximate index only proposes
candidates, which are then scored exactly, and a later ``index`` run reuses exact vectors.

- ``flat``: ``IndexFlatIP``, every vector compared (exact); ``auto`` up to 50,000 vectors;
- ``hnsw``: ``IndexHNSWFlat``, M=32, a proximity graph; ``auto`` from 50,000 to 2,000,000;
- ``ivf-sq8``: ``IndexIVFScalarQuantizer``, 8-bit codes in ``4*sqrt(n)`` lists, ``nprobe`` =
  lists/16; ``auto`` above 2,000,000;
- ``ivf-pq``: ``IndexIVFPQ``, ``dimension/8`` bytes per vector; never picked by ``auto`` (least
  memory, lowest recall): ask for it.

The IVF types are trained on a seeded sample of at most 64 vectors per list (PQ: at least 16,384,
for its 256 codes per sub-quantizer).
"""

from __future__ import annotations

import math
import struct
from typing import Any, Literal, cast

import numpy as np

from longcontext.rag.embeddings import Matrix

IndexType = Literal["flat", "hnsw", "ivf-sq8", "ivf-pq"]
INDEX_TYPES: tuple[IndexType, ...] = ("flat", "hnsw", "ivf-sq8", "ivf-pq")
CHOICES = ("auto", *INDEX_TYPES)
# Exact search costs time in proportion to the vectors: about 70 ms a question at 100,000 x 384
# on 2 busy cores (docs/scaling.md), against under 1 ms for HNSW.
FLAT_UP_TO = 50_000
HNSW_UP_TO = 2_000_000  # above, the graph's memory and build time favour IVF
HNSW_M = 32
HNSW_EF_CONSTRUCTION = 64
HNSW_EF_SEARCH = 96
TRAIN_PER_LIST = 64
# What FAISS writes first for every index: fourcc, dimension (int32), vector count (int64),
# two unused int64, is_trained (bool), metric (int32). IVF indexes then give their list count.
_HEADER = struct.Struct("<4siqqq?i")
_IVF_LISTS = struct.Struct("<q")
_FOURCC: dict[str, bytes] = {"hnsw": b"IHNf", "ivf-sq8": b"IwSq", "ivf-pq": b"IwPQ"}
_INNER_PRODUCT = 0  # faiss.METRIC_INNER_PRODUCT


def choose(index_type: str, count: int) -> IndexType:
    """The index type ``index_type`` names, or for ``"auto"`` the one for ``count`` vectors.

    Raises:
        ValueError: an unknown type, or an IVF type for fewer vectors than it can train on.
    """
    if index_type == "auto":
        if count <= FLAT_UP_TO:
            return "flat"
        return "hnsw" if count <= HNSW_UP_TO else "ivf-sq8"
    if index_type not in INDEX_TYPES:
        raise ValueError(f"--index-type {index_type!r} is not one of {', '.join(CHOICES)}")
    if index_type.startswith("ivf") and count < _min_ivf(index_type):
        raise ValueError(
            f"--index-type {index_type} needs at least {_min_ivf(index_type)} vectors to train "
            f"its lists, the index holds {count}: use --index-type auto or flat"
        )
    return index_type  # type: ignore[return-value]


def params_for(kind: IndexType, count: int, dimension: int) -> dict[str, int]:
    """The settings of an index of ``kind`` over ``count`` vectors (recorded in the manifest)."""
    if kind == "flat":
        return {}
    if kind == "hnsw":
        return {"m": HNSW_M, "ef_construction": HNSW_EF_CONSTRUCTION, "ef_search": HNSW_EF_SEARCH}
    lists = max(1, min(65_536, int(4 * math.sqrt(count)), count // 39))
    params = {"nlist": lists, "nprobe": max(1, min(lists, max(8, lists // 16)))}
    if kind == "ivf-pq":
        params["m"] = _pq_m(dimension)
    return params


def build(vectors: Matrix, kind: IndexType, params: dict[str, int], seed: int = 0) -> Any:
    """A trained FAISS index of ``kind`` holding ``vectors`` (rows in order)."""
    import faiss

    count, dimension = vectors.shape
    index: Any
    if kind == "flat":
        index = faiss.IndexFlatIP(dimension)
    elif kind == "hnsw":
        index = faiss.IndexHNSWFlat(dimension, params["m"], faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = params["ef_construction"]
    else:
        quantizer: Any = faiss.IndexFlatIP(dimension)
        if kind == "ivf-sq8":
            index = faiss.IndexIVFScalarQuantizer(
                quantizer,
                dimension,
                params["nlist"],
                faiss.ScalarQuantizer.QT_8bit,
                faiss.METRIC_INNER_PRODUCT,
            )
        else:
            index = faiss.IndexIVFPQ(
                quantizer, dimension, params["nlist"], params["m"], 8, faiss.METRIC_INNER_PRODUCT
            )
        index.own_fields = True
        quantizer.this.disown()  # the IVF index frees its quantizer
        # PQ also trains 256 centroids per sub-quantizer: FAISS wants 39 points each.
        wanted = params["nlist"] * TRAIN_PER_LIST
        sample = min(count, max(wanted, 256 * TRAIN_PER_LIST) if kind == "ivf-pq" else wanted)
        rows = np.sort(np.random.default_rng(seed).choice(count, sample, replace=False))
        index.train(np.ascontiguousarray(vectors[rows]))
    if count:
        index.add(vectors)
    tune(index, kind, params)
    return index


def tune(index: Any, kind: IndexType, params: dict[str, int]) -> None:
    """Set the search-time knobs a saved index does not keep (efSearch, nprobe)."""
    if kind == "hnsw":
        index.hnsw.efSearch = params["ef_search"]
    elif kind != "flat":
        index.nprobe = params["nprobe"]


def candidates(kind: IndexType, top_k: int) -> int:
    """How many rows to ask an index for, to rescore exactly and keep ``top_k``: quantized
    codes misorder near neighbours, so they propose more."""
    return {"flat": top_k, "hnsw": top_k, "ivf-sq8": 2 * top_k, "ivf-pq": 4 * top_k}[kind]


def max_bytes(kind: IndexType, params: dict[str, int], count: int, dimension: int) -> int:
    """A generous upper bound on the serialized size of an index of ``kind``: a manifest that
    claims more is refused before the file is read."""
    base = 1 << 20
    if kind == "hnsw":
        # Vectors, then per vector its level and two neighbour lists per level (2*M at level 0).
        per_vector = dimension * 4 + 8 * (3 * params["m"] + 16)
        return base + count * per_vector * 2
    codes = dimension if kind == "ivf-sq8" else params["m"]
    centroids = params["nlist"] * dimension * 4
    tables = 256 * dimension * 4 if kind == "ivf-pq" else 2 * dimension * 4
    return base + 2 * (count * (codes + 8) + centroids + tables + params["nlist"] * 16)


def table_bytes(kind: IndexType, params: dict[str, int], dimension: int) -> int:
    """Bytes of the tables FAISS computes when it loads an index (not in the file): IVF-PQ's
    precomputed distance table, ``nlist x m x 256`` floats, plus a margin."""
    if kind != "ivf-pq":
        return 0
    return params["nlist"] * params["m"] * 256 * 4 + dimension * 4 * 256 + (1 << 20)


def check_header(
    data: bytes, kind: IndexType, params: dict[str, int], count: int, dimension: int
) -> None:
    """Refuse an index file whose header disagrees with the manifest, before FAISS reads it.

    Raises:
        ValueError: another index type, dimension, vector count, metric or list count.
    """
    if len(data) < _HEADER.size + _IVF_LISTS.size:
        raise ValueError(f"the {kind} index file is {len(data)} bytes, too short for a header")
    fourcc, d, ntotal, _, _, trained, metric = _HEADER.unpack_from(data)
    expected = (_FOURCC[kind], dimension, count, True, _INNER_PRODUCT)
    if (fourcc, d, ntotal, trained, metric) != expected:
        raise ValueError(
            f"the {kind} index file has a header for {ntotal} vectors of {d} dimensions "
            f"({fourcc!r}, trained {trained}, metric {metric}), not {count} of {dimension}"
        )
    if kind != "hnsw":
        (lists,) = _IVF_LISTS.unpack_from(data, _HEADER.size)
        if lists != params["nlist"]:
            raise ValueError(f"the {kind} index has {lists} lists, the manifest {params['nlist']}")


def check_params(kind: Any, params: Any, dimension: int) -> IndexType:
    """The index type and settings of a manifest, checked as numbers in range."""
    if kind not in INDEX_TYPES:
        raise ValueError(f"the manifest names index type {kind!r}, not one of {INDEX_TYPES}")
    wanted = {
        "flat": set(),
        "hnsw": {"m", "ef_construction", "ef_search"},
        "ivf-sq8": {"nlist", "nprobe"},
        "ivf-pq": {"nlist", "nprobe", "m"},
    }[kind]
    if not isinstance(params, dict) or set(params) != wanted:
        raise ValueError(f"the manifest's {kind} settings {params!r} are not {sorted(wanted)}")
    for name, value in params.items():
        if type(value) is not int or not 1 <= value <= 1 << 20:
            raise ValueError(f"the manifest's {kind} setting {name}={value!r} is out of range")
    if kind == "ivf-pq" and dimension % params["m"]:
        raise ValueError(f"ivf-pq m={params['m']} does not divide the dimension {dimension}")
    return cast(IndexType, kind)


def _pq_m(dimension: int) -> int:
    """Sub-quantizers for PQ: one byte per 8 dimensions, a divisor of the dimension."""
    m = max(1, dimension // 8)
    while dimension % m:
        m -= 1
    return m


def _min_ivf(kind: str) -> int:
    """Fewest vectors an IVF index trains on: 39 per list at one list; PQ's 256 centroids."""
    return 256 if kind == "ivf-pq" else 39
