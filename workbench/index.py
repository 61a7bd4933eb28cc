"""Nearest-neighbour search over normalised clip embeddings: exact (torch) or FAISS.

API::

    index = build_index(embeddings [N,D], ids list[str], kind="auto")   # "exact" | "faiss" | "faiss-ivf"
    scores, ids = index.search(queries [Q,D] or [D], k)   # scores: Tensor [Q,k] (cosine), ids: list[list[str]]
    index.save("clips.index.safetensors"); index = load_index("clips.index.safetensors")
    index = index_from_features("FEATURES", kind="auto")  # from a `workbench extract` folder

Embeddings and queries are L2-normalised on the way in, so scores are cosine similarities, the
score CLIP-style retrieval ranks by. Three kinds:

- ``exact`` (:class:`ExactIndex`): one matrix product and ``torch.topk``; exact, no extra
  dependency; the right choice up to ~10^5 clips on a CPU (about a memory-bandwidth-bound pass
  over N*D floats per query).
- ``faiss`` (:class:`FaissIndex`, ``IndexFlatIP``): also exact, FAISS's SIMD kernels; the same
  top-k as ``exact`` (ties aside).
- ``faiss-ivf`` (:class:`FaissIndex`, ``IndexIVFFlat``): inverted lists over k-means cells,
  searching ``nprobe`` of them: approximate, sub-linear, for ~10^6 clips and up (Jégou et al.,
  *Product quantization for nearest neighbor search*, TPAMI 2011; Johnson et al., *Billion-scale
  similarity search with GPUs*, IEEE TBD 2019, i.e. FAISS).

``kind="auto"`` picks ``exact`` while the vectors take at most :data:`AUTO_EXACT_MAX_BYTES`, else
``faiss-ivf`` when FAISS is installed (``pip install 'i2v-workbench[scale]'``), else ``exact``.
Exact search reads every vector once per query, so its latency is the time to read N*D*4 bytes
(``benchmarks/bench_retrieval.py`` prints that floor next to it): ~10 ms for 100k x 128 on the
shared two-core machine this was built on, ~26 ms for 100k x 512, where IVF answers in ~1.3 ms.

An index is saved as one safetensors file (its vectors or FAISS's serialised bytes, the ids as
UTF-8 JSON bytes, the kind in the header), written atomically: no pickle, never half a file.
"""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from safetensors import safe_open
from safetensors.torch import save_file

from .io import atomic_write

__all__ = ["KINDS", "AUTO_EXACT_MAX_BYTES", "ExactIndex", "FaissIndex", "build_index", "load_index",
           "index_from_features"]

KINDS = ("auto", "exact", "faiss", "faiss-ivf")
# Largest float32 matrix "auto" searches exactly: one pass over 64 MB takes ~10 ms at the ~6 GB/s
# one core reads here (100k clips x 128 dims; 32k x 512), measured by benchmarks/bench_retrieval.py.
AUTO_EXACT_MAX_BYTES = 64 * 2 ** 20
FAISS_HINT = "FAISS is not installed: pip install faiss-cpu (or the 'scale' extra of i2v-workbench)"


def _as_matrix(vectors, name: str) -> torch.Tensor:
    """float32 ``[N,D]`` unit rows from a tensor / array (``[D]`` becomes ``[1,D]``)."""
    matrix = torch.as_tensor(np.asarray(vectors) if not isinstance(vectors, torch.Tensor) else vectors)
    matrix = matrix.detach().to("cpu", torch.float32)
    if matrix.ndim == 1:
        matrix = matrix[None]
    if matrix.ndim != 2:
        raise ValueError(f"{name} must be [N,D] (or [D]), got shape {tuple(matrix.shape)}")
    return F.normalize(matrix, dim=-1).contiguous()


class _Index:
    """What every kind shares: ids, dimension, the query checks, and the file format."""

    kind = "?"

    def __init__(self, ids: Sequence[str], dim: int):
        self.ids, self.dim = [str(i) for i in ids], int(dim)
        if len(set(self.ids)) != len(self.ids):
            raise ValueError("ids must be unique")

    def __len__(self) -> int:
        return len(self.ids)

    def search(self, queries, k: int = 10) -> tuple[torch.Tensor, list[list[str]]]:
        """Top ``k`` per query, best first: (cosine scores ``[Q,k']``, ids), ``k' = min(k, N)``."""
        q = _as_matrix(queries, "queries")
        if q.shape[1] != self.dim:
            raise ValueError(f"queries have dimension {q.shape[1]}, the index {self.dim}")
        k = min(int(k), len(self))
        if k < 1:
            return torch.empty(len(q), 0), [[] for _ in range(len(q))]
        scores, rows = self._search(q, k)
        ids = [[self.ids[r] for r in row if r >= 0] for row in rows.tolist()]  # FAISS pads with -1
        return scores, ids

    def _search(self, queries: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
        raise NotImplementedError

    def save(self, path: str | Path) -> Path:
        """Write this index to ``path`` (one safetensors file), atomically."""
        tensors = {**self._tensors(),
                   "ids": torch.frombuffer(bytearray(json.dumps(self.ids).encode()), dtype=torch.uint8)}
        metadata = {"kind": self.kind, "dim": str(self.dim), **self._metadata()}
        return atomic_write(path, lambda p: save_file(tensors, p, metadata=metadata))

    def _tensors(self) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    def _metadata(self) -> dict[str, str]:
        return {}


class ExactIndex(_Index):
    """Brute force: ``queries @ embeddings.T`` then ``topk``. Exact; no dependency."""

    kind = "exact"

    def __init__(self, embeddings, ids: Sequence[str]):
        self.embeddings = _as_matrix(embeddings, "embeddings")  # [N,D] unit rows
        super().__init__(ids, self.embeddings.shape[1])
        if len(self.ids) != len(self.embeddings):
            raise ValueError(f"{len(self.embeddings)} embeddings but {len(self.ids)} ids")

    @torch.inference_mode()
    def _search(self, queries, k):
        if len(queries) == 1:  # matrix-vector product: ~2x faster than a 1-row matmul (measured)
            scores = torch.mv(self.embeddings, queries[0])[None]  # [1,N]
        else:
            scores = queries @ self.embeddings.t()  # [Q,N]
        return torch.topk(scores, k, dim=1)

    def _tensors(self):
        return {"embeddings": self.embeddings}


def _faiss():
    try:
        import faiss
    except ImportError:
        raise ImportError(FAISS_HINT) from None
    return faiss


class FaissIndex(_Index):
    """FAISS inner-product search: ``method="flat"`` (exact) or ``"ivf"`` (approximate).

    ``nlist`` k-means cells (default ~sqrt(N)) are trained on a random sample of ``64 * nlist``
    vectors (FAISS wants at least 39 per cell); ``nprobe`` of them are searched per query (more:
    slower, higher recall).
    """

    def __init__(self, embeddings, ids: Sequence[str], method: str = "flat", nlist: int | None = None,
                 nprobe: int = 16, seed: int = 0, *, _index=None):
        faiss = _faiss()
        if method not in ("flat", "ivf"):
            raise ValueError(f"unknown FAISS method {method!r}; choose 'flat' or 'ivf'")
        self.method, self.kind = method, "faiss" if method == "flat" else "faiss-ivf"
        if _index is not None:  # load_index: already built
            self.index = _index
            super().__init__(ids, _index.d)
            return
        vectors = _as_matrix(embeddings, "embeddings").numpy()
        super().__init__(ids, vectors.shape[1])
        if len(self.ids) != len(vectors):
            raise ValueError(f"{len(vectors)} embeddings but {len(self.ids)} ids")
        if method == "flat":
            self.index = faiss.IndexFlatIP(self.dim)
        else:
            nlist = nlist or max(1, min(len(vectors) // 39, int(math.sqrt(len(vectors)))))
            self.index = faiss.IndexIVFFlat(faiss.IndexFlatIP(self.dim), self.dim, nlist,
                                            faiss.METRIC_INNER_PRODUCT)
            sample = np.random.default_rng(seed).permutation(len(vectors))[:64 * nlist]
            self.index.train(vectors[np.sort(sample)])
            self.index.nprobe = nprobe
        self.index.add(vectors)

    @property
    def nprobe(self) -> int | None:
        return getattr(self.index, "nprobe", None)

    @nprobe.setter
    def nprobe(self, value: int) -> None:
        self.index.nprobe = int(value)

    def _search(self, queries, k):
        scores, rows = self.index.search(queries.numpy(), k)
        return torch.from_numpy(scores), torch.from_numpy(rows)

    def _tensors(self):
        return {"faiss": torch.from_numpy(_faiss().serialize_index(self.index))}

    def _metadata(self):
        return {"method": self.method}


def build_index(embeddings, ids: Sequence[str], kind: str = "auto", **options) -> _Index:
    """An index of ``embeddings [N,D]`` named by ``ids``; ``kind`` in :data:`KINDS`;
    ``options`` go to :class:`FaissIndex` (``nlist``, ``nprobe``, ...)."""
    if kind not in KINDS:
        raise ValueError(f"unknown index kind {kind!r}; choose one of {', '.join(KINDS)}")
    if kind == "auto":
        size = len(ids) * int(np.shape(embeddings)[-1]) * 4
        kind = "exact" if size <= AUTO_EXACT_MAX_BYTES or not _faiss_available() else "faiss-ivf"
    if kind == "exact":
        return ExactIndex(embeddings, ids)
    return FaissIndex(embeddings, ids, method="flat" if kind == "faiss" else "ivf", **options)


def _faiss_available() -> bool:
    try:
        _faiss()
    except ImportError:
        return False
    return True


def load_index(path: str | Path) -> _Index:
    """Read an index written by ``.save`` (any kind)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"index file not found: {path}")
    try:
        with safe_open(str(path), framework="pt") as f:
            metadata = f.metadata() or {}
            tensors = {name: f.get_tensor(name) for name in f.keys()}
    except Exception as error:  # safetensors raises several types for a foreign / cut file
        raise ValueError(f"{path}: not an index file ({error})") from None
    ids = json.loads(tensors["ids"].numpy().tobytes().decode())
    kind = metadata.get("kind")
    if kind == "exact":
        return ExactIndex(tensors["embeddings"], ids)
    if kind in ("faiss", "faiss-ivf"):
        index = _faiss().deserialize_index(tensors["faiss"].numpy())
        return FaissIndex(None, ids, method=metadata["method"], _index=index)
    raise ValueError(f"{path}: unknown index kind {kind!r}")


def index_from_features(folder: str | Path, kind: str = "auto", pool=None, **options) -> _Index:
    """An index over the videos of a ``workbench extract`` folder, one embedding per video
    (``pool`` over its frame features; default: mean pooling, as the zero-shot baseline)."""
    from .extract import ExtractedFeatures

    features = ExtractedFeatures(folder)
    return build_index(features.video_embeddings(pool=pool), features.ids, kind, **options)
