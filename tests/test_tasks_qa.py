"""Multiple-choice QA (workbench.tasks.qa): statements, zero-shot above chance, a trained head
above zero-shot, the NExT-QA reader path on the hand-written fixture and its result format."""
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
from workbench.tasks.base import get_task, with_features
from workbench.tasks.qa import statement
from workbench.train import TrainConfig

FIXTURES = Path(__file__).parent / "fixtures" / "formats"


@pytest.fixture(scope="module")
def backbone():
    torch.manual_seed(0)
    return load_backbone()


@pytest.fixture(scope="module")
def shapes(backbone):
    task = get_task("qa")
    data = task.shapes_data(get_profile("smoke", eval_clips_per_kind=4, long_videos=8), backbone)
    for split in (data.train, data.eval):
        with_features(split.videos, backbone, split.videos.frames.shape[1])
    return task, data


def test_statements_read_like_captions():
    assert statement("how many objects are there", "two") == "two objects"
    assert statement("how many objects are there", "one") == "one object"
    assert statement("what colour is the shape that moves up", "red") == "the red shape moves up"
    assert statement("which way does the red circle move", "to the left") == "the red circle moves to the left"
    assert statement("which way does the red circle move", "it stays still") == "the red circle stays still"
    assert statement("what happens first", "the blue star grows") == "first the blue star grows"
    assert statement("why did the boy cry?", "he fell") == "why did the boy cry? he fell"   # fallback


def test_zero_shot_beats_chance_and_a_trained_head_beats_zero_shot(shapes, backbone):
    task, data = shapes
    model = create_strategy("mean-pool", backbone)
    zero = task.evaluate(data.eval, task.zero_shot(model, data.eval))
    assert zero["chance"] == 20.0 and zero["questions"] > 100
    assert zero["accuracy"] >= 30.0, zero                           # measured ~40 (chance 20)
    assert set(zero["per_type"]) == {"count", "colour", "direction", "order"}
    log = task.train(model, data, TrainConfig(steps=1, batch_size=8))
    trained = task.evaluate(data.eval, task.predict(model, data.eval, log["head"]))
    assert trained["accuracy"] >= zero["accuracy"] + 8, (zero, trained)  # measured ~60


def test_nextqa_fixture_loads_and_writes_eval_mc_predictions(backbone, tmp_path):
    shutil.copy(FIXTURES / "nextqa_val.csv", tmp_path / "val.csv")
    records = read_dataset("nextqa", tmp_path / "val.csv", tmp_path / "videos")
    clip = make_clips(0, 1, 4, "train")[0].frames(64)
    for record in records:
        write_video(record.path, clip, fps=8)
    task = get_task("qa")
    data = task.load(tmp_path, backbone, get_profile("smoke"))
    assert data.train is None and [it.qtype for it in data.eval.items] == ["CH", "TN"]
    assert data.eval.items[0].choices[3] == "hit with sticks" and data.eval.items[1].answer == 3
    predictions = task.zero_shot(create_strategy("mean-pool", backbone), data.eval)
    result = task.evaluate(data.eval, predictions)
    assert set(result["per_type"]) == {"CH", "TN"} and result["questions"] == 2
    written = json.loads(task.write_predictions(data.eval, predictions, tmp_path).read_text())
    assert written.keys() == {"4010069381_6", "4882821564_2"}
    assert written["4882821564_2"]["answer"] == 3 and 0 <= written["4010069381_6"]["prediction"] < 5
