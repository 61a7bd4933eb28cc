"""Should training on a CPU with bf16 instructions run under bf16 autocast? Here, no (README, speed).

Strategies that run the ILFM on pixels at every step (adapters, LoRA, prompts, fine-tuning) spend
their step in the image tower. On the build machine's AMX a 4,096-square matmul runs about five
times faster in bf16 than in fp32 (README, speed), and side-tuning's frozen pass 2-3 times
(``SideEVLConfig.pass_bf16``). This asks whether a *training* step gains as much: it trains each
named strategy for ``--steps`` steps on one batch of the `cpu` profile's size (32 ShapesWorld clips
of 8 frames and their captions): ``encode_video`` and ``encode_text``, a contrastive loss, backward
and an AdamW step, in fp32 (the baseline, what training does on a CPU: ``TrainConfig.amp`` is for
CUDA) and with the forward under ``torch.autocast("cpu", torch.bfloat16)``, as the training loop
wraps it on a GPU. Prints the median seconds per step after a warm-up step, the ratio, and both
runs' last losses (they should stay close). Whether this CPU has bf16 instructions
(``workbench.config.cpu_has_fast_bf16``) is printed; without them autocast is far slower.

    python benchmarks/bench_cpu_amp.py [--strategy st-adapter --strategy aim] [--steps 6] [--threads 2]
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F

from workbench import load_backbone
from workbench.config import cpu_has_fast_bf16, get_profile, seed_everything
from workbench.strategies import create_strategy
from workbench.tasks.retrieval import shapes_retrieval_data


def run(strategy: str, backbone, frames: torch.Tensor, captions: list[str], steps: int,
        bf16: bool) -> tuple[float, float]:
    """Median seconds per step after a warm-up step, and the last loss."""
    seed_everything(0)
    model = create_strategy(strategy, backbone)
    model.train()
    optimizer = torch.optim.AdamW(model.trainable_parameters(), lr=1e-4)
    target = torch.arange(len(captions))
    times, loss = [], None
    for _ in range(steps + 1):
        started = time.perf_counter()
        with torch.autocast("cpu", torch.bfloat16, enabled=bf16):
            video, text = model.encode_video(frames), model.encode_text(captions)
        loss = F.cross_entropy(100 * video.float() @ text.float().T, target)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        times.append(time.perf_counter() - started)
    return statistics.median(times[1:]), loss.item()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--strategy", action="append", help="repeatable (default: st-adapter and aim)")
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    backbone = load_backbone(device="cpu")
    data = shapes_retrieval_data("train", get_profile("cpu", clips_per_kind=4), backbone)
    frames, captions = backbone.preprocess(data.frames[:32]), data.captions[:32]
    print(f"{args.threads} threads; this CPU has bf16 instructions: {cpu_has_fast_bf16()}; "
          f"{args.steps} steps of 32 clips x {data.frames.shape[1]} frames, model {backbone.name}")
    print("| strategy | fp32 s/step | bf16 autocast s/step | ratio | last loss fp32 / bf16 |")
    print("| --- | ---: | ---: | ---: | --- |")
    for name in args.strategy or ["st-adapter", "aim"]:
        fp32_s, fp32_loss = run(name, backbone, frames, captions, args.steps, bf16=False)
        bf16_s, bf16_loss = run(name, backbone, frames, captions, args.steps, bf16=True)
        print(f"| {name} | {fp32_s:.2f} | {bf16_s:.2f} | {fp32_s / bf16_s:.2f}x | {fp32_loss:.3f} / {bf16_loss:.3f} |",
              flush=True)


if __name__ == "__main__":
    main()
