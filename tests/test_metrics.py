"""Tests for workbench.metrics: hand-computed cases (arithmetic in the comments), edge cases, and
hypothesis properties that any correct implementation of these metrics must have."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from workbench import metrics as M

FAST = settings(max_examples=40, deadline=None)


# ----------------------------------------------------------------------------- retrieval

def test_retrieval_hand_computed():
    sim = np.array([
        [0.9, 0.1, 0.0],   # query 0: its column 0 is highest            -> rank 1
        [0.8, 0.5, 0.2],   # query 1: column 0 (0.8) beats its 0.5       -> rank 2
        [0.7, 0.6, 0.1],   # query 2: its 0.1 is lowest                   -> rank 3
    ])
    out = M.retrieval_metrics(sim)
    # ranks [1, 2, 3]: R1 = 1/3, R5 = R10 = 3/3, median 2, mean 2
    assert out == pytest.approx({"R1": 100 / 3, "R5": 100.0, "R10": 100.0, "MdR": 2.0, "MnR": 2.0})


def test_retrieval_ties_are_pessimistic():
    # query 0 ties its correct column with a wrong one -> rank 2, not 1
    assert M.retrieval_metrics([[0.5, 0.5], [0.0, 1.0]])["MnR"] == 1.5   # ranks [2, 1]
    # a constant 4x4 matrix: every wrong column ties -> every rank is 4
    out = M.retrieval_metrics(np.ones((4, 4)))
    assert out == {"R1": 0.0, "R5": 100.0, "R10": 100.0, "MdR": 4.0, "MnR": 4.0}


def test_retrieval_single_query_and_torch_input():
    # one query, 3 columns, correct column 1 scores highest -> rank 1
    assert M.retrieval_metrics(torch.tensor([[0.2, 0.9, 0.1]]), gt=torch.tensor([1]))["R1"] == 100.0
    assert M.retrieval_metrics(torch.ones(1, 1, dtype=torch.bfloat16))["MdR"] == 1.0


def test_retrieval_int_gt_several_captions_per_video():
    # 4 captions, 2 videos; captions 0,1 -> video 0, captions 2,3 -> video 1
    sim = np.array([[0.9, 0.2],    # rank 1
                    [0.1, 0.3],    # 0.1 < 0.3 -> rank 2
                    [0.4, 0.8],    # rank 1
                    [0.6, 0.5]])   # 0.5 < 0.6 -> rank 2
    out = M.retrieval_metrics(sim, gt=[0, 0, 1, 1])
    assert out["R1"] == 50.0 and out["MdR"] == 1.5 and out["MnR"] == 1.5


def test_retrieval_bool_gt_takes_best_correct_column():
    sim = np.array([[0.3, 0.9, 0.9, 0.1]])
    # columns 1 and 2 are both correct and tie: another correct column never costs rank -> 1
    assert M.retrieval_metrics(sim, gt=np.array([[False, True, True, False]]))["MnR"] == 1.0
    # only columns 0 and 3 correct: best is 0.3, two wrong columns (0.9, 0.9) above -> rank 3
    assert M.retrieval_metrics(sim, gt=np.array([[True, False, False, True]]))["MnR"] == 3.0


@pytest.mark.parametrize("sim, gt", [
    (np.ones((2, 3)), None),                 # gt=None needs a square matrix
    (np.ones((2, 2)), [0, 2]),               # index out of range
    (np.array([[np.nan, 0.0], [0, 1]]), None),
    (np.ones((2, 2)), np.zeros((2, 2), bool)),  # a query with no correct column
])
def test_retrieval_bad_input_is_a_clear_error(sim, gt):
    with pytest.raises(ValueError):
        M.retrieval_metrics(sim, gt)


def test_retrieval_both_ways_clip4clip_multi_sentence():
    # 4 captions over 3 videos: captions 0,1 -> video 0; caption 2 -> video 1; caption 3 -> video 2
    sim = np.array([
        [0.90, 0.75, 0.20],   # caption 0
        [0.30, 0.80, 0.10],   # caption 1
        [0.50, 0.70, 0.00],   # caption 2
        [0.40, 0.60, 0.65],   # caption 3
    ])
    out = M.retrieval_metrics_both_ways(sim, [0, 0, 1, 2])
    # t2v ranks: c0 1 (0.9 top), c1 2 (0.3 < 0.8), c2 1 (0.7 top), c3 1 (0.65 top)
    #   -> R1 3/4, median 1, mean 5/4
    assert out["t2v"] == pytest.approx(
        {"R1": 75.0, "R5": 100.0, "R10": 100.0, "MdR": 1.0, "MnR": 1.25})
    # v2t, CLIP4Clip group max: video 1 sees groups {v0: max(.75,.80)=.80, v1: .70, v2: .60} -> 2;
    # videos 0 and 2 rank their own group first -> ranks [1, 2, 1]
    assert out["v2t"]["MnR"] == pytest.approx(4 / 3) and out["v2t"]["R1"] == pytest.approx(200 / 3)
    # "any caption": video 1 sees captions .75 and .80 both above its .70 -> rank 3; ranks [1, 3, 1]
    any_caption = M.retrieval_metrics_both_ways(sim, [0, 0, 1, 2], video_to_text="any_caption")
    assert any_caption["v2t"]["MnR"] == pytest.approx(5 / 3)


def test_retrieval_both_ways_square_matches_transpose():
    sim = np.random.default_rng(0).normal(size=(6, 6))
    out = M.retrieval_metrics_both_ways(sim)
    assert out["v2t"] == M.retrieval_metrics(sim.T) and out["t2v"] == M.retrieval_metrics(sim)


def test_retrieval_both_ways_video_without_caption_is_an_error():
    with pytest.raises(ValueError, match="without any caption"):
        M.retrieval_metrics_both_ways(np.ones((2, 3)), [0, 1])


@FAST
@given(n=st.integers(1, 50), seed=st.integers(0, 2**31 - 1))
def test_perfect_similarity_is_perfect(n, seed):
    noise = np.random.default_rng(seed).uniform(-0.49, 0.49, size=(n, n))  # below the 0.5 margin
    out = M.retrieval_metrics(np.eye(n) + noise * 0.5)
    assert out["R1"] == 100.0 and out["MdR"] == 1.0 and out["MnR"] == 1.0


@FAST
@given(q=st.integers(1, 20), v=st.integers(1, 20), seed=st.integers(0, 2**31 - 1))
def test_permuting_columns_with_gt_changes_nothing(q, v, seed):
    rng = np.random.default_rng(seed)
    sim = rng.integers(0, 4, size=(q, v)) / 4.0       # coarse values: many ties
    gt = rng.integers(0, v, size=q)
    perm = rng.permutation(v)                         # new column i is old column perm[i]
    new_position = np.argsort(perm)                   # old column j now sits at new_position[j]
    assert M.retrieval_metrics(sim[:, perm], new_position[gt]) == M.retrieval_metrics(sim, gt)


@FAST
@given(n=st.integers(2, 30), value=st.floats(-10, 10))
def test_constant_similarity_is_never_perfect(n, value):
    assert M.retrieval_metrics(np.full((n, n), value))["R1"] < 100.0


# ----------------------------------------------------------------------------- recognition, QA

def test_topk_accuracy_hand_computed_and_k_clipped():
    scores = np.array([[0.1, 0.7, 0.2],    # label 2 (0.2) is second -> top1 miss, top2 hit
                       [0.5, 0.3, 0.2]])   # label 0 is first
    assert M.topk_accuracy(scores, [2, 0], ks=(1, 2)) == {"top1": 50.0, "top2": 100.0}
    # k = 5 > 3 classes is clipped to 3: everything is a hit
    assert M.topk_accuracy(scores, [2, 0])["top5"] == 100.0
    # a tie at the top is a top-1 miss
    assert M.topk_accuracy([[0.5, 0.5]], [0], ks=(1,))["top1"] == 0.0


def test_qa_accuracy_per_type():
    out = M.qa_accuracy([0, 1, 2, 1], [0, 1, 1, 1], types=["why", "why", "how", "how"])
    # 3 of 4 right; "why" 2/2, "how" 1/2
    assert out == {"accuracy": 75.0, "per_type": {"how": 50.0, "why": 100.0}}


def test_qa_accuracy_from_scores_counts_ties_as_wrong():
    scores = torch.tensor([[0.1, 0.9], [0.5, 0.5]])
    assert M.qa_accuracy(scores, [1, 0]) == {"accuracy": 50.0, "per_type": {}}


# ----------------------------------------------------------------------------- temporal

def test_temporal_iou_hand_computed():
    # [0,10] vs [5,15]: intersection 5, union 15 -> 1/3; disjoint and touching windows -> 0
    iou = M.temporal_iou([[0, 10], [0, 5], [0, 5]], [[5, 15], [6, 10], [5, 10]])
    np.testing.assert_allclose(iou, [1 / 3, 0.0, 0.0])
    assert float(M.temporal_iou([2, 4], [2, 4])) == 1.0
    matrix = M.temporal_iou_matrix([[0, 10], [5, 15]], [[0, 10], [10, 20], [0, 20]])
    np.testing.assert_allclose(matrix, [[1, 0, 0.5], [1 / 3, 1 / 3, 0.5]])


def test_temporal_iou_rejects_inverted_windows():
    with pytest.raises(ValueError, match="end before"):
        M.temporal_iou([5, 1], [0, 2])


windows = st.tuples(st.floats(0, 100), st.floats(0.01, 50)).map(lambda sw: [sw[0], sw[0] + sw[1]])


@FAST
@given(a=windows, b=windows)
def test_temporal_iou_properties(a, b):
    ab, ba = float(M.temporal_iou(a, b)), float(M.temporal_iou(b, a))
    assert ab == ba and 0.0 <= ab <= 1.0
    assert float(M.temporal_iou(a, a)) == pytest.approx(1.0)


def test_grounding_recall_hand_computed():
    pred = [[0, 10], [0, 10], [20, 30]]
    gt = [[0, 10], [5, 15], [0, 5]]
    # IoUs 1, 5/15 = 0.333, 0 (no overlap)
    out = M.grounding_recall(pred, gt)
    assert out == pytest.approx({"R1@0.3": 200 / 3, "R1@0.5": 100 / 3, "R1@0.7": 100 / 3,
                                 "mIoU": 100 * (1 + 1 / 3) / 3})


# ----------------------------------------------------------------------------- QVHighlights

def _qvh_gt(qid, windows, duration=150, clip_ids=(), saliency=()):
    return {"qid": qid, "duration": duration, "relevant_windows": windows,
            "relevant_clip_ids": list(clip_ids), "saliency_scores": [list(s) for s in saliency]}


QVH_GT = [_qvh_gt(1, [[0, 10]]), _qvh_gt(2, [[0, 10], [20, 30]])]
QVH_PRED = [
    # query 1: the top window is exact, the second is a false positive:
    #   precision [1, 1/2], recall [1, 1] -> AP 1 at every threshold
    {"qid": 1, "pred_relevant_windows": [[0, 10, 0.9], [20, 30, 0.8]]},
    # query 2, by score: [0,5] (IoU 0.5 with [0,10]) then [20,30] (IoU 1).
    #   t = 0.5: both hits -> precision [1, 1], recall [.5, 1] -> AP 1
    #   t >= 0.55: miss then hit -> precision [0, .5], recall [0, .5]; envelope .5 over
    #   recall 0..0.5 -> AP 0.25.  mean over 10 thresholds: (1 + 9 * 0.25) / 10 = 0.325
    #   R1 uses the first *listed* window, [20,30], IoU 1 -> hit at 0.5 and 0.7
    {"qid": 2, "pred_relevant_windows": [[20, 30, 0.5], [0, 5, 0.9]]},
]


def test_qvhighlights_moment_retrieval_hand_computed():
    out = M.qvhighlights_eval(QVH_PRED, QVH_GT)
    assert out["MR-full-mAP"] == pytest.approx(100 * (1 + 0.325) / 2)      # 66.25
    assert out["MR-full-mAP@0.5"] == pytest.approx(100.0)
    assert out["MR-full-mAP@0.75"] == pytest.approx(100 * (1 + 0.25) / 2)  # 62.5
    assert out["MR-full-R1@0.5"] == 100.0 and out["MR-full-R1@0.7"] == 100.0
    # every GT window is 10 s long: all in "short" (0, 10]; the other ranges are empty
    assert out["MR-short-mAP"] == pytest.approx(out["MR-full-mAP"])
    assert math.isnan(out["MR-middle-mAP"]) and math.isnan(out["MR-long-mAP"])
    assert not any(k.startswith("HL-") for k in out)


def test_qvhighlights_empty_prediction_counts_as_zero():
    gt = QVH_GT + [_qvh_gt(3, [[40, 50]])]
    pred = QVH_PRED + [{"qid": 3, "pred_relevant_windows": []}]
    out = M.qvhighlights_eval(pred, gt)
    assert out["MR-full-mAP"] == pytest.approx(100 * (1 + 0.325 + 0) / 3)
    assert out["MR-full-R1@0.5"] == pytest.approx(200 / 3)


def test_qvhighlights_non_overlapping_window_scores_zero():
    out = M.qvhighlights_eval([{"qid": 1, "pred_relevant_windows": [[50, 60, 1.0]]}],
                              [_qvh_gt(1, [[0, 10]])])
    assert out["MR-full-mAP"] == 0.0 and out["MR-full-R1@0.5"] == 0.0


def test_qvhighlights_qid_mismatch():
    with pytest.raises(ValueError, match="qids differ"):
        M.qvhighlights_eval(QVH_PRED[:1], QVH_GT)
    out = M.qvhighlights_eval(QVH_PRED[:1], QVH_GT, strict=False)   # only qid 1 scored
    assert out["MR-full-mAP"] == 100.0


def test_qvhighlights_highlight_detection_hand_computed():
    # 10 s -> 5 clips; clips 1..3 annotated by 3 workers
    gt = [_qvh_gt(1, [[2, 8]], duration=10, clip_ids=[1, 2, 3],
                  saliency=[[4, 4, 2], [2, 3, 4], [1, 1, 1]])]
    pred = [{"qid": 1, "pred_saliency_scores": [0.1, 0.9, 0.5, 0.3, 0.2]}]
    out = M.qvhighlights_eval(pred, gt)
    # VeryGood (>= 4) positives per worker: {1}, {1}, {2}. Ranking by score: 1, 2, 3, 4, 0.
    #   AP: worker 0 -> 1, worker 1 -> 1, worker 2 -> precision 1/2 at its only hit -> 0.5
    #   mAP = (1 + 1 + 0.5) / 3; the top clip 1 is VeryGood for worker 0 -> HIT@1 100
    assert out["HL-min-VeryGood-mAP"] == pytest.approx(100 * 2.5 / 3)
    assert out["HL-min-VeryGood-Hit1"] == 100.0
    # Fair (>= 2): every worker's positives are {1, 2}, ranked first -> AP 1
    assert out["HL-min-Fair-mAP"] == 100.0 and out["HL-min-Fair-Hit1"] == 100.0
    assert set(out) == {f"HL-min-{lvl}-{m}" for lvl in ("Fair", "Good", "VeryGood")
                        for m in ("mAP", "Hit1")}


def test_qvhighlights_constant_saliency_and_short_prediction():
    gt = [_qvh_gt(1, [[0, 4]], duration=8, clip_ids=[0, 1], saliency=[[4, 4, 4], [0, 0, 0]])]
    # constant scores: one threshold, all 4 clips enter together: precision 1/4 -> AP 0.25;
    # argmax takes the first clip (as the reference), which is VeryGood
    out = M.qvhighlights_eval([{"qid": 1, "pred_saliency_scores": [1, 1, 1, 1]}], gt)
    assert out["HL-min-VeryGood-mAP"] == pytest.approx(25.0)
    assert out["HL-min-VeryGood-Hit1"] == 100.0
    # two scores for 4 clips are zero-padded to [.5, .9, 0, 0]; the top clip 1 is not VeryGood
    # -> HIT 0; the ranking puts clip 1 (negative) before clip 0 (positive) -> AP 1/2
    out = M.qvhighlights_eval([{"qid": 1, "pred_saliency_scores": [0.5, 0.9]}], gt)
    assert out["HL-min-VeryGood-Hit1"] == 0.0 and out["HL-min-VeryGood-mAP"] == pytest.approx(50.0)


def test_detection_ap_equal_iou_goes_to_later_gt_window():
    gt = np.array([[0, 10], [5, 15]], dtype=float)
    # [2.5, 12.5] overlaps both GT windows with IoU 7.5 / 12.5 = 0.6 and, like the reference,
    # takes the later one; [5, 15] (lower score) then finds its window taken -> a false positive:
    # precision [1, 1/2], recall [1/2, 1/2] -> AP 1/2 (taking the first window would give 1)
    pred = np.array([[2.5, 12.5, 0.9], [5, 15, 0.8]])
    assert M._detection_ap(pred, gt, [0.5]) == pytest.approx([0.5])


def test_saliency_ap_tied_positives_average_over_recall_levels():
    # scores 0.9 {pos, neg} tie, then 0.5 pos: thresholds give precision [1/2, 2/3] at recall
    # [1/2, 1]; envelope [2/3, 2/3]; mean over the two recall levels -> 2/3
    ap = M._saliency_ap(np.array([True, False, True]), np.array([0.9, 0.9, 0.5]))
    assert ap == pytest.approx(2 / 3)


# ----------------------------------------------------------------------------- spatio-temporal

def _tube(start, end, box):
    return M.Tube(start, end, {f: box for f in range(start, end)})


def test_st_grounding_hand_computed():
    full, left_half = (0, 0, 10, 10), (0, 0, 5, 10)
    gts = [_tube(0, 4, full), _tube(0, 4, full)]
    preds = [
        # video 0: frames 2..5 vs 0..3: intersection {2,3}, union {0..5} -> tIoU 2/6;
        #   boxes match on 2, 3 -> vIoU (1 + 1) / 6 = 1/3
        _tube(2, 6, full),
        # video 1: same span (tIoU 1) but half boxes (IoU 0.5 each) -> vIoU 4 * 0.5 / 4 = 0.5
        _tube(0, 4, left_half),
    ]
    out = M.st_grounding_metrics(preds, gts)
    assert out["m_tIoU"] == pytest.approx(100 * (1 / 3 + 1) / 2)
    assert out["m_vIoU"] == pytest.approx(100 * (1 / 3 + 0.5) / 2)
    assert out["vIoU@0.3"] == 100.0
    assert out["vIoU@0.5"] == 0.0          # TubeDETR counts vIoU > 0.5 strictly: 0.5 is a miss


def test_st_grounding_no_temporal_overlap_and_dict_tubes():
    gt = {"start": 0, "end": 3, "boxes": {0: [0, 0, 1, 1], 1: [0, 0, 1, 1], 2: [0, 0, 1, 1]}}
    pred = {"start_frame": 5, "end_frame": 8, "boxes": {5: [0, 0, 1, 1]}}
    assert M.st_grounding_metrics([pred], [gt]) == {"m_tIoU": 0.0, "m_vIoU": 0.0,
                                                    "vIoU@0.3": 0.0, "vIoU@0.5": 0.0}


def test_st_grounding_sampled_frames_and_missing_pred_box():
    gt = _tube(0, 10, (0, 0, 10, 10))
    pred = M.Tube(0, 10, {0: (0, 0, 10, 10), 4: (0, 0, 10, 10)})   # frame 8 left without a box
    # evaluated frames 0, 4, 8: IoU 1, 1, 0 -> vIoU 2/3
    out = M.st_grounding_metrics([pred], [gt], sampled_frames=[[0, 4, 8]])
    assert out["m_vIoU"] == pytest.approx(200 / 3) and out["m_tIoU"] == 100.0


def test_box_iou_hand_computed():
    # [0,0,2,2] vs [1,1,3,3]: intersection 1, union 4 + 4 - 1 = 7
    iou = M.box_iou([[0, 0, 2, 2], [0, 0, 1, 1]], [[1, 1, 3, 3], [2, 2, 3, 3]])
    np.testing.assert_allclose(iou, [1 / 7, 0.0])


# ----------------------------------------------------------------------------- captioning

def test_bleu4_hand_computed():
    cand = ["a man is playing a guitar"]
    refs = [["a man is playing the guitar"]]
    # clipped precisions: 1-gram 5/6 ("a" counted once), 2-gram 3/5, 3-gram 2/4, 4-gram 1/3;
    # equal lengths -> no brevity penalty; (5/6 * 3/5 * 1/2 * 1/3) ** (1/4) = (1/12) ** 0.25
    assert M.bleu4(cand, refs) == pytest.approx((1 / 12) ** 0.25, rel=1e-6)


def test_bleu4_brevity_penalty_and_closest_reference():
    # a 4-word prefix of a 6-word reference: all precisions 1, penalty exp(1 - 6/4)
    assert M.bleu4(["a man is playing"], [["a man is playing the guitar"]]) == \
        pytest.approx(math.exp(-0.5), rel=1e-6)
    # a 6-word candidate, references of 4 and 8 words: equally close -> the shorter (4) is used,
    # so no penalty (taking 8 would give exp(1 - 8/6))
    refs = [["a man is playing", "a man is playing a guitar right now"]]
    assert M.bleu4(["a man is playing a guitar"], refs) == pytest.approx(1.0, rel=1e-6)


def test_captions_ignore_case_and_punctuation():
    assert M.bleu4(["A man, PLAYING guitar."], [["a man playing guitar"]]) == pytest.approx(1.0)


def test_cider_hand_computed():
    cands = ["a b", "d"]
    refs = [["a b", "a c"], ["d"]]
    # 2 items -> idf of every n-gram (each in one item's references) is log 2 = L.
    # item 0 vs "a b": 1-gram and 2-gram cosines 1, 3/4-grams empty -> [1, 1, 0, 0]
    #        vs "a c": 1-gram {a, b}.{a, c} = L^2 / (sqrt2 L)^2 = 1/2      -> [.5, 0, 0, 0]
    #        mean over n and references: (2 + .5) / 4 / 2 = 0.3125 -> x10 = 3.125
    # item 1: only the 1-gram term is 1 -> 1/4 -> x10 = 2.5.  CIDEr = (3.125 + 2.5) / 2
    assert M.cider(cands, refs) == pytest.approx(2.8125)


def test_cider_single_item_corpus_is_zero():
    # idf comes from the corpus: with one item every reference n-gram has idf log(1/1) = 0
    assert M.cider(["a b c"], [["a b c"]]) == 0.0


def test_caption_bad_input():
    with pytest.raises(ValueError):
        M.bleu4(["a"], [])
    with pytest.raises(ValueError, match="no reference"):
        M.cider(["a", "b"], [["a"], []])


@st.composite
def captions(draw):
    """Items with their own vocabulary (so idf never vanishes) and >= 4 distinct words."""
    lengths = draw(st.lists(st.integers(4, 9), min_size=2, max_size=5))
    return [" ".join(f"w{item}x{j}" for j in range(n)) for item, n in enumerate(lengths)]


@FAST
@given(sentences=captions())
def test_exact_caption_beats_scrambled(sentences):
    refs = [[s] for s in sentences]
    scrambled = [" ".join(reversed(s.split())) for s in sentences]   # same words, no shared bigram
    assert M.bleu4(sentences, refs) > M.bleu4(scrambled, refs)
    assert M.cider(sentences, refs) > M.cider(scrambled, refs)
