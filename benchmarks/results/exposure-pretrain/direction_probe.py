"""Zero-shot: does a model tell an event's long-exposure still from its reversal's caption? (exploratory)

For held-out long-exposure stills (``workbench.data.shapes.exposures``, a seed no pretraining run
draws), the share where the image is nearer its own caption than its time-reversed twin's, per
twin pair, for each model given (``embedded``: the shipped tiny CLIP, or a ``local-dir`` folder).
A model that never learnt motion words scores near 50.

Run from the repository root with the venv:
    python benchmarks/results/exposure-pretrain/direction_probe.py embedded /tmp/exp/expo/models/shapes-clip-tiny
"""
import sys
from collections import defaultdict

import numpy as np
import torch

from workbench import load_backbone
from workbench.data.shapes.clips import twin_pair
from workbench.data.shapes.exposures import exposure_clip, exposure_still

HELD_OUT_SEED = 1_000_003
N = 600


def main():
    rng = np.random.default_rng(HELD_OUT_SEED)
    clips = [c for c in (exposure_clip(rng) for _ in range(N)) if c.twin_caption]
    stills = np.stack([exposure_still(c) for c in clips])
    for model in sys.argv[1:]:
        backbone = load_backbone(None if model == "embedded" else f"local-dir:{model}")
        with torch.no_grad():
            pixels = backbone.preprocess(torch.from_numpy(stills).permute(0, 3, 1, 2))
            image = backbone.encode_images(pixels, normalize=True)
            own = backbone.encode_text([c.caption for c in clips], normalize=True)
            twin = backbone.encode_text([c.twin_caption for c in clips], normalize=True)
        right = ((image * own).sum(-1) > (image * twin).sum(-1)).tolist()
        by_pair = defaultdict(list)
        for clip, ok in zip(clips, right):
            by_pair[twin_pair(clip.event)].append(ok)
        pairs = " ".join(f"{p.split('/')[0]}={100 * np.mean(v):.1f}" for p, v in sorted(by_pair.items()))
        print(f"{model}: {100 * np.mean(right):.1f} % of {len(right)} | {pairs}", flush=True)


if __name__ == "__main__":
    main()
