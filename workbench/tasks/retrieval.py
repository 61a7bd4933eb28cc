"""Text-video retrieval, both ways, and the time-reversed twin test.

Metrics follow CLIP4Clip's conventions (``workbench.metrics.retrieval_metrics``). The twin test
is the survey's central point made measurable: for every clip whose time-reversed twin is in the
gallery, does the model score its own caption above its twin's? Ties count one half, so a model
that cannot see order (mean pooling) scores exactly 50%.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from .. import metrics
from ..train import RetrievalData


@torch.no_grad()
def embed_videos(model, data: RetrievalData, batch_size: int = 32) -> torch.Tensor:
    """Normalised video embeddings [N,D]; feature-level strategies use ``data.features``, and so do
    ``frozen_frame_features`` ones for their ILFM part (only their own stream reads the pixels)."""
    model.eval()
    out = []
    for start in range(0, len(data), batch_size):
        cached = data.features[start:start + batch_size].to(model.backbone.device) if data.features is not None else None
        if model.input_level == "features" and cached is not None:
            out.append(model.pool(cached))
        else:
            frames = model.backbone.preprocess(data.frames[start:start + batch_size].to(model.backbone.device))
            out.append(model.encode_video_with_features(frames, cached) if model.frozen_frame_features
                       and cached is not None else model.encode_video(frames))
    return torch.cat(out).float().cpu()


@torch.no_grad()
def similarity(model, data: RetrievalData) -> tuple[torch.Tensor, list[str]]:
    """[N clips, U distinct captions] similarities and the caption list (column order)."""
    texts = list(dict.fromkeys(data.captions))
    video = embed_videos(model, data)
    text = model.encode_text(texts).float().cpu()
    return video @ text.t(), texts


def twin_accuracy(sim: torch.Tensor, texts: list[str], data: RetrievalData) -> float | None:
    """% of clips (with a twin) that prefer their own caption to their twin's; ties count half."""
    column = {t: i for i, t in enumerate(texts)}
    scores = []
    for i, j in enumerate(data.twin):
        if j is None or data.captions[i] == data.captions[j]:
            continue
        own, other = sim[i, column[data.captions[i]]], sim[i, column[data.captions[j]]]
        scores.append(1.0 if own > other else 0.5 if own == other else 0.0)
    return 100.0 * float(np.mean(scores)) if scores else None


def evaluate_retrieval(model, data: RetrievalData) -> dict:
    """t2v and v2t R@1/5/10, MdR, MnR, plus twin accuracy, on one gallery."""
    sim, texts = similarity(model, data)
    column = {t: i for i, t in enumerate(texts)}
    caption_of_clip = np.array([column[c] for c in data.captions])
    correct = caption_of_clip[:, None] == np.arange(len(texts))[None, :]    # [N clips, U texts]
    result = {"t2v": metrics.retrieval_metrics(sim.t().numpy(), correct.T),
              "v2t": metrics.retrieval_metrics(sim.numpy(), correct)}
    result["twin_accuracy"] = twin_accuracy(sim, texts, data)
    return result


# --------------------------------------------------------------------------------------------
# ShapesWorld: training data and the appearance / motion / order evaluation splits
# --------------------------------------------------------------------------------------------

def clips_to_data(clips, size: int) -> RetrievalData:
    """ShapesWorld clips -> RetrievalData (frames rendered at the model's input size)."""

    index = {c.clip_id: i for i, c in enumerate(clips)}
    frames = torch.from_numpy(np.stack([c.frames(size) for c in clips])).permute(0, 1, 4, 2, 3)
    return RetrievalData(frames.contiguous(), [c.caption for c in clips],
                         [index.get(c.twin_id) for c in clips],
                         [list(c.siblings) for c in clips])


def shapes_retrieval_data(split: str, profile, backbone, seed: int = 0):
    """Training clips (``split="train"``) or one evaluation split's clips and items.

    Returns ``RetrievalData`` for "train"; for "appearance" / "motion" / "order" returns
    ``(RetrievalData of the split's distinct clips, items)`` where items are the split's
    multiple-choice questions (:func:`workbench.data.shapes.clips.evaluation_split`).
    """
    from ..data.shapes.clips import evaluation_split, make_clips

    if split == "train":
        return clips_to_data(make_clips(seed, profile.clips_per_kind, profile.num_frames, "train"),
                             backbone.image_size)
    items = evaluation_split(split, seed, profile.eval_clips_per_kind, profile.num_frames)
    clips = list({item.clip.clip_id: item.clip for item in items}.values())
    return clips_to_data(clips, backbone.image_size), items


@torch.no_grad()
def multiple_choice_credit(model, data: RetrievalData, items) -> list[float]:
    """Per item: 1 if its true caption scores highest among its candidates, 1/k for a k-way tie, else 0."""
    video = embed_videos(model, data)
    row = {caption: i for i, caption in enumerate(data.captions)}
    texts = list(dict.fromkeys(t for item in items for t in item.candidates))
    text = model.encode_text(texts).float().cpu()
    column = {t: i for i, t in enumerate(texts)}
    credit = []
    for item in items:
        scores = video[row[item.clip.caption]] @ text[[column[t] for t in item.candidates]].t()
        best = torch.nonzero(scores == scores.max()).flatten().tolist()
        credit.append(1.0 / len(best) if item.answer in best else 0.0)
    return credit


def evaluate_splits(model, splits: dict) -> dict:
    """For each split name -> (data, items): multiple-choice accuracy, overall and ``by_kind``, and
    t2v retrieval. ``by_kind`` groups a kind with its time reversal ("grow/shrink"): a model blind
    to order wins one clip of each twin pair and loses the other, so it scores exactly 50 on every
    group, while per single kind it would show its caption bias (100 on "grow", 0 on "shrink")."""
    from ..data.shapes.clips import twin_pair

    out = {}
    for name, (data, items) in splits.items():
        result = evaluate_retrieval(model, data)
        credit = multiple_choice_credit(model, data, items)
        kinds: dict[str, list[float]] = {}
        for item, c in zip(items, credit):
            kinds.setdefault(twin_pair(item.clip.event), []).append(c)
        out[name] = {"mc_accuracy": 100.0 * float(np.mean(credit)),
                     "by_kind": {k: round(100.0 * float(np.mean(v)), 1) for k, v in kinds.items()},
                     "t2v_R1": result["t2v"]["R1"], "v2t_R1": result["v2t"]["R1"],
                     "twin_accuracy": result["twin_accuracy"]}
    return out


def splits_run_dir(name: str, profile, backbone, seed: int = 0, hard_negatives: bool = True,
                   text_head: bool = False) -> Path:
    """Where :func:`train_and_score` caches strategy ``name`` trained on the retrieval splits."""
    from .base import run_folder

    options = ("" if hard_negatives else "-no-hard-negatives") + ("-text-head" if text_head else "")
    return run_folder(name, f"retrieval-splits{options}", profile, backbone, seed)


def splits_run_cached(name: str, profile, backbone, seed: int = 0) -> bool:
    """True when :func:`train_and_score` (default options) would load ``name`` instead of training it."""
    return (splits_run_dir(name, profile, backbone, seed) / "state.json").exists()


def train_and_score(name: str, backbone, prepared: dict, profile, seed: int = 0, run_dir: Path | None = None,
                    hard_negatives: bool = True, text_head: bool | None = None, cache: bool = True,
                    progress: bool = False) -> tuple:
    """Strategy ``name`` trained on ShapesWorld clips — or loaded from a finished run — and
    scored on the appearance / motion / order splits: one row of ``workbench bench``.

    ``prepared`` is :func:`workbench.bench.prepare`'s dict; the budget is
    :func:`workbench.bench.train_config`'s. ``text_head``: add the text-side head (None: the
    strategy's default). With ``cache`` the run lives in ``run_dir`` (default:
    :func:`workbench.tasks.base.run_folder`, one folder per strategy, options, profile and seed)
    and a finished run is loaded instead of trained; a cached run that no longer fits the
    strategy is deleted and trained again, with a warning. Returns ``(model, row)``: the row's
    columns are :data:`workbench.bench.COLUMNS` (``train_s``: the original training time when
    loaded) plus ``steps`` and ``loaded`` (True: read from disk, nothing trained now).
    """
    import shutil
    import warnings

    from ..bench import SPLITS, train_config
    from ..config import seed_everything
    from ..strategies import create_strategy, flops_per_clip
    from ..train import train_retrieval

    def fresh():
        seed_everything(seed)
        return create_strategy(name, backbone, text_head=text_head)

    model = fresh()
    cfg = train_config(profile, model, hard_negatives, seed)
    if cache:
        run_dir = Path(run_dir or splits_run_dir(name, profile, backbone, seed, hard_negatives,
                                                 model.text_head is not None))
    loaded = cache and (run_dir / "state.json").exists() and bool(model.trainable_parameters())
    try:
        log = train_retrieval(model, prepared["train"], cfg, run_dir=run_dir if cache else None, progress=progress)
    except (ValueError, RuntimeError, KeyError) as error:
        if not loaded:
            raise
        warnings.warn(f"{run_dir}: cached run does not fit {name} ({error}); training again")
        shutil.rmtree(run_dir)
        model, loaded = fresh(), False
        log = train_retrieval(model, prepared["train"], cfg, run_dir=run_dir, progress=progress)
    scores = evaluate_splits(model, prepared["splits"])
    counts = model.parameter_counts()
    row = {"strategy": name, "family": model.family, "leaf": model.leaf, "temporal": model.temporal,
           "hard_negatives": hard_negatives, "text_head": model.text_head is not None,
           **{f"{s}_R1": round(scores[s]["t2v_R1"], 1) for s in SPLITS},
           "appearance_acc": round(scores["appearance"]["mc_accuracy"], 1),
           "motion_acc": round(scores["motion"]["mc_accuracy"], 1),
           "twin_acc": round(scores["order"]["mc_accuracy"], 1),
           "trainable_params": counts["trainable"], "total_params": counts["total"],
           "gflops_per_clip": round(flops_per_clip(model, profile.num_frames) / 1e9, 3),
           "train_s": round(log["wall_s"], 1), "steps": log["steps"], "loaded": loaded,
           "twin_by_kind": scores["order"]["by_kind"]}
    return model, row


# --------------------------------------------------------------------------------------------
# The registry's view of retrieval (workbench.tasks.base): the same functions behind the
# Task interface, so `workbench train|eval --task retrieval` and task benches reach them.
# --------------------------------------------------------------------------------------------

from .base import Split, Task, TaskData, register_task, render_clips, save_json  # noqa: E402


@register_task("retrieval")
class RetrievalTask(Task):
    """Text-video retrieval both ways (R@1/5/10, MdR, MnR) and the twin test, on any strategy.

    Items are :class:`~workbench.tasks.captioning.Captioned` (a video and its captions); every
    caption of a video counts as correct for it. "Trained" trains the strategy with the one
    contrastive loop (hard negatives: twins and same-object siblings); there is no extra head.
    """

    metric = "t2v_R1"
    formats = ("msrvtt",)

    @property
    def files(self):
        from .captioning import Captioning

        return Captioning.files

    def shapes_data(self, profile, backbone, seed: int = 0) -> TaskData:
        from ..data.shapes.clips import make_clips
        from .captioning import Captioned

        splits = {}
        for name, per_kind in (("train", profile.clips_per_kind), ("eval", profile.eval_clips_per_kind)):
            clips = make_clips(seed, per_kind, profile.num_frames, name)
            videos = render_clips(clips, backbone.image_size, profile.num_frames)
            index = videos.index()
            position = {c.clip_id: k for k, c in enumerate(clips)}
            items = [Captioned(index[c.clip_id], (c.caption,), tuple(c.hard_negatives())) for c in clips]
            splits[name] = Split(videos, items, name, twin=[position.get(c.twin_id) for c in clips])
        return TaskData(splits["train"], splits["eval"], "shapesworld")

    def load(self, path, backbone, profile, format=None, video_dir=None) -> TaskData:
        from .captioning import Captioning

        data = Captioning().load(path, backbone, profile, format, video_dir)
        return TaskData(data.train, data.eval, data.source)

    def predict(self, model, split: Split, head=None):
        from .base import text_embeddings, video_embeddings

        texts = list(dict.fromkeys(r for it in split.items for r in it.references))
        video = video_embeddings(model, split.videos)[[it.video for it in split.items]]
        return {"sim": (video @ text_embeddings(model, texts).t()).numpy(), "texts": texts}

    def train(self, model, data: TaskData, cfg, run_dir=None, progress=False, head_cfg=None) -> dict:
        from .base import train_strategy

        items = data.train.items
        log = train_strategy(model, data.train.videos, [it.video for it in items],
                             [it.references[0] for it in items], [list(it.negatives) for it in items],
                             cfg, run_dir, progress, data.train.twin)
        return {"strategy": log, "head": None}

    def evaluate(self, split: Split, predictions) -> dict:
        sim, texts = predictions["sim"], predictions["texts"]
        column = {t: i for i, t in enumerate(texts)}
        correct = np.zeros(sim.shape, dtype=bool)
        for k, it in enumerate(split.items):
            correct[k, [column[r] for r in it.references]] = True
        t2v = metrics.retrieval_metrics(sim.T, correct.T)
        v2t = metrics.retrieval_metrics(sim, correct)
        out = {**{f"t2v_{k}": v for k, v in t2v.items()}, **{f"v2t_{k}": v for k, v in v2t.items()}}
        if split.twin:
            scores = []
            for k, j in enumerate(split.twin):
                if j is None or split.items[k].references[0] == split.items[j].references[0]:
                    continue
                own = sim[k, column[split.items[k].references[0]]]
                other = sim[k, column[split.items[j].references[0]]]
                scores.append(1.0 if own > other else 0.5 if own == other else 0.0)
            out["twin_accuracy"] = 100.0 * float(np.mean(scores)) if scores else None
        return out

    def write_predictions(self, split: Split, predictions, out_dir) -> Path:
        """``{"text": [video ids, best first (top 10)]}``: the text-to-video ranking."""
        sim, texts = predictions["sim"], predictions["texts"]
        ids = [split.videos.ids[it.video] for it in split.items]
        ranking = {t: [ids[i] for i in np.argsort(-sim[:, j])[:10]] for j, t in enumerate(texts)}
        return save_json(Path(out_dir) / "predictions.json", ranking)
