"""Tests for ``workbench.data.video``: decoding, bad files, samplers, writing, preprocessing,
and the dataset in DataLoader workers.

Every test video is written here with ``write_video`` (PyAV) into a temporary folder, once per
module. Frame t of a clip is one flat colour, R = 8 + 10t, G = 247 - 10t, B = 128, so a decoded
frame tells which source frame it is (codec loss is a few levels, the step is 10) and a swapped
channel order shows. Decoded pixels are never compared exactly with the source.
"""
from __future__ import annotations

import pickle
import re
from pathlib import Path

import av
import decord
import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from workbench.data.video import (
    CODECS, RESIZE_MODES, SAMPLERS, VideoDataset, VideoError, collate_videos, preprocess_frames,
    read_video, read_video_span, sample_indices, video_info, write_video,
)

NUM_FRAMES = 24
FPS = 8


def make_clip(height: int, width: int, num_frames: int = NUM_FRAMES) -> np.ndarray:
    """uint8 [T,H,W,3] whose frame t has the flat colour (8 + 10t, 247 - 10t, 128)."""
    levels = 8 + 10 * np.arange(num_frames)
    frames = np.empty((num_frames, height, width, 3), np.uint8)
    frames[..., 0] = levels[:, None, None]
    frames[..., 1] = 255 - levels[:, None, None]
    frames[..., 2] = 128
    return frames


def frame_ids(frames: torch.Tensor) -> list[int]:
    """Which source frame each decoded frame [T,3,H,W] is, read off its red level."""
    red = frames[:, 0].float().mean(dim=(1, 2))
    return ((red - 8) / 10).round().int().tolist()


# name -> (codec, suffix, height, width)
GOOD = {
    "h264": ("libx264", ".mp4", 48, 64),
    "mpeg4-odd": ("mpeg4", ".mp4", 61, 97),
    "mpeg4-avi": ("mpeg4", ".avi", 48, 64),
    "vp9-odd": ("libvpx-vp9", ".webm", 61, 97),
    "mjpeg-odd": ("mjpeg", ".avi", 61, 97),
    "wide-strip": ("mjpeg", ".avi", 16, 320),
    # 16 px wide: decord 0.6.0 fails on this width; read_video falls back to PyAV.
    "tall-strip": ("mpeg4", ".avi", 320, 16),
}


@pytest.fixture(scope="module")
def videos(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("videos")
    return {name: write_video(folder / f"{name}{suffix}", make_clip(h, w), FPS, codec)
            for name, (codec, suffix, h, w) in GOOD.items()}


def write_zero_frame_avi(path: Path) -> Path:
    """An AVI with an MJPEG stream and no frames (write_video rightly refuses to make one)."""
    with av.open(str(path), "w") as container:
        stream = container.add_stream("mjpeg", rate=FPS)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuvj420p"
        container.start_encoding()  # header only
    return path


@pytest.fixture(scope="module")
def bad(tmp_path_factory, videos) -> dict[str, Path]:
    """name -> a file read_video must refuse."""
    folder = tmp_path_factory.mktemp("bad")
    good_bytes = videos["h264"].read_bytes()
    files = {
        "missing": folder / "missing.mp4",
        "directory": folder,
        "empty": folder / "empty.mp4",
        "truncated": folder / "truncated.mp4",
        "corrupt": folder / "corrupt.mp4",
        "text": folder / "notes.mp4",
    }
    files["empty"].touch()
    files["truncated"].write_bytes(good_bytes[: len(good_bytes) // 2])
    files["corrupt"].write_bytes(np.random.default_rng(0).bytes(5000))
    files["text"].write_text("this is a text file, not a video\n" * 20)
    files["zero-frames"] = write_zero_frame_avi(folder / "zero.avi")
    files["one-frame"] = write_video(folder / "one.mp4", make_clip(48, 64, 1), FPS)
    files["huge"] = write_video(folder / "huge.avi", make_clip(16, 8200, 2), FPS, "mjpeg")
    return files


# --------------------------------------------------------------------------------------------
# Decoding
# --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", GOOD)
def test_every_codec_decodes_the_sampled_frames(videos, name):
    _, _, height, width = GOOD[name]
    frames = read_video(videos[name], num_frames=6)
    assert frames.dtype == torch.uint8 and frames.shape == (6, 3, height, width)
    assert frame_ids(frames) == sample_indices(NUM_FRAMES, 6)  # [2, 6, 10, 14, 18, 22]
    assert frame_ids(read_video(videos[name], sampling="all")) == list(range(NUM_FRAMES))
    green = frames[:, 1].float().mean(dim=(1, 2))  # RGB order, not BGR
    assert torch.allclose(green, 255 - frames[:, 0].float().mean(dim=(1, 2)), atol=6)


@pytest.mark.parametrize("size, expected",
                         [((32, 24), (32, 24)), (40, (40, 40)), ((40, 16), (40, 16))])
@pytest.mark.parametrize("name", ["h264", "vp9-odd", "tall-strip"])
def test_resize_on_read_gives_the_requested_size(videos, name, size, expected):
    frames = read_video(videos[name], num_frames=4, size=size)
    assert frames.shape == (4, 3, *expected)
    assert frame_ids(frames) == sample_indices(NUM_FRAMES, 4)


def test_short_video_repeats_frames_to_fill_the_clip(tmp_path):
    path = write_video(tmp_path / "short.mp4", make_clip(32, 32, 3), FPS)
    assert frame_ids(read_video(path, num_frames=8)) == [0, 0, 0, 1, 1, 2, 2, 2]


def test_stride_sampling_decodes_a_centred_run(videos):
    frames = read_video(videos["mjpeg-odd"], num_frames=4, sampling="stride", stride=3)
    assert frame_ids(frames) == [7, 10, 13, 16]  # a run of 10 centred in 24 frames


def test_a_span_reads_the_frames_of_its_seconds(videos):
    path = videos["h264"]                                     # 24 frames at 8 fps: frame i is at i/8 s
    frames, indices, fps = read_video_span(path, 1.0, 1.5)
    assert indices == frame_ids(frames) == [8, 9, 10, 11] and fps == pytest.approx(FPS)
    frames, indices, _ = read_video_span(path, 1.0, None, num_frames=4)   # uniform inside [1 s, end)
    assert indices == frame_ids(frames) == [10, 14, 18, 22]
    whole, indices, _ = read_video_span(path, num_frames=5, size=32)
    assert torch.equal(whole, read_video(path, 5, size=32)) and indices == sample_indices(NUM_FRAMES, 5)
    with pytest.raises(ValueError, match="no frame between 4 s and 5 s"):
        read_video_span(path, 4.0, 5.0)


def test_video_info(videos):
    info = video_info(videos["vp9-odd"])
    assert info == {"num_frames": NUM_FRAMES, "fps": pytest.approx(FPS), "width": 97,
                    "height": 61, "duration": pytest.approx(NUM_FRAMES / FPS)}


def test_libx264_pads_odd_sizes_to_even(tmp_path):
    path = write_video(tmp_path / "odd.mp4", make_clip(61, 97, 4), FPS, "libx264")
    assert (video_info(path)["height"], video_info(path)["width"]) == (62, 98)
    assert frame_ids(read_video(path, num_frames=4)) == [0, 1, 2, 3]


def test_works_whatever_decord_bridge_is_set(videos):
    with decord.bridge.use_torch():
        frames = read_video(videos["h264"], num_frames=4)
    assert torch.equal(frames, read_video(videos["h264"], num_frames=4))


# --------------------------------------------------------------------------------------------
# Bad input: one error type, naming the file and the reason
# --------------------------------------------------------------------------------------------

REASONS = {
    "missing": "file not found",
    "directory": "is a directory",
    "empty": "empty (0 bytes)",
    "truncated": "truncated",
    "corrupt": "corrupt",
    "text": "not a video file",
    "zero-frames": "no frames",
    "one-frame": "only 1 frame; a video needs at least 2",
    "huge": "pass size=",
}


@pytest.mark.parametrize("name", REASONS)
def test_bad_files_raise_video_error_naming_file_and_reason(bad, name):
    with pytest.raises(VideoError) as caught:
        read_video(bad[name])
    error = caught.value
    assert error.path == str(bad[name])
    assert REASONS[name] in error.reason
    assert str(error) == f"cannot read video '{bad[name]}': {error.reason}"


@pytest.mark.parametrize("name", [n for n in REASONS if n != "huge"])
def test_video_info_refuses_the_same_files(bad, name):
    with pytest.raises(VideoError, match=re.escape(REASONS[name])):
        video_info(bad[name])


def test_one_frame_file_reads_when_allowed(bad):
    assert read_video(bad["one-frame"], num_frames=2, min_frames=1).shape == (2, 3, 48, 64)


def test_huge_video_reads_with_size(bad):
    assert video_info(bad["huge"])["width"] == 8200
    assert read_video(bad["huge"], num_frames=2, size=(16, 64)).shape == (2, 3, 16, 64)


def test_video_error_survives_pickling():
    error = pickle.loads(pickle.dumps(VideoError("clip.mp4", "file not found")))
    assert (error.path, error.reason) == ("clip.mp4", "file not found")
    assert str(error) == "cannot read video 'clip.mp4': file not found"


# --------------------------------------------------------------------------------------------
# Writing
# --------------------------------------------------------------------------------------------

def test_write_accepts_torch_frames_and_leaves_no_temp_file(tmp_path):
    frames = torch.from_numpy(make_clip(32, 32, 4))
    path = write_video(tmp_path / "t.webm", frames, FPS, "libvpx-vp9")
    assert frame_ids(read_video(path, num_frames=4)) == [0, 1, 2, 3]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["t.webm"]


def test_write_replaces_an_existing_file(tmp_path):
    path = write_video(tmp_path / "v.mp4", make_clip(32, 32, 4), FPS)
    write_video(path, make_clip(32, 32, 6), FPS)
    assert video_info(path)["num_frames"] == 6


def test_failed_write_leaves_nothing_behind(tmp_path):
    with pytest.raises(ValueError, match="mpeg4 cannot encode 8200x16"):
        write_video(tmp_path / "wide.avi", make_clip(16, 8200, 2), FPS, "mpeg4")  # MPEG-4 max 8191
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("path, frames, codec, error", [
    ("a.mp4", make_clip(8, 8, 2), "h265", ValueError),  # unknown codec
    ("a.webm", make_clip(8, 8, 2), "libx264", ValueError),  # wrong container
    ("a.mp4", make_clip(8, 8, 2).astype(np.float32), "libx264", TypeError),
    ("a.mp4", make_clip(8, 8, 2)[..., :2], "libx264", ValueError),  # not RGB
    ("a.mp4", make_clip(8, 8, 0), "libx264", ValueError),  # no frames
])
def test_write_rejects_bad_arguments(tmp_path, path, frames, codec, error):
    with pytest.raises(error):
        write_video(tmp_path / path, frames, FPS, codec)


def test_every_codec_has_a_container():
    assert {spec.suffixes[0] for spec in CODECS.values()} == {".mp4", ".webm", ".avi"}


# --------------------------------------------------------------------------------------------
# Samplers
# --------------------------------------------------------------------------------------------

def test_uniform_takes_segment_centres():
    assert sample_indices(24, 6) == [2, 6, 10, 14, 18, 22]
    assert sample_indices(3, 8) == [0, 0, 0, 1, 1, 2, 2, 2]


def test_stride_pads_with_the_last_reached_index():
    assert sample_indices(100, 4, "stride", stride=4) == [43, 47, 51, 55]
    assert sample_indices(10, 4, "stride", stride=4) == [0, 4, 8, 8]


def test_random_samplers_repeat_with_the_same_generator():
    for sampling in ("segment-random", "stride"):
        first = sample_indices(300, 8, sampling, rng=np.random.default_rng(7))
        assert first == sample_indices(300, 8, sampling, rng=np.random.default_rng(7))
        assert first != sample_indices(300, 8, sampling, rng=np.random.default_rng(8))


def test_sample_indices_rejects_bad_arguments():
    with pytest.raises(ValueError, match="uniform, segment-random, stride, all"):
        sample_indices(10, 4, "random")
    for args, kwargs in [((0, 4), {}), ((10, 0), {}), ((10, 4, "stride"), {"stride": 0})]:
        with pytest.raises(ValueError):
            sample_indices(*args, **kwargs)


@settings(max_examples=300, deadline=None)
@given(num_total=st.integers(1, 400), num_frames=st.integers(1, 64),
       sampling=st.sampled_from(SAMPLERS), stride=st.integers(1, 16), seed=st.integers(0, 2**32))
def test_sampler_properties(num_total, num_frames, sampling, stride, seed):
    indices = sample_indices(num_total, num_frames, sampling, stride=stride,
                             rng=np.random.default_rng(seed))
    assert len(indices) == (num_total if sampling == "all" else num_frames)
    assert indices == sorted(indices)
    assert all(isinstance(i, int) and 0 <= i < num_total for i in indices)
    if sampling in ("uniform", "segment-random"):
        bounds = [k * num_total // num_frames for k in range(num_frames + 1)]
        for k, index in enumerate(indices):  # one index in (or at the end of) each segment
            assert bounds[k] <= index <= bounds[k + 1]
        if num_total >= num_frames:
            assert len(set(indices)) == num_frames
    if sampling == "stride":
        assert {b - a for a, b in zip(indices, indices[1:])} <= {0, stride}


# --------------------------------------------------------------------------------------------
# Preprocessing: the same numbers as open_clip's PIL transform
# --------------------------------------------------------------------------------------------

# Measured: mean |ours - open_clip| <= 0.0016 after normalisation on these images (the max, on
# pure noise, is ~0.3 where PIL rounds to uint8 between its two resize passes).
TOLERANCE = 0.005


def make_image(height: int, width: int, seed: int = 0) -> np.ndarray:
    """Gradients in R and G (smooth content), noise in B (the hard case for resampling)."""
    yy, xx = np.mgrid[0:height, 0:width]
    noise = np.random.default_rng(seed).integers(0, 256, (height, width))
    return np.stack([xx * 255 // width, yy * 255 // height, noise], -1).astype(np.uint8)


def assert_matches_open_clip(transform, image_size, mean, std, resize_mode, shapes):
    from PIL import Image

    for height, width in shapes:
        image = make_image(height, width)
        expected = transform(Image.fromarray(image))  # [3,S,S]
        ours = preprocess_frames(torch.from_numpy(image).permute(2, 0, 1), image_size, mean, std,
                                 resize_mode)
        assert ours.shape == expected.shape == (3, image_size, image_size)
        assert (ours - expected).abs().mean() < TOLERANCE, (resize_mode, height, width)


@pytest.mark.parametrize("resize_mode", RESIZE_MODES)
def test_preprocess_matches_open_clip_image_transform(resize_mode):
    import open_clip

    mean, std = (0.5, 0.4, 0.3), (0.2, 0.25, 0.3)
    transform = open_clip.image_transform(64, is_train=False, mean=mean, std=std,
                                          resize_mode=resize_mode)
    assert_matches_open_clip(transform, 64, mean, std, resize_mode,
                             [(97, 61), (61, 97), (320, 40), (16, 320), (64, 64)])


@pytest.mark.slow
def test_preprocess_matches_a_real_open_clip_model_transform():
    import open_clip

    model, _, transform = open_clip.create_model_and_transforms("ViT-B-32", pretrained=None)
    cfg = model.visual.preprocess_cfg
    assert_matches_open_clip(transform, cfg["size"][0], cfg["mean"], cfg["std"],
                             cfg["resize_mode"], [(97, 61), (320, 40)])


def test_preprocess_handles_any_leading_dims():
    clips = torch.from_numpy(make_image(61, 97)).permute(2, 0, 1).expand(2, 3, 3, 61, 97)
    out = preprocess_frames(clips, 32, (0.5,) * 3, (0.5,) * 3)  # [B,T,3,H,W] -> [B,T,3,S,S]
    assert out.shape == (2, 3, 3, 32, 32) and out.dtype == torch.float32
    assert torch.equal(out[1, 2], preprocess_frames(clips[0, 0], 32, (0.5,) * 3, (0.5,) * 3))


def test_preprocess_rejects_bad_input():
    frames = torch.zeros(2, 3, 8, 8, dtype=torch.uint8)
    with pytest.raises(ValueError, match="shortest, longest, squash"):
        preprocess_frames(frames, 4, (0.5,) * 3, (0.5,) * 3, "crop")
    with pytest.raises(TypeError):
        preprocess_frames(frames.float(), 4, (0.5,) * 3, (0.5,) * 3)


# --------------------------------------------------------------------------------------------
# Dataset and DataLoader
# --------------------------------------------------------------------------------------------

def test_dataset_items_match_read_video(videos):
    dataset = VideoDataset([videos["h264"]], num_frames=4)
    item = dataset[0]
    assert item["path"] == str(videos["h264"]) and item["index"] == 0
    assert torch.equal(item["frames"], read_video(videos["h264"], num_frames=4))


def test_dataset_randomness_is_fixed_by_seed_index_and_epoch(videos):
    paths = list(videos.values())

    def draws(seed: int, epoch: int = 0) -> list[list[int]]:
        dataset = VideoDataset(paths, num_frames=4, sampling="segment-random", size=16, seed=seed)
        dataset.set_epoch(epoch)
        return [frame_ids(dataset[i]["frames"]) for i in range(len(dataset))]

    assert draws(seed=0) == draws(seed=0)
    assert draws(seed=0) != draws(seed=1)
    assert draws(seed=0) != draws(seed=0, epoch=1)


def test_dataset_skips_or_raises_on_bad_files(videos, bad):
    paths = [videos["h264"], bad["corrupt"]]
    with pytest.raises(VideoError):
        VideoDataset(paths)[1]
    item = VideoDataset(paths, on_error="skip")[1]
    assert item["path"] == str(bad["corrupt"]) and "corrupt" in item["error"]
    batch = collate_videos([VideoDataset(paths, num_frames=4, on_error="skip")[i] for i in (0, 1)])
    assert batch["frames"].shape == (1, 4, 3, 48, 64)
    assert batch["path"] == [str(videos["h264"])] and batch["index"].tolist() == [0]
    assert batch["errors"] == [(str(bad["corrupt"]), item["reason"])]


def test_dataset_applies_transform(videos):
    dataset = VideoDataset([videos["mpeg4-odd"]], num_frames=2,
                           transform=lambda f: preprocess_frames(f, 32, (0.5,) * 3, (0.5,) * 3))
    assert dataset[0]["frames"].shape == (2, 3, 32, 32)


def test_dataloader_workers_return_every_video_once(videos, bad):
    paths = [*videos.values(), bad["truncated"], bad["one-frame"]]
    dataset = VideoDataset(paths, num_frames=4, sampling="segment-random", size=(24, 32),
                           on_error="skip", seed=3)
    loader = torch.utils.data.DataLoader(dataset, batch_size=3, num_workers=2,
                                         collate_fn=collate_videos)
    seen, errors = {}, []
    for batch in loader:
        errors += batch["errors"]
        for index, frames in zip(batch["index"].tolist(), batch["frames"] if batch["path"] else []):
            assert index not in seen
            seen[index] = frames
    assert sorted(seen) == list(range(len(videos)))
    for index, frames in seen.items():  # same frames as a single-process read
        assert torch.equal(frames, dataset[index]["frames"])
    assert sorted(path for path, _ in errors) == sorted(str(bad[n]) for n in ("truncated", "one-frame"))
