"""Every evaluation metric of the workbench, in one place, following the reference evaluators.

Each task (DESIGN §5) is scored here and nowhere else, so a number in a notebook, the app and a
benchmark means the same thing and can be compared with the paper that reports it:

- retrieval (text<->video): R@1/5/10, MdR, MnR — CLIP4Clip ``metrics.py`` (Luo et al., 2021);
- recognition: top-k accuracy;
- temporal grounding: R1@IoU, mIoU; QVHighlights moment-retrieval mAP / R1 and highlight-detection
  mAP / HIT@1 — Moment-DETR ``standalone_eval/eval.py`` (Lei et al., NeurIPS 2021);
- spatio-temporal grounding: m_tIoU, m_vIoU, vIoU@R — TubeDETR ``datasets/hcstvg_eval.py``
  (Yang et al., CVPR 2022), with the vIoU union as defined by STGRN/VidSTG (Zhang et al., 2020);
- video QA: accuracy, overall and per question type;
- captioning: BLEU-4 and CIDEr-D — coco-caption ``pycocoevalcap`` (Chen et al., 2015), rewritten
  self-contained so there is no Java or pycocoevalcap dependency.

Conventions shared by every function (so results read alike):

- inputs may be numpy arrays, torch tensors or nested lists; outputs are plain Python floats;
- summary scores that are fractions (recall, accuracy, mAP, mean IoU) are percentages 0-100, as
  the references print them; per-item IoUs (``temporal_iou``, ``box_iou``) stay in [0, 1]; ranks
  are 1-based; BLEU (0-1) and CIDEr (0-10) keep coco-caption's native scale;
- **ties count against the prediction**: an item is ranked below every wrong item that scores the
  same, so a constant score matrix can never look perfect. With continuous similarities ties do
  not happen and the numbers equal the references'.
"""
from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

ArrayLike = Any  # numpy array, torch tensor or nested sequence


def _as_array(x: ArrayLike, dtype: Any = None) -> np.ndarray:
    """numpy view of ``x``; torch tensors are detached and moved to CPU without importing torch."""
    if hasattr(x, "detach"):  # a torch tensor
        x = x.detach().cpu()
        if x.is_floating_point():
            x = x.float()  # numpy has no bfloat16
        x = x.numpy()
    return np.asarray(x, dtype=dtype)


def _percent(hits: np.ndarray) -> float:
    return float(100.0 * np.mean(hits))


# --------------------------------------------------------------------------------------------
# Ranking: retrieval, recognition, multiple-choice QA
# --------------------------------------------------------------------------------------------

def _correct_mask(gt: ArrayLike | None, num_rows: int, num_cols: int) -> np.ndarray:
    """[Q,V] boolean matrix of correct (query, column) pairs from any accepted ``gt`` form."""
    if gt is None:
        if num_rows != num_cols:
            raise ValueError(f"gt=None needs a square similarity matrix, got {num_rows}x{num_cols}")
        return np.eye(num_rows, dtype=bool)
    gt = _as_array(gt)
    if gt.dtype == bool:
        if gt.shape != (num_rows, num_cols):
            raise ValueError(f"boolean gt has shape {gt.shape}, expected {(num_rows, num_cols)}")
        if not gt.any(axis=1).all():
            raise ValueError(f"queries without a correct column: {np.flatnonzero(~gt.any(1))[:10]}")
        return gt
    if gt.shape != (num_rows,) or not np.issubdtype(gt.dtype, np.integer):
        raise ValueError(f"gt must be int[{num_rows}] or bool[{num_rows},{num_cols}], got "
                         f"{gt.dtype}{list(gt.shape)}")
    if gt.size and (gt.min() < 0 or gt.max() >= num_cols):
        raise ValueError(f"gt indices must lie in [0, {num_cols}), got [{gt.min()}, {gt.max()}]")
    mask = np.zeros((num_rows, num_cols), dtype=bool)
    mask[np.arange(num_rows), gt] = True
    return mask


def _pessimistic_ranks(scores: np.ndarray, correct: np.ndarray) -> np.ndarray:
    """1-based rank of each row's best-scoring correct column, ties broken against the row.

    rank = 1 + number of *wrong* columns scoring >= the best correct one. Other correct columns
    never push the rank down (the query only needs one of them).
    """
    if np.isnan(scores).any():
        raise ValueError("scores contain NaN; rank would be undefined")
    best_correct = np.where(correct, scores, -np.inf).max(axis=1)          # [Q]
    wrong_at_or_above = (scores >= best_correct[:, None]) & ~correct      # [Q,V]
    return wrong_at_or_above.sum(axis=1) + 1


def _scores_matrix(sim: ArrayLike) -> np.ndarray:
    sim = _as_array(sim, dtype=np.float64)
    if sim.ndim != 2 or sim.shape[0] == 0 or sim.shape[1] == 0:
        raise ValueError(f"expected a non-empty [Q,V] score matrix, got shape {list(sim.shape)}")
    return sim


def retrieval_metrics(sim: ArrayLike, gt: ArrayLike | None = None) -> dict[str, float]:
    """R@1/5/10 (%), median rank MdR and mean rank MnR (1-based) of a [Q,V] similarity matrix.

    Rows are queries. ``gt`` says which columns are correct: ``None`` (square; query i matches
    column i), ``int[Q]`` (the correct column per query — several captions may point at the same
    video) or ``bool[Q,V]`` (the rank is that of the best-ranked correct column).

    Follows CLIP4Clip ``metrics.py`` (``compute_metrics`` / ``tensor_text_to_video_metrics``,
    github.com/ArrowLuo/CLIP4Clip): R@k = share of queries whose correct item ranks <= k,
    MdR = median rank, MnR = mean rank. Ties are pessimistic (see module docstring); CLIP4Clip
    leaves them to ``np.sort``/``argsort`` order, which with a constant matrix is arbitrary
    (and the ``argmax`` variant of later forks scores it R@1 = 100). MdR is ``np.median``
    everywhere, as CLIP4Clip's ``compute_metrics``; its multi-caption path uses
    ``torch.median``, which takes the lower middle rank when the count is even (<= 0.5 lower).
    """
    sim = _scores_matrix(sim)
    ranks = _pessimistic_ranks(sim, _correct_mask(gt, *sim.shape))
    return {
        "R1": _percent(ranks <= 1),
        "R5": _percent(ranks <= 5),
        "R10": _percent(ranks <= 10),
        "MdR": float(np.median(ranks)),
        "MnR": float(np.mean(ranks)),
    }


def _max_over_captions(sim: np.ndarray, caption_to_video: np.ndarray) -> np.ndarray:
    """[C,V] caption-video scores -> [V_groups, V]: each video's captions pooled by their max."""
    num_videos = sim.shape[1]
    counts = np.bincount(caption_to_video, minlength=num_videos)
    if (counts == 0).any():
        raise ValueError(f"videos without any caption cannot be ranked: "
                         f"{np.flatnonzero(counts == 0)[:10].tolist()}")
    order = np.argsort(caption_to_video, kind="stable")
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    return np.maximum.reduceat(sim[order], starts, axis=0)


def retrieval_metrics_both_ways(
    sim_text_video: ArrayLike,
    caption_to_video: ArrayLike | None = None,
    video_to_text: str = "group_max",
) -> dict[str, dict[str, float]]:
    """Text->video and video->text retrieval metrics from one [C,V] caption-video matrix.

    ``caption_to_video[c]`` is the video caption ``c`` describes (``None``: one caption per
    video, square matrix). Text->video: every caption is a query for its video.

    Video->text follows CLIP4Clip's multi-sentence evaluation (``tensor_video_to_text_sim`` then
    ``compute_metrics``, github.com/ArrowLuo/CLIP4Clip): each video's captions are pooled into one
    candidate scored by its best caption, and a video's rank is that of its own caption group
    among the V groups (``video_to_text="group_max"``). ``"any_caption"`` instead ranks all C
    captions and takes the best rank of any own caption (the COCO/Flickr image-text convention);
    it is never better than ``group_max``, since other videos' captions each count.
    """
    sim = _scores_matrix(sim_text_video)
    if caption_to_video is None:
        caption_to_video = np.arange(sim.shape[0])
    caption_to_video = _as_array(caption_to_video)
    t2v = retrieval_metrics(sim, caption_to_video)   # validates caption_to_video
    if video_to_text == "group_max":
        v2t = retrieval_metrics(_max_over_captions(sim, caption_to_video).T)
    elif video_to_text == "any_caption":
        v2t = retrieval_metrics(sim.T, _correct_mask(caption_to_video, *sim.shape).T)
    else:
        raise ValueError(
            f"video_to_text must be 'group_max' or 'any_caption', not {video_to_text!r}")
    return {"t2v": t2v, "v2t": v2t}


def topk_accuracy(
    scores: ArrayLike, labels: ArrayLike, ks: Sequence[int] = (1, 5)
) -> dict[str, float]:
    """Top-k accuracy (%) of [N,C] class scores; keys ``top{k}``.

    A k larger than the number of classes is clipped to it (every sample is then a hit), which
    lets the same call score 3-class toy sets and Kinetics-400. Ties are pessimistic.
    """
    scores = _scores_matrix(scores)
    ranks = _pessimistic_ranks(scores, _correct_mask(_as_array(labels), *scores.shape))
    return {f"top{k}": _percent(ranks <= min(k, scores.shape[1])) for k in ks}


def qa_accuracy(
    pred: ArrayLike, answers: ArrayLike, types: Sequence[Hashable] | None = None
) -> dict[str, Any]:
    """Multiple-choice QA accuracy (%), overall and per question type (NExT-QA style).

    ``pred`` is either the chosen answer index per question ``[N]`` or answer scores ``[N,C]``
    (a question is right only if its answer scores strictly highest: ties are wrong).
    """
    pred, answers = _as_array(pred), _as_array(answers)
    if pred.ndim == 2:
        scores = _scores_matrix(pred)
        correct = _pessimistic_ranks(scores, _correct_mask(answers, *scores.shape)) == 1
    else:
        if pred.shape != answers.shape:
            raise ValueError(f"pred {list(pred.shape)} and answers {list(answers.shape)} differ")
        correct = pred == answers
    if correct.size == 0:
        raise ValueError("no questions to score")
    per_type: dict[Hashable, float] = {}
    if types is not None:
        types = list(types)
        if len(types) != len(correct):
            raise ValueError(f"{len(types)} types for {len(correct)} questions")
        for kind in sorted(set(types), key=str):
            per_type[kind] = _percent(correct[[t == kind for t in types]])
    return {"accuracy": _percent(correct), "per_type": per_type}


# --------------------------------------------------------------------------------------------
# Temporal grounding
# --------------------------------------------------------------------------------------------

def _windows(x: ArrayLike, name: str) -> np.ndarray:
    w = _as_array(x, dtype=np.float64)
    if w.shape[-1:] != (2,):
        raise ValueError(f"{name} must be [..., 2] (start, end) windows, got {list(w.shape)}")
    if (w[..., 1] < w[..., 0]).any():
        raise ValueError(f"{name} has windows that end before they start")
    return w


def temporal_iou(pred: ArrayLike, gt: ArrayLike) -> np.ndarray:
    """Elementwise (paired) IoU of [N,2] or [2] (start, end) windows; broadcasts like numpy.

    Two empty or disjoint windows have IoU 0 (Moment-DETR ``compute_temporal_iou_batch_paired``
    returns 0 where the union is 0 as well).
    """
    a, b = _windows(pred, "pred"), _windows(gt, "gt")
    inter = np.clip(np.minimum(a[..., 1], b[..., 1]) - np.maximum(a[..., 0], b[..., 0]), 0, None)
    union = (a[..., 1] - a[..., 0]) + (b[..., 1] - b[..., 0]) - inter
    return np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)


def temporal_iou_matrix(a: ArrayLike, b: ArrayLike) -> np.ndarray:
    """[N,2] x [M,2] windows -> [N,M] IoU of every pair."""
    return temporal_iou(_windows(a, "a")[:, None, :], _windows(b, "b")[None, :, :])


def grounding_recall(
    pred_windows: ArrayLike, gt_windows: ArrayLike, thresholds: Sequence[float] = (0.3, 0.5, 0.7)
) -> dict[str, float]:
    """R1@IoU (%) and mIoU (%) of top-1 predicted windows against one GT window per query.

    A query counts at threshold t when IoU >= t, as in Moment-DETR ``compute_mr_r1`` and the
    Charades-STA evaluators (2D-TAN, Zhang et al. 2020). Keys: ``R1@0.3`` ... and ``mIoU``.
    """
    iou = temporal_iou(pred_windows, gt_windows)
    if iou.ndim != 1 or iou.size == 0:
        raise ValueError(f"expected [N,2] windows with N >= 1, got IoU shape {list(iou.shape)}")
    out = {f"R1@{t:g}": _percent(iou >= t) for t in thresholds}
    out["mIoU"] = _percent(iou)
    return out


# --------------------------------------------------------------------------------------------
# QVHighlights (Moment-DETR standalone_eval)
# --------------------------------------------------------------------------------------------

MR_IOU_THRESHOLDS = tuple(round(0.5 + 0.05 * i, 2) for i in range(10))  # 0.5:0.05:0.95
MR_MAX_PRED_WINDOWS = 10          # only the first 10 listed windows enter mAP
MR_LENGTH_RANGES = {"short": (0, 10), "middle": (10, 30), "long": (30, 150), "full": None}
HL_MIN_SCORES = {"Fair": 2, "Good": 3, "VeryGood": 4}  # saliency >= this is a positive clip
HL_CLIP_SECONDS = 2


def _voc_interpolated_ap(precision: np.ndarray, recall: np.ndarray) -> float:
    """Area under the precision envelope (VOC 2011 / ActivityNet), recall steps as widths."""
    p = np.concatenate([[0.0], precision, [0.0]])
    r = np.concatenate([[0.0], recall, [1.0]])
    p = np.maximum.accumulate(p[::-1])[::-1]        # best precision at this recall or beyond
    steps = np.flatnonzero(r[1:] != r[:-1]) + 1
    return float(np.sum((r[steps] - r[steps - 1]) * p[steps]))


def _greedy_true_positives(iou: np.ndarray, threshold: float) -> np.ndarray:
    """[P,G] IoU of score-sorted predictions -> bool[P]: each GT window is matched at most once,
    every prediction taking the highest-IoU GT still free (ActivityNet detection matching).

    Equal IoUs go to the later-listed GT window, as the reference's ``argsort()[::-1]`` does;
    the choice matters because it decides which window is left for later predictions.
    """
    taken = np.zeros(iou.shape[1], dtype=bool)
    hits = np.zeros(iou.shape[0], dtype=bool)
    for p, row in enumerate(iou):
        free = np.flatnonzero(~taken & (row >= threshold))
        if free.size:
            taken[free[np.flatnonzero(row[free] == row[free].max())[-1]]] = True
            hits[p] = True
    return hits


def _detection_ap(pred: np.ndarray, gt: np.ndarray, thresholds: Sequence[float]) -> np.ndarray:
    """AP per IoU threshold of one query's scored windows [P,3] against its GT windows [G,2]."""
    if len(pred) == 0:
        return np.zeros(len(thresholds))
    pred = pred[np.argsort(-pred[:, 2], kind="stable")]   # stable: ties keep the listed order
    iou = temporal_iou_matrix(pred[:, :2], gt)
    ranks = np.arange(1, len(pred) + 1)
    aps = []
    for t in thresholds:
        tp = np.cumsum(_greedy_true_positives(iou, t))
        aps.append(_voc_interpolated_ap(tp / ranks, tp / len(gt)))
    return np.array(aps)


def _top1_iou(pred: np.ndarray, gt: np.ndarray) -> float:
    """IoU of the first listed window with the GT window it overlaps most (0 if none listed)."""
    return float(temporal_iou_matrix(pred[:1, :2], gt).max()) if len(pred) else 0.0


def _index_by_qid(items: Sequence[Mapping], what: str) -> dict[Hashable, Mapping]:
    by_qid = {d["qid"]: d for d in items}
    if len(by_qid) != len(items):
        raise ValueError(f"{what} has repeated qids")
    return by_qid


def _pred_windows(pred: Mapping) -> np.ndarray:
    """[P,3] (start, end, score) rows of the first listed windows; [0,3] if none."""
    windows = pred.get("pred_relevant_windows")
    rows = np.asarray([] if windows is None else windows[:MR_MAX_PRED_WINDOWS], dtype=np.float64)
    if rows.size == 0:
        return np.zeros((0, 3))
    if rows.ndim != 2 or rows.shape[1] < 3:
        raise ValueError(
            f"qid {pred['qid']}: pred_relevant_windows must be [[start, end, score], ...]")
    return rows[:, :3]


def _moment_retrieval(preds: dict, gts: dict) -> dict[str, float]:
    out: dict[str, float] = {}
    for name, length_range in MR_LENGTH_RANGES.items():
        aps, top1 = [], []
        for qid, gt in gts.items():
            windows = _windows(np.array(gt["relevant_windows"], dtype=np.float64).reshape(-1, 2),
                               f"relevant_windows of qid {qid}")
            if length_range is not None:
                lengths = windows[:, 1] - windows[:, 0]
                windows = windows[(lengths > length_range[0]) & (lengths <= length_range[1])]
            if len(windows) == 0:
                if length_range is None:
                    raise ValueError(f"qid {qid} has no relevant_windows")
                continue
            pred = _pred_windows(preds[qid])
            aps.append(_detection_ap(pred, windows, MR_IOU_THRESHOLDS))
            top1.append(_top1_iou(pred, windows))
        ap_per_threshold = np.mean(aps, axis=0) if aps else np.full(len(MR_IOU_THRESHOLDS), np.nan)
        out[f"MR-{name}-mAP"] = float(100 * np.mean(ap_per_threshold))
        if length_range is None:
            out["MR-full-mAP@0.5"] = float(100 * ap_per_threshold[MR_IOU_THRESHOLDS.index(0.5)])
            out["MR-full-mAP@0.75"] = float(100 * ap_per_threshold[MR_IOU_THRESHOLDS.index(0.75)])
            out["MR-full-R1@0.5"] = _percent(np.array(top1) >= 0.5)
            out["MR-full-R1@0.7"] = _percent(np.array(top1) >= 0.7)
    return out


def _saliency_ap(positive: np.ndarray, scores: np.ndarray) -> float:
    """AP of clip scores against binary labels, as video2gif's ``get_ap`` used by Moment-DETR.

    Precision is measured at each distinct score threshold (tied clips enter together), made
    monotone (best precision at this recall or beyond), and averaged over the distinct recall
    levels reached — a plain mean, not recall-weighted. All-positive labels give 1, none give 0.
    """
    if positive.all():
        return 1.0
    if not positive.any():
        return 0.0
    order = np.argsort(-scores, kind="stable")
    sorted_scores, sorted_pos = scores[order], positive[order]
    cut = np.concatenate([np.flatnonzero(np.diff(sorted_scores)), [len(scores) - 1]])
    tp = np.cumsum(sorted_pos)[cut]
    precision, recall = tp / (cut + 1), tp / tp[-1]
    envelope = np.maximum.accumulate(precision[::-1])[::-1]
    levels = np.unique(recall[recall > 0])
    return float(np.mean([envelope[recall >= r].max() for r in levels]))


def _clip_saliency(gt: Mapping, num_pred_clips: int) -> np.ndarray:
    """[clips, annotators] saliency (0..4) over the whole video; unlisted clips are 0.

    The clip count is ``duration / 2`` as in the reference; without ``duration`` (our own
    ShapesWorld records) it is the number of predicted clips, or enough to hold every listed clip.
    """
    ids = np.asarray(gt.get("relevant_clip_ids", []), dtype=int)
    scores = np.asarray(gt.get("saliency_scores", []), dtype=np.float64)
    if ids.size == 0:
        scores = np.zeros((0, 3))                      # three annotators in QVHighlights
    if scores.shape[:1] != ids.shape or scores.ndim != 2:
        raise ValueError(
            f"qid {gt['qid']}: saliency_scores must be [len(relevant_clip_ids), annotators]")
    if "duration" in gt:
        num_clips = int(gt["duration"] / HL_CLIP_SECONDS)
    else:
        num_clips = max(num_pred_clips, int(ids.max()) + 1 if ids.size else 0)
    if ids.size and ids.max() >= num_clips:
        raise ValueError(f"qid {gt['qid']}: relevant_clip_ids reach {ids.max()} but the video "
                         f"has {num_clips} clips")
    full = np.zeros((num_clips, scores.shape[1]))
    full[ids] = scores
    return full


def _fit_length(scores: np.ndarray, length: int) -> np.ndarray:
    """Cut or zero-pad predicted clip scores to the video's clip count (as the reference does)."""
    out = np.zeros(length)
    out[: min(length, len(scores))] = scores[:length]
    return out


def _hit_at_one(pred: np.ndarray, positive: np.ndarray) -> bool:
    """Whether the top-scored clip (the first one on ties, as ``np.argmax`` in the reference) is
    positive for any annotator; a top clip past the video's end is a miss."""
    if len(pred) == 0:
        return False
    top = int(np.argmax(pred))
    return top < len(positive) and bool(positive[top].any())


def _highlight_detection(preds: dict, gts: dict) -> dict[str, float]:
    out: dict[str, float] = {}
    per_query = []
    for qid, gt in gts.items():
        if "pred_saliency_scores" not in preds[qid]:
            raise ValueError(f"qid {qid} has no pred_saliency_scores")
        pred = np.asarray(preds[qid]["pred_saliency_scores"], dtype=np.float64)
        per_query.append((pred, _clip_saliency(gt, len(pred))))
    for level, min_score in HL_MIN_SCORES.items():
        hits, aps = [], []
        for pred, saliency in per_query:
            positive = saliency >= min_score                                 # [clips, annotators]
            hits.append(_hit_at_one(pred, positive))
            fitted = _fit_length(pred, len(positive))
            aps.extend(_saliency_ap(positive[:, a], fitted) for a in range(positive.shape[1]))
        out[f"HL-min-{level}-mAP"] = _percent(np.array(aps))
        out[f"HL-min-{level}-Hit1"] = _percent(np.array(hits))
    return out


def qvhighlights_eval(
    predictions: Sequence[Mapping], ground_truth: Sequence[Mapping], strict: bool = True
) -> dict[str, float]:
    """Moment retrieval and highlight detection scores in QVHighlights' JSONL formats (%).

    Follows Moment-DETR ``standalone_eval/eval.py`` (github.com/jayleicn/moment_detr) and returns
    the keys of its ``brief`` summary:

    - ``MR-full-mAP`` (mean over IoU 0.5:0.05:0.95), ``MR-full-mAP@0.5``, ``MR-full-mAP@0.75``,
      ``MR-{short,middle,long}-mAP`` (GT windows of length (0,10], (10,30], (30,150] s; NaN if a
      range holds no window): per query, the first 10 listed windows are sorted by score, matched
      greedily to GT windows, and AP is the area under the interpolated precision envelope
      (ActivityNet / VOC 2011); the mAP is the mean over queries.
    - ``MR-full-R1@0.5``, ``MR-full-R1@0.7``: the *first listed* window (predictions are expected
      ranked) against the GT window it overlaps most, hit when IoU >= t.
    - ``HL-min-{Fair,Good,VeryGood}-mAP`` and ``-Hit1``: clips with saliency >= 2/3/4 are
      positives. mAP averages :func:`_saliency_ap` over queries and the three annotators; HIT@1
      is whether the top-scored clip is positive for any annotator.

    One deliberate difference: a query with no predicted window scores AP 0 and an R1 miss (the
    reference drops it from mAP and fails in R1). Values are not rounded to 2 decimals.
    ``strict`` requires the two qid sets to match (the reference's ``match_number``); otherwise
    only shared qids are scored.
    """
    preds = _index_by_qid(predictions, "predictions")
    gts = _index_by_qid(ground_truth, "ground_truth")
    if set(preds) != set(gts):
        if strict:
            raise ValueError(f"qids differ: {len(set(gts) - set(preds))} without prediction, "
                             f"{len(set(preds) - set(gts))} without ground truth")
        gts = {q: g for q, g in gts.items() if q in preds}
    if not gts:
        raise ValueError("no queries to evaluate")
    out: dict[str, float] = {}
    if any("pred_relevant_windows" in preds[q] for q in gts):
        out.update(_moment_retrieval(preds, gts))
    if any("pred_saliency_scores" in preds[q] for q in gts):
        out.update(_highlight_detection(preds, gts))
    return out


# --------------------------------------------------------------------------------------------
# Spatio-temporal grounding (tubes)
# --------------------------------------------------------------------------------------------

Box = tuple[float, float, float, float]


@dataclass
class Tube:
    """A box per frame over the half-open frame range [start_frame, end_frame)."""

    start_frame: int                  # first frame of the tube
    end_frame: int                    # one past the last frame (as TubeDETR's ``sted``)
    boxes: dict[int, Box] = field(default_factory=dict)  # frame index -> (x1, y1, x2, y2)

    def __post_init__(self) -> None:
        if self.end_frame < self.start_frame:
            raise ValueError(f"tube ends ({self.end_frame}) before it starts ({self.start_frame})")

    @classmethod
    def coerce(cls, tube: Tube | Mapping) -> Tube:
        """Accept a Tube or a mapping with ``start``/``end`` (or ``start_frame``/``end_frame``)."""
        if isinstance(tube, Tube):
            return tube
        start = tube.get("start_frame", tube.get("start"))
        end = tube.get("end_frame", tube.get("end"))
        boxes = {int(f): tuple(b) for f, b in tube.get("boxes", {}).items()}
        return cls(int(start), int(end), boxes)


def box_iou(a: ArrayLike, b: ArrayLike) -> np.ndarray:
    """Elementwise IoU of [..., 4] (x1, y1, x2, y2) boxes, broadcasting; 0 where the union is 0."""
    a, b = _as_array(a, dtype=np.float64), _as_array(b, dtype=np.float64)
    if a.shape[-1:] != (4,) or b.shape[-1:] != (4,):
        raise ValueError(f"boxes must be [..., 4], got {list(a.shape)} and {list(b.shape)}")
    width = np.clip(np.minimum(a[..., 2], b[..., 2]) - np.maximum(a[..., 0], b[..., 0]), 0, None)
    height = np.clip(np.minimum(a[..., 3], b[..., 3]) - np.maximum(a[..., 1], b[..., 1]), 0, None)
    inter = width * height
    area_a = (a[..., 2] - a[..., 0]) * (a[..., 3] - a[..., 1])
    area_b = (b[..., 2] - b[..., 0]) * (b[..., 3] - b[..., 1])
    union = area_a + area_b - inter
    return np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)


def _tube_scores(pred: Tube, gt: Tube, frames: Sequence[int] | None) -> tuple[float, float]:
    """(tIoU, vIoU) of one predicted tube. vIoU = sum of box IoU over evaluated frames in the
    temporal intersection / number of evaluated frames in the temporal union."""
    t_iou = float(temporal_iou([pred.start_frame, pred.end_frame], [gt.start_frame, gt.end_frame]))
    union = (min(pred.start_frame, gt.start_frame), max(pred.end_frame, gt.end_frame))
    inter = (max(pred.start_frame, gt.start_frame), min(pred.end_frame, gt.end_frame))
    if frames is None:
        frames = range(*union)
    in_union = [f for f in frames if union[0] <= f < union[1]]
    in_inter = [f for f in in_union if inter[0] <= f < inter[1]]
    missing = [f for f in in_inter if f not in gt.boxes]
    if missing:
        raise ValueError(f"ground-truth tube has no box for frames {missing[:5]}")
    if not in_inter:
        return t_iou, 0.0
    # a frame the prediction left without a box counts as IoU 0
    pred_boxes = np.array([pred.boxes.get(f, (0.0, 0.0, 0.0, 0.0)) for f in in_inter])
    gt_boxes = np.array([gt.boxes[f] for f in in_inter])
    return t_iou, float(box_iou(pred_boxes, gt_boxes).sum() / max(len(in_union), 1))


def st_grounding_metrics(
    pred_tubes: Sequence[Tube | Mapping],
    gt_tubes: Sequence[Tube | Mapping],
    thresholds: Sequence[float] = (0.3, 0.5),
    sampled_frames: Sequence[Sequence[int]] | None = None,
) -> dict[str, float]:
    """m_tIoU, m_vIoU and vIoU@R (%) of predicted tubes, one per video.

    Follows TubeDETR ``datasets/hcstvg_eval.py`` / ``vidstg_eval.py`` (github.com/antoyang/
    TubeDETR): tIoU on the [start, end) frame spans, vIoU averaged over videos, vIoU@R counts
    videos with vIoU **>** R (strictly, as there). The temporal union uses the later end, per the
    STVG definition (Zhang et al., CVPR 2020) and TubeDETR's fix (issue #3); the first release
    took the earlier end and overstated vIoU. ``sampled_frames[i]`` lists the frames evaluated
    for video i (TubeDETR samples 5 fps); by default every frame of the union is evaluated.
    """
    if len(pred_tubes) != len(gt_tubes) or not gt_tubes:
        raise ValueError(f"need one prediction per video: {len(pred_tubes)} vs {len(gt_tubes)}")
    if sampled_frames is not None and len(sampled_frames) != len(gt_tubes):
        raise ValueError(
            f"sampled_frames has {len(sampled_frames)} entries for {len(gt_tubes)} videos")
    frames = sampled_frames if sampled_frames is not None else [None] * len(gt_tubes)
    scores = np.array([
        _tube_scores(Tube.coerce(p), Tube.coerce(g), f)
        for p, g, f in zip(pred_tubes, gt_tubes, frames)
    ])                                                                   # [videos, (tIoU, vIoU)]
    out = {"m_tIoU": _percent(scores[:, 0]), "m_vIoU": _percent(scores[:, 1])}
    out.update({f"vIoU@{t:g}": _percent(scores[:, 1] > t) for t in thresholds})
    return out


# --------------------------------------------------------------------------------------------
# Captioning (coco-caption BLEU-4 and CIDEr-D, self-contained)
# --------------------------------------------------------------------------------------------

_NOT_WORD = re.compile(r"[^\w\s]")
BLEU_MAX_N = 4
CIDER_SIGMA = 6.0


def _tokenize(text: str) -> list[str]:
    """Lowercase, punctuation to spaces, split: a stand-in for coco-caption's PTBTokenizer."""
    return _NOT_WORD.sub(" ", text.lower()).split()


def _ngram_counts(tokens: Sequence[str], max_n: int = BLEU_MAX_N) -> Counter:
    return Counter(tuple(tokens[i:i + n]) for n in range(1, max_n + 1)
                   for i in range(len(tokens) - n + 1))


def _caption_corpus(candidates: Sequence[str], references: Sequence[Sequence[str] | str]):
    """Tokenised (candidate, [references]) pairs; a bare string counts as one reference."""
    if len(candidates) != len(references) or not candidates:
        raise ValueError(
            f"need one reference list per candidate: {len(candidates)} vs {len(references)}")
    corpus = []
    for i, (cand, refs) in enumerate(zip(candidates, references)):
        refs = [refs] if isinstance(refs, str) else list(refs)
        if not refs:
            raise ValueError(f"candidate {i} has no reference")
        corpus.append((_tokenize(cand), [_tokenize(r) for r in refs]))
    return corpus


def bleu4(candidates: Sequence[str], references: Sequence[Sequence[str]]) -> float:
    """Corpus BLEU-4 (0-1) as coco-caption's ``Bleu(4)`` reports it (its 4th value).

    Follows ``pycocoevalcap/bleu/bleu_scorer.py`` (github.com/tylin/coco-caption; Papineni et al.,
    2002): clipped n-gram matches and candidate n-gram counts summed over the corpus, geometric
    mean of the four precisions, brevity penalty exp(1 - r/c) from the summed "closest" reference
    lengths (ties -> the shorter). It keeps coco-caption's smoothing constants (1e-15 / 1e-9) so
    a corpus without any 4-gram match scores ~0 rather than failing. Self-contained: no
    pycocoevalcap or Java; the tokeniser is the simplified :func:`_tokenize`.
    """
    matches, totals = np.zeros(BLEU_MAX_N), np.zeros(BLEU_MAX_N)
    cand_len = ref_len = 0
    for cand, refs in _caption_corpus(candidates, references):
        counts = _ngram_counts(cand)
        best_ref_counts = Counter()
        for ref in refs:
            best_ref_counts |= _ngram_counts(ref)                     # max count over references
        for gram, n in counts.items():
            matches[len(gram) - 1] += min(n, best_ref_counts[gram])
        totals += [max(0, len(cand) - n + 1) for n in range(1, BLEU_MAX_N + 1)]
        cand_len += len(cand)
        ref_len += min((abs(len(r) - len(cand)), len(r)) for r in refs)[1]
    precisions = (matches + 1e-15) / (totals + 1e-9)
    score = float(np.exp(np.mean(np.log(precisions))))
    ratio = (cand_len + 1e-15) / (ref_len + 1e-9)
    return score * math.exp(1 - 1 / ratio) if ratio < 1 else score


def _tfidf(counts: Counter, doc_freq: Counter, log_num_docs: float):
    """Per-n tf-idf vectors, their norms, and the length (in bigrams, as the reference counts)."""
    vectors: list[dict] = [{} for _ in range(BLEU_MAX_N)]
    for gram, tf in counts.items():
        vectors[len(gram) - 1][gram] = tf * (log_num_docs - math.log(max(1.0, doc_freq[gram])))
    norms = [math.sqrt(sum(v * v for v in vec.values())) for vec in vectors]
    length = sum(tf for gram, tf in counts.items() if len(gram) == 2)
    return vectors, norms, length


def _cider_similarity(cand, ref) -> np.ndarray:
    """Per-n clipped cosine similarity with the Gaussian length penalty (CIDEr-D)."""
    (c_vecs, c_norms, c_len), (r_vecs, r_norms, r_len) = cand, ref
    penalty = math.exp(-((c_len - r_len) ** 2) / (2 * CIDER_SIGMA ** 2))
    sims = np.zeros(BLEU_MAX_N)
    for n in range(BLEU_MAX_N):
        if c_norms[n] and r_norms[n]:
            # clipping: a candidate n-gram is credited at most its weight in the reference
            dot = sum(min(w, r_vecs[n].get(g, 0.0)) * r_vecs[n].get(g, 0.0)
                      for g, w in c_vecs[n].items())
            sims[n] = dot / (c_norms[n] * r_norms[n]) * penalty
    return sims


def cider(candidates: Sequence[str], references: Sequence[Sequence[str]]) -> float:
    """Corpus CIDEr-D (0-10) as coco-caption's ``Cider`` computes it.

    Follows ``pycocoevalcap/cider/cider_scorer.py`` (github.com/tylin/coco-caption; Vedantam et
    al., CVPR 2015): n-grams 1..4 weighted by tf x idf, where document frequency counts the items
    whose references contain the n-gram; per n, the candidate's vector is clipped to the
    reference's and cosine-compared, times exp(-Δlen²/2σ²) with σ = 6; mean over n and over
    references, x10, then mean over items. As in the reference, idf comes from this corpus alone,
    so a one-item corpus always scores 0. Self-contained (no pycocoevalcap); simplified tokeniser.
    """
    corpus = [(_ngram_counts(c), [_ngram_counts(r) for r in refs])
              for c, refs in _caption_corpus(candidates, references)]
    doc_freq: Counter = Counter()
    for _, refs in corpus:
        doc_freq.update(set().union(*refs))
    log_num_docs = math.log(len(corpus))
    scores = []
    for cand, refs in corpus:
        cand_vec = _tfidf(cand, doc_freq, log_num_docs)
        sims = [_cider_similarity(cand_vec, _tfidf(r, doc_freq, log_num_docs)) for r in refs]
        scores.append(10.0 * float(np.mean(sims)))
    return float(np.mean(scores))
