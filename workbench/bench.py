"""`workbench bench`: every strategy trained and measured on ShapesWorld retrieval, side by side.

For one profile: the same backbone, the same training clips, the same budget; then R@1 and
multiple-choice accuracy on the appearance, motion and order (time-reversed twin) splits,
trainable and total parameters, FLOPs per clip and training time. Writes ``bench.csv``,
``bench.md`` and ``bench.html`` (accuracy against trainable parameters, plotly) to ``out``.
Frozen feature-level strategies train on cached frame features (``data/features.py``).
"""
from __future__ import annotations

import csv
import json
import time
from pathlib import Path

import torch

from .config import CACHE_DIR, Profile, get_profile, seed_everything
from .data.features import FeatureCache
from .strategies import create_strategy, flops_per_clip, list_strategies
from .tasks.retrieval import evaluate_splits, shapes_retrieval_data
from .train import RetrievalData, TrainConfig, train_retrieval

SPLITS = ("appearance", "motion", "order")
COLUMNS = ("strategy", "family", "leaf", "temporal", "hard_negatives",
           "appearance_R1", "motion_R1", "order_R1", "appearance_acc", "motion_acc", "twin_acc",
           "trainable_params", "total_params", "gflops_per_clip", "train_s")


def _with_features(data: RetrievalData, cache: FeatureCache) -> RetrievalData:
    data.features = cache.encode(data.frames)
    return data


def prepare(profile: Profile, backbone, seed: int = 0, cache_root: Path | None = None) -> dict:
    """Training data and evaluation splits, with frozen frame features cached for all of them."""
    cache = FeatureCache(cache_root or CACHE_DIR / "features", backbone, f"shapes-{profile.num_frames}f")
    train = _with_features(shapes_retrieval_data("train", profile, backbone, seed), cache)
    splits = {}
    for name in SPLITS:
        data, items = shapes_retrieval_data(name, profile, backbone, seed)
        splits[name] = (_with_features(data, cache), items)
    return {"train": train, "splits": splits, "cache": cache}


def train_config(profile: Profile, model, hard_negatives: bool, seed: int) -> TrainConfig:
    """One budget per input level: feature-level heads are cheap, pixel-level ones run the ILFM."""
    steps = profile.train_steps if model.input_level == "features" else profile.pixel_train_steps
    return TrainConfig(steps=steps, batch_size=profile.batch_size, hard_negatives=hard_negatives,
                       seed=seed, checkpoint_every=0)


def bench_strategy(name: str, backbone, prepared: dict, profile: Profile, hard_negatives: bool = True,
                   seed: int = 0, progress: bool = False) -> dict:
    seed_everything(seed)
    model = create_strategy(name, backbone)
    started = time.perf_counter()
    train_retrieval(model, prepared["train"], train_config(profile, model, hard_negatives, seed),
                    progress=progress)
    train_s = time.perf_counter() - started
    scores = evaluate_splits(model, prepared["splits"])
    counts = model.parameter_counts()
    return {"strategy": name, "family": model.family, "leaf": model.leaf, "temporal": model.temporal,
            "hard_negatives": hard_negatives,
            **{f"{s}_R1": round(scores[s]["t2v_R1"], 1) for s in SPLITS},
            "appearance_acc": round(scores["appearance"]["mc_accuracy"], 1),
            "motion_acc": round(scores["motion"]["mc_accuracy"], 1),
            "twin_acc": round(scores["order"]["mc_accuracy"], 1),
            "trainable_params": counts["trainable"], "total_params": counts["total"],
            "gflops_per_clip": round(flops_per_clip(model, profile.num_frames) / 1e9, 3),
            "train_s": round(train_s, 1)}


def run_bench(profile: str | Profile = "cpu", out: Path | None = None, strategies: list[str] | None = None,
              hard_negatives: bool = True, backbone=None, seed: int = 0, progress: bool = True) -> list[dict]:
    """Bench every (or the named) strategies; write CSV, markdown and HTML to ``out``."""
    from tqdm.auto import tqdm

    from .backbones import load_backbone

    profile = get_profile(profile) if isinstance(profile, str) else profile
    backbone = backbone or load_backbone()
    prepared = prepare(profile, backbone, seed)
    rows = []
    for name in tqdm(strategies or list_strategies(), desc="bench", disable=not progress):
        rows.append(bench_strategy(name, backbone, prepared, profile, hard_negatives, seed))
    if out is not None:
        write_results(rows, Path(out), profile, backbone)
    return rows


def markdown_table(rows: list[dict]) -> str:
    head = "| " + " | ".join(COLUMNS) + " |\n| " + " | ".join("---" for _ in COLUMNS) + " |\n"
    return head + "\n".join("| " + " | ".join(str(r[c]) for c in COLUMNS) + " |" for r in rows) + "\n"


def write_results(rows: list[dict], out: Path, profile: Profile, backbone) -> None:
    from .figures import strategy_comparison

    out.mkdir(parents=True, exist_ok=True)
    with open(out / "bench.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
    meta = {"profile": profile.name, "backbone": backbone.name, "pretrained": backbone.pretrained,
            "num_frames": profile.num_frames, "device": str(backbone.device),
            "threads": torch.get_num_threads()}
    (out / "bench.md").write_text(f"Profile `{profile.name}`, backbone `{backbone.name}`, "
                                  f"{profile.num_frames} frames per clip.\n\n" + markdown_table(rows))
    (out / "bench.json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=1))
    strategy_comparison(rows).write_html(out / "bench.html", include_plotlyjs="cdn")
