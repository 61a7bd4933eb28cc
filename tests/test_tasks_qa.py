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
from workbench.tasks.base import HeadConfig, fit_head, get_task, with_features
from workbench.tasks.qa import SEGMENTS, QAHead, segment_spans, statement
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


def test_an_untrained_qa_head_scores_exactly_as_zero_shot(shapes, backbone):
    task, data = shapes
    model = create_strategy("post-transformer", backbone)
    zero = task.zero_shot(model, data.eval)
    fresh = task.predict(model, data.eval, task.make_head(model, data))
    assert (zero["prediction"] == fresh["prediction"]).all()
    assert segment_spans(8) == [(0, 8), (0, 4), (4, 8), (0, 2), (6, 8)] and len(SEGMENTS) == 5


def test_the_question_decides_where_the_head_looks():
    """"What happens first" and "what happens last" of the same videos: the statements differ only in
    the event, so one pooled video vector scores both questions alike (50 %); the head learns from
    the question which segment to read."""
    g = torch.Generator().manual_seed(0)
    dim, n = 32, 64
    first_q, last_q = torch.nn.functional.normalize(torch.randn(2, dim, generator=g), dim=-1)
    events = torch.nn.functional.normalize(torch.randn(n, 2, dim, generator=g), dim=-1)     # [video, (A, B)]
    a, b = events[:, 0], events[:, 1]
    whole = torch.nn.functional.normalize(a + b, dim=-1)
    segments = torch.stack([whole, a, b, a, b], 1).repeat(2, 1, 1)                        # [2n,S,D]
    questions = torch.cat([first_q.expand(n, -1), last_q.expand(n, -1)])
    choices = torch.stack([a, b], 1).repeat(2, 1, 1)                                       # [2n,2,D]
    answers = torch.cat([torch.zeros(n), torch.ones(n)]).long()
    head = QAHead(dim, scale=10.0)
    accuracy = lambda: float((head.score(questions, segments, choices).argmax(1) == answers).float().mean())
    assert abs(accuracy() - 0.5) <= 0.1     # untrained: (A+B).A == (A+B).B, so both questions get one answer
    fit_head(head, lambda h: torch.nn.functional.cross_entropy(h.score(questions, segments, choices), answers),
             HeadConfig(steps=150, lr=1e-2))
    assert accuracy() >= 0.95
    w_first, w_last = head.weights(torch.stack([first_q, last_q])).detach()
    assert w_first[1] > w_last[1] and w_last[2] > w_first[2]   # first looks at the first half, last at the second


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
