"""Why training flushes denormal floats to zero on CPU (``TrainConfig.flush_denormals``).

A float32 below 1.2e-38 is *denormal*: x86 CPUs compute with it through a slow microcode path.
Training can make them. At the `cpu` profile, side-evl's training steps (its decoder reading 2 of
the last blocks, width 96) ran at about 9 steps a second for the first 300 steps, then slowed to
2 a second by step 700 and stayed there; with ``torch.set_flush_denormal(True)`` the same run kept
9-10 a second to the end (README, side-tuning). The likely source: once the decoder has learnt
where to look, its cross-attention gives some of the 520 tokens it reads probabilities far below
1e-30, and the backward pass multiplies those by small gradients, into the denormal range.

This benchmark reproduces that in seconds: the real side decoder
(``workbench.strategies.frozen.side_tuning.SideDecoder``) on random tokens, with its attention
made sharp (its query and key projections scaled by ``--sharpness``), one
forward and backward per step, with denormals kept (the baseline, PyTorch's default), flushed on
the calling thread only (``torch.set_flush_denormal`` alone, as training first did: the flag is
per thread, and the pool's other threads run their share of each matmul unflushed) and flushed on
every thread (:func:`workbench.train.denormals_flushed`), in the same run. ``--sharpness 1`` (an
untrained decoder) shows that flushing costs nothing when there are none.

    python benchmarks/bench_denormals.py [--sharpness 10] [--steps 4] [--threads 2]
"""
from __future__ import annotations

import argparse
import time

import torch

from workbench.backbones import load_backbone
from workbench.backbones.taps import vision_tower
from workbench.strategies.frozen.side_tuning import SideDecoder, SideEVLConfig
from workbench.train import denormals_flushed


def decoder(width: int, embed_dim: int, sharpness: float, layers: int) -> SideDecoder:
    torch.manual_seed(0)
    model = SideDecoder(width, embed_dim, SideEVLConfig(layers=layers))
    with torch.no_grad():
        for stage in model.stages:
            w = stage.decoder.attn.embed_dim
            stage.decoder.attn.in_proj_weight[:2 * w].mul_(sharpness)   # queries and keys
        torch.nn.init.normal_(model.out.weight, std=1e-3)   # trained: no longer the zero init
    return model


def denormal_attention_share(model: SideDecoder, tokens: torch.Tensor) -> float:
    """Share of the decoders' attention probabilities that are denormal (read by a hook that asks
    each cross-attention again for its weights)."""
    tiny, counts = torch.finfo(torch.float32).tiny, []

    def hook(attn, args, kwargs, output):
        if kwargs.get("need_weights"):
            return
        probs = attn(*args, **{**kwargs, "need_weights": True, "average_attn_weights": False})[1]
        counts.append(((probs > 0) & (probs < tiny)).float().mean().item())

    handles = [stage.decoder.attn.register_forward_hook(hook, with_kwargs=True) for stage in model.stages]
    with torch.no_grad():
        model(tokens)
    for handle in handles:
        handle.remove()
    return sum(counts) / len(counts)


def step_ms(model: SideDecoder, tokens: torch.Tensor, steps: int) -> float:
    times = []
    for _ in range(steps + 1):                 # the first step warms up
        started = time.perf_counter()
        loss = model(tokens).square().mean()
        model.zero_grad()
        loss.backward()
        times.append(time.perf_counter() - started)
    return 1000 * sum(times[1:]) / steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sharpness", type=float, default=10.0)
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--batch", type=int, default=32, help="clips of 8 frames (the cpu profile's batch)")
    parser.add_argument("--threads", type=int, default=2, help="the cpu profile's two cores")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    backbone = load_backbone()                 # the embedded tiny CLIP: its tower's width and tokens
    tower = vision_tower(backbone)
    width, tokens_per_frame = tower.transformer.width, 1 + tower.grid_size[0] * tower.grid_size[1]
    tokens = torch.randn(args.batch, 8, args.layers, tokens_per_frame, width,
                         generator=torch.Generator().manual_seed(0)).half()
    model = decoder(width, backbone.embed_dim, args.sharpness, args.layers)
    share = denormal_attention_share(model, tokens)
    with denormals_flushed(False):
        kept = step_ms(model, tokens, args.steps)
        torch.set_flush_denormal(True)         # the calling thread's flag alone, as training once set it
        main_only = step_ms(model, tokens, args.steps)
        torch.set_flush_denormal(False)
    with denormals_flushed(True):              # every thread of the pool, as training sets it now
        flushed = step_ms(model, tokens, args.steps)
    print(f"side decoder, {args.layers} stages, batch {args.batch} x 8 frames x {tokens_per_frame} tokens, "
          f"sharpness {args.sharpness:g}, {args.threads} thread(s); {100 * share:.1f} % of the attention "
          f"probabilities are denormal")
    print(f"  denormals kept (PyTorch's default):      {kept:7.1f} ms per forward + backward")
    print(f"  flushed on the calling thread only:      {main_only:7.1f} ms")
    print(f"  flushed on every thread (training):      {flushed:7.1f} ms")
    print(f"  kept / flushed: {kept / flushed:.2f}x; calling thread only / flushed: {main_only / flushed:.2f}x")


if __name__ == "__main__":
    main()
