"""The app's handlers, called directly (no Gradio): retrieval both ways, QA, grounding (windows,
boxes, playback), attention maps, the strategy lab, trained-head loading, upload validation,
model and bench panels."""
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
    assert handlers.bench_results(tmp_path, shipped=None) == []
    shipped = handlers.bench_results(tmp_path)      # a fresh clone: the committed cpu (and gpu) comparisons
    assert shipped and all(r["rows"] for r in shipped)
    profiles = {r["meta"]["profile"] for r in shipped}
    assert "cpu" in profiles and profiles <= {"cpu", "gpu"}
    assert {"mean-pool", "post-transformer"} <= {row["strategy"] for r in shipped for row in r["rows"]}
    out = tmp_path / "bench"
    out.mkdir()
    (out / "bench.json").write_text(json.dumps({"meta": {"profile": "smoke"}, "rows": [{"strategy": "mean-pool"}]}))
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "bench.json").write_text("{")
    found = handlers.bench_results(tmp_path, shipped=None)
    assert [r["rows"][0]["strategy"] for r in found] == ["mean-pool"]
    assert handlers.bench_results(tmp_path)[0]["path"] == str(out)   # the user's runs come first


def _long_videos(state):
    return [v.video_id for v in state.collection.videos if v.name.startswith("long_")]


def test_grounding_finds_the_annotated_moments_far_above_chance(state):
    """Every annotated event of the long videos: the top window against the true one, beside a
    random window of the true length (a chance that already knows how long the moment is)."""
    rng = np.random.default_rng(0)
    ious, chance, box_ious = [], [], []
    for video in _long_videos(state):
        for moment in handlers.annotated_moments(state, video):
            result = handlers.ground(state, video, moment["query"], "mean-pool")
            (start, end), duration = moment["windows"][0], result["duration"]
            windows = result["windows"]
            assert windows and [w["rank"] for w in windows] == list(range(1, len(windows) + 1))
            assert all(0 <= w["start"] < w["end"] <= duration + 1e-6 for w in windows)
            assert windows == sorted(windows, key=lambda w: -w["score"])
            assert len(result["similarity"]) == len(result["activity"]) == len(result["times"]) == 32
            ious.append(windows[0]["iou"])
            # the true tube is there on the event's frames, in frame pixels
            inside = [b for b, t in zip(result["true_boxes"], result["times"]) if start <= t < end]
            assert inside and all(b is not None for b in inside)
            if result["box_iou"] is not None:
                box_ious.append(result["box_iou"])
            placed = rng.uniform(0, duration - (end - start), 2000)
            overlap = np.clip(np.minimum(placed + end - start, end) - np.maximum(placed, start), 0, None)
            chance.append(np.mean(overlap / (2 * (end - start) - overlap)))
    assert len(ious) >= 6
    # measured: mean IoU 0.49 against 0.20 by chance, 5 of 7 >= 0.3 (demo: 0.39 against 0.16, 33 queries)
    assert np.mean(ious) > 2 * np.mean(chance), (np.mean(ious), np.mean(chance))
    assert np.mean(np.array(ious) >= 0.3) >= 0.5, ious
    assert box_ious and np.mean(box_ious) > 0.15, box_ious      # measured 0.33 (demo 0.31)


def test_grounding_an_unannotated_query_and_bad_input(state):
    video = _long_videos(state)[0]
    result = handlers.ground(state, video, "a <b>green</b> circle spins", "mean-pool", num_frames=16)
    assert result["true_windows"] == [] and all(w["iou"] is None for w in result["windows"])
    assert all(b is None for b in result["true_boxes"]) and result["query"] == "a <b>green</b> circle spins"
    timeline, grid = handlers.grounding_figures(result)
    assert "<b>" not in timeline.layout.title.text and "&lt;b&gt;" in timeline.layout.title.text
    assert len(grid.data) >= 2                                      # frames and their maps
    with pytest.raises(ValueError, match="no video"):
        handlers.ground(state, None, "a red circle", "mean-pool")
    with pytest.raises(ValueError, match="type a query"):
        handlers.ground(state, video, " ", "mean-pool")
    with pytest.raises(ValueError, match="between 2 and"):
        handlers.ground(state, video, "a red circle", "mean-pool", num_frames=10_000)


def test_a_chosen_window_is_cut_and_played_at_its_own_rate(state):
    from workbench.data.video import read_video_span, video_info

    video = _long_videos(state)[0]
    path = handlers.cut_window(state, video, 1.5, 2.625)
    assert path.is_file() and path.parent == state.output_dir
    info = video_info(path)
    frames, indices, _ = read_video_span(state.collection.videos[state.collection.find(video)].path, 1.5, 2.625)
    assert info["num_frames"] == len(frames) == 9 and info["fps"] == 8
    assert handlers.cut_window(state, video, 1.5, 2.625) == path                  # written once
    for start, end, message in ((2, 1, "later end"), (0, 500, "at most"), (90, 95, "no frame between")):
        with pytest.raises(ValueError, match=message):
            handlers.cut_window(state, video, start, end)


def test_attention_relevancy_looks_at_the_acting_object(state):
    """Relevancy of an event's query on frames inside the event: far more of the map inside the
    acting object's box than the box's share of the frame (2-3 objects per video)."""
    inside, area = [], []
    for video in _long_videos(state):
        for moment in handlers.annotated_moments(state, video):
            start, end = moment["windows"][0]
            result = handlers.attention_maps(state, video, moment["query"], "mean-pool", "relevancy",
                                             start=start, end=end)
            assert all(start - 1e-6 <= t < end for t in result["times"]) and result["layer"] == 0
            inside += [m for m in result["inside"] if m is not None]
            area += [a for a in result["area"] if a is not None]
    assert len(inside) >= 40
    # measured: 0.57 of the map in boxes covering 0.07 of the frame (demo: 0.49 against 0.055)
    assert np.mean(inside) > 4 * np.mean(area), (np.mean(inside), np.mean(area))


def test_attention_layer_and_head_change_the_maps_and_bad_ones_are_refused(state):
    video = state.collection.videos[0].video_id
    layout = handlers.attention_layout(state)
    assert layout["blocks"] >= 2 and layout["heads"] >= 2
    maps = {(layer, head): handlers.attention_maps(state, video, None, "mean-pool", "attention", layer, head)["maps"]
            for layer in (0, layout["blocks"] - 1) for head in (None, 0, 1)}
    assert not torch.allclose(maps[(0, None)], maps[(layout["blocks"] - 1, None)], atol=1e-3)
    assert not torch.allclose(maps[(0, 0)], maps[(0, 1)], atol=1e-3)
    assert all(m.shape == (8, *layout["grid"]) and 0 <= m.min() and m.max() <= 1 for m in maps.values())
    rollout = handlers.attention_maps(state, video, "", "mean-pool", "rollout")
    assert rollout["layer"] == layout["blocks"] - 1 and rollout["query"] is None
    figure = handlers.frames_figure(rollout, title="t")
    assert len(figure.layout.annotations) == 8                       # one time title per frame
    for kwargs, message in (({"layer": layout["blocks"]}, "out of range"), ({"head": layout["heads"]}, "out of range"),
                            ({"method": "saliency"}, "unknown method"),
                            ({"query": "", "method": "relevancy"}, "type a query"),
                            ({"start": 3, "end": 2}, "end after it starts")):
        arguments = {"query": "a red circle", "method": "attention", **kwargs}
        with pytest.raises(ValueError, match=message):
            handlers.attention_maps(state, video, arguments.pop("query"), "mean-pool", **arguments)
