"""Does teaching the tiny CLIP's image tower the lean fix spins for frozen heads? (exploratory)

The intervention test of the claim in this folder's README: spins fail because the frozen output
embedding is blind to which way a shape leans. This script fine-tunes the embedded model's image
tower so that its embedding *does* carry the lean, and writes the result as a whole model in the
``local-dir`` layout under ``OUT/models/shapes-clip-tiny``, so any command can run on it with
``WORKBENCH_ASSETS=OUT``, e.g.

    WORKBENCH_ASSETS=OUT workbench bench --profile cpu --strategy post-transformer --out DIR

Loss per step, image tower only (the text tower is untouched), on 64 stills of one spinnable shape
rendered at the clips' frame size, through a linear head on the normalised embedding:
- ``--target lean``: cross-entropy over the three orientations (upright, leaning left, leaning
  right; ``images.oriented_object``: clear tilts only);
- ``--target phase``: squared error to (cos, sin) of the shape's angle as a fraction of its
  symmetry period, at any angle: a spin turns this vector steadily one way, so a head that reads
  it can tell the direction from consecutive frames. Held-out figure: mean angular error in
  periods (a head that guesses: 0.25);
- anchor: 1 - cosine between the tuned and the original embedding of 64 ordinary pretraining
  stills (``sample_images``), weight ``--anchor``, so colour, shape, count and position stay put.

Run from the repository root with the venv:
    python benchmarks/results/spin-probes/oriented_tower.py --out /tmp/oriented [--steps 800]
"""
import argparse
import copy
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from workbench import load_backbone
from workbench.backbones.openclip import save_backbone
from workbench.backbones.pretrain import phase_error
from workbench.config import DEFAULT_MODEL
from workbench.data.shapes.images import ORIENTATIONS, oriented_object, phase_stills, sample_images
from workbench.data.shapes.world import POSITIONS, random_background, render


def oriented_stills(seed, n: int, size: int):
    rng = np.random.default_rng(seed)
    labels = rng.integers(len(ORIENTATIONS), size=n)
    images = [render([oriented_object(rng, POSITIONS[int(rng.integers(len(POSITIONS)))], ORIENTATIONS[k])],
                     random_background(rng), size=size) for k in labels]
    return torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2), torch.from_numpy(labels)


def phased_stills(seed, n: int, size: int):
    """Spinnable shapes at any angle; targets (cos, sin) of 2 pi angle / symmetry period."""
    images, targets = phase_stills(seed, n, size)
    return torch.from_numpy(images).permute(0, 3, 1, 2), torch.from_numpy(targets)


def ordinary_stills(seed, n: int, size: int):
    images = sample_images(seed, n, size_px=size)
    return torch.from_numpy(np.stack([im.image for im in images])).permute(0, 3, 1, 2)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--steps", type=int, default=800)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--lr", type=float, default=1e-4)
    parser.add_argument("--anchor", type=float, default=10.0)
    parser.add_argument("--target", choices=("lean", "phase"), default="lean")
    parser.add_argument("--frame-size", type=int, default=128, help="render size of the oriented stills")
    args = parser.parse_args()
    torch.manual_seed(0)
    backbone = load_backbone()
    teacher = copy.deepcopy(backbone.clip.visual).eval().requires_grad_(False)
    visual = backbone.clip.visual.train()
    stills = oriented_stills if args.target == "lean" else phased_stills
    head = torch.nn.Linear(backbone.embed_dim, len(ORIENTATIONS) if args.target == "lean" else 2)
    opt = torch.optim.AdamW(list(visual.parameters()) + list(head.parameters()), lr=args.lr)
    x_test, y_test = stills(10_000, 600, args.frame_size)

    def task_loss(out, y):
        return F.cross_entropy(out, y) if args.target == "lean" else F.mse_loss(out, y)

    def task_score(out, y):  # lean: accuracy %; phase: mean angular error in periods
        if args.target == "lean":
            return 100 * (out.argmax(1) == y).float().mean().item()
        return phase_error(out, y)

    anchor_test = ordinary_stills(10_001, 256, backbone.image_size)

    def evaluate():
        with torch.no_grad():
            visual.eval()
            emb = F.normalize(visual(backbone.preprocess(x_test)), dim=-1)
            score = task_score(head(emb * 10), y_test)
            a = backbone.preprocess(anchor_test)
            cos = F.cosine_similarity(visual(a), teacher(a)).mean().item()
            visual.train()
        return score, cos

    print(f"step  held-out {'lean %' if args.target == 'lean' else 'phase error'}  anchor cosine  "
          "task loss  seconds", flush=True)
    started = time.perf_counter()
    for step in range(1, args.steps + 1):
        x, y = stills((1, step), args.batch, args.frame_size)
        a = backbone.preprocess(ordinary_stills((2, step), args.batch, backbone.image_size))
        emb = F.normalize(visual(backbone.preprocess(x)), dim=-1)
        loss_task = task_loss(head(emb * 10), y)
        with torch.no_grad():
            target = teacher(a)
        anchor_loss = 1 - F.cosine_similarity(visual(a), target).mean()
        loss = loss_task + args.anchor * anchor_loss
        opt.zero_grad()
        loss.backward()
        opt.step()
        if step % 100 == 0 or step == args.steps:
            score, cos = evaluate()
            print(f"{step:5d}  {score:14.3g}  {cos:13.4f}  {loss_task.item():9.3f}  "
                  f"{time.perf_counter() - started:7.0f}", flush=True)

    # Weights and config only: the shipped model card and probes would describe another model
    # (`workbench eval-ilfm --model-dir FOLDER` writes this one's).
    folder = save_backbone(backbone.eval(), args.out / "models" / DEFAULT_MODEL, dtype=torch.float16)
    print(f"model: {folder}  (WORKBENCH_ASSETS={args.out})")


if __name__ == "__main__":
    main()
