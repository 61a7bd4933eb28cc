"""Temporal and spatio-temporal grounding (workbench/tasks/temporal_grounding.py, st_grounding.py).

Golden tests on ShapesWorld long videos at smoke size: zero-shot grounding beats a random-window
baseline by a margin, a trained head beats zero-shot, predictions come out in the QVHighlights
format, and the real Charades-STA / QVHighlights / HC-STVG layouts load through formats.py.
"""
import json
from dataclasses import replace

import numpy as np
import pytest

from workbench.backbones import load_backbone
from workbench.config import get_profile
from workbench.data.shapes.export import ShapesWorld, _charades_sta, _hcstvg, _qvhighlights
from workbench.data.shapes.long_videos import make_long_videos
from workbench.data.video import write_video
from workbench.strategies import create_strategy
from workbench.tasks.base import get_task
from workbench.tasks.st_grounding import STGrounding, map_to_box
from workbench.tasks.temporal_grounding import (GroundingConfig, TemporalGrounding, clip_saliency, dense_targets,
                                                frame_edges, random_windows, relative_runs, runs_above,
                                                temporal_nms, to_frame_units, to_seconds)

PROFILE = get_profile("smoke", long_videos=40)   # 30 train videos (~120 queries), 10 test (~40)
CONFIG = GroundingConfig(head_steps=200)


@pytest.fixture(scope="module")
def backbone():
    return load_backbone()


@pytest.fixture(scope="module")
def data(backbone):
    return STGrounding(CONFIG).shapes_data(PROFILE, backbone)


# -- pure functions ------------------------------------------------------------------------------

def test_curve_to_windows_helpers():
    curve = np.array([0, 0, 1, 1, 1, 0, 0.6, 0.6, 0])
    assert runs_above(curve, 0.5) == [(2, 5), (6, 8)]
    assert relative_runs(curve, (0.7,)) == [(2, 5)]
    assert relative_runs(np.ones(5), (0.5,)) == []                  # flat: nothing stands out
    windows = np.array([[0, 10, 0.9], [1, 10, 0.8], [20, 30, 0.5]])
    assert temporal_nms(windows, 0.5, 10).tolist() == [[0, 10, 0.9], [20, 30, 0.5]]
    edges = frame_edges([0.0, 1.0, 2.0, 3.0], 4.0)                 # frames at 0,1,2,3 s of a 4-s video
    assert edges.tolist() == [0.0, 0.5, 1.5, 2.5, 4.0]
    assert np.allclose(to_seconds(to_frame_units([0.7, 3.1], edges), edges), [0.7, 3.1])
    assert clip_saliency(np.array([0, 1, 2, 3.0]), edges, 4.0) == [0.5, 2.5]
    fg, offsets = dense_targets([np.array([[1.0, 3.0]])], 4)
    assert fg.tolist() == [[0, 1, 1, 0]] and offsets[0, 1].tolist() == [0.5, 1.5]


def test_map_to_box_takes_the_peak_component():
    heat = np.zeros((8, 8))
    heat[2:4, 5:7] = 1.0            # the object
    heat[6, 0] = 0.6                # a weaker blob elsewhere
    assert map_to_box(heat, 64) == (40.0, 16.0, 56.0, 32.0)


def test_tasks_are_registered():
    assert isinstance(get_task("temporal-grounding"), TemporalGrounding)
    assert isinstance(get_task("st-grounding"), STGrounding)


# -- ShapesWorld golden tests --------------------------------------------------------------------

def test_zero_shot_beats_chance_and_head_beats_zero_shot(backbone, data, tmp_path):
    task = STGrounding(CONFIG)
    task.num_frames = PROFILE.num_frames
    model = create_strategy("mean-pool", backbone)
    train, test = data.train, data.eval
    # zero-shot, no training: scored on the train videos too (more queries, nothing was fit there)
    zero = TemporalGrounding.predict(task, model, train)
    scores = TemporalGrounding.evaluate(task, train, zero)
    chance = np.mean([TemporalGrounding.evaluate(task, train, random_windows(train, train, seed))["mIoU"]
                      for seed in range(5)])
    assert scores["mIoU"] > chance + 8, (scores, chance)
    row = zero["rows"][0]
    assert set(row) == {"qid", "query", "vid", "pred_relevant_windows", "pred_saliency_scores"}
    assert all(s <= e for s, e, _ in row["pred_relevant_windows"])
    assert [w[2] for w in row["pred_relevant_windows"]] == sorted((w[2] for w in row["pred_relevant_windows"]),
                                                                  reverse=True)
    # trained heads (temporal + box) against zero-shot, on the held-out videos
    log = task.train(model, data, cfg=None)
    task.make_head(model, data).load_state_dict(log["head"].state_dict())   # how `workbench eval` reloads it
    trained = task.predict(model, test, log["head"])
    zero_test = task.zero_shot(model, test)
    t_trained = TemporalGrounding.evaluate(task, test, trained["temporal"])
    t_zero = TemporalGrounding.evaluate(task, test, zero_test["temporal"])
    assert t_trained["mAP"] > t_zero["mAP"] + 3, (t_trained, t_zero)
    assert t_trained["R1@0.5"] > t_zero["R1@0.5"], (t_trained, t_zero)
    # boxes alone (on the true spans): the trained box head against zero-shot relevancy boxes
    box_zero = task.evaluate(test, task.predict(model, test, None, true_span=True))
    box_trained = task.evaluate(test, task.predict(model, test, log["head"], true_span=True))
    assert box_zero["m_vIoU"] > 10 and box_trained["m_vIoU"] > box_zero["m_vIoU"], (box_zero, box_trained)
    assert box_trained["vIoU@0.5"] > box_zero["vIoU@0.5"] + 8, (box_zero, box_trained)
    assert task.evaluate(test, trained)["m_vIoU"] > 0
    # files in the datasets' prediction formats
    lines = TemporalGrounding.write_predictions(task, test, trained["temporal"], tmp_path).read_text().splitlines()
    assert len(lines) == len(test.items) and "pred_relevant_windows" in json.loads(lines[0])
    tubes = json.loads(task.write_predictions(test, trained, tmp_path).read_text())
    assert len(tubes) == len(test.items)


# -- real layouts ----------------------------------------------------------------------------------

def test_real_layouts_load_and_run(backbone, tmp_path):
    """Charades-STA, QVHighlights and HC-STVG files, as ShapesWorld's exporter writes them, with one
    video missing: the loaders skip and report it, and zero-shot grounding runs on the rest."""
    videos = make_long_videos(0, 3, "test")
    world = ShapesWorld(0, replace(PROFILE, frame_size=64), [], videos, [], {})
    for video in videos[:2]:                                   # the third video is missing on disk
        write_video(tmp_path / "videos" / f"{video.video_id}.mp4", video.frames(64), fps=video.fps)
    for writer in (_charades_sta, _qvhighlights, _hcstvg):
        for relative, text in writer(world).items():
            (tmp_path / relative).parent.mkdir(parents=True, exist_ok=True)
            (tmp_path / relative).write_text(text)
    model = create_strategy("mean-pool", backbone)
    for fmt in ("charades_sta", "qvhighlights"):
        task = TemporalGrounding(GroundingConfig(frames_per_video=16))
        loaded = task.load(tmp_path / fmt, backbone, PROFILE, format=fmt)
        assert len(loaded.eval.videos) == 2 and len(loaded.eval.videos.skipped) == 1
        first = loaded.eval.items[0]
        assert first.windows[0] == pytest.approx((videos[0].events[0].start, videos[0].events[0].end), abs=1e-3)
        scores = task.evaluate(loaded.eval, task.zero_shot(model, loaded.eval))
        assert 0 <= scores["mIoU"] <= 100 and ("HL-Fair-mAP" in scores) == (fmt == "qvhighlights")
    st = STGrounding(GroundingConfig(frames_per_video=16))
    loaded = st.load(tmp_path / "hcstvg", backbone, PROFILE)
    item = loaded.eval.items[0]
    assert item.tube and all(0 <= v <= backbone.image_size for box in item.tube.values() for v in box)
    assert 0 <= st.evaluate(loaded.eval, st.zero_shot(model, loaded.eval))["m_tIoU"] <= 100
