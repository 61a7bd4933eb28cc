"""The app's handlers, called directly (no Gradio): retrieval both ways, QA, the strategy lab,
trained-head loading, upload validation, model and bench panels."""
import json

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from workbench.app import handlers
from workbench.app.collection import index_folder, prepare_demo
from workbench.app.state import AppState
from workbench.backbones import load_backbone
from workbench.config import CACHE_DIR, get_profile
from workbench.data.video import VideoError
from workbench.train import trainable_state

# A small ShapesWorld collection (38 clips with twins, 2 long videos, 64 px), cached across runs.
TEST_PROFILE = get_profile("smoke", num_frames=8, frame_size=64, clips_per_kind=1, eval_clips_per_kind=1,
                           long_videos=2)
TEST_CACHE = CACHE_DIR / "tests-app"


def app_collection(backbone=None):
    """Shared by the app test modules: (backbone, collection root)."""
    backbone = backbone or load_backbone()
    return backbone, prepare_demo(TEST_PROFILE, TEST_CACHE, progress=False)


@pytest.fixture(scope="module")
def server_threads():
    """Run as the server does (one intra-op thread: workbench.app.ui.SERVER_THREADS), then restore."""
    from workbench.app.ui import SERVER_THREADS

    before = torch.get_num_threads()
    torch.set_num_threads(SERVER_THREADS)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def state(tmp_path_factory, server_threads):
    backbone, root = app_collection()
    collection = index_folder(root, backbone, num_frames=8, cache_root=TEST_CACHE, progress=False)
    return AppState(backbone, collection, runs_dir=tmp_path_factory.mktemp("runs"))


def test_collection_is_indexed_with_captions_and_annotations(state):
    collection = state.collection
    assert len(collection) == 40 and not collection.skipped
    assert collection.features.shape == (40, 8, state.backbone.embed_dim)
    assert sum(bool(v.captions) for v in collection.videos) == 38       # every clip; long videos have none
    assert all(v.thumbnail.is_file() for v in collection.videos)
    assert collection.records["nextqa"] and collection.records["charades_sta"]


def test_text_to_video_finds_the_captioned_clip_far_above_chance(state):
    collection, k = state.collection, 5
    found = []
    for row, video in enumerate(collection.videos):
        if video.captions:
            hits = handlers.text_to_video(state, video.captions[0], "mean-pool", k)
            # a twin has the same frames reversed: for mean pooling it is the same video
            same = {video.video_id, *(v.video_id for v in collection.videos if v.key == video.key)}
            twin = video.name[:-1] if video.name.endswith("r") else video.name + "r"
            same |= {v.video_id for v in collection.videos if v.name == twin}
            found.append(any(h["video"] in same for h in hits))
            assert [h["rank"] for h in hits] == list(range(1, k + 1))
            assert hits == sorted(hits, key=lambda h: -h["score"])
    chance = 2 * k / len(collection)
    assert np.mean(found) > 2.5 * chance, (np.mean(found), chance)


def test_video_to_text_ranks_the_true_caption_high(state):
    ranks = []
    for video in state.collection.videos:
        if video.captions:
            rows = handlers.video_to_text(state, video.video_id, "mean-pool", k=100)
            ranks.append(next(r["rank"] for r in rows if r["true"]))
    pool = len(state.collection.captions())
    assert np.median(ranks) < pool / 4, (np.median(ranks), pool)


def test_user_text_comes_back_as_plain_data(state):
    payload = '<script>alert(1)</script> a red <img src=x onerror="x()"> circle'
    rows = handlers.video_to_text(state, state.collection.videos[0].video_id, "mean-pool", payload + "\nsomething")
    assert payload in [r["caption"] for r in rows]
    figure = handlers.scores_figure([payload], [0.5], "t")
    assert "<script>" not in figure.data[0].y[0] and "&lt;script&gt;" in figure.data[0].y[0]
    with pytest.raises(ValueError, match="type a query"):
        handlers.text_to_video(state, "   ", "mean-pool")


def test_bad_uploads_raise_clear_errors(state, tmp_path):
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    text = tmp_path / "notes.mp4"
    text.write_text("not a video at all\n" * 50)
    good = state.collection.videos[0].path
    corrupt = tmp_path / "cut.mp4"
    corrupt.write_bytes(good.read_bytes()[: good.stat().st_size // 3])
    for path, reason in ((empty, "empty"), (text, "not a readable video"), (corrupt, "")):
        with pytest.raises(VideoError) as error:
            handlers.video_to_text(state, str(path), "mean-pool")
        assert str(path) in str(error.value) and reason in str(error.value)
    big = tmp_path / "big.mp4"
    big.write_bytes(good.read_bytes())
    small_limit = AppState(state.backbone, state.collection, max_upload_mb=good.stat().st_size / 2e6)
    with pytest.raises(VideoError, match="upload limit"):
        handlers.video_to_text(small_limit, str(big), "mean-pool")
    # an upload identical to a collection video is that video (its ground truth shows)
    rows = handlers.video_to_text(state, str(big), "mean-pool", k=100)
    assert any(r["true"] for r in rows)


def test_strategy_lab_every_strategy_and_the_order_test(state):
    clip = next(v for v in state.collection.videos if v.name.startswith("eval_move"))
    result = handlers.strategy_lab(state, clip.video_id, strategies=["mean-pool", "post-lstm", "distill-student"])
    assert result["captions"][0] == clip.captions[0] and len(result["captions"]) >= 2   # caption, twin's, siblings
    rows = {r["strategy"]: r for r in result["rows"]}
    assert rows["mean-pool"]["reversed_cos"] == pytest.approx(1.0, abs=1e-5) and not rows["mean-pool"]["uses_order"]
    assert rows["mean-pool"]["trainable"] == 0 and rows["post-lstm"]["trainable"] > 0
    # an untrained zero-initialised head is mean pooling, so it is order-blind too
    assert rows["post-lstm"]["same_as_mean_pool"] and not rows["post-lstm"]["uses_order"]
    # the distilled student is its own network: it sees order
    assert not rows["distill-student"]["same_as_mean_pool"] and rows["distill-student"]["uses_order"]
    assert all(r["gflops"] > 0 and len(r["scores"]) == len(result["captions"]) for r in result["rows"])


def test_trained_heads_are_loaded_and_change_the_ranking(state, tmp_path):
    fresh = AppState(state.backbone, state.collection, runs_dir=tmp_path)
    assert not fresh.head_status("post-lstm").trained
    assert "untrained" in fresh.head_status("post-lstm").note
    # a run folder as `workbench train` writes it, with non-zero (trained-like) parameters
    model = AppState(state.backbone, state.collection, runs_dir=tmp_path / "none").model("post-lstm")
    torch.manual_seed(0)
    weights = {k: torch.randn_like(v) * 0.2 for k, v in trainable_state(model).items()}
    run = tmp_path / "post-lstm-retrieval-cpu"
    run.mkdir()
    save_file(weights, str(run / "trainable.safetensors"))
    (run / "state.json").write_text(json.dumps({"step": 10}))
    loaded = AppState(state.backbone, state.collection, runs_dir=tmp_path)
    assert loaded.head_status("post-lstm").trained and loaded.head_status("post-lstm").source == run
    moved = loaded.video_embeddings("post-lstm") - loaded.video_embeddings("mean-pool")
    assert moved.norm(dim=1).min() > 1e-3


def test_qa_scores_annotated_questions_above_chance(state):
    correct, chance = [], []
    for video in state.collection.videos:
        for asked in handlers.annotated_questions(state, video.video_id):
            if not asked["question"].startswith("what colour"):   # appearance: one frame tells
                continue
            rows = handlers.answer_question(state, video.video_id, asked["question"], asked["choices"], "mean-pool")
            correct.append(rows[0]["answer"] == asked["choices"][asked["answer"]])
            chance.append(1 / len(asked["choices"]))
    assert len(correct) >= 10
    assert np.mean(correct) > np.mean(chance) + 0.3, (np.mean(correct), np.mean(chance))   # 68% vs 20% measured


def test_model_and_bench_panels(state, tmp_path):
    summary = dict(handlers.model_summary(state))
    assert summary["embed_dim"] == str(state.backbone.embed_dim)
    probes = handlers.model_probes(state)
    assert {p["attribute"] for p in probes} >= {"colour", "size"} and all(p["accuracy"] > p["chance"] for p in probes[:1])
    assert "shapes-clip-tiny" in handlers.model_card(state)
    assert handlers.bench_results(tmp_path) == []
    out = tmp_path / "bench"
    out.mkdir()
    (out / "bench.json").write_text(json.dumps({"meta": {"profile": "smoke"}, "rows": [{"strategy": "mean-pool"}]}))
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "bench.json").write_text("{")
    found = handlers.bench_results(tmp_path)
    assert [r["rows"][0]["strategy"] for r in found] == ["mean-pool"]
