"""Side-tuning's frozen pass in one process against the same pass shared out across processes.

Before its first step, a ``frozen_backbone_pass`` strategy (``side-evl``) runs the frozen ILFM once
over every training clip (:func:`workbench.train.frozen_pass_of`). With several processes each one
encodes its turn of the batches and all-gathers the rest, so the pass should take about 1/world
of the one-process time. This runs the pass on the same random clips as one process and under
``torchrun --nproc_per_node N``, one thread per process (so N processes use N cores, one uses
one), checks that both give the same outputs, and prints both times and the ratio
(target: >= 0.8 N, the gather being the overhead). Run with nothing else on the machine:
`.venv/bin/python benchmarks/bench_frozen_pass.py [--clips 256] [--processes 2]`
"""
import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch


def frozen_pass_seconds(clips: int, frames: int, out: Path) -> float:
    """Run the pass (in this process, or this torchrun worker) and save what it gave."""
    from accelerate import Accelerator
    from safetensors.torch import save_file

    from workbench import create_strategy, load_backbone
    from workbench.train import frozen_pass_of

    torch.set_num_threads(1)
    accelerator = Accelerator(cpu=True)
    world = accelerator.num_processes
    side = create_strategy("side-evl", load_backbone())
    video = torch.randint(0, 256, (clips, frames, 3, 64, 64), generator=torch.Generator().manual_seed(0),
                          dtype=torch.uint8)
    if world > 1:
        torch.distributed.barrier()
    started = time.perf_counter()
    features, tokens = frozen_pass_of(side, video, accelerator.device, accelerator=accelerator)
    seconds = time.perf_counter() - started
    if accelerator.is_main_process:
        save_file({"features": features, "tokens": tokens}, str(out / f"pass-{world}.safetensors"))
        (out / f"seconds-{world}.txt").write_text(str(seconds))
    accelerator.end_training()
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips", type=int, default=256)
    parser.add_argument("--frames", type=int, default=8)
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--worker", type=Path, help=argparse.SUPPRESS)   # set when torchrun starts this file
    args = parser.parse_args()
    if args.worker:
        frozen_pass_seconds(args.clips, args.frames, args.worker)
        return
    from safetensors.torch import load_file

    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    with tempfile.TemporaryDirectory() as root:
        out = Path(root)
        common = [__file__, "--clips", str(args.clips), "--frames", str(args.frames), "--worker", str(out)]
        subprocess.run([sys.executable, *common], check=True, env=env)
        torchrun = Path(sys.executable).with_name("torchrun")
        subprocess.run([str(torchrun), "--nproc_per_node", str(args.processes), "--master_port", "29541", *common],
                       check=True, env=env)
        one, many = (float((out / f"seconds-{n}.txt").read_text()) for n in (1, args.processes))
        alone, shared = (load_file(str(out / f"pass-{n}.safetensors")) for n in (1, args.processes))
        for name in alone:
            torch.testing.assert_close(shared[name], alone[name], rtol=1e-5, atol=1e-5, msg=name)
    print(f"side-evl frozen pass: {args.clips} random clips x {args.frames} frames, the embedded tiny CLIP, "
          "one thread per process; outputs equal")
    print("| processes | seconds | clips/s | ratio |")
    print("| --- | ---: | ---: | --- |")
    print(f"| 1 | {one:.1f} | {args.clips / one:.1f} | 1.00x |")
    print(f"| {args.processes} | {many:.1f} | {args.clips / many:.1f} | {one / many:.2f}x |")


if __name__ == "__main__":
    main()
