"""Spatio-temporal video grounding: *when* and *where* — a box on every frame of the moment (a tube).

Given a video and a sentence about one actor, predict the span of frames where it happens and
the actor's box ``[x1, y1, x2, y2]`` (pixels of the sampled frames) on each of them, as HC-STVG
(Tang et al., *Human-centric Spatio-Temporal Video Grounding With Visual Transformers*, TCSVT
2021) and TubeDETR (Yang et al., CVPR 2022) do. Scored with m_tIoU, m_vIoU and vIoU@0.3/0.5
(:func:`workbench.metrics.st_grounding_metrics`).

- **zero-shot**: the span is the top window of zero-shot temporal grounding
  (:mod:`workbench.tasks.temporal_grounding`); on each frame of it, the query's gradient
  relevancy map (Chefer et al., ICCV 2021, :mod:`workbench.explain`) is thresholded at half its
  peak and the box drawn around the connected patches that hold the peak.
- **trained**: the span from the trained dense temporal head; the box from a small head on the
  strategy's frozen patch tokens (:func:`workbench.backbones.taps.patch_tokens`), each patch
  seen with its similarity to the query and its relevancy: a per-patch logit gives a soft-argmax
  centre, the attention-pooled patches give the size (trained with L1 + IoU loss, as DETR-style
  grounding heads are).

Data: the ShapesWorld long videos (every event is a tube), or HC-STVG v1/v2 annotation files
through :mod:`workbench.data.formats`.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .. import metrics
from ..data.video import sample_indices
from .base import HeadConfig, Split, TaskData, decode_records, fit_head, register_task, text_embeddings, with_features
from .temporal_grounding import GroundingConfig, GroundingItem, TemporalGrounding, to_frame_units


# --------------------------------------------------------------------------------------------
# Maps -> boxes
# --------------------------------------------------------------------------------------------

def _component(mask: np.ndarray, seed: tuple[int, int]) -> np.ndarray:
    """The 4-connected component of ``mask`` that holds ``seed``."""
    out = np.zeros_like(mask)
    stack = [seed]
    while stack:
        r, c = stack.pop()
        if 0 <= r < mask.shape[0] and 0 <= c < mask.shape[1] and mask[r, c] and not out[r, c]:
            out[r, c] = True
            stack += [(r + 1, c), (r - 1, c), (r, c + 1), (r, c - 1)]
    return out


def map_to_box(heatmap: np.ndarray | torch.Tensor, image_size: int, level: float = 0.5) -> tuple[float, ...]:
    """A box (pixels) around the patches holding the map's peak: those >= ``level`` x peak and
    connected to it."""
    heat = np.asarray(heatmap, dtype=np.float64)
    rows, cols = heat.shape
    peak = np.unravel_index(int(np.argmax(heat)), heat.shape)
    region = _component(heat >= level * heat[peak], peak)
    ys, xs = np.nonzero(region)
    step_y, step_x = image_size / rows, image_size / cols
    return (float(xs.min() * step_x), float(ys.min() * step_y),
            float((xs.max() + 1) * step_x), float((ys.max() + 1) * step_y))


# --------------------------------------------------------------------------------------------
# The box head
# --------------------------------------------------------------------------------------------

class BoxHead(nn.Module):
    """Patch tokens [N,P,D] + query [N,D] + zero-shot relevancy [N,P] -> box (cx, cy, w, h) in [0, 1]."""

    def __init__(self, dim: int, grid: tuple[int, int], width: int = 64) -> None:
        super().__init__()
        self.patch_in = nn.Linear(dim, width)
        self.query_in = nn.Linear(dim, width)
        self.maps_in = nn.Linear(2, width)            # the patch's similarity to the query, its relevancy
        self.position = nn.Parameter(torch.zeros(grid[0] * grid[1], width))
        self.mix = nn.Sequential(nn.LayerNorm(width), nn.Linear(width, width), nn.GELU())
        self.logit = nn.Linear(width, 1)
        self.size = nn.Linear(width, 2)
        ys, xs = torch.meshgrid((torch.arange(grid[0]) + 0.5) / grid[0], (torch.arange(grid[1]) + 0.5) / grid[1],
                                indexing="ij")
        self.register_buffer("centres", torch.stack([xs.flatten(), ys.flatten()], -1), persistent=False)  # [P,2]

    def forward(self, patches: torch.Tensor, query: torch.Tensor, relevancy: torch.Tensor) -> torch.Tensor:
        patches, query = F.normalize(patches.float(), dim=-1), F.normalize(query.float(), dim=-1)
        sims = (patches * query[:, None]).sum(-1)                                    # [N,P]
        x = self.patch_in(patches) * (1 + self.query_in(query)[:, None]) + self.position
        x = x + self.maps_in(torch.stack([sims, relevancy.float()], -1))
        x = x + self.mix(x)
        attention = self.logit(x)[..., 0].softmax(-1)                               # [N,P]
        centre = attention @ self.centres                                            # [N,2]
        size = torch.sigmoid(self.size((attention[..., None] * x).sum(1)))          # [N,2]
        return torch.cat([centre, size], -1)


def cxcywh_to_xyxy(box: torch.Tensor) -> torch.Tensor:
    centre, size = box[..., :2], box[..., 2:]
    return torch.cat([centre - size / 2, centre + size / 2], -1)


def box_loss(predicted: torch.Tensor, target_xyxy: torch.Tensor) -> torch.Tensor:
    """L1 on the corners plus 1 - IoU (both in [0, 1] image units)."""
    pred = cxcywh_to_xyxy(predicted)
    lo, hi = torch.maximum(pred[:, :2], target_xyxy[:, :2]), torch.minimum(pred[:, 2:], target_xyxy[:, 2:])
    inter = (hi - lo).clamp(min=0).prod(-1)
    area = lambda b: (b[:, 2:] - b[:, :2]).clamp(min=0).prod(-1)  # noqa: E731
    iou = inter / (area(pred) + area(target_xyxy) - inter).clamp(min=1e-9)
    return F.l1_loss(pred, target_xyxy) + (1 - iou).mean()


# --------------------------------------------------------------------------------------------
# The task
# --------------------------------------------------------------------------------------------

@register_task("st-grounding")
class STGrounding(TemporalGrounding):
    """Tubes: the temporal grounding of the parent class, then a box per frame of the span."""

    metric = "m_vIoU"
    formats = ("hcstvg",)
    files = {"hcstvg": {"train": ("train*.json", "*train*.json"),
                        "eval": ("test*.json", "*test*.json", "*val*.json")}}

    def __init__(self, config: GroundingConfig | None = None) -> None:
        super().__init__(config)

    def load(self, path, backbone, profile, format=None, video_dir=None) -> TaskData:
        """HC-STVG v1/v2 JSON, unchanged; boxes rescaled to the decoded (square) frames."""
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
            items = [_hcstvg_item(r, row_of[str(r.path)], frames, backbone.image_size)
                     for r in records if str(r.path) in row_of]
            splits.append(Split(videos, items, records[0].split or Path(file).stem))
        return TaskData(splits[0], splits[1], f"{fmt}:{eval_file}", {"frames_per_video": frames})

    # -- predictions -----------------------------------------------------------------------
    def predict(self, model, split: Split, head=None, true_span: bool = False) -> dict:
        """``{"tubes": [{start_frame, end_frame, boxes}], "temporal": temporal predictions}``;
        ``head`` is what :meth:`train` returns under "head" (a ModuleDict: temporal and box heads).
        ``true_span`` boxes the ground-truth span instead of the predicted one, which measures
        the spatial part alone."""
        temporal = super().predict(model, split, None if head is None else head["temporal"])
        maps = self.relevancy_maps(model, split)                                       # [Q,T,rows,cols]
        size = split.videos.frames.shape[-1]
        queries = text_embeddings(model, [item.query for item in split.items])
        tubes = []
        for q, (item, row) in enumerate(zip(split.items, temporal["rows"])):
            start, end = (min(item.tube), max(item.tube) + 1) if true_span and item.tube else \
                self._span(split, item.video, row)
            frames = split.videos.frames[item.video][start:end]
            relevancy = maps[q, start:end]                                                   # [n,rows,cols]
            if head is None:
                boxes = [map_to_box(m, size) for m in relevancy]
            else:
                patches = patch_features(model, frames)
                with torch.no_grad():
                    out = head["box"](patches, queries[q].expand(len(frames), -1), _shares(relevancy))
                boxes = [tuple(float(v) * size for v in b) for b in cxcywh_to_xyxy(out).clamp(0, 1)]
            tubes.append({"start_frame": start, "end_frame": end,
                          "boxes": {start + i: list(b) for i, b in enumerate(boxes)}})
        return {"tubes": tubes, "temporal": temporal}

    def _span(self, split: Split, row: int, prediction: dict) -> tuple[int, int]:
        """The top predicted window as sampled frames [start, end) (at least one frame)."""
        windows = prediction["pred_relevant_windows"]
        if not windows:
            return 0, split.videos.frames.shape[1]
        s, e = to_frame_units(np.asarray(windows[0][:2]), self._edges(split, row))
        start = int(np.clip(np.floor(s + 0.5), 0, split.videos.frames.shape[1] - 1))
        return start, max(start + 1, int(np.floor(e + 0.5)))

    # -- training --------------------------------------------------------------------------
    def train(self, model, data: TaskData, cfg, run_dir: Path | None = None, progress: bool = False) -> dict:
        """The temporal stages of the parent (strategy, then dense head), then the box head on
        every ground-truth box of the train split."""
        log = super().train(model, data, cfg, run_dir, progress)
        box_head, box_log = self.fit_box_head(model, data.train, seed=getattr(cfg, "seed", 0))
        return {**log, "head": nn.ModuleDict({"temporal": log["head"], "box": box_head}), "box_log": box_log}

    def make_head(self, model, data: TaskData | None) -> nn.ModuleDict:
        """Fresh temporal (dense) and box heads, in one module (saved and loaded together)."""
        from ..backbones.taps import vision_tower

        grid = tuple(vision_tower(model.backbone).grid_size)
        return nn.ModuleDict({"temporal": super().make_head(model, data),
                              "box": BoxHead(model.backbone.embed_dim, grid)})

    def fit_box_head(self, model, split: Split, seed: int = 0) -> tuple[BoxHead, dict]:
        """Train the box head on every ground-truth box of ``split`` (full batch)."""
        size = split.videos.frames.shape[-1]
        maps = self.relevancy_maps(model, split)
        queries = text_embeddings(model, [item.query for item in split.items])
        patches, query, relevancy, targets = [], [], [], []
        for q, item in enumerate(split.items):
            frames = sorted(item.tube)
            if not frames:
                continue
            clip = split.videos.frames[item.video][frames]
            patches.append(patch_features(model, clip))
            relevancy.append(_shares(maps[q, frames]))
            query.append(queries[q].expand(len(frames), -1))
            targets.append(torch.tensor([item.tube[f] for f in frames], dtype=torch.float32) / size)
        if not patches:
            raise ValueError("no ground-truth boxes in the train split")
        patches, query, relevancy, targets = (torch.cat(x) for x in (patches, query, relevancy, targets))
        torch.manual_seed(seed)
        from ..backbones.taps import vision_tower

        head = BoxHead(model.backbone.embed_dim, tuple(vision_tower(model.backbone).grid_size))
        log = fit_head(head, lambda h: box_loss(h(patches, query, relevancy), targets),
                       HeadConfig(steps=self.config.head_steps, lr=3e-3, weight_decay=0.05, seed=seed))
        return head, log

    # -- scores and files ------------------------------------------------------------------
    def evaluate(self, split: Split, predictions: dict) -> dict:
        """m_tIoU, m_vIoU, vIoU@0.3/0.5 over queries with a ground-truth tube (sampled frames)."""
        pairs = [(p, item) for p, item in zip(predictions["tubes"], split.items) if item.tube]
        if not pairs:
            raise ValueError("no query of this split has a ground-truth tube")
        gts = [metrics.Tube(min(item.tube), max(item.tube) + 1, dict(item.tube)) for _, item in pairs]
        # frames evaluated: those with a ground-truth box inside the GT span, every frame elsewhere
        return metrics.st_grounding_metrics([p for p, _ in pairs], gts)

    def write_predictions(self, split: Split, predictions: dict, out_dir) -> Path:
        """``<out_dir>/st_grounding_preds.json``: ``{video_id: {"qid", "query", "st_frame",
        "ed_frame", "boxes": {frame: [x1,y1,x2,y2]}}}`` in sampled frames of the decoded size."""
        from ..io import atomic_write

        out = {}
        for item, tube in zip(split.items, predictions["tubes"]):
            out[str(item.qid)] = {"video_id": split.videos.ids[item.video], "query": item.query,
                                  "st_frame": tube["start_frame"], "ed_frame": tube["end_frame"],
                                  "boxes": {str(f): [round(v, 2) for v in b] for f, b in tube["boxes"].items()}}
        path = Path(out_dir) / "st_grounding_preds.json"
        atomic_write(path, lambda p: Path(p).write_text(json.dumps(out, indent=1)))
        return path


@torch.no_grad()
def patch_features(model, frames: torch.Tensor) -> torch.Tensor:
    """The strategy's patch tokens in the joint space, ``[n, patches, D]``, for uint8 frames [n,3,H,W]."""
    from ..backbones.taps import patch_tokens

    model.eval()
    pixels = model.backbone.preprocess(frames.to(model.backbone.device))
    with patch_tokens(model.backbone) as recorder:
        model.backbone.encode_images(pixels.to(model.backbone.dtype))
    return recorder.tokens.float().cpu()


def _shares(maps: torch.Tensor) -> torch.Tensor:
    """[n,rows,cols] relevancy -> [n, patches], each frame summing to 1."""
    flat = maps.flatten(1)
    return flat / flat.sum(-1, keepdim=True).clamp(min=1e-12)


def _hcstvg_item(record, row: int, frames: int, size: int) -> GroundingItem:
    """An HC-STVG record as a query whose tube is in sampled frames and decoded-frame pixels."""
    extra = record.extra
    total = extra.get("img_num") or (max(record.tube) + 1 if record.tube else frames)
    picked = sample_indices(int(total), frames, "uniform")
    sx = size / float(extra.get("width", size))
    sy = size / float(extra.get("height", size))
    tube = {i: (b[0] * sx, b[1] * sy, b[2] * sx, b[3] * sy)
            for i, f in enumerate(picked) if (b := record.tube.get(f)) is not None}
    return GroundingItem(row, record.video_id, record.query or "", list(record.windows), tube=tube)


# --------------------------------------------------------------------------------------------
# The README tables: zero-shot against trained, per strategy, both grounding tasks at once
# --------------------------------------------------------------------------------------------

TEMPORAL_COLUMNS = ("R1@0.3", "R1@0.5", "R1@0.7", "mIoU", "mAP", "HL-Fair-mAP", "HIT@1-Fair")
ST_COLUMNS = ("m_tIoU", "m_vIoU", "vIoU@0.3", "vIoU@0.5")


def grounding_table(profile: str = "cpu", strategies=("mean-pool", "post-transformer"), seed: int = 0,
                    progress: bool = True) -> list[dict]:
    """Chance, then per strategy: zero-shot, the strategy trained on the moments (still no head),
    and strategy + heads; temporal metrics and tube metrics of the same predictions."""
    from ..backbones import load_backbone
    from ..bench import train_config
    from ..config import get_profile, seed_everything
    from ..strategies import create_strategy
    from .temporal_grounding import random_windows

    prof = get_profile(profile)
    backbone = load_backbone()
    task = STGrounding()
    data = task.shapes_data(prof, backbone, seed)
    split = data.eval
    chance = random_windows(split, data.train, seed)
    rows = [{"strategy": "chance (random window)", "mode": "-",
             **TemporalGrounding.evaluate(task, split, chance)}]

    def row(name: str, mode: str, predictions: dict) -> dict:
        out = {"strategy": name, "mode": mode, **TemporalGrounding.evaluate(task, split, predictions["temporal"]),
               **task.evaluate(split, predictions)}
        if progress:
            print(out, flush=True)
        return out

    for name in strategies:
        seed_everything(seed)
        model = create_strategy(name, backbone)
        rows.append(row(name, "zero-shot", task.zero_shot(model, split)))
        log = task.train(model, data, train_config(prof, model, True, seed))
        if model.trainable_parameters():
            rows.append(row(name, "strategy trained, no head", task.zero_shot(model, split)))
        rows.append(row(name, "strategy + heads", task.predict(model, split, log["head"])))
        if name == strategies[0]:      # the box alone: zero-shot relevancy boxes against the box head
            spans = {"zero-shot, true span": None, "box head, true span": log["head"]}
            for mode, heads in spans.items():
                rows.append({"strategy": name, "mode": mode,
                             **task.evaluate(split, task.predict(model, split, heads, true_span=True))})
    return rows


def markdown(rows: list[dict], columns) -> str:
    head = "| strategy | mode | " + " | ".join(columns) + " |\n|---|---|" + "---|" * len(columns) + "\n"
    return head + "".join(f"| {r['strategy']} | {r['mode']} | "
                          + " | ".join(f"{r[c]:.1f}" if c in r else "-" for c in columns) + " |\n" for r in rows)


if __name__ == "__main__":   # python -m workbench.tasks.st_grounding --profile cpu
    import argparse

    parser = argparse.ArgumentParser(description="Grounding tables (temporal and spatio-temporal) on ShapesWorld")
    parser.add_argument("--profile", default="cpu")
    parser.add_argument("--strategies", nargs="+", default=["mean-pool", "post-transformer"])
    parser.add_argument("--out", default=None, help="folder for grounding.json and grounding.md")
    args = parser.parse_args()
    table = grounding_table(args.profile, tuple(args.strategies))
    text = ("Temporal grounding\n\n" + markdown(table, TEMPORAL_COLUMNS)
            + "\nSpatio-temporal grounding\n\n" + markdown(table, ST_COLUMNS))
    print(text)
    if args.out:
        Path(args.out).mkdir(parents=True, exist_ok=True)
        (Path(args.out) / "grounding.md").write_text(text)
        (Path(args.out) / "grounding.json").write_text(json.dumps(table, indent=1))
