"""Temporal grounding: find *when* a sentence happens in a video (moment retrieval + highlights).

Given a video and a query ("the red circle moves to the left"), predict ranked windows
``[start, end, score]`` in seconds and a saliency score per 2-second clip, in the QVHighlights
prediction format (Lei et al., *QVHighlights*, NeurIPS 2021)::

    {"qid": 7, "query": "...", "vid": "long_test_0003",
     "pred_relevant_windows": [[1.25, 2.5, 0.91], ...], "pred_saliency_scores": [0.1, 0.7, ...]}

Two ways to answer, both for any strategy (DESIGN §5):

- **zero-shot** (nothing trained for grounding): the strategy embeds a sliding window of
  ``context`` frames around every frame, which gives the *query similarity curve* over time
  (window = one frame with mean pooling: plain per-frame CLIP similarity). Candidate windows come
  from thresholding the smoothed curve at several levels and from *generic event boundaries* —
  spans where the frame features change (Shou et al., *Generic Event Boundary Detection*, ICCV
  2021) — and each candidate is scored by the strategy's embedding of its own frames against the
  query: the proposal-then-rank recipe of zero-shot moment retrieval with frozen
  vision-language models (Diwan et al., *Zero-shot Video Moment Retrieval With Off-the-Shelf
  Models*, 2022). Temporal non-maximum suppression keeps distinct windows. A strategy that models
  order (trained on the task's clips by :meth:`TemporalGrounding.train`) tells "moves left" from
  "moves right" here; mean pooling cannot.
- **trained head**: a dense, UniVTG-style head (Lin et al., *UniVTG: Towards Unified
  Video-Language Temporal Grounding*, ICCV 2023) on the strategy's cached per-frame features,
  conditioned on the query's text embedding: for every frame a foreground logit ("this frame is
  inside the moment") and the distances to the moment's start and end; each frame proposes one
  window, scored by its foreground probability, then NMS. Foreground probabilities are the
  saliency curve.

Metrics (:mod:`workbench.metrics` only): R1@IoU 0.3/0.5/0.7 and mIoU (Charades-STA convention,
top-1 window against the ground-truth window it overlaps most), and QVHighlights' moment
retrieval mAP and highlight mAP / HIT@1 (Moment-DETR ``standalone_eval``).

Data: ShapesWorld long videos (``workbench.data.shapes.long_videos``), or the real layouts
``charades_sta`` and ``qvhighlights`` through :mod:`workbench.data.formats`. A video is sampled at
a fixed number of frames (``GroundingConfig.frames_per_video``) with each frame's time kept, so
windows are exact in seconds whatever the video's length or frame rate.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .. import metrics
from ..data.video import sample_indices
from .base import (HeadConfig, Split, Task, TaskData, VideoSet, decode_records, fit_head,
                   register_task, render_clips, text_embeddings, train_strategy, with_features)

CLIP_SECONDS = 2.0   # QVHighlights saliency clip length


@dataclass
class GroundingConfig:
    """How a grounding task samples videos and turns scores into windows."""

    frames_per_video: int | None = None  # frames sampled per video; None: 4 x profile.num_frames
    context: int | None = None           # frames the strategy embeds around each frame and per
    #                                      candidate; None: profile.num_frames (the clip length it trains on)
    smooth: int = 3                      # width (frames) of the moving average over the curve
    levels: tuple[float, ...] = (0.5, 0.65, 0.8)  # curve thresholds, as fractions from its min to max
    activity_levels: tuple[float, ...] = (0.1, 0.2, 0.3, 0.5)  # query-activity thresholds, same convention
    similarity_weight: float = 2.0       # zero-shot window score = activity contrast + this x query similarity
    nms_iou: float = 0.5                 # temporal NMS: drop a window overlapping a better one this much
    max_windows: int = 10                # windows listed per query (QVHighlights scores the first 10)
    head_steps: int = 300                # full-batch steps of the dense head
    head_width: int = 64                 # channels of the dense head


@dataclass
class GroundingItem:
    """One query about one video."""

    video: int                                    # row in the split's VideoSet
    qid: int | str                                # the dataset's query id
    query: str
    windows: list[tuple[float, float]]            # ground-truth [start, end] seconds (may be empty: test sets)
    clip_ids: list[int] = field(default_factory=list)       # QVHighlights relevant_clip_ids
    saliency: list[list[int]] = field(default_factory=list)  # their scores, one per annotator
    tube: dict[int, tuple[float, float, float, float]] = field(default_factory=dict)  # sampled frame -> box (px)


# --------------------------------------------------------------------------------------------
# Time <-> frame units
# --------------------------------------------------------------------------------------------

def frame_edges(times: list[float], duration: float) -> np.ndarray:
    """[T+1] boundaries in seconds: sampled frame i stands for [edges[i], edges[i+1]),
    the midpoints between neighbouring frames' times (0 and ``duration`` at the ends)."""
    t = np.asarray(times, dtype=np.float64)
    mids = (t[1:] + t[:-1]) / 2
    return np.concatenate([[0.0], mids, [max(float(duration), float(t[-1]))]])


def to_frame_units(seconds, edges: np.ndarray) -> np.ndarray:
    """Seconds -> continuous frame units (0 .. T) by the piecewise-linear map of ``edges``."""
    return np.interp(seconds, edges, np.arange(len(edges)))


def to_seconds(units, edges: np.ndarray) -> np.ndarray:
    return np.interp(units, np.arange(len(edges)), edges)


# --------------------------------------------------------------------------------------------
# Strategy features: per frame, per sliding window, per candidate span
# --------------------------------------------------------------------------------------------

def _span_indices(start: int, end: int, count: int) -> list[int]:
    """``count`` frame indices spread uniformly over [start, end) (repeats if the span is short)."""
    return [start + i for i in sample_indices(max(1, end - start), count, "uniform")]


@torch.no_grad()
def frame_features(model, videos: VideoSet, batch_size: int = 8) -> torch.Tensor:
    """The strategy's per-frame features ``[N,T,D]`` (frozen cached ones for feature-level strategies)."""
    if model.input_level == "features":
        if videos.features is None:
            raise ValueError(f"{model.name} reads cached frame features: call with_features first")
        return videos.features.float()
    model.eval()
    out = []
    for i in range(0, len(videos), batch_size):
        pixels = model.backbone.preprocess(videos.frames[i:i + batch_size].to(model.backbone.device))
        out.append(model.frame_features(pixels).float().cpu())
    return torch.cat(out)


@torch.no_grad()
def embed_spans(model, videos: VideoSet, row: int, spans: list[tuple[int, int]], context: int,
                features: torch.Tensor | None = None, batch_size: int = 64) -> torch.Tensor:
    """The strategy's normalised embedding ``[P,D]`` of each frame span [s, e) of video ``row``,
    each span resampled to ``context`` frames (the clip length the strategy is used to)."""
    model.eval()
    index = torch.tensor([_span_indices(s, e, context) for s, e in spans])     # [P, context]
    out = []
    for i in range(0, len(spans), batch_size):
        chunk = index[i:i + batch_size]
        if model.input_level == "features":
            source = features if features is not None else videos.features
            out.append(model.pool(source[row][chunk].to(model.backbone.device)).float().cpu())
        else:
            clips = videos.frames[row][chunk].to(model.backbone.device)         # [P,c,3,H,W]
            out.append(model.encode_video(model.backbone.preprocess(clips)).float().cpu())
    return torch.cat(out)


def centred_spans(num_frames: int, context: int) -> list[tuple[int, int]]:
    """The span of ``context`` frames centred on each frame, clipped to the video."""
    half = context // 2
    return [(max(0, t - half), min(num_frames, t - half + context)) for t in range(num_frames)]


@torch.no_grad()
def context_embeddings(model, videos: VideoSet, context: int, features: torch.Tensor | None = None) -> torch.Tensor:
    """``[N,T,D]``: the strategy's embedding of the ``context``-frame window around every frame."""
    num_frames = videos.frames.shape[1]
    spans = centred_spans(num_frames, context)
    return torch.stack([embed_spans(model, videos, row, spans, context, features) for row in range(len(videos))])


# --------------------------------------------------------------------------------------------
# Curves -> windows
# --------------------------------------------------------------------------------------------

def smooth_curve(curve: np.ndarray, width: int) -> np.ndarray:
    """Moving average over ``width`` frames (edges padded with their own value)."""
    if width <= 1:
        return np.asarray(curve, dtype=np.float64)
    padded = np.pad(np.asarray(curve, dtype=np.float64), (width // 2, width - 1 - width // 2), mode="edge")
    return np.convolve(padded, np.ones(width) / width, mode="valid")


def runs_above(curve: np.ndarray, threshold: float) -> list[tuple[int, int]]:
    """Maximal runs [s, e) of frames where ``curve >= threshold``."""
    above = np.concatenate([[False], np.asarray(curve) >= threshold, [False]])
    edges = np.flatnonzero(above[1:] != above[:-1])
    return [(int(s), int(e)) for s, e in zip(edges[::2], edges[1::2])]


def relative_runs(curve: np.ndarray, levels) -> list[tuple[int, int]]:
    """Runs above each level between the curve's min (0) and max (1); a flat curve gives none."""
    lo, hi = float(np.min(curve)), float(np.max(curve))
    if hi - lo < 1e-9:
        return []
    return [run for level in levels for run in runs_above(curve, lo + level * (hi - lo))]


def patch_change(frames: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
    """``[T-1, rows, cols]`` mean absolute pixel change between consecutive uint8 frames
    ``[T,3,H,W]``, per patch of the model's grid (motion energy, no model involved)."""
    pixels = frames.float()
    step = (pixels[1:] - pixels[:-1]).abs().mean(1, keepdim=True)          # [T-1,1,H,W]
    return F.adaptive_avg_pool2d(step, grid)[:, 0]


def query_activity(model, frames: torch.Tensor, queries: list[str]) -> tuple[list[np.ndarray], list[torch.Tensor]]:
    """How much the thing each query talks about changes at each frame, zero-shot.

    The query's gradient relevancy (:func:`workbench.explain.explain`, Chefer et al. 2021) says
    *where* the strategy looks for it in each frame; weighting each patch's pixel change by that
    map gives ``activity [T]`` — high while the named object moves, grows, spins or changes colour,
    low while other objects do. Returns, per query, the activity and the per-frame maps
    ``[T,rows,cols]`` (share of relevancy per patch). ``model`` is a strategy or a Backbone (read
    as mean pooling); untappable models fall back to uniform maps.
    """
    from ..backbones.taps import TapError, vision_tower
    from ..explain import explain_queries

    grid = tuple(vision_tower(getattr(model, "backbone", model)).grid_size)
    try:
        all_maps = [e.maps for e in explain_queries(model, frames, queries)]
    except TapError:
        all_maps = [torch.ones(frames.shape[0], *grid) for _ in queries]
    change = patch_change(frames, grid)                                          # [T-1,rows,cols]
    activities, shares = [], []
    for maps in all_maps:
        maps = maps / maps.sum((1, 2), keepdim=True).clamp(min=1e-12)
        step = (change * (maps[1:] + maps[:-1]) / 2).sum((1, 2)).numpy()          # [T-1]
        padded = np.concatenate([[0.0], step, [0.0]])
        activities.append(np.maximum(padded[:-1], padded[1:]))
        shares.append(maps)
    return activities, shares


def contrast(curve: np.ndarray, start: int, end: int) -> float:
    """Mean of ``curve`` inside [start, end) minus its mean outside (0 outside when nothing is)."""
    outside = np.concatenate([curve[:start], curve[end:]])
    return float(curve[start:end].mean() - (outside.mean() if outside.size else 0.0))


def temporal_nms(windows: np.ndarray, iou: float, keep: int) -> np.ndarray:
    """[P,3] (start, end, score) -> the best-scored windows, none overlapping a kept one by > ``iou``."""
    order = np.argsort(-windows[:, 2], kind="stable")
    kept: list[int] = []
    for i in order:
        if all(metrics.temporal_iou(windows[i, :2], windows[j, :2]) <= iou for j in kept):
            kept.append(int(i))
        if len(kept) == keep:
            break
    return windows[kept]


def clip_saliency(curve: np.ndarray, edges: np.ndarray, duration: float,
                  clip_seconds: float = CLIP_SECONDS) -> list[float]:
    """Per ``clip_seconds`` clip of the video, the mean curve over the frames inside it (the
    nearest frame's value when a clip holds none): QVHighlights ``pred_saliency_scores``."""
    centres = (edges[1:] + edges[:-1]) / 2
    scores = []
    for k in range(max(1, math.ceil(duration / clip_seconds - 1e-9))):
        lo, hi = k * clip_seconds, (k + 1) * clip_seconds
        inside = (centres >= lo) & (centres < hi)
        value = curve[inside].mean() if inside.any() else curve[np.argmin(np.abs(centres - (lo + hi) / 2))]
        scores.append(round(float(value), 4))
    return scores


# --------------------------------------------------------------------------------------------
# The dense head (UniVTG-style)
# --------------------------------------------------------------------------------------------

class DenseGroundingHead(nn.Module):
    """Per frame: a foreground logit and the distances (frames) to the moment's start and end.

    Input per frame: the strategy's frame feature, its context-window embedding, their cosine
    similarities with the query and the query's zero-shot activity (:func:`query_activity`); the
    query's text embedding modulates every channel (FiLM, Perez et al. AAAI 2018). Dilated residual temporal convolutions see the
    neighbourhood, so the head can tell when something changes and in which direction.
    """

    def __init__(self, dim: int, width: int = 128, layers: int = 3, kernel_size: int = 3) -> None:
        super().__init__()
        self.frame_in = nn.Linear(2 * dim, width)
        self.curves_in = nn.Linear(3, width)     # similarity of frame and context with the query, activity
        self.dropout = nn.Dropout(0.5)
        self.query_scale = nn.Linear(dim, width)
        self.query_shift = nn.Linear(dim, width)
        self.blocks = nn.ModuleList(
            nn.Sequential(nn.Conv1d(width, width, kernel_size, padding="same", dilation=2 ** i), nn.GELU())
            for i in range(layers))
        self.norms = nn.ModuleList(nn.LayerNorm(width) for _ in range(layers))
        self.out = nn.Linear(width, 3)

    def forward(self, frames: torch.Tensor, context: torch.Tensor, query: torch.Tensor, activity: torch.Tensor):
        """frames, context [B,T,D]; query [B,D]; activity [B,T] (:func:`query_activity`, max 1)
        -> foreground logits [B,T], offsets [B,T,2] >= 0."""
        frames, context, query = (F.normalize(x.float(), dim=-1) for x in (frames, context, query))
        curves = torch.stack([(frames * query[:, None]).sum(-1), (context * query[:, None]).sum(-1),
                              activity.float()], -1)                                # [B,T,3]
        # dropout on the high-dimensional features: with a few hundred moments the head would
        # otherwise memorise them instead of reading the query curves
        x = self.frame_in(self.dropout(torch.cat([frames, context], -1))) + self.curves_in(curves)   # [B,T,W]
        x = x * (1 + self.query_scale(query)[:, None]) + self.query_shift(query)[:, None]
        for block, norm in zip(self.blocks, self.norms):
            x = x + block(norm(x).transpose(1, 2)).transpose(1, 2)
        out = self.out(x)
        return out[..., 0], F.softplus(out[..., 1:])


def dense_targets(windows_units: list[np.ndarray], num_frames: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Per query: foreground [Q,T] (frame centre inside a GT window) and (left, right) distances
    [Q,T,2] from the frame centre to that window's start and end, in frame units."""
    fg = torch.zeros(len(windows_units), num_frames)
    offsets = torch.zeros(len(windows_units), num_frames, 2)
    centres = np.arange(num_frames) + 0.5
    for q, windows in enumerate(windows_units):
        for s, e in windows:
            inside = (centres >= s) & (centres < e)
            if not inside.any():       # a window shorter than a frame: its nearest frame
                inside = np.abs(centres - (s + e) / 2) == np.abs(centres - (s + e) / 2).min()
            fg[q, inside] = 1
            offsets[q, inside, 0] = torch.tensor(centres[inside] - s, dtype=torch.float32)
            offsets[q, inside, 1] = torch.tensor(e - centres[inside], dtype=torch.float32)
    return fg, offsets


def dense_loss(head: DenseGroundingHead, inputs: tuple, fg: torch.Tensor, offsets: torch.Tensor) -> torch.Tensor:
    """Balanced BCE on foreground + L1 on the (start, end) distances of foreground frames."""
    logits, predicted = head(*inputs)
    positive = fg.sum().clamp(min=1)
    weight = (fg.numel() - fg.sum()) / positive
    bce = F.binary_cross_entropy_with_logits(logits, fg, pos_weight=weight.clamp(max=20))
    l1 = (F.l1_loss(predicted, offsets, reduction="none").sum(-1) * fg).sum() / positive
    return bce + 0.2 * l1


# --------------------------------------------------------------------------------------------
# The task
# --------------------------------------------------------------------------------------------

@register_task("temporal-grounding")
class TemporalGrounding(Task):
    """Moment retrieval and highlight detection; see the module docstring."""

    metric = "R1@0.5"
    formats = ("charades_sta", "qvhighlights")
    files = {"charades_sta": {"train": ("charades_sta_train.txt",), "eval": ("charades_sta_test.txt",)},
             "qvhighlights": {"train": ("highlight_train_release.jsonl",),
                              "eval": ("highlight_val_release.jsonl", "highlight_test_release.jsonl")}}

    def __init__(self, config: GroundingConfig | None = None) -> None:
        self.config = config or GroundingConfig()
        self.num_frames = 8          # clip length of the strategy (profile.num_frames), set by data loaders
        self._activity_cache: dict[tuple[int, int], tuple[torch.Tensor, torch.Tensor]] = {}

    # -- data ----------------------------------------------------------------------------
    def _frames(self, profile) -> int:
        self.num_frames = profile.num_frames
        return self.config.frames_per_video or 4 * profile.num_frames

    @property
    def context(self) -> int:
        return self.config.context or self.num_frames

    def shapes_data(self, profile, backbone, seed: int = 0) -> TaskData:
        """ShapesWorld long videos, split 3:1 as the export does (every event is a query)."""
        from ..data.shapes.long_videos import make_long_videos

        frames = self._frames(profile)
        n_test = max(1, profile.long_videos // 4)
        splits = []
        for name, count in (("train", max(1, profile.long_videos - n_test)), ("test", n_test)):
            long_videos = make_long_videos(seed, count, name)
            videos = with_features(render_clips(long_videos, backbone.image_size, frames), backbone, frames)
            splits.append(Split(videos, _shapes_items(long_videos, videos, backbone.image_size), name))
        return TaskData(splits[0], splits[1], "shapesworld", {"frames_per_video": frames})

    def load(self, path, backbone, profile, format=None, video_dir=None) -> TaskData:
        """Charades-STA or QVHighlights annotation files, unchanged (``formats.py``)."""
        from ..data.formats import read_dataset

        fmt, train_file, eval_file, guess = self.resolve(path, format)
        frames = self._frames(profile)
        splits = []
        for file in (train_file, eval_file):
            if file is None:
                splits.append(None)
                continue
            records = read_dataset(fmt, file, video_dir or guess)
            if not records:
                if file == eval_file:
                    raise ValueError(f"{file}: no annotations to evaluate")
                splits.append(None)        # an empty train file: evaluation only
                continue
            videos, row_of = decode_records(records, frames, backbone.image_size)
            with_features(videos, backbone, frames)
            items = [_record_item(r, row_of[str(r.path)], k) for k, r in enumerate(records) if str(r.path) in row_of]
            splits.append(Split(videos, items, records[0].split or Path(file).stem))
        return TaskData(splits[0], splits[1], f"{fmt}:{eval_file}", {"frames_per_video": frames})

    # -- zero-shot -------------------------------------------------------------------------
    @torch.no_grad()
    def curves(self, model, split: Split) -> tuple[np.ndarray, torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(curves [Q,T], frame features [N,T,D], context embeddings [N,T,D], queries [Q,D])``:
        each query's similarity with the strategy's context window around every frame."""
        features = frame_features(model, split.videos)
        context = context_embeddings(model, split.videos, self.context,
                                     features if model.input_level == "features" else None)
        queries = text_embeddings(model, [item.query for item in split.items])
        rows = [item.video for item in split.items]
        curves = (context[rows] * queries[:, None]).sum(-1).numpy()             # [Q,T]
        return curves, features, context, queries

    def activities(self, model, split: Split) -> torch.Tensor:
        """``[Q,T]`` every query's :func:`query_activity`, scaled to a maximum of 1 per query."""
        return self._query_activity(model, split)[0]

    def relevancy_maps(self, model, split: Split) -> torch.Tensor:
        """``[Q,T,rows,cols]`` every query's relevancy share per patch on every frame of its video."""
        return self._query_activity(model, split)[1]

    def _query_activity(self, model, split: Split) -> tuple[torch.Tensor, torch.Tensor]:
        """Both of the above, one forward pass per video; kept per (model, split) until
        :meth:`train` changes the model."""
        key = (id(model), id(split))
        if key not in self._activity_cache:
            activities, maps = [None] * len(split.items), [None] * len(split.items)
            by_video: dict[int, list[int]] = {}
            for q, item in enumerate(split.items):
                by_video.setdefault(item.video, []).append(q)
            for row, qs in by_video.items():
                # the image tower's own relevancy (frames mean-pooled): where the named object is is a
                # per-frame question, and a temporal head trained on whole moments blurs it over frames
                found, shares = query_activity(model.backbone, split.videos.frames[row],
                                               [split.items[q].query for q in qs])
                for q, activity, share in zip(qs, found, shares):
                    activities[q] = torch.from_numpy(activity / max(float(activity.max()), 1e-9)).float()
                    maps[q] = share
            self._activity_cache[key] = (torch.stack(activities), torch.stack(maps))
        return self._activity_cache[key]

    def predict(self, model, split: Split, head=None) -> dict:
        """QVHighlights-format rows (``predictions["rows"]``) and the saliency curves per frame."""
        curves, features, context, queries = self.curves(model, split)
        activity = self.activities(model, split)
        if head is not None:
            head.eval()
            with torch.no_grad():
                rows = [item.video for item in split.items]
                logits, offsets = head(features[rows], context[rows], queries, activity)
            curves = torch.sigmoid(logits).numpy()
            windows = [self._dense_windows(curves[q], offsets[q].numpy()) for q in range(len(split.items))]
        else:
            windows, curves = self._zero_shot_windows(model, split, curves, features, activity.numpy())
        out = []
        for item, curve, found in zip(split.items, curves, windows):
            edges = self._edges(split, item.video)
            seconds = np.column_stack([to_seconds(found[:, :2], edges).reshape(-1, 2), found[:, 2]])
            out.append({"qid": item.qid, "query": item.query, "vid": split.videos.ids[item.video],
                        "pred_relevant_windows": [[round(float(s), 3), round(float(e), 3), round(float(p), 4)]
                                                  for s, e, p in seconds],
                        "pred_saliency_scores": clip_saliency(smooth_curve(curve, self.config.smooth), edges,
                                                              self._duration(split, item.video))})
        return {"rows": out, "curves": curves}

    def _zero_shot_windows(self, model, split: Split, curves: np.ndarray, features: torch.Tensor,
                           activities: np.ndarray) -> tuple[list, np.ndarray]:
        """Candidates from the query's activity and similarity curves, scored by activity contrast
        plus the strategy's similarity of each candidate's own frames with the query."""
        cfg = self.config
        cached = features if model.input_level == "features" else None
        texts = text_embeddings(model, [item.query for item in split.items])
        out, saliency = [], np.zeros_like(curves)
        for q, item in enumerate(split.items):
            activity = activities[q]
            similarity = smooth_curve(curves[q], cfg.smooth)
            spans = list(dict.fromkeys(relative_runs(activity, cfg.activity_levels)
                                       + relative_runs(similarity, cfg.levels))) or [(0, len(activity))]
            scores = (embed_spans(model, split.videos, item.video, spans, self.context, cached) @ texts[q]).numpy()
            scores = [contrast(activity, s, e) + cfg.similarity_weight * p for (s, e), p in zip(spans, scores)]
            candidates = np.array([[s, e, p] for (s, e), p in zip(spans, scores)], dtype=np.float64)
            out.append(temporal_nms(candidates, cfg.nms_iou, cfg.max_windows))
            saliency[q] = activity + cfg.similarity_weight * curves[q]
        return out, saliency

    def _dense_windows(self, probability: np.ndarray, offsets: np.ndarray) -> np.ndarray:
        centres = np.arange(len(probability)) + 0.5
        T = len(probability)
        windows = np.column_stack([np.clip(centres - offsets[:, 0], 0, T), np.clip(centres + offsets[:, 1], 0, T),
                                   probability])
        windows = windows[windows[:, 1] > windows[:, 0]]
        return temporal_nms(windows, self.config.nms_iou, self.config.max_windows)

    # -- training ----------------------------------------------------------------------------
    def train(self, model, data: TaskData, cfg, run_dir: Path | None = None, progress: bool = False) -> dict:
        """Contrastive stage on (moment clip, query) pairs — the other queries of the same video are
        hard negatives — then the dense head on the (now fixed) strategy's frame features."""
        if data.train is None:
            raise ValueError("temporal grounding needs a train split to train on")
        split = data.train
        clips, texts, negatives = self.moment_clips(split)
        log = train_strategy(model, clips, list(range(len(clips))), texts, negatives, cfg,
                             run_dir=run_dir, progress=progress)
        self._activity_cache.clear()       # the strategy changed: its relevancy may have too
        head, head_log = self.fit_head(model, split, seed=getattr(cfg, "seed", 0))
        return {"strategy": log, "head_log": head_log, "head": head}

    def moment_clips(self, split: Split) -> tuple[VideoSet, list[str], list[list[str]]]:
        """Each ground-truth moment cut out as a ``context``-frame clip (frames and cached features)."""
        index, texts, negatives = [], [], []
        by_video: dict[int, list[str]] = {}
        for item in split.items:
            by_video.setdefault(item.video, []).append(item.query)
        for item in split.items:
            edges = self._edges(split, item.video)
            for start, end in item.windows[:1]:
                s, e = to_frame_units([start, end], edges)
                s, e = int(math.floor(s)), max(int(math.floor(s)) + 1, int(math.ceil(e)))
                index.append((item.video, _span_indices(s, min(e, len(edges) - 1), self.context)))
                texts.append(item.query)
                negatives.append([t for t in by_video[item.video] if t != item.query])
        rows = torch.tensor([r for r, _ in index])
        frames_index = torch.tensor([f for _, f in index])                       # [M, context]
        videos = split.videos
        clip_frames = videos.frames[rows[:, None], frames_index]
        clip_features = None if videos.features is None else videos.features[rows[:, None], frames_index]
        clips = VideoSet([f"{videos.ids[r]}#{k}" for k, r in enumerate(rows.tolist())], clip_frames,
                         features=clip_features)
        return clips, texts, negatives

    def make_head(self, model, data: TaskData | None) -> DenseGroundingHead:
        """A fresh dense head for ``model``'s frame features (``D`` = the joint-space size)."""
        return DenseGroundingHead(model.backbone.embed_dim, self.config.head_width)

    def fit_head(self, model, split: Split, seed: int = 0) -> tuple[DenseGroundingHead, dict]:
        """Train the dense head on every (video, query) of ``split`` (full batch)."""
        _, features, context, queries = self.curves(model, split)
        rows = [item.video for item in split.items]
        num_frames = features.shape[1]
        windows = [to_frame_units(np.asarray(item.windows, dtype=np.float64).reshape(-1, 2),
                                  self._edges(split, item.video)) for item in split.items]
        fg, offsets = dense_targets(windows, num_frames)
        torch.manual_seed(seed)
        head = TemporalGrounding.make_head(self, model, None)   # the dense head also inside st-grounding
        inputs = (features[rows], context[rows], queries, self.activities(model, split))
        log = fit_head(head, lambda h: dense_loss(h, inputs, fg, offsets),
                       HeadConfig(steps=self.config.head_steps, lr=3e-3, weight_decay=0.05, seed=seed))
        return head, log

    # -- scores and files ----------------------------------------------------------------
    def evaluate(self, split: Split, predictions: dict) -> dict:
        """R1@0.3/0.5/0.7 and mIoU of the top window; QVHighlights MR mAP and HL mAP / HIT@1."""
        scored = [(item, row) for item, row in zip(split.items, predictions["rows"]) if item.windows]
        if not scored:
            raise ValueError("no query of this split has ground-truth windows to score against")
        top, best_gt = [], []
        for item, row in scored:
            windows = row["pred_relevant_windows"]
            first = windows[0][:2] if windows else [0.0, 0.0]
            gt = np.asarray(item.windows, dtype=np.float64)
            top.append(first)
            best_gt.append(gt[int(np.argmax(metrics.temporal_iou(np.asarray(first)[None], gt)))])
        out = metrics.grounding_recall(np.asarray(top), np.asarray(best_gt))
        with_saliency = all(item.clip_ids for item, _ in scored)
        truth = [{"qid": item.qid, "relevant_windows": [list(w) for w in item.windows],
                  **({"relevant_clip_ids": item.clip_ids, "saliency_scores": item.saliency} if with_saliency else {})}
                 for item, _ in scored]
        preds = [row if with_saliency else {k: v for k, v in row.items() if k != "pred_saliency_scores"}
                 for _, row in scored]
        qv = metrics.qvhighlights_eval(preds, truth)
        out["mAP"] = qv["MR-full-mAP"]
        out["mAP@0.5"] = qv["MR-full-mAP@0.5"]
        if with_saliency:   # ShapesWorld moments never fill a 2-s clip (no "VeryGood" clip): Fair too
            levels = ["Fair"] + (["VeryGood"] if any(max(map(max, item.saliency)) >= 4 for item, _ in scored) else [])
            for level in levels:
                out[f"HL-{level}-mAP"] = qv[f"HL-min-{level}-mAP"]
                out[f"HIT@1-{level}"] = qv[f"HL-min-{level}-Hit1"]
        return out

    def write_predictions(self, split: Split, predictions: dict, out_dir) -> Path:
        """``<out_dir>/temporal_grounding_preds.jsonl``, one QVHighlights prediction per line."""
        from ..io import atomic_write

        path = Path(out_dir) / "temporal_grounding_preds.jsonl"
        text = "".join(json.dumps(row) + "\n" for row in predictions["rows"])
        atomic_write(path, lambda p: Path(p).write_text(text))
        return path

    # -- helpers ---------------------------------------------------------------------------
    @staticmethod
    def _duration(split: Split, row: int) -> float:
        videos = split.videos
        if videos.durations is not None:
            return float(videos.durations[row])
        return float(videos.times[row][-1]) if videos.times else float(videos.frames.shape[1])

    def _edges(self, split: Split, row: int) -> np.ndarray:
        videos = split.videos
        times = videos.times[row] if videos.times else list(range(videos.frames.shape[1]))
        return frame_edges(times, self._duration(split, row))


def random_windows(split: Split, train: Split | None = None, seed: int = 0) -> dict:
    """The chance baseline: one window per query at a uniformly random place, its length drawn
    from the training moments' lengths (relative to their videos) — a prior, no video seen."""
    rng = np.random.default_rng(seed)
    reference = train or split
    lengths = [(e - s) / max(TemporalGrounding._duration(reference, item.video), 1e-9)
               for item in reference.items for s, e in item.windows] or [0.2]
    rows = []
    for item in split.items:
        duration = TemporalGrounding._duration(split, item.video)
        length = float(rng.choice(lengths)) * duration
        start = float(rng.uniform(0, max(0.0, duration - length)))
        rows.append({"qid": item.qid, "query": item.query, "vid": split.videos.ids[item.video],
                     "pred_relevant_windows": [[start, start + length, 1.0]],
                     "pred_saliency_scores": rng.random(max(1, math.ceil(duration / CLIP_SECONDS))).round(4).tolist()})
    return {"rows": rows, "curves": None}


def _shapes_items(long_videos, videos: VideoSet, size: int) -> list[GroundingItem]:
    items = []
    for row, video in enumerate(long_videos):
        picked = sample_indices(video.num_frames, videos.frames.shape[1], "uniform")
        for k, event in enumerate(video.events):
            saliency = video.saliency(k)
            tube = video.tube(k, size)
            items.append(GroundingItem(row, f"{video.video_id}:{k}", event.query, [(event.start, event.end)],
                                       [c for c, _ in saliency], [[s] * 3 for _, s in saliency],
                                       {i: tube[f] for i, f in enumerate(picked) if f in tube}))
    return items


def _record_item(record, row: int, k: int) -> GroundingItem:
    extra = record.extra
    return GroundingItem(row, extra.get("qid", f"{record.video_id}:{k}"), record.query or "",
                         list(record.windows), list(extra.get("relevant_clip_ids", [])),
                         [list(s) for s in extra.get("saliency_scores", [])])
