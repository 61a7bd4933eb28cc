"""The task interface and registry: every task (DESIGN §5) runs with any strategy, zero-shot and trained.

A *task* turns a :class:`~workbench.strategies.base.VideoTextModel` (any registered strategy)
into predictions for one kind of question asked of videos, and scores them with
:mod:`workbench.metrics` only. Tasks register by name, as strategies do::

    @register_task("recognition")
    class Recognition(Task): ...

    list_tasks()            -> ["retrieval", "recognition", "temporal-grounding", ...]
    get_task("recognition") -> a Recognition instance

Interface (what each task implements; :class:`Task` documents each call)
-----------------------------------------------------------------------
``shapes_data(profile, backbone, seed=0) -> TaskData``
    ShapesWorld, generated in memory (``workbench.data.shapes``): ``data.train`` and
    ``data.eval`` are :class:`Split`\\ s, each a :class:`VideoSet` (uint8 frames at the model's
    input size) plus the task's items (labels, questions, windows...).
``load(path, backbone, profile, format=None, video_dir=None) -> TaskData``
    A real dataset's files, unchanged, read through :mod:`workbench.data.formats`. ``path`` is
    the dataset folder (train and eval annotation files found by their usual names, see
    :attr:`Task.files`) or one annotation file (eval only). Videos are decoded with
    :func:`workbench.data.video.read_video`; a video that fails is skipped and reported in
    ``VideoSet.skipped``, never fatal.
``zero_shot(model, split) -> predictions``
    No training at all: the ILFM's image-text space (through the strategy) answers.
``train(model, data, cfg, run_dir=None, progress=False) -> dict``
    Trains the strategy on the task's texts with the one contrastive loop
    (:func:`workbench.train.train_retrieval`) and then the task head on the strategy's frozen
    video embeddings (:func:`fit_head`). Returns a log dict whose ``"head"`` entry is the trained
    head (``None`` when the task has none); the strategy ``model`` is trained in place.
``make_head(model, data) -> nn.Module | None``
    A fresh head (what ``train`` fits), so a saved head's state dict can be loaded back.
``predict(model, split, head) -> predictions``
    Predictions of a trained model + head (``zero_shot`` is ``predict`` without a head).
``evaluate(split, predictions) -> dict``
    Metrics from :mod:`workbench.metrics` only; flat ``{name: number}`` plus nested per-type
    dicts where a task has them. :attr:`Task.metric` names the headline number.
``write_predictions(split, predictions, out_dir) -> Path``
    The dataset's own prediction format (NExT-QA ``{video_qid: {prediction, answer}}``, the
    QVHighlights ``pred_relevant_windows`` JSON lines, coco-caption ``[{image_id, caption}]``...).

``predictions`` are whatever the task's ``evaluate`` and ``write_predictions`` read (usually a
dict holding score arrays and decoded answers); they stay in memory, plain Python / numpy.

Shared helpers here: :func:`with_features` (cache frozen frame features, so feature-level
strategies never re-encode), :func:`video_embeddings`, :func:`decode_records` (records ->
VideoSet with skip-and-report), :func:`find_file` (annotation files by usual names),
:func:`fit_head` (a small full-batch loop for task heads on cached embeddings),
:func:`train_strategy` (the contrastive stage on ``(video, text)`` pairs), and
:func:`train_or_load` with :func:`run_folder` (a trained strategy and head cached on disk and
reloaded instead of retrained, as the notebooks use them).
"""
from __future__ import annotations

import difflib
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, ClassVar

import numpy as np
import torch
from torch import nn

TASKS: dict[str, type["Task"]] = {}


def register_task(name: str):
    """Class decorator: ``@register_task("qa")`` makes a task available by name."""

    def wrap(cls: type[Task]) -> type[Task]:
        if name in TASKS and TASKS[name] is not cls:
            raise ValueError(f"task {name!r} registered twice ({TASKS[name]} and {cls})")
        cls.name = name
        TASKS[name] = cls
        return cls

    return wrap


# The order tasks are listed in: fine to coarse, as DESIGN §5 (unknown names go last).
TASK_ORDER = ("retrieval", "recognition", "temporal-grounding", "st-grounding", "qa", "captioning")
_MODULES = ("retrieval", "recognition", "temporal_grounding", "st_grounding", "qa", "captioning")


def _import_all() -> None:
    """Import every task module present, so their ``@register_task`` decorators run."""
    import importlib

    for module in _MODULES:
        try:
            importlib.import_module(f"{__package__}.{module}")
        except ModuleNotFoundError as error:     # a task module not written yet: skip it
            if error.name != f"{__package__}.{module}":
                raise


def list_tasks() -> list[str]:
    """Registered task names, fine to coarse."""
    _import_all()
    rank = {n: i for i, n in enumerate(TASK_ORDER)}
    return sorted(TASKS, key=lambda n: (rank.get(n, len(rank)), n))


def get_task(name: str) -> "Task":
    """A fresh instance of task ``name``."""
    _import_all()
    if name not in TASKS:
        close = difflib.get_close_matches(name, TASKS, n=3)
        hint = f" Did you mean {', '.join(close)}?" if close else ""
        raise KeyError(f"unknown task {name!r}.{hint} Known: {', '.join(list_tasks())}")
    return TASKS[name]()


# --------------------------------------------------------------------------------------------
# Data containers
# --------------------------------------------------------------------------------------------

@dataclass
class VideoSet:
    """Decoded videos, one row each; duck-compatible with :class:`workbench.train.RetrievalData`
    for :func:`workbench.tasks.retrieval.embed_videos` (``frames``, ``features``, ``len``)."""

    ids: list[str]                             # video id of row i
    frames: torch.Tensor                       # uint8 [N,T,3,H,W] at the backbone's input size
    times: list[list[float]] | None = None     # seconds of each sampled frame (grounding), if known
    durations: list[float] | None = None       # seconds per video, if known
    features: torch.Tensor | None = None       # frozen per-frame features [N,T,D] (with_features)
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (path, reason) not decoded

    def __len__(self) -> int:
        return len(self.ids)

    def index(self) -> dict[str, int]:
        """Video id -> row."""
        return {v: i for i, v in enumerate(self.ids)}


@dataclass
class Split:
    """One part of a task's data: the videos and the task's items about them.

    ``items`` are task-specific (a dataclass per task); each names its video by row in
    ``videos`` (``item.video``)."""

    videos: VideoSet
    items: list[Any]
    name: str = "eval"                        # "train", "eval", or the dataset's split name
    twin: list[int | None] | None = None      # item index of item i's time-reversed twin, if any
    meta: dict = field(default_factory=dict)  # the TaskData's meta (shared: class names, pools)


@dataclass
class TaskData:
    """What a task trains on (``train``, may be None for eval-only data) and is scored on."""

    train: Split | None
    eval: Split
    source: str                               # "shapesworld" or "<format>:<annotation file>"
    meta: dict = field(default_factory=dict)  # task-wide facts: class names, caption pool, ...

    def __post_init__(self) -> None:
        for split in (self.train, self.eval):
            if split is not None:
                split.meta = self.meta


# --------------------------------------------------------------------------------------------
# The interface
# --------------------------------------------------------------------------------------------

class Task:
    """Base class: one task, any strategy. Subclasses fill the class attributes and methods."""

    name: ClassVar[str] = "?"
    metric: ClassVar[str] = "?"               # headline metric key of evaluate(), for tables
    formats: ClassVar[tuple[str, ...]] = ()   # formats.py layouts this task reads
    # Annotation files by their usual names, per format: {"train": patterns, "eval": patterns};
    # glob patterns, searched in the folder, then one level down (e.g. <root>/kinetics/).
    files: ClassVar[dict[str, dict[str, tuple[str, ...]]]] = {}

    # -- data ----------------------------------------------------------------------------
    def shapes_data(self, profile, backbone, seed: int = 0) -> TaskData:
        raise NotImplementedError

    def load(self, path: str | Path, backbone, profile, format: str | None = None,
             video_dir: str | Path | None = None) -> TaskData:
        raise NotImplementedError

    # -- models --------------------------------------------------------------------------
    def zero_shot(self, model, split: Split):
        return self.predict(model, split, None)

    def predict(self, model, split: Split, head=None):
        raise NotImplementedError

    def train(self, model, data: TaskData, cfg, run_dir: Path | None = None, progress: bool = False) -> dict:
        raise NotImplementedError

    def make_head(self, model, data: TaskData) -> nn.Module | None:
        """A fresh (untrained) head of this task for ``model``, or None: ``train`` fits one, and
        a saved head's state dict is loaded into one (see ``workbench.bench.run_task``)."""
        return None

    # -- scores and files ----------------------------------------------------------------
    def evaluate(self, split: Split, predictions) -> dict:
        raise NotImplementedError

    def write_predictions(self, split: Split, predictions, out_dir: str | Path) -> Path:
        raise NotImplementedError

    # -- shared: pick the format and its files -------------------------------------------
    def resolve(self, path: str | Path, format: str | None) -> tuple[str, Path | None, Path, Path]:
        """``(format, train_file or None, eval_file, video_dir guess)`` for ``path`` (folder or file)."""
        path = Path(path)
        fmt = format or (self.formats[0] if self.formats else None)
        if fmt not in self.formats:
            raise ValueError(f"task {self.name!r} reads {list(self.formats)}, not format {fmt!r}")
        if path.is_file():
            return fmt, None, path, _video_dir_near(path.parent)
        if not path.is_dir():
            raise FileNotFoundError(f"{path}: no such dataset folder or annotation file")
        patterns = self.files.get(fmt, {})
        train = find_file(path, patterns.get("train", ()), required=False)
        evaluation = find_file(path, patterns.get("eval", ()), required=True, what=f"{fmt} eval annotations")
        return fmt, train, evaluation, _video_dir_near(path)


def find_file(folder: Path, patterns: tuple[str, ...], required: bool = True, what: str = "file") -> Path | None:
    """The first file matching one of ``patterns`` in ``folder`` or one level below it."""
    for pattern in patterns:
        for where in (folder, *sorted(p for p in folder.iterdir() if p.is_dir())):
            found = sorted(where.glob(pattern))
            if found:
                return found[0]
    if required:
        raise FileNotFoundError(f"{folder}: no {what} found (looked for {list(patterns)})")
    return None


def _video_dir_near(folder: Path) -> Path:
    """``<folder>/videos`` (ShapesWorld's export), else ``<folder>/../videos``, else the folder."""
    for candidate in (folder / "videos", folder.parent / "videos"):
        if candidate.is_dir():
            return candidate
    return folder


# --------------------------------------------------------------------------------------------
# Shared helpers
# --------------------------------------------------------------------------------------------

def render_clips(videos, size: int, num_frames: int) -> VideoSet:
    """ShapesWorld clips / long videos -> VideoSet with ``num_frames`` uniformly sampled frames."""
    from ..data.video import sample_indices

    frames, times, durations = [], [], []
    for video in videos:
        pixels = video.frames(size)                                   # [T,H,W,3]
        picked = sample_indices(len(pixels), num_frames, "uniform")
        frames.append(torch.from_numpy(pixels[picked]).permute(0, 3, 1, 2))
        times.append([i / video.fps for i in picked])
        durations.append(video.duration)
    ids = [getattr(v, "clip_id", None) or v.video_id for v in videos]
    return VideoSet(ids, torch.stack(frames).contiguous(), times, durations)


def decode_records(records, num_frames: int, size: int, progress: bool = False) -> tuple[VideoSet, dict[str, int]]:
    """Decode each distinct video of ``records`` once; returns the VideoSet and path -> row.

    Videos that fail (:class:`~workbench.data.video.VideoError`, missing files) are skipped and
    listed in ``VideoSet.skipped`` with the reason; items about them should be dropped.
    """
    from tqdm.auto import tqdm

    from ..data.video import VideoError, read_video, sample_indices, video_info

    paths = list(dict.fromkeys(str(r.path) for r in records))
    ids = {str(r.path): r.video_id for r in records}
    frames, kept, times, durations, skipped = [], [], [], [], []
    for path in tqdm(paths, desc="decode", disable=not progress):
        if not Path(path).is_file():
            skipped.append((path, "file not found"))
            continue
        try:
            clip = read_video(path, num_frames, "uniform", size)
            info = video_info(path)
        except VideoError as error:
            skipped.append((path, str(error)))
            continue
        picked = sample_indices(info["num_frames"], num_frames, "uniform")
        frames.append(clip)
        kept.append(path)
        times.append([i / info["fps"] for i in picked])
        durations.append(info["duration"])
    if not frames:
        reasons = "; ".join(f"{p}: {r}" for p, r in skipped[:3])
        raise ValueError(f"no video could be decoded ({len(skipped)} failed; first: {reasons})")
    videos = VideoSet([ids[p] for p in kept], torch.stack(frames), times, durations, skipped=skipped)
    return videos, {p: i for i, p in enumerate(kept)}


def with_features(videos: VideoSet, backbone, num_frames: int, cache_root: Path | None = None) -> VideoSet:
    """Fill ``videos.features`` from the on-disk frozen-feature cache (computing what is missing)."""
    from ..config import CACHE_DIR
    from ..data.features import FeatureCache

    cache = FeatureCache(cache_root or CACHE_DIR / "features", backbone, f"shapes-{num_frames}f")
    videos.features = cache.encode(videos.frames)
    return videos


@torch.no_grad()
def video_embeddings(model, videos: VideoSet) -> torch.Tensor:
    """Normalised video embeddings [N,D] of a strategy (features where it reads features)."""
    from .retrieval import embed_videos

    return embed_videos(model, videos)


@torch.no_grad()
def text_embeddings(model, texts: list[str], batch_size: int = 256) -> torch.Tensor:
    """Normalised text embeddings [N,D] through the strategy's text side."""
    model.eval()
    out = [model.encode_text(texts[i:i + batch_size]).float().cpu() for i in range(0, len(texts), batch_size)]
    return torch.cat(out) if out else torch.zeros(0, model.backbone.embed_dim)


def train_strategy(model, videos: VideoSet, rows: list[int], texts: list[str],
                   negatives: list[list[str]], cfg, run_dir: Path | None = None,
                   progress: bool = False, twin: list[int | None] | None = None) -> dict:
    """Contrastive stage: train ``model`` on pairs (video ``rows[k]``, ``texts[k]``) with the
    one loop (:func:`workbench.train.train_retrieval`); ``negatives[k]`` are extra hard-negative
    texts for pair k (wrong answers, twin captions), ``twin[k]`` a pair index to batch it with.
    Strategies without trainable parameters return at once."""
    from ..train import RetrievalData, train_retrieval

    if not model.trainable_parameters():
        return {"steps": 0, "wall_s": 0.0, "losses": []}
    if model.input_level == "features" and videos.features is None:
        with_features(videos, model.backbone, videos.frames.shape[1])
    data = RetrievalData(videos.frames[rows], list(texts), list(twin or [None] * len(rows)),
                         [list(n) for n in negatives],
                         None if videos.features is None else videos.features[rows])
    return train_retrieval(model, data, cfg, run_dir=run_dir, progress=progress)


def run_folder(strategy: str, task: str, profile, backbone, seed: int = 0, root: Path | None = None) -> Path:
    """Where a trained strategy (and its task head) is cached: one folder per backbone weights,
    strategy, task, profile and seed, under ``CACHE_DIR/runs`` (or ``root``). A profile with
    fields changed from its name's (:attr:`workbench.config.Profile.run_key`) gets its own folder."""
    from ..config import CACHE_DIR
    from ..data.features import model_fingerprint

    name = getattr(profile, "run_key", profile)
    return Path(root or CACHE_DIR / "runs") / model_fingerprint(backbone) / f"{strategy}-{task}-{name}-seed{seed}"


TRAIN_LOG = "train.json"   # written last: its presence marks a finished train_or_load run


def run_cached(strategy: str, task: str, profile, backbone, seed: int = 0) -> bool:
    """True when :func:`train_or_load` finished this run before (it would load, not train)."""
    return (run_folder(strategy, task, profile, backbone, seed) / TRAIN_LOG).exists()


def train_or_load(task: "Task", strategy: str, backbone, data: TaskData, profile, seed: int = 0,
                  run_dir: Path | None = None, progress: bool = False) -> dict:
    """Strategy ``strategy`` trained on ``task`` with its head — or loaded from a finished run.

    Returns ``{"model", "head" (nn.Module or None), "log" (what ``task.train`` returned, without
    the head), "loaded" (True: read from disk, nothing trained now), "run_dir"}``. The budget is
    :func:`workbench.bench.train_config`'s for ``profile``; ``run_dir`` defaults to
    :func:`run_folder`. Layout: ``checkpoint/`` (the strategy's trainable parameters, as
    :func:`workbench.train.train_retrieval` writes them: a killed run resumes),
    ``head.safetensors`` and ``train.json`` (written last: marks the run finished). A cached run
    that no longer fits (the strategy or head changed shape) is deleted and trained again, with a
    warning.
    """
    import shutil
    import warnings

    from safetensors.torch import load_file, save_file

    from ..bench import train_config
    from ..config import seed_everything
    from ..io import atomic_write
    from ..strategies import create_strategy
    from ..train import load_trainable

    run_dir = Path(run_dir or run_folder(strategy, task.name, profile, backbone, seed))
    seed_everything(seed)
    model = create_strategy(strategy, backbone)
    if (run_dir / TRAIN_LOG).exists():
        try:
            if model.trainable_parameters():
                checkpoint = run_dir / "checkpoint" / "trainable.safetensors"
                if not checkpoint.exists():
                    raise FileNotFoundError(f"no {checkpoint}")
                load_trainable(model, checkpoint)
            head = task.make_head(model, data)
            if head is not None:
                head.load_state_dict(load_file(str(run_dir / "head.safetensors")))
                head.eval()
            return {"model": model, "head": head, "log": json.loads((run_dir / TRAIN_LOG).read_text()),
                    "loaded": True, "run_dir": run_dir}
        except (ValueError, RuntimeError, KeyError, FileNotFoundError) as error:
            warnings.warn(f"{run_dir}: cached run does not fit {strategy} ({error}); training again")
            shutil.rmtree(run_dir)
            seed_everything(seed)
            model = create_strategy(strategy, backbone)
    log = task.train(model, data, train_config(profile, model, True, seed), run_dir=run_dir / "checkpoint",
                     progress=progress)
    head = log.pop("head")
    if head is not None:
        state = {k: v.detach().contiguous() for k, v in head.state_dict().items()}
        atomic_write(run_dir / "head.safetensors", lambda p: save_file(state, p))
    save_json(run_dir / TRAIN_LOG, log)
    return {"model": model, "head": head, "log": log, "loaded": False, "run_dir": run_dir}


@dataclass
class HeadConfig:
    """A task head trained on cached (frozen) embeddings."""

    steps: int = 300            # full-batch optimiser steps
    lr: float = 1e-2            # AdamW learning rate
    weight_decay: float = 1e-4  # AdamW weight decay
    l2: float = 0.0             # penalty on the squared weights (pulls a residual head toward zero-shot)
    seed: int = 0               # initialisation


def fit_head(head: nn.Module, loss_fn: Callable[[nn.Module], torch.Tensor], cfg: HeadConfig) -> dict:
    """Train ``head`` by minimising ``loss_fn(head)`` (full batch, AdamW, cosine decay).

    Task heads are small and read cached embeddings, so one full batch per step is the whole
    training set; this is the linear-probe protocol of CLIP (Radford et al., 2021), with AdamW.
    """
    torch.manual_seed(cfg.seed)
    params = [p for p in head.parameters() if p.requires_grad]
    if not params:
        return {"steps": 0, "losses": [], "wall_s": 0.0}
    optimizer = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, max(1, cfg.steps))
    started, losses = time.perf_counter(), []
    head.train()
    for _ in range(cfg.steps):
        loss = loss_fn(head)
        if cfg.l2:
            loss = loss + cfg.l2 * sum((p ** 2).sum() for p in params if p.dim() > 1)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        schedule.step()
        losses.append(round(loss.item(), 5))
    head.eval()
    return {"steps": cfg.steps, "losses": losses, "wall_s": time.perf_counter() - started}


class PairHead(nn.Module):
    """Scores (video, text) pairs: ``scale * <norm(v + V v), norm(t + W t)>``.

    ``V`` and ``W`` are zero-initialised linear maps, so an untrained head scores exactly as the
    strategy does zero-shot (cosine similarity); training moves each side a little. The text
    map matters most with a frozen text tower, whose embeddings of near-identical sentences
    ("moves to the left" / "to the right") it can pull apart. ``scale`` starts at the ILFM's
    temperature and is learned.
    """

    def __init__(self, dim: int, scale: float):
        super().__init__()
        self.video = nn.Linear(dim, dim)
        self.text = nn.Linear(dim, dim)
        for layer in (self.video, self.text):
            nn.init.zeros_(layer.weight)
            nn.init.zeros_(layer.bias)
        self.log_scale = nn.Parameter(torch.tensor(float(np.log(scale))))

    def embed_video(self, v: torch.Tensor) -> torch.Tensor:
        return nn.functional.normalize(v + self.video(v), dim=-1)

    def embed_text(self, t: torch.Tensor) -> torch.Tensor:
        return nn.functional.normalize(t + self.text(t), dim=-1)

    def forward(self, v: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """[N,D] x [M,D] -> [N,M] logits."""
        return self.log_scale.exp() * self.embed_video(v) @ self.embed_text(t).t()


def save_json(path: Path, payload) -> Path:
    """Write JSON atomically (temp file + rename)."""
    from ..io import atomic_write

    path = Path(path)
    atomic_write(path, lambda p: Path(p).write_text(json.dumps(payload, indent=1, default=_plain)))
    return path


def _plain(value):
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (np.floating,)):
        return float(value)
    if isinstance(value, (np.ndarray, torch.Tensor)):
        return value.tolist()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")
