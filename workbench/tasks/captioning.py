"""Captioning by retrieval: a video's caption is the best-matching sentence of a caption pool.

Retrieval-based captioning (the nearest-neighbour baseline of Devlin et al., *Exploring Nearest
Neighbor Approaches for Image Captioning*, 2015; for video, the retrieval captioners built on
CLIP such as Cap4Video's, CVPR 2023) needs no language decoder, so it runs on any strategy: the
pool is every training caption (MSR-VTT's train sentences; every wording of every ShapesWorld
training clip), each embedded once by the strategy's text side, and a video gets the pool
sentence closest to its embedding. On ShapesWorld the pool rarely holds the exact caption of a
held-out clip (other object and event combinations), so a good caption must find a training
sentence that gets the event and the objects right, not look the clip up.

Trained, in two stages as the other tasks: the strategy learns with the one contrastive loop on
(clip, caption) pairs (time-reversed twins and same-object siblings as hard negatives); then a
:class:`~workbench.tasks.base.PairHead` is fit over the pool (every wording of a clip's caption
a positive), on cached embeddings, :data:`HEAD_BATCH` random clips per step.

Scored with corpus BLEU-4 and CIDEr-D (``metrics.bleu4``, ``metrics.cider``) against every
reference of each video; :func:`constant_baseline` gives the score of the best single caption
said of every video, the floor any captioner must beat. Predictions are written in
coco-caption's results format (``[{"image_id": video_id, "caption": text}]``), as MSR-VTT
captioning evaluations read them.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .. import metrics
from .base import (HeadConfig, PairHead, Split, Task, TaskData, decode_records, fit_head, register_task,
                   render_clips, save_json, text_embeddings, train_strategy, video_embeddings)


@dataclass(frozen=True)
class Captioned:
    """Video row ``video`` and its reference captions."""

    video: int
    references: tuple[str, ...]
    negatives: tuple[str, ...] = ()   # hard-negative captions for training (ShapesWorld)


def caption_pool(split: Split) -> list[str]:
    """Every distinct reference of a split, in first-seen order."""
    return list(dict.fromkeys(r for it in split.items for r in it.references))


def constant_baseline(split: Split, pool: list[str], tries: int = 50, seed: int = 0) -> dict:
    """BLEU-4 and CIDEr of the best single pool caption given to every video (best of ``tries``
    random pool captions, chosen by CIDEr on this very split: an optimistic floor)."""
    rng = np.random.default_rng(seed)
    refs = [list(it.references) for it in split.items]
    picks = rng.choice(len(pool), size=min(tries, len(pool)), replace=False)
    best = max(((metrics.cider([pool[p]] * len(refs), refs), pool[p]) for p in picks))
    return {"caption": best[1], "cider": best[0], "bleu4": metrics.bleu4([best[1]] * len(refs), refs)}


HEAD_BATCH = 512   # clips per step of the pair head's fit (each against the whole caption pool)


@register_task("captioning")
class Captioning(Task):
    metric = "cider"
    formats = ("msrvtt",)
    files = {"msrvtt": {"train": ("MSRVTT_train.9k.csv", "MSRVTT_train*.csv"),
                        "eval": ("MSRVTT_JSFUSION_test.csv", "MSRVTT_data.json", "*test*.csv")}}

    # -- data ----------------------------------------------------------------------------
    def shapes_data(self, profile, backbone, seed: int = 0) -> TaskData:
        from ..data.shapes.clips import make_clips

        splits = {}
        for name, per_kind in (("train", profile.clips_per_kind), ("eval", profile.eval_clips_per_kind)):
            clips = make_clips(seed, per_kind, profile.num_frames, name)
            videos = render_clips(clips, backbone.image_size, profile.num_frames)
            index = videos.index()
            items = [Captioned(index[c.clip_id], tuple(c.captions()), tuple(c.hard_negatives())) for c in clips]
            position = {c.clip_id: k for k, c in enumerate(clips)}
            splits[name] = Split(videos, items, name, twin=[position.get(c.twin_id) for c in clips])
        return TaskData(splits["train"], splits["eval"], "shapesworld", {"pool": caption_pool(splits["train"])})

    def load(self, path, backbone, profile, format=None, video_dir=None) -> TaskData:
        """MSR-VTT: the eval file is CLIP4Clip's ``MSRVTT_JSFUSION_test.csv`` or
        ``MSRVTT_data.json`` (its ``test`` videos); references are every sentence of the video in
        ``MSRVTT_data.json`` when it is there. Training videos: ``MSRVTT_train.9k.csv``, or the
        json's ``train`` videos."""
        from ..data.formats import read_dataset

        fmt, train_file, eval_file, guess = self.resolve(path, format)
        video_dir = Path(video_dir) if video_dir else guess
        data_json = eval_file.with_name("MSRVTT_data.json")
        every = {r.video_id: r for r in read_dataset(fmt, data_json, video_dir)} if data_json.is_file() else {}
        eval_records = read_dataset(fmt, eval_file, video_dir)
        if eval_file.suffix == ".json":
            test = [r for r in eval_records if r.split == "test"]
            train_records = [r for r in eval_records if r.split == "train"] if train_file is None else None
            eval_records = test or eval_records
        else:
            train_records = None
        if train_file is not None:
            train_records = read_dataset(fmt, train_file, video_dir)
        splits = {}
        for name, records in (("train", train_records), ("eval", eval_records)):
            records = [r for r in (records or []) if r.captions or r.video_id in every]
            if not records:
                splits[name] = None
                continue
            videos, row = decode_records(records, profile.num_frames, backbone.image_size)
            items, seen = [], set()
            for r in records:
                if str(r.path) not in row or r.video_id in seen:
                    continue
                seen.add(r.video_id)
                refs = every[r.video_id].captions if r.video_id in every and every[r.video_id].captions else r.captions
                items.append(Captioned(row[str(r.path)], tuple(refs)))
            splits[name] = Split(videos, items, name)
        if splits["eval"] is None:
            raise ValueError(f"{eval_file}: no captioned test videos")
        pool = caption_pool(splits["train"]) if splits["train"] else caption_pool(splits["eval"])
        return TaskData(splits["train"], splits["eval"], f"{fmt}:{eval_file}", {"pool": pool})

    # -- models --------------------------------------------------------------------------
    def predict(self, model, split: Split, head: PairHead | None = None, pool: list[str] | None = None):
        pool = pool or split.meta["pool"]
        video = video_embeddings(model, split.videos)[[it.video for it in split.items]]
        text = text_embeddings(model, pool)
        with torch.no_grad():
            scores = head(video, text) if head is not None else video @ text.t()
        best = scores.argmax(1).tolist()
        return {"captions": [pool[b] for b in best], "scores": scores.max(1).values.numpy()}

    def train(self, model, data: TaskData, cfg, run_dir=None, progress=False,
              head_cfg: HeadConfig | None = None) -> dict:
        train, pool = data.train, data.meta["pool"]
        if train is None:
            raise ValueError(f"{data.source}: no training split to train on")
        rows = [it.video for it in train.items]
        texts = [it.references[0] for it in train.items]
        negatives = [list(it.negatives) for it in train.items]
        log = {"strategy": train_strategy(model, train.videos, rows, texts, negatives, cfg, run_dir,
                                          progress, train.twin)}
        video = video_embeddings(model, train.videos)[rows]
        text = text_embeddings(model, pool)
        column = {t: i for i, t in enumerate(pool)}
        positives = torch.zeros(len(rows), len(pool), dtype=torch.bool)
        for k, it in enumerate(train.items):
            positives[k, [column[r] for r in it.references if r in column]] = True
        head = self.make_head(model, data)
        head_cfg = head_cfg or HeadConfig()
        # Each step scores a random batch of clips against the whole pool: with 6,400 clips and a
        # pool of thousands of sentences a full batch is ~10x the work for the same fit.
        generator = torch.Generator().manual_seed(head_cfg.seed)

        def loss(h):
            batch = torch.randperm(len(rows), generator=generator)[:HEAD_BATCH]
            log_p = torch.log_softmax(h(video[batch], text), dim=1)
            return -(torch.logsumexp(log_p.masked_fill(~positives[batch], -torch.inf), dim=1)).mean()

        log["head_fit"] = fit_head(head, loss, head_cfg)
        log["head"] = head
        return log

    def make_head(self, model, data: TaskData) -> PairHead:
        return PairHead(model.backbone.embed_dim, model.logit_scale)

    # -- scores and files ----------------------------------------------------------------
    def evaluate(self, split: Split, predictions) -> dict:
        refs = [list(it.references) for it in split.items]
        return {"bleu4": metrics.bleu4(predictions["captions"], refs),
                "cider": metrics.cider(predictions["captions"], refs), "videos": len(refs)}

    def write_predictions(self, split: Split, predictions, out_dir) -> Path:
        payload = [{"image_id": split.videos.ids[it.video], "caption": c}
                   for it, c in zip(split.items, predictions["captions"])]
        return save_json(Path(out_dir) / "predictions.json", payload)
