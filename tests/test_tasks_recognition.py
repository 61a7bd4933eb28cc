"""Recognition (workbench.tasks.recognition) and the task registry: zero-shot from class names,
a trained head, the Kinetics reader path on hand-written files, the Kinetics result format."""
import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from workbench import load_backbone
from workbench.config import get_profile
from workbench.data.formats import read_dataset
from workbench.data.shapes.clips import make_clips
from workbench.data.video import write_video
from workbench.strategies import create_strategy
from workbench.tasks.base import get_task, list_tasks

FIXTURES = Path(__file__).parent / "fixtures" / "formats"


@pytest.fixture(scope="module")
def backbone():
    torch.manual_seed(0)
    return load_backbone()


def test_registry_lists_the_tasks_fine_to_coarse_and_suggests_names():
    names = list_tasks()
    assert {"retrieval", "recognition", "qa", "captioning"} <= set(names)
    assert names.index("retrieval") < names.index("recognition") < names.index("qa") < names.index("captioning")
    with pytest.raises(KeyError, match="Did you mean recognition"):
        get_task("recognitoin")
    for name in names:
        task = get_task(name)
        assert task.name == name and task.metric and task.formats


def _colour_dataset(root: Path, size: int, frames: int) -> int:
    """ShapesWorld clips on disk with a Kinetics CSV whose labels are the actor's colour."""
    clips = [c for c in make_clips(3, 2, frames, "eval") if c.event not in ("change_colour", "sequence")]
    rows = []
    for clip in clips:
        colour = clip.objects[0].split()[0]
        write_video(root / "videos" / f"{clip.clip_id}_000000_000001.mp4", clip.frames(size), fps=8)
        rows.append([colour, clip.clip_id, 0, 1, "validate"])
    with open(root / "validate.csv", "w", newline="") as f:
        csv.writer(f).writerows([["label", "youtube_id", "time_start", "time_end", "split"], *rows])
    return len(rows)


def test_zero_shot_from_class_names_when_the_ilfm_knows_the_words(backbone, tmp_path):
    """Class names the tiny CLIP was pretrained on (colours): the prompt ensemble recognises them
    through the real Kinetics reader and the decoder, far above chance."""
    n = _colour_dataset(tmp_path, 64, 4)
    task = get_task("recognition")
    data = task.load(tmp_path, backbone, get_profile("smoke"))
    assert data.train is None and len(data.eval.items) == n
    model = create_strategy("mean-pool", backbone)
    result = task.evaluate(data.eval, task.zero_shot(model, data.eval))
    assert result["top1"] >= 3 * result["chance_top1"], result


def test_kinetics_fixtures_load_skip_missing_videos_and_write_results(backbone, tmp_path):
    """The hand-written Kinetics CSVs, videos under the download scripts' names; one missing
    video is skipped and reported, the rest evaluate and write the challenge result JSON."""
    shutil.copy(FIXTURES / "kinetics700_train.csv", tmp_path / "kinetics700_train.csv")
    shutil.copy(FIXTURES / "kinetics400_validate.csv", tmp_path / "kinetics400_validate.csv")
    (tmp_path / "videos").mkdir()
    records = read_dataset("kinetics", tmp_path / "kinetics700_train.csv", tmp_path / "videos")
    records += read_dataset("kinetics", tmp_path / "kinetics400_validate.csv", tmp_path / "videos")
    clip = make_clips(0, 1, 4, "train")[0].frames(64)
    for record in records[:-1]:                                   # the last one stays missing
        write_video(record.path, clip, fps=8)
    task = get_task("recognition")
    data = task.load(tmp_path, backbone, get_profile("smoke"))
    assert data.meta["classes"] == sorted({r.label for r in records})
    assert len(data.train.items) == 2 and len(data.eval.items) == 2
    assert [Path(p).name for p, _ in data.eval.videos.skipped] == [records[-1].path.name]
    model = create_strategy("mean-pool", backbone)
    predictions = task.zero_shot(model, data.eval)
    result = task.evaluate(data.eval, predictions)
    assert result["clips"] == 2 and 0 <= result["top1"] <= 100
    written = json.loads(task.write_predictions(data.eval, predictions, tmp_path / "out").read_text())
    assert set(written) == {"version", "results", "external_data"}
    entry = written["results"][records[2].video_id]
    assert len(entry) == 4 and {e["label"] for e in entry} == set(data.meta["classes"])
    assert [e["score"] for e in entry] == sorted((e["score"] for e in entry), reverse=True)
    assert np.argmax(predictions["scores"][0]) == data.meta["classes"].index(entry[0]["label"])
