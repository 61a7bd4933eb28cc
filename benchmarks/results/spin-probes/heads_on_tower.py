"""A strategy's twin accuracy on several image towers and training seeds (exploratory).

Same data as ``workbench bench --profile cpu`` (seed 0 clips, frame features from the cache), so
only the tower and the training seed change between rows. Models: ``embedded`` (the shipped tiny
CLIP) or a ``local-dir`` folder such as the ones ``oriented_tower.py`` writes. ``--text-from MODEL``
keeps each model's image tower and swaps in MODEL's text tower (every weight outside ``visual.``),
in memory: the frame features, and so their cache, stay those of the image tower.

Run from the repository root with the venv:
    python benchmarks/results/spin-probes/heads_on_tower.py --model embedded \
        --model /tmp/oriented-phase/models/shapes-clip-tiny --seeds 0 1 2
"""
import argparse
from pathlib import Path

from safetensors.torch import load_file

from workbench import load_backbone
from workbench.bench import prepare
from workbench.config import DEFAULT_MODEL, MODELS_DIR, get_profile
from workbench.tasks.retrieval import train_and_score


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", action="append", required=True)
    parser.add_argument("--strategy", default="post-transformer")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--text-from", help="a local-dir model whose text tower replaces each model's own "
                        "('embedded': the shipped one)")
    args = parser.parse_args()
    profile = get_profile("cpu")
    for model in args.model:
        backbone = load_backbone(None if model == "embedded" else f"local-dir:{model}")
        if args.text_from:
            folder = MODELS_DIR / DEFAULT_MODEL if args.text_from == "embedded" else Path(args.text_from)
            text = {k: v for k, v in load_file(str(folder / "open_clip_model.safetensors")).items()
                    if not k.startswith("visual.")}
            missing = backbone.clip.load_state_dict(text, strict=False).missing_keys
            assert all(k.startswith("visual.") for k in missing), missing
            model = f"{model} + text tower of {args.text_from}"
        prepared = prepare(profile, backbone, 0)
        for seed in args.seeds:
            row = train_and_score(args.strategy, backbone, prepared, profile, seed, cache=False)[1]
            kinds = " ".join(f"{k.split('/')[0]}={v}" for k, v in row["twin_by_kind"].items())
            print(f"{model} seed {seed}: twin {row['twin_acc']} appearance {row['appearance_acc']} "
                  f"motion {row['motion_acc']} | {kinds}", flush=True)


if __name__ == "__main__":
    main()
