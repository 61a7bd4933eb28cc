"""The app's video collection: a folder of videos, their frozen frame features, thumbnails and
whatever annotations the folder carries, indexed once and cached.

``index_folder(root, backbone)`` runs :func:`workbench.extract.extract_features` over the folder
(any depth; per-frame features of the frozen backbone keyed by file content, so a restart
encodes only new or changed files), then writes one thumbnail strip per file content (sampled
frames, time left to right) and remembers durations. A file that cannot be read is skipped and
reported (``Collection.skipped``), never fatal.

Annotations in the layouts :mod:`workbench.data.formats` reads (MSR-VTT captions, Charades-STA
windows, NExT-QA questions, HC-STVG tubes), found by their usual names under the folder, give
the app ground truth to show beside predictions: ShapesWorld's export (``prepare_demo``) writes
all of them.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from ..config import CACHE_DIR, Profile, get_profile
from ..data.features import content_hash, model_fingerprint
from ..data.formats import VideoRecord, read_dataset
from ..data.video import VideoError, read_video, video_info
from ..io import atomic_write

THUMB_FRAMES = 4      # frames in a thumbnail strip
MIN_DECODE_SIDE = 96  # decode at least this many pixels a side (thumbnails stay legible)
# The demo collection: ShapesWorld's smoke-sized world (96 clips with their twins, 8 long
# videos) at 8 frames per clip and 128 px, written once under the cache.
DEMO_PROFILE = get_profile("smoke", num_frames=8, frame_size=128, long_videos=8)
# Annotation files a ShapesWorld export (or a real dataset folder) carries, by usual name.
ANNOTATIONS = {
    "msrvtt": ("msrvtt/MSRVTT_data.json",),
    "charades_sta": ("charades_sta/charades_sta_train.txt", "charades_sta/charades_sta_test.txt"),
    "nextqa": ("nextqa/train.csv", "nextqa/val.csv"),
    "hcstvg": ("hcstvg/train.json", "hcstvg/test.json"),
}


@dataclass
class CollectionVideo:
    """One indexed video file."""

    video_id: str            # path under the root without suffix ("videos/eval_grow_0001")
    path: Path               # absolute path of the file
    key: str                 # content hash (feature cache key)
    thumbnail: Path          # PNG strip of THUMB_FRAMES sampled frames
    duration: float          # seconds
    fps: float               # frames per second (decord's average)
    captions: list[str] = field(default_factory=list)  # ground-truth captions, if annotated

    @property
    def name(self) -> str:
        return self.path.stem


@dataclass
class Collection:
    """Indexed videos of one folder and the frozen backbone's frame features of each."""

    root: Path
    videos: list[CollectionVideo]
    features: torch.Tensor                       # frozen frame features [N,T,D]
    num_frames: int                              # T
    backbone: object = field(repr=False)         # the ILFM the features belong to (decode size)
    thumbnail_dir: Path                          # where thumbnails live (served by the app)
    skipped: list[tuple[str, str]] = field(default_factory=list)   # (path, reason) not indexed
    records: dict[str, list[VideoRecord]] = field(default_factory=dict)  # format -> annotations

    def __len__(self) -> int:
        return len(self.videos)

    def find(self, name_or_path: str | Path) -> int:
        """Row of a video by id, file name, stem or absolute path."""
        text = str(name_or_path)
        for i, video in enumerate(self.videos):
            if text in (video.video_id, video.path.name, video.name, str(video.path)):
                return i
        raise KeyError(f"{text!r} is not a video of the collection {self.root}")

    def captions(self) -> list[str]:
        """Each video's main ground-truth caption, distinct (the caption pool for video -> text);
        other wordings of the same caption stay out, so a ranking is not padded with synonyms."""
        return list(dict.fromkeys(v.captions[0] for v in self.videos if v.captions))

    def annotations_of(self, index: int, fmt: str) -> list[VideoRecord]:
        """Annotated items (queries, questions, tubes) about video ``index`` in layout ``fmt``."""
        path = self.videos[index].path
        return [r for r in self.records.get(fmt, []) if Path(r.path).resolve() == path]

    def decode(self, index: int) -> torch.Tensor:
        """The video's sampled frames again, as the features saw them (for pixel-level
        strategies): uint8 [T,3,h,w], ready for ``backbone.preprocess``."""
        return decode_for_model(self.videos[index].path, self.num_frames, self.backbone)


def decode_for_model(path: str | Path, num_frames: int, backbone) -> torch.Tensor:
    """``num_frames`` uniformly sampled frames decoded straight at the size the model's
    preprocessing resizes to (as `workbench extract` decodes): uint8 [T,3,h,w]."""
    from ..extract import decode_size

    info = video_info(path)
    size = decode_size(info["width"], info["height"], backbone.image_size, backbone.resize_mode)
    return read_video(path, num_frames, "uniform", size=size)


def decode_square(path: str | Path, num_frames: int, size: int) -> torch.Tensor:
    """``num_frames`` uniformly sampled frames, short side resized to ``size`` while decoding and
    centre-cropped: uint8 [T,3,size,size]. Raises :class:`VideoError` for unreadable files."""
    info = video_info(path)
    scale = size / min(info["width"], info["height"])
    height = max(size, round(info["height"] * scale))
    width = max(size, round(info["width"] * scale))
    frames = read_video(path, num_frames, "uniform", size=(height, width))   # [T,3,h,w]
    top, left = (height - size) // 2, (width - size) // 2
    return frames[:, :, top:top + size, left:left + size].contiguous()


def write_thumbnail(frames: torch.Tensor, path: Path) -> Path:
    """A PNG strip of ``THUMB_FRAMES`` frames of a clip [T,3,H,W], time running left to right."""
    from PIL import Image

    picks = np.linspace(0, len(frames) - 1, min(THUMB_FRAMES, len(frames))).round().astype(int)
    strip = torch.cat(list(frames[picks]), dim=2).permute(1, 2, 0).numpy()   # [H, k*W, 3]
    return atomic_write(path, lambda p: Image.fromarray(strip).save(p, format="PNG", optimize=True))


def _collection_dir(root: Path, cache_root: Path) -> Path:
    """Per-folder cache: the `workbench extract` features folder and a small info file."""
    digest = content_hash(np.frombuffer(str(root).encode(), np.uint8))[:16]
    return cache_root / "app" / "collections" / f"{root.name}-{digest}"


def index_folder(root: str | Path, backbone, num_frames: int = 8, cache_root: Path | None = None,
                 progress: bool = True) -> Collection:
    """Index every video under ``root``: features, thumbnails and annotations (see module doc).

    Features come from :func:`workbench.extract.extract_features` (content-keyed, resumable,
    bad files skipped and reported); thumbnails and durations are computed once per file content.
    """
    from tqdm.auto import tqdm

    from ..extract import ExtractConfig, ExtractedFeatures, extract_features

    root = Path(root).resolve()
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: no such folder of videos")
    cache_root = Path(cache_root or CACHE_DIR)
    folder = _collection_dir(root, cache_root)
    # One features folder per (model, frame count): switching or retraining the model, or asking
    # for another frame count, indexes beside the old features instead of refusing them.
    features_dir = folder / f"features-{model_fingerprint(backbone)}-{num_frames}f"
    result = extract_features(root, backbone, features_dir,
                              ExtractConfig(num_frames=num_frames, num_workers=0, progress=progress))
    extracted = ExtractedFeatures(features_dir)
    manifest = json.loads((features_dir / "manifest.json").read_text())   # ids -> content keys
    size = max(backbone.image_size, MIN_DECODE_SIDE)
    thumbs = cache_root / "app" / "thumbnails" / f"{size}px-{num_frames}f"
    info_file = folder / "videos.json"
    known = json.loads(info_file.read_text()) if info_file.exists() else {}
    videos, skipped = [], list(result.failed)
    for video_id in tqdm(extracted.ids, desc="thumbnails", unit="video", disable=not progress):
        path = extracted.video_path(video_id).resolve()
        key = manifest["videos"][video_id]["key"]
        thumb = thumbs / key[:2] / f"{key}.png"
        try:
            if key not in known:
                known[key] = {k: video_info(path)[k] for k in ("duration", "fps")}
            if not thumb.exists():
                write_thumbnail(decode_square(path, num_frames, size), thumb)
        except (VideoError, FileNotFoundError) as error:   # changed or removed since extraction
            skipped.append((str(path), getattr(error, "reason", str(error))))
            continue
        videos.append(CollectionVideo(video_id, path, key, thumb, known[key]["duration"], known[key]["fps"]))
    atomic_write(info_file, lambda p: Path(p).write_text(json.dumps(known)))
    if not videos:
        reasons = "; ".join(f"{p}: {r}" for p, r in skipped[:3])
        raise ValueError(f"{root}: no readable video files ({len(skipped)} skipped{': ' + reasons if reasons else ''})")
    features = extracted.stack([v.video_id for v in videos])           # [N,T,D]
    collection = Collection(root, videos, features, num_frames, backbone, thumbs, skipped)
    _attach_annotations(collection)
    return collection


def _attach_annotations(collection: Collection) -> None:
    """Read the annotation files the folder carries; captions go onto the videos."""
    for fmt, names in ANNOTATIONS.items():
        for name in names:
            file = collection.root / name
            if not file.is_file():
                continue
            video_dir = collection.root / "videos" if (collection.root / "videos").is_dir() else collection.root
            collection.records.setdefault(fmt, []).extend(read_dataset(fmt, file, video_dir))
    by_path = {v.path: v for v in collection.videos}
    for record in collection.records.get("msrvtt", []):
        video = by_path.get(Path(record.path).resolve())
        if video is not None:
            video.captions = list(dict.fromkeys(video.captions + record.captions))


def prepare_demo(profile: Profile = DEMO_PROFILE, cache_root: Path | None = None, seed: int = 0,
                 progress: bool = True) -> Path:
    """ShapesWorld written once (videos + annotations) under ``<cache>/demo/``; returns the folder.

    A complete earlier export is reused as is (``write_shapesworld`` skips existing files)."""
    from ..data.shapes.export import write_shapesworld

    out = Path(cache_root or CACHE_DIR) / "demo" / f"shapesworld-{profile.name}-{profile.frame_size}px-seed{seed}"
    manifest = out / "manifest.json"
    if manifest.exists() and json.loads(manifest.read_text()).get("complete"):
        return out
    write_shapesworld(out, profile=profile, seed=seed, progress=progress)
    return out
