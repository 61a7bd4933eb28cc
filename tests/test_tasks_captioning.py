"""Retrieval captioning (workbench.tasks.captioning): above a constant-caption baseline on BLEU-4
and CIDEr, and the MSR-VTT reader path on the hand-written fixtures with coco-format output."""
import json
import shutil
from pathlib import Path

import pytest
import torch

from workbench import load_backbone
from workbench.config import get_profile
from workbench.data.formats import read_dataset
from workbench.data.shapes.clips import make_clips
from workbench.data.video import write_video
from workbench.strategies import create_strategy
from workbench.tasks.base import get_task
from workbench.tasks.captioning import constant_baseline

FIXTURES = Path(__file__).parent / "fixtures" / "formats"


@pytest.fixture(scope="module")
def backbone():
    torch.manual_seed(0)
    return load_backbone()


def test_retrieval_captions_beat_the_best_constant_caption(backbone):
    task = get_task("captioning")
    data = task.shapes_data(get_profile("smoke", eval_clips_per_kind=4), backbone)
    pool = data.meta["pool"]
    assert len(pool) > len(data.train.items)                       # every wording of every clip
    seen = sum(it.references[0] in set(pool) for it in data.eval.items)
    assert seen < len(data.eval.items) / 2                         # mostly not a lookup
    baseline = constant_baseline(data.eval, pool)
    result = task.evaluate(data.eval, task.zero_shot(create_strategy("mean-pool", backbone), data.eval))
    assert result["cider"] >= 1.3 * baseline["cider"], (result, baseline)   # measured 0.81 vs 0.50
    assert result["bleu4"] > baseline["bleu4"], (result, baseline)


def test_msrvtt_fixtures_load_with_every_reference_and_write_coco_results(backbone, tmp_path):
    shutil.copytree(FIXTURES / "msrvtt", tmp_path / "msrvtt")
    records = read_dataset("msrvtt", tmp_path / "msrvtt" / "MSRVTT_data.json", tmp_path / "videos")
    clip = make_clips(0, 1, 4, "train")[0].frames(64)
    for record in records:
        write_video(record.path, clip, fps=8)
    task = get_task("captioning")
    data = task.load(tmp_path / "msrvtt", backbone, get_profile("smoke"), video_dir=tmp_path / "videos")
    every = {r.video_id: r.captions for r in records}
    assert {data.train.videos.ids[it.video] for it in data.train.items} == {"video0", "video1"}
    for it in data.eval.items:                                     # JSFUSION rows, all references
        assert list(it.references) == every[data.eval.videos.ids[it.video]]
    assert set(data.meta["pool"]) == set(every["video0"] + every["video1"])
    predictions = task.zero_shot(create_strategy("mean-pool", backbone), data.eval)
    assert all(c in data.meta["pool"] for c in predictions["captions"])
    result = task.evaluate(data.eval, predictions)
    assert result["videos"] == len(data.eval.items) and result["bleu4"] >= 0
    written = json.loads(task.write_predictions(data.eval, predictions, tmp_path / "out").read_text())
    assert [set(w) for w in written] == [{"image_id", "caption"}] * len(data.eval.items)
