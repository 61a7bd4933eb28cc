"""On-disk cache of frozen frame features, so frozen strategies never re-encode a video.

Key: (video content hash, model fingerprint, frame sampling). One small safetensors file per
video (``<root>/<model>/<sampling>/<hash[:2]>/<hash>.safetensors``), so reading one video's
features never reads the rest, and a half-written file never exists (atomic rename).
The model fingerprint hashes the weights' identity (name, tag and a few parameter tensors), so a
retrained model never reads its predecessor's features.
"""
from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from ..io import atomic_write


def content_hash(source: str | Path | torch.Tensor | np.ndarray) -> str:
    """SHA-1 of a file's bytes (streamed) or of an array's bytes."""
    digest = hashlib.sha1()
    if isinstance(source, (str, Path)):
        with open(source, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
    else:
        array = source.detach().cpu().numpy() if isinstance(source, torch.Tensor) else np.asarray(source)
        digest.update(str(array.shape).encode())
        digest.update(np.ascontiguousarray(array).tobytes())
    return digest.hexdigest()


def model_fingerprint(backbone) -> str:
    """Short id of a backbone's weights: name, tag and the bytes of its smallest identifying tensors."""
    digest = hashlib.sha1(f"{backbone.name}|{backbone.pretrained}".encode())
    visual = backbone.clip.visual
    for tensor in (getattr(visual, "proj", None), getattr(visual, "class_embedding", None)):
        if isinstance(tensor, torch.Tensor):
            digest.update(tensor.detach().float().cpu().numpy().tobytes())
    safe_name = "".join(c if c.isalnum() or c in "-_." else "_" for c in backbone.name)
    return f"{safe_name}-{digest.hexdigest()[:12]}"


class FeatureCache:
    """Per-video frame features [T,D] of one frozen backbone under one sampling, on disk."""

    def __init__(self, root: str | Path, backbone, sampling: str) -> None:
        self.backbone = backbone
        self.dir = Path(root) / model_fingerprint(backbone) / sampling
        self.hits = self.misses = 0

    @classmethod
    def at(cls, directory: str | Path, backbone=None) -> "FeatureCache":
        """The cache stored in ``directory`` (a ``<root>/<model>/<sampling>`` folder, e.g. the one
        a ``workbench extract`` manifest names); reading needs no backbone, :meth:`encode` does."""
        cache = cls.__new__(cls)
        cache.backbone, cache.dir = backbone, Path(directory)
        cache.hits = cache.misses = 0
        return cache

    def path(self, key: str) -> Path:
        return self.dir / key[:2] / f"{key}.safetensors"

    def __contains__(self, key: str) -> bool:
        return self.path(key).exists()

    def load(self, key: str) -> torch.Tensor | None:
        path = self.path(key)
        if not path.exists():
            return None
        self.hits += 1
        return load_file(str(path))["features"]

    def store(self, key: str, features: torch.Tensor, metadata: dict[str, str] | None = None) -> None:
        """Write one video's features [T,D] (float32); ``metadata`` goes in the file's header
        (e.g. which video it came from), readable without loading the tensor."""
        tensor = features.detach().float().cpu().contiguous()
        atomic_write(self.path(key), lambda p: save_file({"features": tensor}, p, metadata=metadata))

    @torch.no_grad()
    def encode(self, frames: torch.Tensor, keys: list[str] | None = None, batch_size: int = 32) -> torch.Tensor:
        """Features of uint8 clips [N,T,3,H,W] -> [N,T,D], computing only the ones not cached."""
        keys = keys or [content_hash(clip) for clip in frames]
        out: list[torch.Tensor | None] = [self.load(k) for k in keys]
        todo = [i for i, f in enumerate(out) if f is None]
        self.misses += len(todo)
        for start in range(0, len(todo), batch_size):
            idx = todo[start:start + batch_size]
            pixels = self.backbone.preprocess(frames[idx].to(self.backbone.device))
            feats = self.backbone.encode_frames(pixels.to(self.backbone.dtype)).float().cpu()
            for i, f in zip(idx, feats):
                self.store(keys[i], f)
                out[i] = f
        return torch.stack(out)
