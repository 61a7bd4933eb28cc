"""Feature-extraction throughput of `workbench extract` against a naive loop, and the model-only bound.

Same videos (40 ShapesWorld clips of 96 frames at 256 px, 24 fps, H.264: 4 s each, shorter than
most real clips; or ``--videos DIR``), same model (the
embedded tiny CLIP, or ``--model/--pretrained``), same 8 uniformly sampled frames per video:

- naive: PyAV decodes every frame, the sampled ones become PIL images, open_clip's own eval
  transform preprocesses each, and the model runs once per frame;
- ours: :func:`workbench.extract.extract_features` (decode at reduced size, DataLoader workers,
  batched encoding, content hashing and one safetensors file per video included);
- model-only bound: the same batched forward passes on frames already decoded and preprocessed.

Prints videos/s for each (median of ``--repeats`` runs) and the ratios: ours / naive (target >= 3x)
and ours / bound (target >= 0.7).
Run: `nice .venv/bin/python benchmarks/bench_extract.py [--videos DIR] [--workers 2] [--threads 2]`
"""
import argparse
import statistics
import tempfile
import time
from pathlib import Path

import av
import open_clip
import torch

from workbench import load_backbone
from workbench.data.shapes.clips import make_clips
from workbench.data.video import read_video, sample_indices, write_video
from workbench.extract import ExtractConfig, decode_size, extract_features, list_videos


def write_clips(folder: Path, count: int, frames: int, size: int, fps: int) -> dict[str, Path]:
    clips = make_clips(0, 3, frames, "train")[:count]
    for clip in clips:
        write_video(folder / f"{clip.clip_id}.mp4", clip.frames(size), fps=fps)
    return list_videos(folder)


@torch.inference_mode()
def naive(paths: list[Path], backbone, num_frames: int) -> None:
    transform = open_clip.image_transform(backbone.image_size, is_train=False, mean=backbone.mean,
                                          std=backbone.std, resize_mode=backbone.resize_mode)
    for path in paths:
        with av.open(str(path)) as container:
            images = [frame.to_image() for frame in container.decode(video=0)]  # every frame, as PIL
        for i in sample_indices(len(images), num_frames):
            backbone.encode_images(transform(images[i])[None])


@torch.inference_mode()
def model_only(pixels: torch.Tensor, backbone, batch_size: int) -> None:
    for start in range(0, len(pixels), batch_size):
        backbone.encode_frames(pixels[start:start + batch_size])


def ours(paths: dict[str, Path], backbone, cfg: ExtractConfig) -> None:
    with tempfile.TemporaryDirectory() as out:
        result = extract_features(paths, backbone, out, cfg)
    assert len(result.encoded) == len(paths), result.summary()


def interleaved_medians(fns: dict, repeats: int) -> dict[str, float]:
    """Median seconds of each function, run in turn ``repeats`` times, so that a shared machine's
    load drifting during the run affects every pipeline alike."""
    runs = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            started = time.perf_counter()
            fn()
            runs[name].append(time.perf_counter() - started)
    return {name: statistics.median(times) for name, times in runs.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--videos", type=Path, help="a folder of videos (default: 40 ShapesWorld clips)")
    parser.add_argument("--model")
    parser.add_argument("--pretrained")
    parser.add_argument("--num-frames", type=int, default=8)
    parser.add_argument("--count", type=int, default=40, help="ShapesWorld clips written")
    parser.add_argument("--frames-per-video", type=int, default=96, help="... with this many frames")
    parser.add_argument("--size", type=int, default=256, help="... at this many pixels a side")
    parser.add_argument("--fps", type=int, default=24, help="... at this frame rate")
    parser.add_argument("--batch-size", type=int, default=4, help="clips per model call")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    backbone = load_backbone(args.model, args.pretrained)
    with tempfile.TemporaryDirectory() as tmp:
        paths = list_videos(args.videos) if args.videos else write_clips(
            Path(tmp), args.count, args.frames_per_video, args.size, args.fps)
        n = len(paths)
        cfg = ExtractConfig(num_frames=args.num_frames, batch_size=args.batch_size,
                            num_workers=args.workers, progress=False)
        frames = []
        for path in paths.values():
            info = av.open(str(path)).streams.video[0].codec_context
            frames.append(read_video(path, args.num_frames, size=decode_size(
                info.width, info.height, backbone.image_size, backbone.resize_mode)))
        pixels = torch.stack([backbone.preprocess(f) for f in frames])  # [N,T,3,S,S]
        times = interleaved_medians({
            "bound": lambda: model_only(pixels, backbone, args.batch_size),
            "ours": lambda: ours(paths, backbone, cfg),
            "naive": lambda: naive(list(paths.values()), backbone, args.num_frames)}, args.repeats)
        bound_s, ours_s, naive_s = times["bound"], times["ours"], times["naive"]
    shape = "" if args.videos else f" ({args.frames_per_video} frames at {args.size} px)"
    print(f"{n} videos{shape}, {args.num_frames} frames each, model {backbone.name}, {args.threads} threads, "
          f"{args.workers} workers, batch {args.batch_size} clips")
    print("| pipeline | videos/s | frames/s | ratio |")
    print("| --- | ---: | ---: | --- |")
    for name, seconds, ratio in (
            ("naive loop (PyAV + PIL + open_clip transform, 1 frame per forward)", naive_s, "baseline"),
            ("workbench extract", ours_s, f"{naive_s / ours_s:.1f}x naive (target >= 3x); "
                                          f"{bound_s / ours_s:.0%} of the model-only bound (target >= 70%)"),
            ("model-only bound (pre-decoded tensors, same batches)", bound_s, "upper bound")):
        print(f"| {name} | {n / seconds:.1f} | {n * args.num_frames / seconds:.0f} | {ratio} |")


if __name__ == "__main__":
    main()
