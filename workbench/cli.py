"""The `workbench` command: one typer app whose commands call package functions.

Each command is a thin wrapper: parse options, call the function that does the work, print
where the result went. Heavy imports happen inside commands so `workbench --help` is instant.
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from .config import CACHE_DIR, DEFAULT_MODEL, MODELS_DIR, PROFILES, go_offline

go_offline()
app = typer.Typer(no_args_is_help=True, add_completion=False,
                  help="I2V Workbench: image-to-video transfer learning on open_clip models.")
data_app = typer.Typer(no_args_is_help=True, help="Generate and inspect datasets.")
app.add_typer(data_app, name="data")

PROFILE_HELP = f"Profile: one of {', '.join(PROFILES)}."
TASK_HELP = ("Task: retrieval, recognition, temporal-grounding, st-grounding, qa or captioning "
             "(`workbench tasks` lists those installed).")


@app.command()
def pretrain(
    steps: int = typer.Option(1400, help="Optimiser steps (the shipped model's recipe: 1400)."),
    batch_size: int = typer.Option(256, help="Images per step."),
    hard_negative_weight: float = typer.Option(1.0, help="NegCLIP hard-negative term weight (0: plain CLIP)."),
    seed: int = typer.Option(0),
    lr: float = typer.Option(1e-3, help="Peak learning rate."),
    orientation: float = typer.Option(0.0, help="Share of stills captioned with how a shape stands "
                                      "(upright, leaning left/right): what spins need; README."),
    phase_weight: float = typer.Option(0.0, help="Weight of a labelled term teaching where a spinnable "
                                       "shape stands in its symmetry period (0: off; README)."),
    exposure: float = typer.Option(0.0, help="Share of long-exposure event stills captioned with motion "
                                   "words, against the time-reversed caption (0: none; README)."),
    init_from: Optional[Path] = typer.Option(None, help="Continue from this local-dir model instead "
                                             "of random weights."),
    bf16: Optional[bool] = typer.Option(None, "--bf16/--fp32", help="Autocast (default: bf16 only "
                                        "where the CPU has bf16 instructions, or on a GPU)."),
    device: str = typer.Option("cpu", help="cpu or cuda (a GPU pretrains in minutes: README)."),
    run_dir: Path = typer.Option(CACHE_DIR / "pretrain" / DEFAULT_MODEL, help="Checkpoints (resumed if present)."),
    out: Path = typer.Option(MODELS_DIR / DEFAULT_MODEL, help="Where the open_clip local-dir model is written."),
):
    """Train the embedded tiny CLIP on ShapesWorld stills (resumes after a kill)."""
    from .backbones.pretrain import PretrainConfig, pretrain as run

    cfg = PretrainConfig(steps=steps, batch_size=batch_size, seed=seed, lr=lr,
                         hard_negative_weight=hard_negative_weight, orientation=orientation,
                         phase_weight=phase_weight, exposure=exposure,
                         init_from=str(init_from) if init_from else None, bf16=bf16,
                         device=device)
    typer.echo(f"model written to {run(cfg, run_dir, out)}")


@app.command("eval-ilfm")
def eval_ilfm(
    model_dir: Path = typer.Option(MODELS_DIR / DEFAULT_MODEL, help="open_clip local-dir model folder."),
    per_attribute: int = typer.Option(300, help="Held-out probe images per attribute."),
):
    """Zero-shot probes (colour, shape, size, position, relation, count, orientation) -> MODEL_CARD.md."""
    from .backbones.card import evaluate_and_write_card

    results = evaluate_and_write_card(model_dir, per_attribute)
    for attribute, r in results.items():
        typer.echo(f"{attribute:>9}: {r['accuracy']:5.1f}%  (chance {r['chance']:.1f}%)")
    typer.echo(f"card: {model_dir / 'MODEL_CARD.md'}")


@data_app.command("shapes")
def data_shapes(
    out: Path = typer.Option(..., help="Output folder (videos + annotations in real dataset layouts)."),
    profile: str = typer.Option("cpu", help=PROFILE_HELP),
    seed: int = typer.Option(0),
):
    """Write ShapesWorld as H.264 videos + MSR-VTT/Kinetics/Charades-STA/QVHighlights/NExT-QA/HC-STVG files."""
    from .data.shapes.export import write_shapesworld

    summary = write_shapesworld(out, profile=profile, seed=seed)
    typer.echo(summary)


@app.command()
def train(
    strategy: str = typer.Option(..., help="Strategy name (workbench list)."),
    task: str = typer.Option("retrieval", help=TASK_HELP),
    profile: str = typer.Option("cpu", help=PROFILE_HELP),
    out: Path = typer.Option(Path("runs"), help="Run folder root: checkpoints, metrics."),
    hard_negatives: bool = typer.Option(True, help="Twins + sibling captions in every batch."),
    model: Optional[str] = typer.Option(None, help="open_clip model (default: the embedded tiny CLIP)."),
    pretrained: Optional[str] = typer.Option(None, help="open_clip tag, weights file, or none."),
    seed: int = typer.Option(0),
    data: Optional[Path] = typer.Option(None, help="Real dataset folder or annotation file (default: ShapesWorld)."),
    format: Optional[str] = typer.Option(None, "--format", help="Dataset layout (formats.py); default: the task's."),
    video_dir: Optional[Path] = typer.Option(None, help="Videos folder (default: DATA/videos or beside the annotations)."),
):
    """Train one strategy on a task (resumes from OUT/STRATEGY-TASK-PROFILE if present).

    Retrieval on ShapesWorld reports the appearance / motion / order splits; every other task
    (and retrieval on --data) writes predictions.json and metrics.json under the run folder."""
    import json

    from .backbones import load_backbone

    if task != "retrieval" or data is not None:
        _run_task(task, strategy, profile, out / f"{strategy}-{task}-{profile}", True, data, format,
                  video_dir, None, model, pretrained, seed)
        return
    from .bench import SPLITS, prepare, train_config
    from .config import get_profile
    from .strategies import create_strategy
    from .tasks.retrieval import evaluate_splits
    from .train import train_retrieval

    prof = get_profile(profile)
    backbone = load_backbone(model, pretrained, device=prof.device)
    prepared = prepare(prof, backbone, seed)
    net = create_strategy(strategy, backbone)
    run_dir = out / f"{strategy}-{task}-{prof.name}"
    result = train_retrieval(net, prepared["train"], train_config(prof, net, hard_negatives, seed), run_dir=run_dir)
    scores = evaluate_splits(net, prepared["splits"])
    (run_dir).mkdir(parents=True, exist_ok=True)
    (run_dir / "metrics.json").write_text(json.dumps({"train": {k: result[k] for k in ("steps", "wall_s")},
                                                      "eval": scores}, indent=1))
    for split in SPLITS:
        typer.echo(f"{split:>10}: multiple-choice {scores[split]['mc_accuracy']:5.1f}%  "
                   f"t2v R@1 {scores[split]['t2v_R1']:5.1f}")
    typer.echo(f"trained {result['steps']} steps in {result['wall_s']:.0f} s -> {run_dir}")


def _run_task(task, strategy, profile, out, train, data, fmt, video_dir, trained_run, model, pretrained, seed):
    """Shared body of `train` / `eval` for the task registry (workbench.bench.run_task)."""
    from .backbones import load_backbone
    from .bench import run_task
    from .config import get_profile
    from .tasks.base import list_tasks

    if task not in list_tasks():
        raise typer.BadParameter(f"unknown task {task!r}; tasks: {', '.join(list_tasks())}")
    summary = run_task(task, strategy, profile, out, train=train, data=data, fmt=fmt, video_dir=video_dir,
                       trained_run=trained_run, seed=seed,
                       backbone=load_backbone(model, pretrained, device=get_profile(profile).device))
    for key, value in summary["metrics"].items():
        typer.echo(f"{key:>16}: {value}")
    if summary["skipped_videos"]:
        typer.echo(f"skipped {len(summary['skipped_videos'])} video(s) that could not be decoded:")
        for path, reason in summary["skipped_videos"][:10]:
            typer.echo(f"  {path}: {reason}")
    typer.echo(f"{summary['mode']} {task} with {strategy} on {summary['source']} -> {out}/metrics.json, "
               f"{out}/predictions.json")


@app.command("eval")
def eval_cmd(
    task: str = typer.Option(..., help=TASK_HELP),
    strategy: str = typer.Option("mean-pool", help="Strategy name (workbench list)."),
    profile: str = typer.Option("cpu", help=PROFILE_HELP),
    out: Path = typer.Option(..., help="Where predictions.json and metrics.json go."),
    data: Optional[Path] = typer.Option(None, help="Real dataset folder or annotation file (default: ShapesWorld)."),
    format: Optional[str] = typer.Option(None, "--format", help="Dataset layout (formats.py); default: the task's."),
    video_dir: Optional[Path] = typer.Option(None, help="Videos folder (default: DATA/videos or beside the annotations)."),
    run: Optional[Path] = typer.Option(None, help="A `workbench train` run folder: evaluate its trained "
                                                  "strategy and head (default: zero-shot)."),
    model: Optional[str] = typer.Option(None, help="open_clip model (default: the embedded tiny CLIP)."),
    pretrained: Optional[str] = typer.Option(None, help="open_clip tag, weights file, or none."),
    seed: int = typer.Option(0),
):
    """Evaluate a strategy on a task (zero-shot, or a trained run): predictions + metrics.json in OUT."""
    _run_task(task, strategy, profile, out, False, data, format, video_dir, run, model, pretrained, seed)


@app.command()
def bench(
    profile: str = typer.Option("cpu", help=PROFILE_HELP),
    out: Path = typer.Option(Path("runs/bench"), help="Where bench.csv / .md / .html go."),
    strategy: Optional[list[str]] = typer.Option(None, help="Only these strategies (repeatable)."),
    hard_negatives: bool = typer.Option(True, help="Twins + sibling captions in every batch, and the twin term."),
    text_head: Optional[bool] = typer.Option(None, "--text-head/--no-text-head",
                                             help="Add the trainable text-side head (default: off)."),
    seed: int = typer.Option(0),
    task: str = typer.Option("retrieval", help=TASK_HELP + " Retrieval keeps its split-wise table."),
    clips_per_kind: Optional[int] = typer.Option(None, help="Override the profile's training clips per event kind."),
    steps: Optional[int] = typer.Option(None, help="Override the profile's step budget for feature-level strategies."),
    budget_s: Optional[float] = typer.Option(None, help="Retrieval: start no strategy that the time left "
                                             "(judged by the slowest so far) would not fit; list the most wanted first."),
):
    """Every strategy on a ShapesWorld task, side by side (retrieval: R@1 per split, twin accuracy,
    params, FLOPs, time; other tasks: zero-shot and trained metrics -> bench-TASK.csv/.md/.json).
    ``--clips-per-kind`` / ``--steps`` scale one profile's data and budget (README: how the twin
    accuracy of frozen-feature heads grows with both)."""
    from .bench import markdown_table, run_bench, run_task_bench, skipped_markdown, task_markdown
    from .config import get_profile

    overrides = {k: v for k, v in (("clips_per_kind", clips_per_kind), ("train_steps", steps)) if v is not None}
    profile = get_profile(profile, **overrides)

    if task != "retrieval":
        rows = run_task_bench(task, profile, out, strategy or None, seed=seed)
        typer.echo(task_markdown(rows))
        typer.echo(f"written to {out}/bench-{task}.csv, .md, .json")
        return

    rows, skipped = run_bench(profile, out, strategy or None, hard_negatives, seed=seed, text_head=text_head,
                              budget_s=budget_s)
    typer.echo(markdown_table(rows) + skipped_markdown(skipped))
    typer.echo(f"written to {out}/bench.csv, bench.md, bench.html")


@app.command()
def extract(
    videos: Path = typer.Option(..., help="Folder of videos (searched recursively)."),
    out: Path = typer.Option(..., help="Features folder (resumed if present)."),
    model: Optional[str] = typer.Option(None, help="open_clip model (default: the embedded tiny CLIP)."),
    pretrained: Optional[str] = typer.Option(None, help="open_clip tag or weights file."),
    num_frames: int = typer.Option(8, help="Frames sampled per video."),
    sampling: str = typer.Option("uniform", help="Frame sampler: uniform, segment-random, stride, all."),
    batch_size: Optional[int] = typer.Option(None, help="Clips per model call (default: 4 on CPU, 32 on GPU)."),
    workers: int = typer.Option(2, help="DataLoader decode workers per process."),
    index: str = typer.Option("auto", help="Also write OUT/index.safetensors: auto, exact, faiss, faiss-ivf, or none."),
):
    """Frozen frame features of every video (resumable; several processes under torchrun / accelerate launch)."""
    import torch
    from accelerate import Accelerator

    from .backbones import load_backbone
    from .extract import ExtractConfig, extract_features
    from .index import index_from_features

    backbone = load_backbone(model, pretrained, device="cuda" if torch.cuda.is_available() else "cpu")
    cfg = ExtractConfig(num_frames=num_frames, sampling=sampling, batch_size=batch_size, num_workers=workers)
    accelerator = Accelerator(cpu=not torch.cuda.is_available())
    result = extract_features(videos, backbone, out, cfg, accelerator)
    if accelerator.is_main_process:
        typer.echo(result.summary())
        if result.failed:
            typer.echo(f"failures listed in {out / 'failures.json'}")
        if index != "none":
            typer.echo(f"index: {index_from_features(out, index).save(out / 'index.safetensors')}")
    accelerator.end_training()


@app.command("tasks")
def tasks_cmd():
    """The registered tasks, their headline metric and the dataset layouts they read."""
    from .tasks.base import get_task, list_tasks

    for name in list_tasks():
        task = get_task(name)
        typer.echo(f"{name:<20} {task.metric:<10} {', '.join(task.formats)}")


@app.command("app")
def app_cmd(
    videos: Optional[Path] = typer.Option(None, help="Your folder of videos (default: the ShapesWorld demo, "
                                                     "generated once under cache/demo)."),
    model: Optional[str] = typer.Option(None, help="open_clip model (default: the embedded tiny CLIP)."),
    pretrained: Optional[str] = typer.Option(None, help="open_clip tag or weights file."),
    strategy: str = typer.Option("mean-pool", help="Strategy selected at start (workbench list)."),
    host: str = typer.Option("127.0.0.1", help="Interface to serve on (no share link is ever made)."),
    port: Optional[int] = typer.Option(None, help="Port (default: Gradio's, 7860 or the next free one)."),
    runs: Path = typer.Option(Path("runs"), help="Where `workbench train` / `bench` wrote heads and tables."),
    num_frames: int = typer.Option(8, help="Frames sampled per video."),
):
    """Serve the Gradio app: retrieval, strategy lab, the loaded model (and QA, grounding, attention)."""
    from .app.ui import serve

    serve(videos, model, pretrained, strategy, host, port, runs, num_frames)


@app.command("list")
def list_cmd():
    """The registered strategies, by family."""
    from .strategies import list_strategies, strategy_class

    for name in list_strategies():
        cls = strategy_class(name)
        typer.echo(f"{cls.family:>8}  {name:<20} {cls.leaf:<28} {cls.reference}")


if __name__ == "__main__":
    app()
