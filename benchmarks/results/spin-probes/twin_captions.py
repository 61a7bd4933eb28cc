"""How close a text tower puts each twin pair's two captions (exploratory).

A head that trains only the video side (every post-network strategy with the text tower frozen)
must place a clip nearer its own caption than its twin's; the closer the text tower puts the two,
the less room it has. This prints the mean cosine similarity between a clip's caption and its
twin's, per event kind, over the `cpu` profile's evaluation clips, for each model given
(``embedded``: the shipped tiny CLIP, or a ``local-dir`` folder).

Run from the repository root with the venv:
    python benchmarks/results/spin-probes/twin_captions.py embedded /tmp/phase-model/models/shapes-clip-tiny
"""
import sys
from collections import defaultdict

import numpy as np
import torch

from workbench import load_backbone
from workbench.config import get_profile
from workbench.data.shapes.clips import make_clips


def main():
    profile = get_profile("cpu")
    clips = [c for c in make_clips(0, profile.eval_clips_per_kind, profile.num_frames, "eval") if c.twin_id]
    for model in sys.argv[1:]:
        backbone = load_backbone(None if model == "embedded" else f"local-dir:{model}")
        by_kind = defaultdict(list)
        with torch.no_grad():
            for clip in clips:
                own, twin = backbone.encode_text([clip.caption, clip.twin_caption], normalize=True)
                by_kind[clip.event].append(float(own @ twin))
        print(model, " ".join(f"{k}={np.mean(v):.3f}" for k, v in sorted(by_kind.items())), flush=True)


if __name__ == "__main__":
    main()
