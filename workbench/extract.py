"""Frozen frame features for a folder of videos, fast, resumable, on one process or many.

``workbench extract --videos DIR --out FEATURES`` (or :func:`extract_features`) runs every video
through a frozen ILFM once and stores its per-frame features ``[T,D]``, so frozen strategies,
retrieval indexes (:mod:`workbench.index`) and the app never decode or encode it again
(DESIGN §7). What makes it fast, measured by ``benchmarks/bench_extract.py``:

- **Decode at reduced size**: each video is decoded straight to the size the model's preprocessing
  resizes it to (short side = the model's input size, aspect kept), so decord's scaler does the
  resize while decoding and full-size frames never exist; preprocessing is then a crop and a
  normalisation.
- **DataLoader workers** decode and preprocess (:class:`~workbench.data.video.VideoDataset`)
  while the main process runs the model on **batches of clips** (``[B,T,3,S,S]`` in one
  ``encode_frames`` call).
- **Resumable**: a video's features are keyed by its content hash
  (:class:`~workbench.data.features.FeatureCache`, one small safetensors file per video written
  atomically); a finished video is skipped, so a killed run continues where it stopped. Hashes of
  files whose size and modification time are unchanged are reused from the manifest.
- **Several processes** (``torchrun`` / ``accelerate launch``): each process takes every W-th
  video of the sorted list, so every video is processed exactly once, and the features are those
  of a single process (the model sees each clip alone per row of the batch).
- **Bad videos are skipped** (:class:`~workbench.data.video.VideoError`) and listed at the end
  and in ``failures.json``.

Layout of an output folder::

    FEATURES/manifest.json             config (model fingerprint, frames, sampling), and per video
                                       id: its file, content hash, size, mtime; failures
    FEATURES/failures.json             [{"path", "reason"}] of the last run
    FEATURES/<model>/<sampling>/ab/<hash>.safetensors   one video's features [T,D] (float32)

:class:`ExtractedFeatures` reads it back one video at a time. Reference for the design: the
feature-extraction stage of CLIP4Clip-style pipelines (Luo et al., 2022) and of the survey's
frozen-feature strategies (Li et al., arXiv 2510.10671, §3).
"""
from __future__ import annotations

import functools
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Sequence

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from .data.features import FeatureCache, content_hash, model_fingerprint
from .data.video import VideoDataset, VideoError, _probe, collate_videos, preprocess_frames
from .io import atomic_write

__all__ = ["VIDEO_SUFFIXES", "ExtractConfig", "ExtractResult", "ExtractedFeatures", "decode_size",
           "extract_features", "list_videos", "mean_pool"]

# Container suffixes looked for under --videos (what PyAV/decord read; others are ignored).
VIDEO_SUFFIXES = (".mp4", ".m4v", ".mov", ".mkv", ".webm", ".avi", ".mpg", ".mpeg", ".ogv", ".flv")
MANIFEST = "manifest.json"
FAILURES = "failures.json"
FORMAT = "workbench-features/1"


@dataclass
class ExtractConfig:
    """How videos are sampled and how the work is split."""

    num_frames: int = 8        # frames sampled per video
    sampling: str = "uniform"  # frame sampler (data/video.py SAMPLERS); deterministic ones resume exactly
    batch_size: int | None = None  # clips per model call (B in [B,T,3,S,S]); None: 4 on CPU, 32 on GPU
    #   (on CPU ~32 frames per call is fastest: larger batches fall out of cache, measured 20% slower)
    num_workers: int = 2       # DataLoader decode processes per extracting process (0: decode inline)
    progress: bool = True      # tqdm bar on the main process


@dataclass
class ExtractResult:
    """What one call did (on this process: ``encoded`` is this process's share)."""

    out: Path                                        # the features folder
    total: int                                       # videos found under the input folder
    encoded: list[str] = field(default_factory=list)  # ids encoded now (by this process)
    num_encoded: int = 0                             # videos encoded now (all processes)
    skipped: int = 0                                 # ids already stored (all processes)
    failed: list[tuple[str, str]] = field(default_factory=list)  # (path, reason), all processes
    wall_s: float = 0.0                              # seconds this call took

    def summary(self) -> str:
        lines = [f"{self.total} videos: {self.num_encoded} encoded, {self.skipped} already stored, "
                 f"{len(self.failed)} failed ({self.wall_s:.1f} s) -> {self.out}"]
        lines += [f"  skipped {path}: {reason}" for path, reason in self.failed]
        return "\n".join(lines)


# --------------------------------------------------------------------------------------------
# Inputs
# --------------------------------------------------------------------------------------------

def list_videos(folder: str | Path) -> dict[str, Path]:
    """``{video_id: path}`` of every video file under ``folder`` (recursive, sorted).

    The id is the path relative to ``folder`` without its suffix (``videos/clip_0001``), as
    MSR-VTT and friends name videos; where two files differ only by suffix both keep it.
    """
    root = Path(folder)
    if not root.is_dir():
        raise FileNotFoundError(f"video folder not found: {root}")
    paths = sorted(p for p in root.rglob("*") if p.suffix.lower() in VIDEO_SUFFIXES and p.is_file())
    stems = [p.relative_to(root).with_suffix("").as_posix() for p in paths]
    clashes = {s for s in stems if stems.count(s) > 1}
    return {(p.relative_to(root).as_posix() if s in clashes else s): p for s, p in zip(stems, paths)}


def decode_size(width: int, height: int, image_size: int, resize_mode: str = "shortest") -> tuple[int, int]:
    """(height, width) to decode a ``width x height`` video at, so that the model's resize step
    (:func:`~workbench.data.video.preprocess_frames`, open_clip's rule) has nothing left to do."""
    if resize_mode == "squash":
        return image_size, image_size
    if resize_mode == "shortest":
        short, long = min(height, width), max(height, width)
        scaled = (image_size, int(image_size * long / short))
        return scaled if height <= width else scaled[::-1]
    ratio = max(height, width) / image_size  # "longest"
    return round(height / ratio), round(width / ratio)


class _ModelSizeDataset(VideoDataset):
    """A :class:`VideoDataset` that decodes each video at its own :func:`decode_size`."""

    def __init__(self, paths: Sequence[Path], backbone, cfg: ExtractConfig):
        transform = functools.partial(preprocess_frames, image_size=backbone.image_size,
                                      mean=backbone.mean, std=backbone.std,
                                      resize_mode=backbone.resize_mode)
        super().__init__(paths, cfg.num_frames, cfg.sampling, transform=transform, on_error="skip")
        self.image_size, self.resize_mode = backbone.image_size, backbone.resize_mode

    def __getitem__(self, index: int) -> dict:
        try:
            self.size = decode_size(*_probe(self.paths[index]), self.image_size, self.resize_mode)
        except VideoError:
            self.size = None  # read_video raises the same error again; the base class reports it
        return super().__getitem__(index)


# --------------------------------------------------------------------------------------------
# The manifest
# --------------------------------------------------------------------------------------------

def _config(backbone, cfg: ExtractConfig) -> dict:
    sampling = f"{cfg.sampling}-{cfg.num_frames}f-{backbone.image_size}px"
    fingerprint = model_fingerprint(backbone)
    return {"model": backbone.name, "pretrained": backbone.pretrained, "fingerprint": fingerprint,
            "embed_dim": backbone.embed_dim, "num_frames": cfg.num_frames, "sampling": cfg.sampling,
            "image_size": backbone.image_size, "features_dir": f"{fingerprint}/{sampling}"}


def _read_manifest(out: Path) -> dict | None:
    path = out / MANIFEST
    if not path.exists():
        return None
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise ValueError(f"{path}: not a readable manifest ({error}); delete it to start over") from None


def _check_claim(out: Path, previous: dict | None, config: dict) -> None:
    if previous is not None and previous.get("config") != config:
        raise ValueError(f"{out} holds features of {previous.get('config')}, not {config}; "
                         "choose another --out folder")


def _write_json(path: Path, data) -> None:
    atomic_write(path, lambda p: Path(p).write_text(json.dumps(data, indent=1)))


def _stat(path: Path) -> tuple[int, int]:
    info = path.stat()
    return info.st_size, info.st_mtime_ns


def _keys(videos: dict[str, Path], known: dict) -> dict[str, dict]:
    """Content hash (and size, mtime) per id; unchanged files keep the hash the manifest has."""
    entries = {}
    for video_id, path in videos.items():
        size, mtime = _stat(path)
        old = known.get(video_id, {})
        same = old.get("bytes") == size and old.get("mtime_ns") == mtime and old.get("key")
        entries[video_id] = {"file": str(path), "key": old["key"] if same else content_hash(path),
                             "bytes": size, "mtime_ns": mtime}
    return entries


# --------------------------------------------------------------------------------------------
# Extraction
# --------------------------------------------------------------------------------------------

def extract_features(videos: str | Path | dict[str, Path], backbone, out: str | Path,
                     cfg: ExtractConfig | None = None, accelerator=None) -> ExtractResult:
    """Encode every video under ``videos`` (a folder, or ``{id: path}``) into ``out``.

    Runs on however many processes ``accelerator`` (Hugging Face ``accelerate``) spans; one is
    created when None. Every process returns the same ``total``/``skipped``/``failed``;
    ``encoded`` lists the ids this process encoded. The main process writes the manifest.
    """
    from accelerate import Accelerator
    from accelerate.utils import gather_object

    started = time.perf_counter()
    cfg = cfg or ExtractConfig()
    accelerator = accelerator or Accelerator(cpu=not torch.cuda.is_available())
    out = Path(out)
    listing = videos if isinstance(videos, dict) else list_videos(videos)
    config = _config(backbone, cfg)
    previous = _read_manifest(out)
    _check_claim(out, previous, config)
    accelerator.wait_for_everyone()  # nobody writes before every process has checked the claim
    cache = FeatureCache.at(out / config["features_dir"], backbone)

    # Each process takes every W-th video of the sorted list: disjoint shares, nothing twice.
    rank, world = accelerator.process_index, accelerator.num_processes
    mine = dict(list(listing.items())[rank::world])
    entries = _keys(mine, (previous or {}).get("videos", {}))
    todo = [video_id for video_id, e in entries.items() if e["key"] not in cache]
    encoded, failed = _encode_all(todo, entries, cache, backbone.to(accelerator.device), cfg,
                                  show=cfg.progress and accelerator.is_main_process)

    # Every process learns the whole outcome (gather_object returns its input on one process).
    merged = {k: v for part in gather_object([entries]) for k, v in part.items()}
    all_failed = gather_object(failed)
    num_encoded = len(gather_object(encoded))
    if accelerator.is_main_process:
        bad = {path for path, _ in all_failed}
        stored = {k: {**e, "file": _relative(e["file"], videos)} for k, e in sorted(merged.items())
                  if e["file"] not in bad}
        _write_json(out / FAILURES, [{"path": p, "reason": r} for p, r in all_failed])
        _write_json(out / MANIFEST, {"format": FORMAT, "config": config,
                                     "videos_root": _root(videos), "videos": stored,
                                     "failed": {p: r for p, r in all_failed}})
    accelerator.wait_for_everyone()
    return ExtractResult(out, len(listing), encoded, num_encoded, len(listing) - num_encoded - len(all_failed),
                         list(all_failed), time.perf_counter() - started)


def _root(videos) -> str | None:
    return None if isinstance(videos, dict) else str(Path(videos).resolve())


def _relative(file: str, videos) -> str:
    """Video paths are stored relative to the input folder, so the pair can move together."""
    if isinstance(videos, dict):
        return str(Path(file).resolve())
    return Path(file).resolve().relative_to(Path(videos).resolve()).as_posix()


@torch.inference_mode()
def _encode_all(todo: list[str], entries: dict[str, dict], cache: FeatureCache, backbone,
                cfg: ExtractConfig, show: bool) -> tuple[list[str], list[tuple[str, str]]]:
    """Decode (workers) and encode (here) the ``todo`` ids; returns (encoded ids, failures)."""
    id_of = {entries[v]["file"]: v for v in todo}
    dataset = _ModelSizeDataset([entries[v]["file"] for v in todo], backbone, cfg)
    batch_size = cfg.batch_size or (32 if backbone.device.type == "cuda" else 4)
    loader = torch.utils.data.DataLoader(dataset, batch_size=batch_size, collate_fn=collate_videos,
                                         num_workers=cfg.num_workers if len(todo) > 1 else 0,
                                         pin_memory=backbone.device.type == "cuda")
    encoded, failed = [], []
    with tqdm(total=len(todo), desc="extract", unit="video", disable=not show) as bar:
        for batch in loader:
            failed += batch["errors"]
            if batch["frames"] is not None:
                pixels = batch["frames"].to(backbone.device, backbone.dtype, non_blocking=True)
                features = backbone.encode_frames(pixels).float().cpu()  # [B,T,3,S,S] -> [B,T,D]
                for path, feats in zip(batch["path"], features):
                    video_id = id_of[path]
                    cache.store(entries[video_id]["key"], feats, {"video": video_id})
                    encoded.append(video_id)
            bar.update(len(batch["path"]) + len(batch["errors"]))
            bar.set_postfix(failed=len(failed))
    return encoded, failed


# --------------------------------------------------------------------------------------------
# Reading back
# --------------------------------------------------------------------------------------------

class ExtractedFeatures:
    """A ``workbench extract`` folder: per-video features, read one file per video on demand.

    ``ids`` (manifest order), ``len()``, ``id in features``, ``features[id]`` -> ``[T,D]``,
    :meth:`stack` -> ``[N,T,D]``, :meth:`video_embeddings` -> normalised ``[N,D]``,
    :meth:`video_path`, and ``config`` / ``failed`` from the manifest.
    """

    def __init__(self, folder: str | Path):
        self.folder = Path(folder)
        manifest = _read_manifest(self.folder)
        if manifest is None or manifest.get("format") != FORMAT:
            raise FileNotFoundError(f"{self.folder} is not a features folder (no {MANIFEST} written by "
                                    "`workbench extract`)")
        self.config: dict = manifest["config"]
        self.failed: dict[str, str] = manifest.get("failed", {})
        self._videos: dict[str, dict] = manifest["videos"]
        self._root = manifest.get("videos_root")
        self.ids: list[str] = list(self._videos)
        self.cache = FeatureCache.at(self.folder / self.config["features_dir"])

    def __len__(self) -> int:
        return len(self.ids)

    def __contains__(self, video_id: str) -> bool:
        return video_id in self._videos

    def __getitem__(self, video_id: str) -> torch.Tensor:
        if video_id not in self._videos:
            raise KeyError(f"no features for video {video_id!r} in {self.folder}")
        features = self.cache.load(self._videos[video_id]["key"])
        if features is None:
            raise FileNotFoundError(f"{self.folder}: the features file of {video_id!r} "
                                    f"({self.cache.path(self._videos[video_id]['key'])}) is missing")
        return features  # [T,D]

    def video_path(self, video_id: str) -> Path:
        file = Path(self._videos[video_id]["file"])
        return file if file.is_absolute() or self._root is None else Path(self._root) / file

    def stack(self, ids: Iterable[str] | None = None) -> torch.Tensor:
        """Features of ``ids`` (default: all) as ``[N,T,D]``."""
        return torch.stack([self[v] for v in (self.ids if ids is None else ids)])

    def video_embeddings(self, ids: Iterable[str] | None = None,
                         pool: Callable[[torch.Tensor], torch.Tensor] | None = None,
                         batch_size: int = 1024) -> torch.Tensor:
        """One normalised embedding per video ``[N,D]``: ``pool`` (e.g. a trained feature-level
        strategy's ``model.pool``) over ``[B,T,D]`` batches; default: the mean over frames, as
        the zero-shot ``mean-pool`` strategy (CLIP4Clip meanP)."""
        ids = self.ids if ids is None else list(ids)
        pool = pool or mean_pool
        parts = [pool(self.stack(ids[i:i + batch_size])) for i in range(0, len(ids), batch_size)]
        return torch.cat(parts) if parts else torch.empty(0, self.config["embed_dim"])


def mean_pool(features: torch.Tensor) -> torch.Tensor:
    """[B,T,D] -> [B,D] unit vectors: the mean frame feature (CLIP4Clip meanP, zero-shot)."""
    with torch.no_grad():
        return F.normalize(features.float().mean(dim=1), dim=-1)
