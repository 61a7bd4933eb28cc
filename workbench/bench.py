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
import logging
import time
from pathlib import Path

import torch

from .config import CACHE_DIR, DEFAULT_MODEL, MODELS_DIR, PROFILES, REPO_ROOT, Profile, get_profile, seed_everything
from .data.features import FeatureCache
from .strategies import create_strategy, list_strategies
from .tasks.retrieval import shapes_retrieval_data, train_and_score
from .train import RetrievalData, TrainConfig

SPLITS = ("appearance", "motion", "order")
COLUMNS = ("strategy", "family", "leaf", "temporal", "hard_negatives", "text_head",
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


def profile_sizes(profile: Profile) -> dict:
    """The sizes ``workbench bench --clips-per-kind / --steps`` can change, as recorded with a table."""
    return {k: getattr(profile, k) for k in ("clips_per_kind", "train_steps", "pixel_train_steps", "pass_train_steps",
                                              "student_train_steps")}


MAX_EPOCHS = 50   # cpu retrieval: 4,000 steps x 32 = 20 epochs of 6,400 clips, so only small tasks are capped


def train_config(profile: Profile, model, hard_negatives: bool, seed: int) -> TrainConfig:
    """One budget per input level: feature-level heads are cheap, pixel-level ones run the ILFM
    (unless their ILFM features are frozen and come from the cache: ``frozen_frame_features``);
    a strategy whose step costs neither names its own (``step_budget``: side-tuning on its frozen
    pass takes ``pass_train_steps``, the distillation student ``student_train_steps``).
    At most :data:`MAX_EPOCHS` passes over the training set (:func:`workbench.train.sized_to`):
    the budgets are sized for ShapesWorld retrieval, and a task with a few hundred pairs overfits
    on them."""
    cheap = model.input_level == "features" or model.frozen_frame_features
    steps = (getattr(profile, model.step_budget) if model.step_budget else profile.train_steps if cheap
             else profile.pixel_train_steps)
    # a strategy's own rates (``VideoTextModel.lr``, ``.backbone_lr``): side-tuning's, LoRA's factors
    rates = {k: getattr(model, k) for k in ("lr", "backbone_lr") if getattr(model, k)}
    return TrainConfig(steps=steps, batch_size=profile.batch_size, hard_negatives=hard_negatives,
                       seed=seed, checkpoint_every=0, max_epochs=MAX_EPOCHS, **rates)


def bench_strategy(name: str, backbone, prepared: dict, profile: Profile, hard_negatives: bool = True,
                   seed: int = 0, progress: bool = False, text_head: bool | None = None) -> dict:
    """One row, trained now (nothing read from a cached run): :func:`workbench.tasks.retrieval.train_and_score`
    without its cache. ``text_head``: add the text-side head (None: the strategy's default, off)."""
    return train_and_score(name, backbone, prepared, profile, seed, hard_negatives=hard_negatives,
                           text_head=text_head, cache=False, progress=progress)[1]


def run_bench(profile: str | Profile = "cpu", out: Path | None = None, strategies: list[str] | None = None,
              hard_negatives: bool = True, backbone=None, seed: int = 0, progress: bool = True,
              text_head: bool | None = None, budget_s: float | None = None) -> tuple[list[dict], dict[str, str]]:
    """Bench every (or the named) strategies, in order; write CSV, markdown and HTML to ``out``
    after every row. Returns ``(rows, skipped)``: a strategy that fails is skipped and reported
    (``skipped[name]`` = the reason) and the others still run. ``budget_s`` time-boxes the whole
    bench: a strategy is not started once the time used plus the slowest strategy so far would
    pass it (for a lent GPU's hour; put the strategies that matter most first)."""
    from tqdm.auto import tqdm

    from .backbones import load_backbone

    profile = get_profile(profile) if isinstance(profile, str) else profile
    backbone = backbone or load_backbone(device=profile.device)
    started = time.perf_counter()
    prepared = prepare(profile, backbone, seed)
    rows, skipped, slowest = [], {}, 0.0
    for name in tqdm(strategies or list_strategies(), desc="bench", disable=not progress):
        used = time.perf_counter() - started
        if budget_s is not None and used + slowest > budget_s:
            skipped[name] = (f"not started: {used:.0f} s used of the {budget_s:.0f} s budget, and the "
                             f"slowest strategy so far took {slowest:.0f} s")
            continue
        began = time.perf_counter()
        try:
            rows.append(bench_strategy(name, backbone, prepared, profile, hard_negatives, seed, text_head=text_head))
        except Exception as error:  # a batch job skips and reports; the traceback goes to the log
            logging.getLogger(__name__).exception("bench: %s failed", name)
            skipped[name] = f"failed: {type(error).__name__}: {error}"
        slowest = max(slowest, time.perf_counter() - began)
        if out is not None:   # after every row: a long bench that is stopped keeps what it measured
            write_results(rows, Path(out), profile, backbone, skipped)
    return rows, skipped


def skipped_markdown(skipped: dict[str, str] | None) -> str:
    """The strategies a bench did not measure, and why, under its table."""
    if not skipped:
        return ""
    return "\nNot measured:\n\n" + "".join(f"- `{name}`: {why}\n" for name, why in skipped.items())


def markdown_table(rows: list[dict]) -> str:
    head = "| " + " | ".join(COLUMNS) + " |\n| " + " | ".join("---" for _ in COLUMNS) + " |\n"
    return head + "\n".join("| " + " | ".join(str(r[c]) for c in COLUMNS) + " |" for r in rows) + "\n"


def write_results(rows: list[dict], out: Path, profile: Profile, backbone,
                  skipped: dict[str, str] | None = None) -> None:
    from .figures import strategy_comparison

    out.mkdir(parents=True, exist_ok=True)
    with open(out / "bench.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=COLUMNS, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    meta = {"profile": profile.name, "backbone": backbone.name, "pretrained": backbone.pretrained,
            "num_frames": profile.num_frames, **profile_sizes(profile),
            "device": str(backbone.device),
            "threads": torch.get_num_threads(), "skipped": skipped or {}}
    (out / "bench.md").write_text(f"Profile `{profile.name}`, backbone `{backbone.name}`, "
                                  f"{profile.num_frames} frames per clip, {profile.clips_per_kind} training "
                                  f"clips per event kind, {profile.train_steps} / {profile.pixel_train_steps} / "
                                  f"{profile.pass_train_steps} / {profile.student_train_steps} steps (feature "
                                  f"level / pixel level / on a frozen pass / a student on pixels), on "
                                  f"{backbone.device}.\n\n" + markdown_table(rows)
                                  + skipped_markdown(skipped))
    (out / "bench.json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=1))
    strategy_comparison(rows).write_html(out / "bench.html", include_plotlyjs="cdn")


# --------------------------------------------------------------------------------------------
# Every task (workbench.tasks.base): one strategy trained and evaluated, or every strategy
# compared, zero-shot and trained, on ShapesWorld or a real dataset's files.
# --------------------------------------------------------------------------------------------

def task_data(task, profile: Profile, backbone, seed: int = 0, data: Path | None = None,
              fmt: str | None = None, video_dir: Path | None = None):
    """A task's data (ShapesWorld, or the real layout at ``data``), frozen features cached."""
    from .tasks.base import with_features

    loaded = (task.load(data, backbone, profile, fmt, video_dir) if data is not None
              else task.shapes_data(profile, backbone, seed))
    for split in (loaded.train, loaded.eval):
        if split is not None:
            with_features(split.videos, backbone, split.videos.frames.shape[1])
    return loaded


SHIPPED = REPO_ROOT / "benchmarks" / "results"   # tables committed with the repo, made by `workbench bench`


def shipped_rows(profile: Profile | str, backbone, task: str = "retrieval") -> dict[str, dict]:
    """The committed table of ``task`` at ``profile``, by strategy name, each row with its
    ``source``: ``strategies-<profile>/bench.json`` for the retrieval splits (:func:`run_bench`),
    ``tasks-<profile>/bench-<task>.json`` for a task (:func:`run_task_bench`), and for the two
    grounding tasks the "strategy + heads" rows of ``grounding-<profile>/grounding.json``
    (``python -m workbench.tasks.st_grounding``). Empty unless ``backbone`` is the embedded
    default the tables were measured with. Chapters show these rows for strategies their time
    budget cannot train."""
    name = getattr(profile, "name", profile)
    if backbone.name != f"local-dir:{MODELS_DIR / DEFAULT_MODEL}":
        return {}
    if task in ("temporal-grounding", "st-grounding"):
        path = SHIPPED / f"grounding-{name}" / "grounding.json"
        rows = json.loads(path.read_text()) if path.exists() else []
        rows = [r for r in rows if r["mode"] == "strategy + heads"]
    else:
        path = (SHIPPED / f"strategies-{name}" / "bench.json" if task == "retrieval"
                else SHIPPED / f"tasks-{name}" / f"bench-{task}.json")
        if not path.exists():
            return {}
        payload = json.loads(path.read_text())
        meta = payload["meta"]
        if meta["profile"] != name or not meta["backbone"].endswith(f"/models/{DEFAULT_MODEL}"):
            return {}
        # a rescaled run (bench --clips-per-kind / --steps) is another table; older tables used the named profile
        made = {k: meta.get(k, v) for k, v in profile_sizes(PROFILES[name]).items()}
        if isinstance(profile, Profile) and made != profile_sizes(profile):
            return {}
        rows = payload["rows"]
    source = f"{path.relative_to(REPO_ROOT)} (shipped)"
    return {row["strategy"]: {**row, "source": source} for row in rows}


def train_or_ship(names: list[str], trained: list[str], backbone, prepared: dict, profile: Profile,
                  seed: int = 0) -> tuple[dict, list[dict]]:
    """A chapter's strategy table on the retrieval splits: the strategies in ``trained`` through
    :func:`~workbench.tasks.retrieval.train_and_score` (trained now or loaded from its cache), the
    other ``names`` as the shipped table's rows (:func:`shipped_rows`; left out where there is none).
    Returns ``(models, rows)``; each row has ``source`` and ``how`` (what happened, in words)."""
    shipped = shipped_rows(profile, backbone)
    models, rows = {}, []
    for name in names:
        if name not in trained:
            if name in shipped:
                rows.append({**shipped[name], "how": f"from {shipped[name]['source']}"})
            continue
        models[name], row = train_and_score(name, backbone, prepared, profile, seed=seed)
        how = ("nothing to train" if not row["trainable_params"] else "loaded from the cache" if row["loaded"]
               else f"trained now: {row['steps']} steps, {row['train_s']} s")
        rows.append({**row, "source": "cache/runs" if row["loaded"] else "this notebook", "how": how})
    return models, rows


def _flat(result: dict, prefix: str = "") -> dict:
    """Numbers of an evaluate() dict, per-type dicts flattened (``per_type`` -> the type names)."""
    out = {}
    for key, value in result.items():
        if isinstance(value, dict):
            out.update(_flat(value, prefix))
        elif isinstance(value, (int, float)) and not isinstance(value, bool) and value is not None:
            out[f"{prefix}{key}"] = round(float(value), 1 if abs(value) >= 1 else 4)
    return out


def run_task(task_name: str, strategy: str, profile: str | Profile = "cpu", out: Path | None = None,
             train: bool = True, data: Path | None = None, fmt: str | None = None,
             video_dir: Path | None = None, trained_run: Path | None = None, backbone=None,
             seed: int = 0, progress: bool = True) -> dict:
    """Train (``train=True``) or only evaluate one strategy on one task; write under ``out``:
    ``predictions.json`` (the dataset's own format), ``metrics.json``, and for training
    ``checkpoint/`` (the strategy's trainable parameters, resumable) and ``head.safetensors``.
    ``trained_run``: evaluate the strategy and head a previous ``run_task(train=True)`` saved."""
    from safetensors.torch import load_file, save_file

    from .backbones import load_backbone
    from .io import atomic_write
    from .tasks.base import get_task, save_json
    from .train import config_dict, load_trainable

    profile = get_profile(profile) if isinstance(profile, str) else profile
    seed_everything(seed)
    backbone = backbone or load_backbone(device=profile.device)
    task = get_task(task_name)
    loaded = task_data(task, profile, backbone, seed, data, fmt, video_dir)
    model = create_strategy(strategy, backbone)
    head, log = None, {}
    if train:
        cfg = train_config(profile, model, True, seed)
        run_dir = None if out is None else Path(out) / "checkpoint"
        result = task.train(model, loaded, cfg, run_dir=run_dir, progress=progress)
        head = result.pop("head")
        log = {"config": config_dict(cfg), **{k: {kk: vv for kk, vv in v.items() if kk != "losses"}
                                             if isinstance(v, dict) else v for k, v in result.items()}}
        if out is not None and head is not None:
            state = {k: v.detach().contiguous() for k, v in head.state_dict().items()}
            atomic_write(Path(out) / "head.safetensors", lambda p: save_file(state, p))
    elif trained_run is not None:
        trained_run = Path(trained_run)
        if (trained_run / "checkpoint" / "trainable.safetensors").exists():
            load_trainable(model, trained_run / "checkpoint" / "trainable.safetensors")
        head = task.make_head(model, loaded)
        if head is not None:
            head.load_state_dict(load_file(str(trained_run / "head.safetensors")))
    predictions = task.predict(model, loaded.eval, head)
    scores = task.evaluate(loaded.eval, predictions)
    summary = {"task": task_name, "strategy": strategy, "profile": profile.name, "source": loaded.source,
               "mode": "trained" if (train or trained_run) else "zero-shot", "metrics": scores,
               "skipped_videos": loaded.eval.videos.skipped, "train": log}
    if out is not None:
        task.write_predictions(loaded.eval, predictions, out)
        save_json(Path(out) / "metrics.json", summary)
    return summary


def task_bench_strategy(task, name: str, backbone, loaded, profile: Profile, seed: int = 0,
                        progress: bool = False) -> dict:
    """One row: zero-shot and trained metrics of strategy ``name`` on ``task``."""
    seed_everything(seed)
    model = create_strategy(name, backbone)
    zero = task.evaluate(loaded.eval, task.zero_shot(model, loaded.eval))
    started = time.perf_counter()
    result = task.train(model, loaded, train_config(profile, model, True, seed), progress=progress)
    train_s = time.perf_counter() - started
    trained = task.evaluate(loaded.eval, task.predict(model, loaded.eval, result["head"]))
    counts = model.parameter_counts()
    head_params = sum(p.numel() for p in result["head"].parameters()) if result["head"] is not None else 0
    return {"strategy": name, "family": model.family, "temporal": model.temporal,
            **_flat(zero, "zs_"), **_flat(trained),
            "trainable_params": counts["trainable"] + head_params, "train_s": round(train_s, 1)}


def run_task_bench(task_name: str, profile: str | Profile = "cpu", out: Path | None = None,
                   strategies: list[str] | None = None, backbone=None, seed: int = 0,
                   progress: bool = True) -> list[dict]:
    """Every (or the named) strategy on one task, zero-shot and trained; writes
    ``bench-<task>.csv/.md/.json`` to ``out``. Retrieval's own bench is :func:`run_bench`."""
    from tqdm.auto import tqdm

    from .backbones import load_backbone
    from .tasks.base import get_task

    profile = get_profile(profile) if isinstance(profile, str) else profile
    backbone = backbone or load_backbone(device=profile.device)
    task = get_task(task_name)
    loaded = task_data(task, profile, backbone, seed)
    rows = [task_bench_strategy(task, name, backbone, loaded, profile, seed)
            for name in tqdm(strategies or list_strategies(), desc=f"bench {task_name}", disable=not progress)]
    if out is not None:
        write_task_results(task_name, rows, Path(out), profile, backbone)
    return rows


def task_columns(rows: list[dict]) -> list[str]:
    columns: list[str] = []
    for row in rows:
        columns += [c for c in row if c not in columns]
    drop = {"clips", "questions", "videos", "zs_clips", "zs_questions", "zs_videos", "zs_chance",
            "zs_chance_top1"}
    return [c for c in columns if c not in drop]


def task_markdown(rows: list[dict]) -> str:
    columns = task_columns(rows)
    head = "| " + " | ".join(columns) + " |\n| " + " | ".join("---" for _ in columns) + " |\n"
    return head + "\n".join("| " + " | ".join(str(r.get(c, "")) for c in columns) + " |" for r in rows) + "\n"


def write_task_results(task_name: str, rows: list[dict], out: Path, profile: Profile, backbone) -> None:
    out.mkdir(parents=True, exist_ok=True)
    columns = task_columns(rows)
    with open(out / f"bench-{task_name}.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=columns, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    (out / f"bench-{task_name}.md").write_text(
        f"Task `{task_name}`, profile `{profile.name}`, backbone `{backbone.name}`, "
        f"{profile.num_frames} frames per clip; `zs_` columns are zero-shot, the others trained.\n\n"
        + task_markdown(rows))
    meta = {"task": task_name, "profile": profile.name, "backbone": backbone.name,
            "num_frames": profile.num_frames, **profile_sizes(profile),
            "device": str(backbone.device), "threads": torch.get_num_threads()}
    (out / f"bench-{task_name}.json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=1))
