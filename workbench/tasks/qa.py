"""Multiple-choice video QA: zero-shot (question + answer scored as text) and trained; accuracy per type.

Zero-shot, as CLIP-based multiple-choice QA is usually done without a QA head (e.g. the
zero-shot NExT-QA baselines of VideoCLIP, Xu et al., EMNLP 2021, and of Buch et al.'s ATP, CVPR
2022): each (question, answer) pair becomes one sentence, every candidate sentence is scored
against the video embedding, and the best one is the answer. :func:`statement` turns common
English question forms into declarative sentences ("which way does the red circle move" + "to
the left" -> "the red circle moves to the left"), the style of caption an ILFM was trained on;
any other question falls back to "question answer".

Trained, in two stages (as in :mod:`~workbench.tasks.recognition`):
1. the strategy learns with the one contrastive loop on (video, right statement) pairs, the
   wrong answers' statements being the hard negatives;
2. a :class:`QAHead` is fit with cross-entropy over each question's choices, on cached
   embeddings: a :class:`~workbench.tasks.base.PairHead` (zero-initialised residual maps on the
   video and the text side) whose video side is *where the question looks*. The strategy embeds
   :data:`SEGMENTS` of the video (the whole, each half, the first and last quarter) and the
   question's own text embedding weighs them, as temporal-attention QA heads do (cf. Buch et
   al.'s ATP, CVPR 2022, which picks one frame per question). One pooled vector cannot answer
   both "what happens first" and "what happens last" of the same video when the statements
   differ only in their event; a question that looks at the start (or the end) can. The
   weights start at zero, so an untrained head scores exactly as zero-shot.

Accuracy is reported overall and per question type (``metrics.qa_accuracy``). ShapesWorld's
types are ``count``, ``colour``, ``direction`` and ``order`` ("what happens first / last": only
a model that sees frame order can answer). Real data: the NExT-QA CSV
(``video,frame_count,width,height,question,answer,qid,type,a0..a4``), types as its codes (CW, CH,
TN, TC, DC, DL, DO). Predictions are written as NExT-QA's ``eval_mc.py`` reads them:
``{"<video>_<qid>": {"prediction": i, "answer": j}}``.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .. import metrics
from .base import (HeadConfig, PairHead, Split, Task, TaskData, decode_records, fit_head, register_task,
                   render_clips, save_json, text_embeddings, train_strategy, video_embeddings)
from .temporal_grounding import embed_spans

# Parts of a video the trained head can look at, as fractions of its length: the whole video
# first (the zero-shot embedding), then the halves and the first and last quarter.
SEGMENTS = ((0.0, 1.0), (0.0, 0.5), (0.5, 1.0), (0.0, 0.25), (0.75, 1.0))


@dataclass(frozen=True)
class QAItem:
    """One multiple-choice question about video row ``video``."""

    video: int
    qid: int | str           # the dataset's question id within its video
    question: str
    choices: tuple[str, ...]
    answer: int | None       # index of the right choice (None: unlabelled test question)
    qtype: str               # question type (ShapesWorld name or the dataset's code)


_RULES = (
    # how many objects are there + two -> two objects
    (re.compile(r"^how many (?P<x>.+?) (?:are there|can you see|do you see)$"), "{a} {x}"),
    # what colour is the shape that moves up + red -> the red shape moves up
    (re.compile(r"^what colou?r is the (?P<x>\w+) (?:that|which|who) (?P<vp>.+)$"), "the {a} {x} {vp}"),
    # which way does the red circle move + to the left -> the red circle moves to the left
    (re.compile(r"^which (?:way|direction) does (?P<x>.+?) (?:move|go)$"), "{x} moves {a}"),
    # what happens first + the red circle grows -> first the red circle grows
    (re.compile(r"^what happens (?P<w>first|at first|at the start)$"), "first {a}"),
    (re.compile(r"^what happens (?P<w>last|at last|at the end|in the end)$"), "finally {a}"),
)


def statement(question: str, answer: str) -> str:
    """One declarative sentence for (question, answer); falls back to "question answer"."""
    q = question.strip().rstrip("?").strip().lower()
    a = answer.strip()
    for pattern, template in _RULES:
        match = pattern.match(q)
        if match:
            parts = match.groupdict()
            if "x" in parts and template == "{x} moves {a}" and a.lower().startswith("it "):
                return f"{parts['x']} {a[3:]}"          # "it stays still" -> "<x> stays still"
            if template == "{a} {x}" and a.lower() in ("one", "1") and parts["x"].endswith("s"):
                parts["x"] = parts["x"][:-1]             # "one objects" -> "one object"
            return template.format(a=a, **parts)
    return f"{question.strip()} {a}"


def statements(items: list[QAItem]) -> list[list[str]]:
    return [[statement(it.question, c) for c in it.choices] for it in items]


def segment_spans(num_frames: int) -> list[tuple[int, int]]:
    """:data:`SEGMENTS` as frame spans [s, e) of a ``num_frames``-frame video (at least one frame each)."""
    spans = []
    for lo, hi in SEGMENTS:
        s = min(num_frames - 1, int(round(lo * num_frames)))
        spans.append((s, max(s + 1, int(round(hi * num_frames)))))
    return spans


def segment_embeddings(model, videos) -> torch.Tensor:
    """``[N,S,D]``: the strategy's normalised embedding of every :data:`SEGMENTS` span of every
    video, each span resampled to the video's frame count (the clip length the strategy saw)."""
    num_frames = videos.frames.shape[1]
    spans = segment_spans(num_frames)
    return torch.stack([embed_spans(model, videos, row, spans, num_frames) for row in range(len(videos))])


class QAHead(PairHead):
    """A :class:`PairHead` whose video side depends on the question: ``v = v_whole + sum_s w_s(q) v_s``
    over the strategy's :data:`SEGMENTS` embeddings, ``w = MLP(question embedding)`` with a
    zero-initialised output (so the untrained head is zero-shot)."""

    def __init__(self, dim: int, scale: float, segments: int = len(SEGMENTS), hidden: int = 64):
        super().__init__(dim, scale)
        self.where = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, segments))
        nn.init.zeros_(self.where[-1].weight)
        nn.init.zeros_(self.where[-1].bias)

    def weights(self, question: torch.Tensor) -> torch.Tensor:
        """[Q,D] question embeddings -> [Q,S] segment weights (added to the whole video's one)."""
        return self.where(question)

    def look(self, question: torch.Tensor, segments: torch.Tensor) -> torch.Tensor:
        """[Q,D], [Q,S,D] -> [Q,D] the video as this question sees it (normalised, mapped)."""
        return self.embed_video(segments[:, 0] + (self.weights(question)[..., None] * segments).sum(1))

    def score(self, question: torch.Tensor, segments: torch.Tensor, choices: torch.Tensor) -> torch.Tensor:
        """[Q,D], [Q,S,D], [Q,C,D] choice statements -> [Q,C] logits."""
        return self.log_scale.exp() * torch.einsum("qd,qcd->qc", self.look(question, segments),
                                                   self.embed_text(choices))


@register_task("qa")
class QA(Task):
    metric = "accuracy"
    formats = ("nextqa",)
    files = {"nextqa": {"train": ("train.csv", "*train*.csv"),
                        "eval": ("val.csv", "*val*.csv", "test.csv", "*test*.csv")}}

    # -- data ----------------------------------------------------------------------------
    def shapes_data(self, profile, backbone, seed: int = 0) -> TaskData:
        """Questions on ShapesWorld clips and long videos (train clips + train long videos;
        held-out clips + test long videos), every video sampled at ``profile.num_frames``."""
        from ..data.shapes.clips import make_clips
        from ..data.shapes.long_videos import make_long_videos
        from ..data.shapes.questions import clip_questions, long_video_questions

        n_test = max(1, profile.long_videos // 4)
        parts = {"train": (make_clips(seed, profile.clips_per_kind, profile.num_frames, "train"),
                           make_long_videos(seed, profile.long_videos - n_test, "train")),
                 "eval": (make_clips(seed, profile.eval_clips_per_kind, profile.num_frames, "eval"),
                          make_long_videos(seed, n_test, "test"))}
        splits = {}
        for name, (clips, long_videos) in parts.items():
            videos = render_clips([*clips, *long_videos], backbone.image_size, profile.num_frames)
            index = videos.index()
            questions = [q for c in clips for q in clip_questions(c, seed)]
            questions += [q for v in long_videos for q in long_video_questions(v, seed)]
            items = [QAItem(index[q.video_id], q.qid, q.question, q.choices, q.answer, q.qtype)
                     for q in questions]
            splits[name] = Split(videos, items, name)
        return TaskData(splits["train"], splits["eval"], "shapesworld", {"chance": 20.0})

    def load(self, path, backbone, profile, format=None, video_dir=None) -> TaskData:
        from ..data.formats import read_dataset

        fmt, train_file, eval_file, guess = self.resolve(path, format)
        video_dir = Path(video_dir) if video_dir else guess
        splits = {}
        for name, file in (("train", train_file), ("eval", eval_file)):
            if file is None:
                splits[name] = None
                continue
            records = read_dataset(fmt, file, video_dir)
            videos, row = decode_records(records, profile.num_frames, backbone.image_size)
            items = [QAItem(row[str(r.path)], r.extra.get("qid", k), r.question, tuple(r.choices), r.answer,
                            r.qtype or "all") for k, r in enumerate(records) if str(r.path) in row]
            splits[name] = Split(videos, items, name)
        choices = {len(it.choices) for it in splits["eval"].items}
        return TaskData(splits["train"], splits["eval"], f"{fmt}:{eval_file}",
                        {"chance": 100.0 / max(choices)})

    # -- models --------------------------------------------------------------------------
    def predict(self, model, split: Split, head: QAHead | None = None):
        texts = statements(split.items)
        distinct = list(dict.fromkeys(t for row in texts for t in row))
        column = {t: i for i, t in enumerate(distinct)}
        text = text_embeddings(model, distinct)
        scores = np.full((len(split.items), max(len(r) for r in texts)), -np.inf, dtype=np.float32)
        if head is None:
            video = video_embeddings(model, split.videos)
            for k, (item, row) in enumerate(zip(split.items, texts)):
                scores[k, :len(row)] = (text[[column[t] for t in row]] @ video[item.video]).numpy()
            return {"scores": scores, "prediction": scores.argmax(1)}
        segments = segment_embeddings(model, split.videos)
        questions = self.question_embeddings(model, split.items)
        with torch.no_grad():
            for k, (item, row) in enumerate(zip(split.items, texts)):
                scores[k, :len(row)] = head.score(questions[k:k + 1], segments[item.video][None],
                                                  text[[column[t] for t in row]][None])[0].numpy()
        return {"scores": scores, "prediction": scores.argmax(1)}

    @staticmethod
    def question_embeddings(model, items: list[QAItem]) -> torch.Tensor:
        """[Q,D]: each item's question through the strategy's text side (distinct ones encoded once)."""
        distinct = list(dict.fromkeys(it.question for it in items))
        row = {q: i for i, q in enumerate(distinct)}
        return text_embeddings(model, distinct)[[row[it.question] for it in items]]

    def train(self, model, data: TaskData, cfg, run_dir=None, progress=False,
              head_cfg: HeadConfig | None = None) -> dict:
        train = data.train
        if train is None:
            raise ValueError(f"{data.source}: no training split to train on")
        items = [it for it in train.items if it.answer is not None]
        texts = statements(items)
        rows = [it.video for it in items]
        right = [row[it.answer] for it, row in zip(items, texts)]
        wrong = [[t for j, t in enumerate(row) if j != it.answer] for it, row in zip(items, texts)]
        log = {"strategy": train_strategy(model, train.videos, rows, right, wrong, cfg, run_dir, progress)}
        segments = segment_embeddings(model, train.videos)[rows]                   # [Q,S,D]
        questions = self.question_embeddings(model, items)                          # [Q,D]
        n = len(texts[0])
        if any(len(r) != n for r in texts):
            raise ValueError("every training question needs the same number of choices")
        text = text_embeddings(model, [t for row in texts for t in row]).view(len(items), n, -1)
        answers = torch.tensor([it.answer for it in items])
        head = self.make_head(model, data)

        def loss(h):
            return F.cross_entropy(h.score(questions, segments, text), answers)

        log["head_fit"] = fit_head(head, loss, head_cfg or HeadConfig())
        log["head"] = head
        return log

    def make_head(self, model, data: TaskData) -> QAHead:
        return QAHead(model.backbone.embed_dim, model.logit_scale)

    # -- scores and files ----------------------------------------------------------------
    def evaluate(self, split: Split, predictions) -> dict:
        labelled = [k for k, it in enumerate(split.items) if it.answer is not None]
        if not labelled:
            return {"note": "no labelled questions to score"}
        result = metrics.qa_accuracy(predictions["scores"][labelled],
                                     [split.items[k].answer for k in labelled],
                                     [split.items[k].qtype for k in labelled])
        result["chance"] = split.meta.get("chance", 20.0)
        result["questions"] = len(labelled)
        return result

    def write_predictions(self, split: Split, predictions, out_dir) -> Path:
        payload = {f"{split.videos.ids[it.video]}_{it.qid}": {"prediction": int(p), "answer": it.answer}
                   for it, p in zip(split.items, predictions["prediction"])}
        return save_json(Path(out_dir) / "predictions.json", payload)
