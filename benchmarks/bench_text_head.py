"""Training-step time of the text-side head, with and without its frozen-token cache.

The text head (``workbench/strategies/text_head.py``) reads the frozen text tower's per-token
outputs. They never change while the tower is frozen, so the head keeps them per distinct text;
the baseline, measured in the same run, clears that cache before every step, so the tower runs
on every batch's texts as it did before the cache existed. Each step is a real training step's
text side: the batch's captions plus their hard-negative captions (``workbench.train``), forward
and backward through the head.

    python benchmarks/bench_text_head.py [--steps 200] [--threads 1]
"""
from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from workbench.backbones import load_backbone
from workbench.config import get_profile
from workbench.strategies import create_strategy
from workbench.tasks.retrieval import shapes_retrieval_data
from workbench.train import batch_texts, sample_batch


def step_times(model, data, steps: int, batch_size: int, cached: bool) -> np.ndarray:
    head, out = model.text_head, []
    optimizer = torch.optim.AdamW(head.parameters(), lr=1e-4)
    for step in range(steps):
        index, extra = sample_batch(data, batch_size, np.random.default_rng((0, step, 0)), True)
        texts = batch_texts([data.captions[i] for i in index], extra)
        if not cached:
            head.clear_cache()
        started = time.perf_counter()
        loss = model.encode_text(texts).square().sum()   # any loss: the time is the head's
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        out.append(time.perf_counter() - started)
    return np.array(out) * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--profile", default="cpu")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    profile = get_profile(args.profile)
    backbone = load_backbone()
    data = shapes_retrieval_data("train", profile, backbone)
    model = create_strategy("post-transformer", backbone, text_head=True)
    step_times(model, data, args.steps, profile.batch_size, cached=True)  # warm-up: fills the cache
    cached = step_times(model, data, args.steps, profile.batch_size, cached=True)
    texts = len(model.text_head._frozen)
    baseline = step_times(model, data, args.steps, profile.batch_size, cached=False)
    print(f"text head, {args.steps} steps of {profile.batch_size} clips ({args.profile} data), "
          f"{args.threads} thread(s); {texts} distinct texts cached")
    print(f"  tower every step (baseline): median {np.median(baseline):.1f} ms/step")
    print(f"  frozen tokens cached:        median {np.median(cached):.1f} ms/step")
    print(f"  speed-up: {np.median(baseline) / np.median(cached):.1f}x")


if __name__ == "__main__":
    main()
