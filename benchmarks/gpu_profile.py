"""The `gpu` profile on a lent GPU, time-boxed.

First every strategy once at the smoke size on CUDA (a device bug shows in seconds, not after
3,000 steps), then the `gpu` profile's retrieval bench (``workbench.bench.run_bench``) for the
strategies that passed, the most wanted first, inside a time budget: a strategy is not started
once the time used plus the slowest strategy so far would pass it. The order puts first the
temporal pixel-level strategies, which the `cpu` profile's 150 steps cannot teach.

    python benchmarks/gpu_profile.py --out runs/gpu [--budget-s 420] [--strategy aim ...]

Writes OUT/smoke-cuda/ and OUT/gpu/ (bench.csv / .md / .json / .html) and prints both tables.
"""
from __future__ import annotations

import argparse
import time

import torch

from workbench.bench import markdown_table, run_bench, skipped_markdown
from workbench.config import get_profile
from workbench.strategies import list_strategies

MOST_WANTED = ["st-adapter", "aim", "mean-pool", "post-transformer", "prompt-visual", "side-evl", "lora-temporal",
               "extra-motion", "post-conv1d", "post-lstm", "lora", "distill-student",
               "prompt-text", "partial-lastk", "partial-layernorm", "partial-bitfit", "full-finetune"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="runs/gpu")
    parser.add_argument("--budget-s", type=float, default=420.0, help="for the gpu-profile bench")
    parser.add_argument("--strategy", nargs="*", default=None, help="only these (default: all, most wanted first)")
    args = parser.parse_args()
    if not torch.cuda.is_available():
        raise SystemExit("gpu_profile.py needs a CUDA GPU; PyTorch sees none here")
    print(f"torch {torch.__version__} on {torch.cuda.get_device_name()}", flush=True)
    registered = list_strategies()
    rank = {name: i for i, name in enumerate(MOST_WANTED)}
    names = args.strategy or sorted(registered, key=lambda n: rank.get(n, len(rank)))   # unlisted ones last

    started = time.perf_counter()
    rows, skipped = run_bench(get_profile("smoke", device="cuda"), f"{args.out}/smoke-cuda", names, progress=False)
    print(f"smoke on cuda: {len(rows)} passed in {time.perf_counter() - started:.0f} s", flush=True)
    print(markdown_table(rows) + skipped_markdown(skipped), flush=True)

    passed = [n for n in names if n not in skipped]
    rows, skipped = run_bench("gpu", f"{args.out}/gpu", passed, budget_s=args.budget_s)
    print(markdown_table(rows) + skipped_markdown(skipped), flush=True)
    print(f"peak GPU memory {torch.cuda.max_memory_allocated() / 2**30:.2f} GiB", flush=True)


if __name__ == "__main__":
    main()
