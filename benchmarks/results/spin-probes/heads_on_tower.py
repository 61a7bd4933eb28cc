"""A strategy's twin accuracy on several image towers and training seeds (exploratory).

Same data as ``workbench bench --profile cpu`` (seed 0 clips, frame features from the cache), so
only the tower and the training seed change between rows. Models: ``embedded`` (the shipped tiny
CLIP) or a ``local-dir`` folder such as the ones ``oriented_tower.py`` writes.

Run from the repository root with the venv:
    python benchmarks/results/spin-probes/heads_on_tower.py --model embedded \
        --model /tmp/oriented-phase/models/shapes-clip-tiny --seeds 0 1 2
"""
import argparse

from workbench import load_backbone
from workbench.bench import prepare
from workbench.config import get_profile
from workbench.tasks.retrieval import train_and_score


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", action="append", required=True)
    parser.add_argument("--strategy", default="post-transformer")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    args = parser.parse_args()
    profile = get_profile("cpu")
    for model in args.model:
        backbone = load_backbone(None if model == "embedded" else f"local-dir:{model}")
        prepared = prepare(profile, backbone, 0)
        for seed in args.seeds:
            row = train_and_score(args.strategy, backbone, prepared, profile, seed, cache=False)[1]
            kinds = " ".join(f"{k.split('/')[0]}={v}" for k, v in row["twin_by_kind"].items())
            print(f"{model} seed {seed}: twin {row['twin_acc']} appearance {row['appearance_acc']} "
                  f"motion {row['motion_acc']} | {kinds}", flush=True)


if __name__ == "__main__":
    main()
