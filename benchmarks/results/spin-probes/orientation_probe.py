"""Does the tiny CLIP see which way a still shape leans? (exploratory, not in the package)

Stills of one spinnable shape leaning left or right (``images.oriented_object``: a clear tilt,
random colour, size, cell and background), 3,000 to train and 600 held out. Two probes:

1. linear: logistic regression on each representation of the frozen model (its output
   embedding, CLS and all tokens of blocks 1, 3 and 5, the raw pixels);
2. fine-tuned: the whole image tower plus a linear head trained on the labels (batch 64, AdamW),
   held-out accuracy every 50 steps: how fast the architecture can learn the concept at all.

Run from the repository root with the venv:
    python benchmarks/results/spin-probes/orientation_probe.py [--model DIR] [--finetune-steps N]
"""
import argparse
import time

import numpy as np
import torch
import torch.nn.functional as F

from workbench import load_backbone
from workbench.backbones.taps import layer_tokens
from workbench.data.shapes.images import oriented_object
from workbench.data.shapes.world import POSITIONS, random_background, render

LEANS = ("leaning left", "leaning right")


def stills(seed: int, n: int, size: int):
    rng = np.random.default_rng(seed)
    images, labels = [], []
    for i in range(n):
        obj = oriented_object(rng, POSITIONS[int(rng.integers(len(POSITIONS)))], LEANS[i % 2])
        images.append(render([obj], random_background(rng), size=size))
        labels.append(i % 2)
    return torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2), torch.tensor(labels)


@torch.no_grad()
def representations(backbone, pixels):
    with layer_tokens(backbone, [1, 3, 5]) as rec:
        out = {"output embedding": backbone.encode_images(backbone.preprocess(pixels), normalize=True)}
    for block, tokens in zip((1, 3, 5), rec.tokens):
        out[f"block {block} CLS"] = tokens[:, 0]
        out[f"block {block} all tokens"] = tokens.flatten(1)
    out["pixels"] = pixels.float().flatten(1) / 255
    return out


def linear_probe(train, test, y_train, y_test, steps: int = 300):
    mu, sd = train.mean(0), train.std(0) + 1e-6
    train, test = (train - mu) / sd, (test - mu) / sd
    head = torch.nn.Linear(train.shape[1], 2)
    opt = torch.optim.Adam(head.parameters(), 1e-3, weight_decay=1e-4)
    for _ in range(steps):
        opt.zero_grad()
        F.cross_entropy(head(train), y_train).backward()
        opt.step()
    with torch.no_grad():
        return [100 * (head(x).argmax(1) == y).float().mean().item() for x, y in ((test, y_test), (train, y_train))]


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default=None, help="local-dir model (default: the embedded one)")
    parser.add_argument("--finetune-steps", type=int, default=800)
    parser.add_argument("--lr", type=float, default=1e-4)
    args = parser.parse_args()
    torch.manual_seed(0)
    backbone = load_backbone(args.model)
    x_train, y_train = stills(1, 3000, backbone.image_size)
    x_test, y_test = stills(2, 600, backbone.image_size)
    train_r, test_r = representations(backbone, x_train), representations(backbone, x_test)
    print("linear probe: held-out / train %")
    for name in train_r:
        held, fit = linear_probe(train_r[name], test_r[name], y_train, y_test)
        print(f"  {name:20s} {held:5.1f} / {fit:5.1f}", flush=True)

    print("fine-tuned image tower + linear head: step, held-out %, seconds")
    visual = backbone.clip.visual.train()
    head = torch.nn.Linear(backbone.embed_dim, 2)
    opt = torch.optim.AdamW(list(visual.parameters()) + list(head.parameters()), lr=args.lr)
    started = time.perf_counter()
    for step in range(1, args.finetune_steps + 1):
        idx = torch.randint(0, len(x_train), (64,))
        loss = F.cross_entropy(head(visual(backbone.preprocess(x_train[idx]))), y_train[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
        if step % 50 == 0:
            with torch.no_grad():
                held = 100 * (head(visual(backbone.preprocess(x_test))).argmax(1) == y_test).float().mean().item()
            print(f"  {step:5d} {held:5.1f} {time.perf_counter() - started:6.0f}", flush=True)


if __name__ == "__main__":
    main()
