"""One training epoch of a frozen strategy on cached frame features against re-encoding every step.

Same strategy (``post-transformer``: CLIP4Clip seqTransf on a frozen CLIP), same ShapesWorld clips,
same batches, same loop (:func:`workbench.train.train_retrieval`). The cached run reads per-frame
features computed once (:class:`workbench.data.features.FeatureCache`); the baseline is the same
model told it works on pixels, so every step preprocesses its frames and runs the frozen image
tower again (decoding is not even counted, which favours the baseline). Prints both epoch times,
the one-off cost of filling the cache, and the ratio (target >= 10x).
Run: `nice .venv/bin/python benchmarks/bench_cached_training.py [--strategy post-transformer] [--threads 1]`
"""
import argparse
import math
import tempfile
import time

import torch

from workbench import load_backbone
from workbench.config import get_profile, seed_everything
from workbench.data.features import FeatureCache
from workbench.strategies import create_strategy
from workbench.tasks.retrieval import shapes_retrieval_data
from workbench.train import TrainConfig, train_retrieval


def epoch_seconds(strategy: str, backbone, data, batch_size: int, reencode: bool) -> float:
    seed_everything(0)
    model = create_strategy(strategy, backbone)
    if reencode:
        model.input_level = "pixels"  # forward() then runs backbone.encode_frames on every batch
    steps = math.ceil(len(data) / batch_size)
    cfg = TrainConfig(steps=steps, batch_size=batch_size, warmup=1, checkpoint_every=0, hard_negatives=False)
    started = time.perf_counter()
    result = train_retrieval(model, data, cfg, progress=False)
    assert result["steps"] == steps
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--strategy", default="post-transformer")
    parser.add_argument("--clips-per-kind", type=int, default=10, help="ShapesWorld training clips per event kind")
    parser.add_argument("--num-frames", type=int, default=8)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    backbone = load_backbone()
    profile = get_profile("cpu", clips_per_kind=args.clips_per_kind, num_frames=args.num_frames)
    data = shapes_retrieval_data("train", profile, backbone)
    with tempfile.TemporaryDirectory() as root:
        started = time.perf_counter()
        data.features = FeatureCache(root, backbone, "bench").encode(data.frames)  # [N,T,D]
        fill_s = time.perf_counter() - started
    cached_s = epoch_seconds(args.strategy, backbone, data, args.batch_size, reencode=False)
    reencode_s = epoch_seconds(args.strategy, backbone, data, args.batch_size, reencode=True)
    print(f"{args.strategy}: {len(data)} clips x {args.num_frames} frames, batch {args.batch_size}, "
          f"{args.threads} threads, model {backbone.name}")
    print("| epoch | seconds | clips/s | ratio |")
    print("| --- | ---: | ---: | --- |")
    print(f"| re-encoding frames every step (baseline) | {reencode_s:.2f} | {len(data) / reencode_s:.0f} | 1.0x |")
    print(f"| cached features | {cached_s:.2f} | {len(data) / cached_s:.0f} | "
          f"{reencode_s / cached_s:.1f}x faster (target >= 10x) |")
    print(f"| filling the cache once (not per epoch) | {fill_s:.2f} | {len(data) / fill_s:.0f} | "
          f"pays for itself after {fill_s / max(reencode_s - cached_s, 1e-9):.2f} epochs |")


if __name__ == "__main__":
    main()
