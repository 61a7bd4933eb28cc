"""Side-tuning's two costs at the `cpu` profile, each against the way it was computed before.

``side-evl`` trains in two parts (``workbench/strategies/frozen/side_tuning.py``): one frozen pass
over every training clip (6,400 clips of 8 frames at the `cpu` profile), then thousands of steps
of the side network alone on what the pass recorded. This times both, in the same run:

1. *The frozen pass*, one batch of 32 clips, in float32 (the baseline) and under bf16 autocast
   (``SideEVLConfig.pass_bf16``; the default only where the CPU has bf16 instructions, which this
   prints). Also prints how close the two passes' tokens are.
2. *A side-network step* (forward and backward, batch 32, the default shape), three ways that
   compute the same function:

   - *as first written*: every stage's LayerNorm run on the raw tokens at every step, and the
     temporal convolution a ``Conv1d`` over a transposed copy of the tokens;
   - *folded*: tokens the pass normalised once, the LayerNorm's scale and shift folded into the
     projection (``SideStage.project``), the convolution as first written;
   - *the package's* ``SideDecoder`` forward: folded, and the convolution run where the tokens
     lie (``SideStage.across_time``: the Conv1d's weights as a (k, 1) 2-D convolution on the
     channels-last view of the tokens).

Each time is the median of ``--repeats`` runs, denormals flushed as training flushes them.

    python benchmarks/bench_side_step.py [--repeats 9] [--threads 2]
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch

from workbench.backbones import load_backbone
from workbench.backbones.taps import layer_tokens
from workbench.config import cpu_has_fast_bf16
from workbench.strategies import create_strategy
from workbench.strategies.frozen.side_tuning import SideDecoder, normalised_tokens
from workbench.train import denormals_flushed


def median_ms(run, repeats: int) -> float:
    run()                                                  # warm-up
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        run()
        times.append(time.perf_counter() - started)
    return 1000 * statistics.median(times)


def first_read(stage, query: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """``SideStage.read`` as first written (the baseline): the depthwise Conv1d over a transposed
    copy of the tokens."""
    b, t, length, _ = x.shape
    x = x + stage.frame_position[:t, None]
    per_token = x.permute(0, 2, 3, 1).reshape(b * length, -1, t)                # [B*L,w,T]
    x = x + stage.temporal_conv(per_token).view(b, length, -1, t).permute(0, 3, 1, 2)
    x = x.flatten(1, 2)
    return stage.decoder(query, k_x=x, v_x=x)


def step(side: SideDecoder, tokens: torch.Tensor, way: str) -> None:
    """One forward and backward of the side network, computed ``way`` (module docstring):
    "first" reads raw ``tokens``, the other two normalised ones."""
    if way == "package":
        out = side(tokens)
    else:
        query = side.query.expand(tokens.shape[0], -1, -1)
        for i, stage in enumerate(side.stages):
            layer = tokens[:, :, i].float()
            projected = stage.proj(stage.norm(layer)) if way == "first" else stage.project(layer)
            query = first_read(stage, query, projected)
        out = side.out(side.out_norm(query.mean(dim=1)))
    side.zero_grad()
    out.square().mean().backward()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=9)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batch", type=int, default=32, help="clips of 8 frames (the cpu profile's batch)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    backbone = load_backbone(device="cpu")
    size = backbone.image_size
    frames = backbone.preprocess(torch.randint(0, 256, (args.batch, 8, 3, size, size), dtype=torch.uint8))
    exact, fast = (create_strategy("side-evl", backbone, pass_bf16=on) for on in (False, True))
    default = "bf16" if create_strategy("side-evl", backbone).pass_bf16 else "fp32"
    print(f"{args.threads} threads; this CPU has bf16 instructions: {cpu_has_fast_bf16()}, "
          f"so the default pass runs in {default}")

    fp32_ms = median_ms(lambda: exact.frozen_pass(frames), args.repeats)
    bf16_ms = median_ms(lambda: fast.frozen_pass(frames), args.repeats)
    _, tokens = exact.frozen_pass(frames)
    _, tokens_bf16 = fast.frozen_pass(frames)
    closeness = torch.cosine_similarity(tokens.float(), tokens_bf16.float(), dim=-1)
    print(f"frozen pass, {args.batch} clips: fp32 {fp32_ms:.0f} ms, bf16 autocast {bf16_ms:.0f} ms: "
          f"{fp32_ms / bf16_ms:.2f}x (tokens' cosine to fp32: min {closeness.min():.5f}, "
          f"mean {closeness.mean():.6f})")

    side = exact.side
    with torch.no_grad():   # a trained-looking network: not the zero-initialised output
        torch.nn.init.normal_(side.out.weight, std=0.02)
    with torch.no_grad(), layer_tokens(backbone, exact.tapped) as rec:
        backbone.encode_frames(frames)
    raw = torch.stack(rec.tokens, dim=1).unflatten(0, frames.shape[:2]).half()  # [B,T,k,L,W]
    assert torch.allclose(normalised_tokens(raw).half().float(), tokens.float(), atol=5e-3)
    with denormals_flushed(True):
        first_ms = median_ms(lambda: step(side, raw, "first"), args.repeats)
        folded_ms = median_ms(lambda: step(side, tokens, "folded"), args.repeats)
        package_ms = median_ms(lambda: step(side, tokens, "package"), args.repeats)
    print(f"side-network step, batch {args.batch}: as first written {first_ms:.1f} ms, folded "
          f"{folded_ms:.1f} ms, the package's {package_ms:.1f} ms: {first_ms / folded_ms:.2f}x "
          f"for the fold, {folded_ms / package_ms:.2f}x more for the convolution in place, {first_ms / package_ms:.2f}x in all")


if __name__ == "__main__":
    main()
