"""Video files in and out: decode with decord, sample frames, preprocess in batches like open_clip.

Every video the workbench reads goes through :func:`read_video` (or :func:`read_video_span` for
a span of it), so the rules live here once:

- **One error type.** Any file that cannot give a clip raises :class:`VideoError`, whose message
  names the file and the reason (missing, empty, truncated, corrupt, not a video, no frames, one
  frame, too large). Batch jobs catch it to skip and report (:class:`VideoDataset` with
  ``on_error="skip"``); nothing else escapes from the decoders.
- **A clip has at least two frames** (``min_frames=2``): a one-frame file is an image, and the
  temporal strategies the workbench compares have nothing to model on it.
- **Huge frames are refused, not decoded**: above ``max_side`` pixels on a side the caller must
  pass ``size=`` so decord resizes while decoding (it is also much faster).

Frame samplers follow the usual video-recognition conventions: ``uniform`` takes the centre of
each of T equal segments (the deterministic evaluation protocol), ``segment-random`` one random
frame per segment (TSN: Wang et al., *Temporal Segment Networks*, ECCV 2016), ``stride`` a
fixed-step run (SlowFast-style dense sampling), ``all`` every frame.

:func:`preprocess_frames` reproduces open_clip's eval transform (PIL resize, centre crop,
normalise) on batched tensors, so a ``[B,T,3,H,W]`` clip batch is preprocessed in one call.
"""
from __future__ import annotations

# PyAV must be imported before decord. decord bundles an older libvpx; if it is loaded first,
# PyAV's VP9 encoder fails to open ('avcodec_open2("libvpx-vp9") returned 22'). Measured here
# with decord 0.6.0 and av 18.1.0; the reverse order breaks neither library.
import av  # isort: skip
import decord  # isort: skip

import math
import os
import re
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from ..io import atomic_write

__all__ = [
    "SAMPLERS", "CODECS", "RESIZE_MODES", "MAX_SIDE", "VideoError", "sample_indices",
    "video_info", "read_video", "write_video", "preprocess_frames", "VideoDataset",
    "collate_videos",
]

SAMPLERS = ("uniform", "segment-random", "stride", "all")
RESIZE_MODES = ("shortest", "longest", "squash")  # open_clip's PreprocessCfg.resize_mode values
MAX_SIDE = 8192  # pixels per side above which read_video demands size= (a 4K frame is 3840)

PathLike = str | os.PathLike


class VideoError(Exception):
    """A video file cannot give a clip. ``path`` is the file, ``reason`` says why in words."""

    def __init__(self, path: PathLike, reason: str):
        self.path = os.fspath(path)
        self.reason = reason
        super().__init__(f"cannot read video '{self.path}': {reason}")

    def __reduce__(self):
        # The default pickling replays args=(message,) into __init__; DataLoader workers and
        # multiprocessing need (path, reason) back.
        return (type(self), (self.path, self.reason))


# --------------------------------------------------------------------------------------------
# Samplers
# --------------------------------------------------------------------------------------------

def sample_indices(num_total: int, num_frames: int, sampling: str = "uniform", *,
                   stride: int = 4, rng: np.random.Generator | None = None) -> list[int]:
    """Which frame indices to decode from a video of ``num_total`` frames.

    Always returns ``num_frames`` sorted indices in ``[0, num_total)`` (``"all"`` returns every
    index instead). A video shorter than ``num_frames`` repeats frames in order rather than
    returning a shorter clip, so batches keep one shape.

    - ``uniform``: the centre of each of ``num_frames`` equal segments; deterministic.
    - ``segment-random``: one random index inside each segment (TSN); draws from ``rng``
      (a fresh generator when None, i.e. not repeatable).
    - ``stride``: ``num_frames`` indices ``stride`` apart; the run is centred, or starts at a
      random place when ``rng`` is given; a run longer than the video repeats its last index.
    - ``all``: ``range(num_total)``; ``num_frames`` is ignored.
    """
    _check_sampling(sampling)
    if num_total < 1:
        raise ValueError(f"num_total must be >= 1, got {num_total}")
    if sampling == "all":
        return list(range(num_total))
    if num_frames < 1:
        raise ValueError(f"num_frames must be >= 1, got {num_frames}")
    if sampling == "uniform":
        return [(2 * i + 1) * num_total // (2 * num_frames) for i in range(num_frames)]  # exact
    if sampling == "segment-random":
        return _segment_random(num_total, num_frames, rng or np.random.default_rng())
    return _strided(num_total, num_frames, stride, rng)


def _check_sampling(sampling: str) -> None:
    if sampling not in SAMPLERS:
        raise ValueError(f"unknown sampling {sampling!r}; choose one of {', '.join(SAMPLERS)}")


def _segment_random(num_total: int, num_frames: int, rng: np.random.Generator) -> list[int]:
    """One uniform draw per segment [floor(i*N/T), floor((i+1)*N/T)); an empty segment (N < T)
    collapses to its start, which keeps the result sorted."""
    starts = [i * num_total // num_frames for i in range(num_frames + 1)]
    return [int(rng.integers(lo, max(lo + 1, hi))) for lo, hi in zip(starts, starts[1:])]


def _strided(num_total: int, num_frames: int, stride: int,
             rng: np.random.Generator | None) -> list[int]:
    if stride < 1:
        raise ValueError(f"stride must be >= 1, got {stride}")
    slack = num_total - ((num_frames - 1) * stride + 1)  # free frames around the run
    if slack < 0:  # the run does not fit: start at 0 and repeat the last index it reaches
        last = (num_total - 1) // stride * stride
        return [min(i * stride, last) for i in range(num_frames)]
    start = slack // 2 if rng is None else int(rng.integers(0, slack + 1))
    return [start + i * stride for i in range(num_frames)]


# --------------------------------------------------------------------------------------------
# Reading
# --------------------------------------------------------------------------------------------

def video_info(path: PathLike, *, min_frames: int = 2) -> dict:
    """``{num_frames, fps, width, height, duration}`` of a video, without decoding its frames.

    ``num_frames`` and ``fps`` are decord's (what :func:`read_video` samples from); a file that
    :func:`read_video` would refuse for being unreadable or too short raises the same
    :class:`VideoError` here (pass ``min_frames=1`` to inspect one-frame files).
    """
    path = os.fspath(path)
    width, height = _probe(path)
    reader = _open_reader(path, None, min_frames)
    num_frames, fps = len(reader), float(reader.get_avg_fps())
    duration = num_frames / fps if fps > 0 else float("nan")
    return {"num_frames": num_frames, "fps": fps, "width": width, "height": height,
            "duration": duration}


def read_video(path: PathLike, num_frames: int = 8, sampling: str = "uniform",
               size: int | tuple[int, int] | None = None, *, stride: int = 4,
               rng: np.random.Generator | None = None, min_frames: int = 2,
               max_side: int = MAX_SIDE) -> torch.Tensor:
    """Decode ``num_frames`` frames of a video as uint8 ``[T,3,H,W]`` (RGB).

    ``size`` (int for square, or ``(height, width)``) resizes while decoding, which is far
    faster than decoding full frames and resizing after. Frames are picked by
    :func:`sample_indices` (``sampling``, ``stride``, ``rng``). Raises :class:`VideoError` for
    any file that cannot give a clip: unreadable, fewer than ``min_frames`` frames, or larger
    than ``max_side`` on a side when no ``size`` is given.
    """
    path = os.fspath(path)
    reader, out_size = _open_checked(path, size, min_frames, max_side)
    indices = sample_indices(len(reader), num_frames, sampling, stride=stride, rng=rng)
    return _decode(reader, path, indices, out_size)  # [T,3,H,W]


def read_video_span(path: PathLike, start: float = 0.0, end: float | None = None,
                    num_frames: int | None = None, size: int | tuple[int, int] | None = None,
                    *, min_frames: int = 2, max_side: int = MAX_SIDE) -> tuple[torch.Tensor, list[int], float]:
    """The frames whose time ``index / fps`` lies in ``[start, end)`` seconds (``end`` None: to
    the end): all of them, or ``num_frames`` picked by uniform sampling inside the span.

    Returns (uint8 ``[T,3,H,W]``, their frame indices in the file, fps): what a player needs
    to show a span at its own rate, and what grounding needs to keep each frame's time. Over the
    whole video with ``num_frames``, the frames are exactly :func:`read_video`'s uniform ones.
    Raises :class:`VideoError` for unreadable files, ``ValueError`` for a span with no frame.
    """
    path = os.fspath(path)
    reader, out_size = _open_checked(path, size, min_frames, max_side)
    fps, total = float(reader.get_avg_fps()), len(reader)
    first = max(0, math.ceil(start * fps - 1e-6))
    stop = total if end is None else min(total, math.ceil(end * fps - 1e-6))
    if stop <= first:
        raise ValueError(f"no frame between {start:g} s and {total / fps if end is None else end:g} s: "
                         f"the video lasts {total / fps:.3f} s at {fps:g} fps")
    indices = list(range(first, stop))
    if num_frames is not None:
        indices = [first + i for i in sample_indices(stop - first, num_frames, "uniform")]
    return _decode(reader, path, indices, out_size), indices, fps


def _open_checked(path: str, size, min_frames: int, max_side: int) -> tuple[decord.VideoReader, tuple[int, int] | None]:
    """A reader decoding at ``size`` (see :func:`read_video`), after the checks every read makes."""
    out_size = _as_hw(size)
    width, height = _probe(path)
    if out_size is None and max(width, height) > max_side:
        raise VideoError(path, f"resolution {width}x{height} is over the {max_side} px per side "
                               "limit; pass size=(height, width) to resize while decoding")
    return _open_reader(path, out_size, min_frames), out_size


def _as_hw(size: int | tuple[int, int] | None) -> tuple[int, int] | None:
    if size is None:
        return None
    height, width = (size, size) if isinstance(size, int) else size
    if height < 1 or width < 1:
        raise ValueError(f"size must be positive, got {size}")
    return int(height), int(width)


def _check_file(path: str) -> None:
    """The reasons a path is not a video that the file system can tell without opening it."""
    if not os.path.exists(path):
        raise VideoError(path, "file not found")
    if os.path.isdir(path):
        raise VideoError(path, "is a directory, not a video file")
    if os.path.getsize(path) == 0:
        raise VideoError(path, "file is empty (0 bytes)")


def _probe(path: str) -> tuple[int, int]:
    """(width, height) of the first video stream, from the container header (~1 ms).

    decord cannot tell the frame size without decoding a full frame, and when it fails to open a
    file it only prints the reason to stderr ("Error reading <path>..."); PyAV reads the header
    alone and raises with the reason, so it vets the file first.
    """
    _check_file(path)
    try:
        with av.open(path) as container:
            streams = container.streams.video
            if not streams:
                raise VideoError(path, "contains no video stream (no frames, or audio only)")
            codec = streams[0].codec_context
            return int(codec.width), int(codec.height)
    except VideoError:
        raise
    except Exception as error:  # FFmpeg's errors come as many types; all mean "cannot parse"
        raise VideoError(path, "not a readable video: corrupt, truncated or not a video file "
                               f"({_ffmpeg_message(error)})") from None


def _open_reader(path: str, size: tuple[int, int] | None, min_frames: int) -> decord.VideoReader:
    height, width = size or (-1, -1)
    try:
        reader = decord.VideoReader(path, ctx=decord.cpu(0), width=width, height=height)
    except Exception as error:  # RuntimeError, DECORDError or AssertionError, by failure
        raise VideoError(path, _diagnose(path, error)) from None
    count = len(reader)
    if count < min_frames:
        noun = "frame" if count == 1 else "frames"
        raise VideoError(path, f"only {count} {noun}; a video needs at least {min_frames}")
    return reader


def _diagnose(path: str, decord_error: Exception) -> str:
    """Why decord failed on a file whose header PyAV could read, in words.

    decord's messages are internal checks ("Cannot create buffer source" for a stream without
    frames, "av_read_frame failed" for a cut-off file), so decode the file with PyAV and say
    what it finds. Runs only after a failure, so its cost does not matter.
    """
    try:
        with av.open(path) as container:
            listed = container.streams.video[0].frames  # 0 where the container keeps no count
            decodable = sum(1 for _ in container.decode(video=0))
    except Exception as error:
        return f"corrupt or truncated: frames cannot be decoded ({_ffmpeg_message(error)})"
    if decodable == 0:
        return "contains no frames"
    if decodable < listed:
        return f"truncated: the header lists {listed} frames but only {decodable} can be decoded"
    return f"the decoder failed ({_first_line(decord_error)})"


def _decode(reader: decord.VideoReader, path: str, indices: list[int],
            size: tuple[int, int] | None) -> torch.Tensor:
    """Frames at ``indices`` as uint8 ``[T,3,H,W]``."""
    try:
        batch = _as_tensor(reader.get_batch(indices))  # [T,H,W,3]
    except Exception as error:
        if "DECORDArrayCopyFromTo" not in str(error):
            raise VideoError(path, _diagnose(path, error)) from None
        # decord 0.6.0 bug: for some narrow output widths (2-16, 24, 48, 72 px, seen here) its
        # RGB copy mismatches sizes and get_batch raises (reader[i] silently returns a wrongly
        # shaped array). PyAV decodes those correctly.
        batch = _decode_with_pyav(path, indices, size)
    return batch.permute(0, 3, 1, 2).contiguous()  # [T,H,W,3] -> [T,3,H,W]


def _as_tensor(batch) -> torch.Tensor:
    """decord's batch as a torch tensor, whatever bridge someone set globally."""
    if isinstance(batch, torch.Tensor):
        return batch
    return torch.from_numpy(batch.asnumpy())


def _decode_with_pyav(path: str, indices: list[int], size: tuple[int, int] | None) -> torch.Tensor:
    """Frames at ``indices`` (decode order), resized like decord (swscale) when ``size`` is set."""
    wanted, last = set(indices), max(indices)
    resize = {} if size is None else {"height": size[0], "width": size[1]}
    frames: dict[int, np.ndarray] = {}
    try:
        with av.open(path) as container:
            for index, frame in enumerate(container.decode(video=0)):
                if index in wanted:
                    frames[index] = frame.to_ndarray(format="rgb24", **resize)
                if index >= last:
                    break
    except Exception as error:
        raise VideoError(path, f"decoding failed ({_ffmpeg_message(error)})") from None
    if last not in frames:
        raise VideoError(path, f"truncated: frame {last} of {len(frames)} decodable is missing")
    return torch.from_numpy(np.stack([frames[i] for i in indices]))  # [T,H,W,3]


def _ffmpeg_message(error: Exception) -> str:
    """FFmpeg's words for an error ("Invalid data found when processing input"), no errno."""
    return getattr(error, "strerror", None) or _first_line(error)


def _first_line(error: Exception) -> str:
    """The gist of an error message, without decord's "[12:00:00] /src/file.cc:42: " prefixes."""
    text = _DECORD_LOG_PREFIX.sub("", str(error)).strip()
    return (text.splitlines()[0] if text else type(error).__name__)[:300]


_DECORD_LOG_PREFIX = re.compile(r"\[\d\d:\d\d:\d\d\] \S+:\d+: ")


# --------------------------------------------------------------------------------------------
# Writing
# --------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class VideoCodec:
    """How :func:`write_video` drives one encoder."""

    pix_fmt: str                  # what the encoder gets (4:2:0: what every player decodes)
    suffixes: tuple[str, ...]     # file extensions whose container holds this codec
    options: dict = field(default_factory=dict)  # encoder options: fast, and close to lossless
    fixed_quantiser: bool = False  # constant best quantiser instead of a bitrate target


CODECS: dict[str, VideoCodec] = {
    # crf 18 is near-transparent; "veryfast" halves encoding time at the same PSNR (measured).
    "libx264": VideoCodec("yuv420p", (".mp4",), {"preset": "veryfast", "crf": "18"}),
    # MPEG-4 part 2 and MJPEG default to a low bitrate (25 dB on moving content); a fixed
    # quantiser gives ~46 / ~43 dB.
    "mpeg4": VideoCodec("yuv420p", (".mp4", ".avi"), fixed_quantiser=True),
    "mjpeg": VideoCodec("yuvj420p", (".avi",), fixed_quantiser=True),
    # libvpx's default "good" deadline is ~6x slower than realtime at cpu-used 8 for the same
    # quality on synthetic clips; b=0 makes crf a constant-quality target.
    "libvpx-vp9": VideoCodec("yuv420p", (".webm",),
                             {"deadline": "realtime", "cpu-used": "8", "crf": "30", "b": "0"}),
}


def write_video(path: PathLike, frames: np.ndarray | torch.Tensor, fps: float = 8,
                codec: str = "libx264", *, options: dict | None = None) -> Path:
    """Encode uint8 RGB frames ``[T,H,W,3]`` to ``path`` with PyAV; returns the path.

    The codec must suit the extension (see :data:`CODECS`). libx264 needs even width and height
    (4:2:0 chroma), so an odd-sized clip gets one edge-replicated row/column (it decodes one
    pixel larger). ``options`` override the encoder options. The file appears atomically: it is
    encoded to a hidden temporary file next to ``path`` and renamed, so a crash never leaves a
    half-written video behind for a reader to trip on.
    """
    path = Path(path)
    spec = _codec_spec(codec, path)
    frames = _as_frame_array(frames)
    if codec == "libx264":
        frames = _pad_to_even(frames)
    if fps <= 0:
        raise ValueError(f"fps must be positive, got {fps}")
    rate = Fraction(fps).limit_denominator(1001)
    return atomic_write(path, lambda temp: _encode(Path(temp), frames, rate, codec, spec, options))


def _codec_spec(codec: str, path: Path) -> VideoCodec:
    if codec not in CODECS:
        raise ValueError(f"unknown codec {codec!r}; choose one of {', '.join(CODECS)}")
    spec = CODECS[codec]
    if path.suffix.lower() not in spec.suffixes:
        raise ValueError(f"codec {codec!r} is written to {'/'.join(spec.suffixes)} files, "
                         f"not {path.name!r}")
    return spec


def _as_frame_array(frames: np.ndarray | torch.Tensor) -> np.ndarray:
    if isinstance(frames, torch.Tensor):
        frames = frames.detach().cpu().numpy()
    frames = np.asarray(frames)
    if frames.dtype != np.uint8:
        raise TypeError(f"frames must be uint8, got {frames.dtype}")
    if frames.ndim != 4 or frames.shape[-1] != 3 or 0 in frames.shape:
        raise ValueError(f"frames must be [T,H,W,3] with T,H,W >= 1, got {frames.shape}")
    return frames


def _pad_to_even(frames: np.ndarray) -> np.ndarray:
    """[T,H,W,3] -> [T,H+H%2,W+W%2,3], repeating the last row/column."""
    pad_h, pad_w = frames.shape[1] % 2, frames.shape[2] % 2
    if not (pad_h or pad_w):
        return frames
    return np.pad(frames, ((0, 0), (0, pad_h), (0, pad_w), (0, 0)), mode="edge")


def _encode(path: Path, frames: np.ndarray, rate: Fraction, codec: str, spec: VideoCodec,
            options: dict | None) -> None:
    height, width = frames.shape[1:3]
    with av.open(str(path), "w") as container:
        stream = container.add_stream(codec, rate=rate, options={**spec.options, **(options or {})})
        stream.width, stream.height, stream.pix_fmt = width, height, spec.pix_fmt
        if spec.fixed_quantiser:
            stream.codec_context.qscale = True  # frames carry quality 0 -> the encoder's qmin
        try:
            for frame in frames:
                container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
            container.mux(stream.encode())  # flush delayed frames
        except av.error.FFmpegError as error:
            raise ValueError(f"{codec} cannot encode {width}x{height} frames: "
                             f"{_ffmpeg_message(error)}") from None


# --------------------------------------------------------------------------------------------
# Preprocessing
# --------------------------------------------------------------------------------------------

def preprocess_frames(frames: torch.Tensor, image_size: int, mean: Sequence[float],
                      std: Sequence[float], resize_mode: str = "shortest") -> torch.Tensor:
    """uint8 frames ``[...,3,H,W]`` -> float32 ``[...,3,S,S]``, as open_clip's eval transform.

    Matches ``open_clip.image_transform(S, is_train=False, resize_mode=...)`` applied to each
    frame as a PIL image (``shortest``: resize the short side to S, centre crop; ``longest``:
    resize the long side to S, centre pad with black; ``squash``: resize to SxS), then ToTensor
    and Normalize. Bicubic with antialiasing is the same filter PIL uses; the result is rounded
    to integers as PIL's uint8 output is, which leaves a mean difference of about 0.1/255.
    All leading dimensions are flattened into one batch, so a ``[B,T,3,H,W]`` batch is one call.
    """
    if frames.dtype != torch.uint8:
        raise TypeError(f"frames must be uint8 [...,3,H,W], got {frames.dtype}")
    if frames.ndim < 3 or frames.shape[-3] != 3:
        raise ValueError(f"frames must be [...,3,H,W], got shape {tuple(frames.shape)}")
    lead, (height, width) = frames.shape[:-3], frames.shape[-2:]
    images = frames.reshape(-1, 3, height, width).float()  # [N,3,H,W], values 0..255
    images = _resize_and_fit(images, image_size, resize_mode)  # [N,3,S,S]
    mean_t = torch.as_tensor(mean, dtype=images.dtype, device=images.device).view(3, 1, 1)
    std_t = torch.as_tensor(std, dtype=images.dtype, device=images.device).view(3, 1, 1)
    images = (images / 255.0 - mean_t) / std_t
    return images.reshape(*lead, 3, image_size, image_size)


def _resize_and_fit(images: torch.Tensor, size: int, resize_mode: str) -> torch.Tensor:
    """[N,3,H,W] -> [N,3,size,size] following open_clip's three resize modes."""
    height, width = images.shape[-2:]
    if resize_mode == "squash":
        return _resize(images, (size, size))
    if resize_mode == "shortest":
        # torchvision's Resize(int) rule: short side -> size, long side truncated, not rounded.
        short, long = min(height, width), max(height, width)
        scaled = (size, int(size * long / short))
        images = _resize(images, scaled if height <= width else scaled[::-1])
        return _center_crop_or_pad(images, size)
    if resize_mode == "longest":
        # open_clip's ResizeKeepRatio(longest=1) rounds both sides.
        ratio = max(height, width) / size
        images = _resize(images, (round(height / ratio), round(width / ratio)))
        return _center_crop_or_pad(images, size)
    raise ValueError(f"unknown resize_mode {resize_mode!r}; "
                     f"choose one of {', '.join(RESIZE_MODES)}")


def _resize(images: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    if tuple(images.shape[-2:]) == size:
        return images  # torchvision returns the image untouched too
    resized = F.interpolate(images, size=size, mode="bicubic", antialias=True, align_corners=False)
    return resized.clamp_(0, 255).round_()  # bicubic overshoots; PIL clamps and rounds to uint8


def _center_crop_or_pad(images: torch.Tensor, size: int) -> torch.Tensor:
    """Centre crop to size x size, padding with 0 (black) first where a side is short.

    Offsets follow torchvision's center_crop and open_clip's center_crop_or_pad: an odd excess
    puts the extra pixel on the right/bottom of the pad and rounds the crop start.
    """
    height, width = images.shape[-2:]
    pad_h, pad_w = max(size - height, 0), max(size - width, 0)
    if pad_h or pad_w:
        images = F.pad(images, (pad_w // 2, pad_w - pad_w // 2, pad_h // 2, pad_h - pad_h // 2))
        height, width = images.shape[-2:]
    top, left = int(round((height - size) / 2.0)), int(round((width - size) / 2.0))
    return images[..., top:top + size, left:left + size]


# --------------------------------------------------------------------------------------------
# Dataset
# --------------------------------------------------------------------------------------------

class VideoDataset(torch.utils.data.Dataset):
    """Clips from a list of video files, for a DataLoader.

    Item ``i`` is ``{"path", "frames": uint8 [T,3,H,W] (or ``transform``'s output), "index"}``.
    With ``on_error="skip"`` a file that raises :class:`VideoError` gives
    ``{"path", "error": message, "reason", "index"}`` instead, so a batch job reports it and goes
    on; :func:`collate_videos` sorts the two kinds apart.

    Random sampling (``segment-random``, and ``stride`` whose start is then random) draws from a
    generator seeded by ``(seed, epoch, index)``: the same item always gives the same frames, in
    the main process or any DataLoader worker. :meth:`set_epoch` moves to fresh draws (workers
    see it when they start, i.e. each epoch unless ``persistent_workers``).
    """

    def __init__(self, paths: Sequence[PathLike], num_frames: int = 8, sampling: str = "uniform",
                 size: int | tuple[int, int] | None = None,
                 transform: Callable[[torch.Tensor], torch.Tensor] | None = None,
                 on_error: str = "raise", seed: int = 0, *, stride: int = 4):
        if on_error not in ("raise", "skip"):
            raise ValueError(f"on_error must be 'raise' or 'skip', got {on_error!r}")
        _check_sampling(sampling)
        self.paths = [os.fspath(p) for p in paths]
        self.num_frames, self.sampling, self.size, self.stride = num_frames, sampling, size, stride
        self.transform, self.on_error, self.seed, self.epoch = transform, on_error, seed, 0

    def __len__(self) -> int:
        return len(self.paths)

    def set_epoch(self, epoch: int) -> None:
        """Draw different random frames from now on (same seed, new epoch)."""
        self.epoch = epoch

    def __getitem__(self, index: int) -> dict:
        path = self.paths[index]
        rng = np.random.default_rng([self.seed, self.epoch, index])
        try:
            frames = read_video(path, self.num_frames, self.sampling, self.size,
                                stride=self.stride, rng=rng)
        except VideoError as error:
            if self.on_error == "raise":
                raise
            return {"path": path, "error": str(error), "reason": error.reason, "index": index}
        if self.transform is not None:
            frames = self.transform(frames)
        return {"path": path, "frames": frames, "index": index}


def collate_videos(batch: list[dict]) -> dict:
    """Stack the good items of a :class:`VideoDataset` batch; list the skipped ones.

    Returns ``{"path": [str], "frames": [B,T,...] (None if every item failed), "index":
    LongTensor [B], "errors": [(path, reason)]}``.
    """
    good = [item for item in batch if "error" not in item]
    return {
        "path": [item["path"] for item in good],
        "frames": torch.stack([item["frames"] for item in good]) if good else None,
        "index": torch.tensor([item["index"] for item in good], dtype=torch.long),
        "errors": [(item["path"], item.get("reason", item["error"])) for item in batch
                   if "error" in item],
    }
