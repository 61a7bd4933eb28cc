"""What the running app holds: the ILFM, the indexed collection, and strategies made from it.

Strategies are created on first use (``AppState.model``), with their trained parameters when a
``workbench train`` run for them exists under the runs folder (``<runs>/<name>-retrieval-*/``,
newest complete run first; :func:`workbench.train.load_trainable`), and as created otherwise —
the UI says which. Each strategy's embeddings of the whole collection are computed once
(feature-level strategies from the cached frozen frame features, pixel-level ones from decoded
frames) and kept in a search index (:func:`workbench.index.build_index`).
"""
from __future__ import annotations

import threading
from dataclasses import dataclass, field
from pathlib import Path

import torch

from ..config import CACHE_DIR
from ..index import build_index
from ..strategies import VideoTextModel, create_strategy, list_strategies
from .collection import Collection


@dataclass
class HeadStatus:
    """Where a strategy's parameters came from, in words for the UI."""

    trained: bool
    source: Path | None   # the run folder whose trainable.safetensors was loaded
    note: str             # one sentence for the page


def find_trained_run(runs_dir: Path, strategy: str) -> Path | None:
    """The newest complete ``workbench train`` run folder of ``strategy`` (state.json written last)."""
    runs = [p.parent for p in Path(runs_dir).glob(f"{strategy}-retrieval-*/state.json")
            if (p.parent / "trainable.safetensors").is_file()]
    return max(runs, key=lambda p: (p / "state.json").stat().st_mtime) if runs else None


@dataclass
class AppState:
    """The backbone, collection and (lazily) strategies behind every handler."""

    backbone: object                 # workbench.backbones.Backbone
    collection: Collection
    runs_dir: Path = Path("runs")    # where `workbench train` / `workbench bench` wrote results
    default_strategy: str = "mean-pool"
    max_upload_mb: float = 200.0     # uploads larger than this are refused with a message
    output_dir: Path = CACHE_DIR / "app" / "clips"   # files the app writes for the page (cut spans)
    _models: dict = field(default_factory=dict, repr=False)
    _status: dict = field(default_factory=dict, repr=False)
    _embeddings: dict = field(default_factory=dict, repr=False)
    _indexes: dict = field(default_factory=dict, repr=False)
    _facts: dict = field(default_factory=dict, repr=False)
    _lock: threading.RLock = field(default_factory=threading.RLock, repr=False)

    @property
    def strategies(self) -> list[str]:
        return list_strategies()

    def model(self, name: str) -> VideoTextModel:
        """Strategy ``name`` on this backbone, trained parameters loaded where a run has them."""
        with self._lock:
            if name not in self._models:
                model = create_strategy(name, self.backbone).eval()
                self._status[name] = self._load_head(model, name)
                self._models[name] = model
            return self._models[name]

    def head_status(self, name: str) -> HeadStatus:
        self.model(name)
        return self._status[name]

    def _load_head(self, model: VideoTextModel, name: str) -> HeadStatus:
        from ..train import load_trainable

        if not model.trainable_parameters():
            return HeadStatus(False, None, f"{name} trains nothing: it is the frozen ILFM, as is.")
        run = find_trained_run(self.runs_dir, name)
        untrained = (f"{name} is untrained here (no `workbench train --strategy {name}` run in "
                     f"{self.runs_dir}): its new parts are as created, zero-initialised where the "
                     "method allows, so it scores like the frozen ILFM.")
        if run is None:
            return HeadStatus(False, None, untrained)
        try:
            load_trainable(model, run / "trainable.safetensors")
        except (RuntimeError, ValueError, OSError) as error:   # trained on another backbone, say
            first = str(error).splitlines()[0][:200]
            return HeadStatus(False, run, f"{untrained} The run in {run} does not fit this model ({first}).")
        model.eval()
        return HeadStatus(True, run, f"{name}: trained parameters loaded from {run}.")

    @torch.no_grad()
    def video_embeddings(self, name: str) -> torch.Tensor:
        """Normalised embeddings [N,D] of every collection video under strategy ``name``."""
        with self._lock:
            if name not in self._embeddings:
                self._embeddings[name] = self._embed_collection(self.model(name))
            return self._embeddings[name]

    def _embed_collection(self, model: VideoTextModel, batch_size: int = 32) -> torch.Tensor:
        collection, out = self.collection, []
        for start in range(0, len(collection), batch_size):
            rows = range(start, min(start + batch_size, len(collection)))
            if model.input_level == "features":
                out.append(model.pool(collection.features[rows.start:rows.stop].to(self.backbone.device)))
            else:   # clips may differ in aspect: preprocess (crop) each, then batch
                pixels = torch.stack([self.backbone.preprocess(collection.decode(i)) for i in rows])
                out.append(model.encode_video(pixels.to(self.backbone.device, self.backbone.dtype)))
        return torch.cat(out).float().cpu()

    def search(self, name: str, queries: torch.Tensor, k: int) -> tuple[torch.Tensor, list[list[int]]]:
        """Top ``k`` collection rows per query embedding [Q,D] under ``name``: (scores [Q,k], rows)."""
        with self._lock:
            if name not in self._indexes:
                ids = [v.video_id for v in self.collection.videos]
                self._indexes[name] = build_index(self.video_embeddings(name), ids)
            index = self._indexes[name]
        scores, ids = index.search(queries, k)
        rows = {v.video_id: i for i, v in enumerate(self.collection.videos)}
        return scores, [[rows[v] for v in found] for found in ids]

    def cached(self, key, compute):
        """``compute()`` once per ``key`` (FLOP counts and other per-strategy facts)."""
        with self._lock:
            if key not in self._facts:
                self._facts[key] = compute()
            return self._facts[key]

    @torch.no_grad()
    def encode_clip(self, name: str, frames: torch.Tensor) -> torch.Tensor:
        """One decoded clip uint8 [T,3,H,W] -> its normalised embedding [D] under ``name``."""
        model = self.model(name)
        pixels = self.backbone.preprocess(frames[None].to(self.backbone.device))
        return model.encode_video(pixels.to(self.backbone.dtype))[0].float().cpu()

    @torch.no_grad()
    def encode_texts(self, name: str, texts: list[str]) -> torch.Tensor:
        """Texts -> normalised embeddings [N,D] under ``name``'s text side."""
        return self.model(name).encode_text(list(texts)).float().cpu()
