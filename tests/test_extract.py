"""`workbench extract`: features equal direct encoding, resume, bad files, 2 processes, and the index on top."""
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

import workbench.extract as extract_module
from workbench import load_backbone
from workbench.data.shapes.clips import make_clips
from workbench.data.video import read_video, video_info, write_video
from workbench.extract import ExtractConfig, ExtractedFeatures, decode_size, extract_features, list_videos
from workbench.index import index_from_features, load_index

HERE = Path(__file__).parent
CFG = ExtractConfig(num_frames=4, batch_size=3, num_workers=0, progress=False)
# Looks the tiny CLIP tells apart, each as a clip and its time-reversed twin (make_clips order),
# plus a green cross as a distractor for the green star.
# Query -> the clip it describes and that clip's time-reversed twin (same mean-pooled features).
LOOKS = {"a white star travels leftward": (0, 1), "a green star goes up": (2, 3),
         "an orange cross comes into view": (10, 11)}
DISTRACTORS = (4, 5)


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """The tiny model runs faster on one thread than two on a shared machine (no OpenMP barrier waits)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def backbone():
    return load_backbone()


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    """Eight ShapesWorld clips (one written 128x96, to exercise aspect-keeping decode) and two bad files."""
    folder = tmp_path_factory.mktemp("videos")
    clips = make_clips(0, 1, 8, "train")
    for i in sorted([*DISTRACTORS, *(i for pair in LOOKS.values() for i in pair)]):
        frames = clips[i].frames(128)
        write_video(folder / "clips" / f"{clips[i].clip_id}.mp4", frames[:, 16:112] if i == 0 else frames)
    (folder / "corrupt.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42" + os.urandom(2000))
    (folder / "empty.avi").write_bytes(b"")
    (folder / "notes.txt").write_text("not a video suffix: ignored")
    return folder, {text: [f"clips/{clips[i].clip_id}" for i in pair] for text, pair in LOOKS.items()}


@pytest.fixture(scope="module")
def extracted(videos, backbone, tmp_path_factory):
    out = tmp_path_factory.mktemp("features")
    return out, extract_features(videos[0], backbone, out, CFG)


def test_decode_size_keeps_aspect_and_leaves_only_a_crop():
    assert decode_size(640, 360, 224) == (224, 398)   # short side to 224, as open_clip's Resize
    assert decode_size(360, 640, 64) == (113, 64)
    assert decode_size(640, 360, 64, "squash") == (64, 64)


def test_features_equal_direct_encoding(videos, extracted, backbone):
    out, result = extracted
    features = ExtractedFeatures(out)
    assert sorted(result.encoded) == sorted(features.ids) and len(features) == 8
    shapes = set()
    for video_id in features.ids:
        path = features.video_path(video_id)
        info = video_info(path)
        shapes.add((info["width"], info["height"]))
        with torch.inference_mode():
            frames = read_video(path, 4, size=decode_size(info["width"], info["height"], backbone.image_size))
            direct = backbone.encode_frames(backbone.preprocess(frames)[None])[0]
            full = backbone.encode_frames(backbone.preprocess(read_video(path, 4))[None])[0]
        stored = features[video_id]
        assert stored.shape == (4, backbone.embed_dim)
        torch.testing.assert_close(stored, direct, atol=1e-5, rtol=1e-4)
        # Decoding small loses nothing that matters against decoding full size and resizing after.
        assert F.cosine_similarity(stored, full).min() > 0.99
    assert shapes == {(128, 128), (128, 96)}


def test_bad_files_are_skipped_and_reported(extracted):
    out, result = extracted
    reasons = {Path(path).name: reason for path, reason in result.failed}
    assert set(reasons) == {"corrupt.mp4", "empty.avi"}
    assert "empty" in reasons["empty.avi"]
    listed = json.loads((out / "failures.json").read_text())
    assert {Path(item["path"]).name for item in listed} == {"corrupt.mp4", "empty.avi"}
    assert result.total == 10 and "corrupt" not in ExtractedFeatures(out)


def test_resume_skips_finished_videos_without_rehashing(videos, backbone, extracted, tmp_path, monkeypatch):
    out = tmp_path / "features"
    shutil.copytree(extracted[0], out)
    hashed = []
    real_hash = extract_module.content_hash
    monkeypatch.setattr(extract_module, "content_hash", lambda p: hashed.append(Path(p).name) or real_hash(p))
    again = extract_features(videos[0], backbone, out, CFG)
    assert again.encoded == [] and again.num_encoded == 0 and again.skipped == 8 and len(again.failed) == 2
    assert set(hashed) == {"corrupt.mp4", "empty.avi"}   # unchanged good files keep their hash
    features = ExtractedFeatures(out)
    lost = features.ids[3]
    features.cache.path(features._videos[lost]["key"]).unlink()  # as if killed before this one
    assert extract_features(videos[0], backbone, out, CFG).encoded == [lost]


def test_another_config_is_refused(videos, backbone, extracted):
    with pytest.raises(ValueError, match="choose another --out folder"):
        extract_features(videos[0], backbone, extracted[0], ExtractConfig(num_frames=6, num_workers=0))


def test_text_query_finds_the_clips_of_its_object(videos, extracted, backbone, tmp_path):
    """The index over extracted features: each look's query returns its clip and twin first."""
    index = index_from_features(extracted[0], kind="exact")
    index = load_index(index.save(tmp_path / "clips.index.safetensors"))
    with torch.no_grad():
        queries = backbone.encode_text(list(videos[1]))
    _, ids = index.search(queries, k=2)
    for (text, expected), found in zip(videos[1].items(), ids):
        assert sorted(found) == sorted(expected), text


def test_list_videos_names_by_relative_path(videos):
    listing = list_videos(videos[0])
    assert "clips/train_move_left_0000" in listing and "corrupt" in listing and "notes" not in listing


@pytest.mark.slow
def test_two_processes_split_the_work_and_match_one_process(videos, extracted, tmp_path):
    """torchrun with 2 CPU processes: each video is encoded exactly once, features equal one process."""
    torchrun = Path(sys.executable).with_name("torchrun")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    out = tmp_path / "features"
    subprocess.run([str(torchrun), "--nproc_per_node", "2", "--master_port", "29541",
                    str(HERE / "extract_ddp_script.py"), str(videos[0]), str(out), str(tmp_path)],
                   check=True, env=env, timeout=300)
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert ranks[0]["world_size"] == 2
    shares = [set(r["encoded"]) for r in ranks]
    assert shares[0] and shares[1] and not shares[0] & shares[1]
    single, double = ExtractedFeatures(extracted[0]), ExtractedFeatures(out)
    assert shares[0] | shares[1] == set(single.ids) == set(double.ids)
    assert len(ranks[0]["failed"]) == len(ranks[1]["failed"]) == 2
    for video_id in single.ids:
        torch.testing.assert_close(double[video_id], single[video_id], atol=1e-5, rtol=1e-4)
