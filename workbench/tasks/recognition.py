"""Action recognition: zero-shot from class names with prompt ensembles, and trained; top-1/top-5.

Zero-shot follows CLIP's recipe (Radford et al., ICML 2021, §3.1.4): each class name is put into
several prompt templates, the normalised text embeddings are averaged and re-normalised into one
class weight, and a video's class scores are cosine similarities with those weights.

Trained, in two stages (ActionCLIP, Wang et al., 2021, then a linear probe):
1. the strategy itself (whatever it trains: a temporal head, adapters, prompts) learns with the
   one contrastive loop on (clip, class prompt) pairs — clips of one class share a caption, the
   time-reversed twin's class is the hard negative;
2. a linear classifier over the strategy's (now fixed) video embedding, its weights initialised
   from the class-text weights of stage 1's model (so it starts at zero-shot), trained with
   cross-entropy on cached embeddings. Mean pooling, which trains nothing, gets a linear probe.

Data: ShapesWorld clips labelled with their action class (the event type, whoever does it:
"moving left", "growing", ...); or a Kinetics-style CSV (``label,youtube_id,time_start,
time_end,split``) read by :func:`workbench.data.formats.read_kinetics`. Predictions are written
as the ActivityNet/Kinetics challenge result JSON (``{"version", "results": {video: [{label,
score}] top-5}, "external_data"}``).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .. import metrics
from .base import (HeadConfig, Split, Task, TaskData, decode_records, fit_head, register_task,
                   render_clips, save_json, text_embeddings, train_strategy, video_embeddings)

# CLIP-style prompt ensemble; "{}" is the class name ("moving left", "air drumming").
TEMPLATES = ("{}", "a video of {}.", "a video of something {}.", "a clip of {}.",
             "a video showing {}.", "an example of {}.")
TRAIN_TEMPLATE = "a video of {}."   # the caption of every clip of a class in training stage 1


@dataclass(frozen=True)
class Labelled:
    """One recognition item: the video's row and its class index (None: unlabelled test clip)."""

    video: int
    label: int | None


class ClassHead(nn.Module):
    """Linear classifier on normalised video embeddings, initialised from class-text weights."""

    def __init__(self, class_weights: torch.Tensor, scale: float):
        super().__init__()
        self.weight = nn.Parameter(class_weights.clone())
        self.bias = nn.Parameter(torch.zeros(len(class_weights)))
        self.log_scale = nn.Parameter(torch.tensor(float(np.log(scale))))

    def forward(self, video: torch.Tensor) -> torch.Tensor:
        return self.log_scale.exp() * video @ F.normalize(self.weight, dim=-1).t() + self.bias


def class_weights(model, classes: list[str], templates=TEMPLATES) -> torch.Tensor:
    """[C,D] normalised mean of each class's normalised prompt embeddings (CLIP's ensemble)."""
    texts = [t.format(c) for c in classes for t in templates]
    emb = text_embeddings(model, texts).view(len(classes), len(templates), -1)
    return F.normalize(emb.mean(1), dim=-1)


@register_task("recognition")
class Recognition(Task):
    metric = "top1"
    formats = ("kinetics",)
    files = {"kinetics": {"train": ("train.csv", "*train*.csv"),
                          "eval": ("validate.csv", "val.csv", "*validate*.csv", "*val*.csv", "test.csv",
                                   "*test*.csv")}}

    # -- data ----------------------------------------------------------------------------
    def shapes_data(self, profile, backbone, seed: int = 0) -> TaskData:
        from ..data.shapes.clips import ACTION_CLASSES, make_clips

        classes = list(ACTION_CLASSES)
        splits = {}
        for name, per_kind in (("train", profile.clips_per_kind), ("eval", profile.eval_clips_per_kind)):
            clips = [c for c in make_clips(seed, per_kind, profile.num_frames, name) if c.action]
            videos = render_clips(clips, backbone.image_size, profile.num_frames)
            index = videos.index()
            items = [Labelled(index[c.clip_id], classes.index(c.action)) for c in clips]
            position = {c.clip_id: k for k, c in enumerate(clips)}
            splits[name] = Split(videos, items, name, twin=[position.get(c.twin_id) for c in clips])
        return TaskData(splits["train"], splits["eval"], "shapesworld", {"classes": classes})

    def load(self, path, backbone, profile, format=None, video_dir=None) -> TaskData:
        from ..data.formats import read_dataset

        fmt, train_file, eval_file, guess = self.resolve(path, format)
        video_dir = Path(video_dir) if video_dir else guess
        parts = {"train": read_dataset(fmt, train_file, video_dir) if train_file else None,
                 "eval": read_dataset(fmt, eval_file, video_dir)}
        classes = sorted({r.label for records in parts.values() if records for r in records if r.label})
        if not classes:
            raise ValueError(f"{eval_file}: no class labels in the annotations (a test CSV?); "
                             "recognition needs the class names from a labelled train or val CSV")
        splits = {}
        for name, records in parts.items():
            if not records:
                splits[name] = None
                continue
            videos, row = decode_records(records, profile.num_frames, backbone.image_size)
            items = [Labelled(row[str(r.path)], classes.index(r.label) if r.label else None)
                     for r in records if str(r.path) in row]
            splits[name] = Split(videos, items, name)
        return TaskData(splits["train"], splits["eval"], f"{fmt}:{eval_file}", {"classes": classes})

    # -- models --------------------------------------------------------------------------
    def predict(self, model, split: Split, head: ClassHead | None = None, classes: list[str] | None = None):
        classes = classes or split.meta["classes"]
        video = video_embeddings(model, split.videos)[[it.video for it in split.items]]
        with torch.no_grad():
            if head is None:
                scores = video @ class_weights(model, classes).t()
            else:
                scores = head(video)
        return {"scores": scores.numpy(), "classes": list(classes)}

    def zero_shot(self, model, split: Split, classes: list[str] | None = None):
        return self.predict(model, split, None, classes)

    def train(self, model, data: TaskData, cfg, run_dir=None, progress=False,
              head_cfg: HeadConfig | None = None) -> dict:
        classes, train = data.meta["classes"], data.train
        if train is None:
            raise ValueError(f"{data.source}: no training split to train on")
        prompts = [TRAIN_TEMPLATE.format(c) for c in classes]
        rows = [it.video for it in train.items]
        texts = [prompts[it.label] for it in train.items]
        twins = train.twin or [None] * len(train.items)
        # the twin's class ("moving right" for "moving left") is each clip's hard negative
        negatives = [[prompts[train.items[t].label]] if t is not None and train.items[t].label != it.label
                     else [] for it, t in zip(train.items, twins)]
        log = {"strategy": train_strategy(model, train.videos, rows, texts, negatives, cfg, run_dir,
                                          progress, twins)}
        video = video_embeddings(model, train.videos)[rows]
        labels = torch.tensor([it.label for it in train.items])
        head = self.make_head(model, data)
        log["head_fit"] = fit_head(head, lambda h: F.cross_entropy(h(video), labels), head_cfg or HeadConfig())
        log["head"] = head
        return log

    def make_head(self, model, data: TaskData) -> ClassHead:
        return ClassHead(class_weights(model, data.meta["classes"]), model.logit_scale)

    # -- scores and files ----------------------------------------------------------------
    def evaluate(self, split: Split, predictions) -> dict:
        labelled = [k for k, it in enumerate(split.items) if it.label is not None]
        if not labelled:
            return {"note": "no labelled clips to score"}
        scores = predictions["scores"][labelled]
        labels = np.array([split.items[k].label for k in labelled])
        result = metrics.topk_accuracy(scores, labels, ks=(1, 5))
        result["chance_top1"] = 100.0 / scores.shape[1]
        result["clips"] = len(labelled)
        return result

    def write_predictions(self, split: Split, predictions, out_dir) -> Path:
        scores, classes = predictions["scores"], predictions["classes"]
        results = {}
        for item, row in zip(split.items, scores):
            top = np.argsort(-row)[:5]
            results[split.videos.ids[item.video]] = [{"label": classes[c], "score": float(row[c])} for c in top]
        payload = {"version": "KINETICS", "results": results, "external_data": {"used": False}}
        return save_json(Path(out_dir) / "predictions.json", payload)
