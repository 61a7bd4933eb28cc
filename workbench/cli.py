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


@app.command()
def pretrain(
    steps: int = typer.Option(1000, help="Optimiser steps."),
    batch_size: int = typer.Option(256, help="Images per step."),
    hard_negative_weight: float = typer.Option(1.0, help="NegCLIP hard-negative term weight (0: plain CLIP)."),
    seed: int = typer.Option(0),
    run_dir: Path = typer.Option(CACHE_DIR / "pretrain" / DEFAULT_MODEL, help="Checkpoints (resumed if present)."),
    out: Path = typer.Option(MODELS_DIR / DEFAULT_MODEL, help="Where the open_clip local-dir model is written."),
):
    """Train the embedded tiny CLIP on ShapesWorld stills (resumes after a kill)."""
    from .backbones.pretrain import PretrainConfig, pretrain as run

    cfg = PretrainConfig(steps=steps, batch_size=batch_size, seed=seed,
                         hard_negative_weight=hard_negative_weight)
    typer.echo(f"model written to {run(cfg, run_dir, out)}")


@app.command("eval-ilfm")
def eval_ilfm(
    model_dir: Path = typer.Option(MODELS_DIR / DEFAULT_MODEL, help="open_clip local-dir model folder."),
    per_attribute: int = typer.Option(300, help="Held-out probe images per attribute."),
):
    """Zero-shot probes (colour, shape, size, position, relation, count) -> MODEL_CARD.md."""
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
    task: str = typer.Option("retrieval", help="Task (retrieval)."),
    profile: str = typer.Option("cpu", help=PROFILE_HELP),
    out: Path = typer.Option(Path("runs"), help="Run folder root: checkpoints, metrics."),
    hard_negatives: bool = typer.Option(True, help="Twins + sibling captions in every batch."),
    model: Optional[str] = typer.Option(None, help="open_clip model (default: the embedded tiny CLIP)."),
    pretrained: Optional[str] = typer.Option(None, help="open_clip tag, weights file, or none."),
    seed: int = typer.Option(0),
):
    """Train one strategy on ShapesWorld (resumes from OUT/STRATEGY-TASK-PROFILE if present)."""
    import json

    from .backbones import load_backbone
    from .bench import SPLITS, prepare, train_config
    from .config import get_profile
    from .strategies import create_strategy
    from .tasks.retrieval import evaluate_splits
    from .train import train_retrieval

    if task != "retrieval":
        raise typer.BadParameter(f"task {task!r} is not available yet; tasks: retrieval")
    prof = get_profile(profile)
    backbone = load_backbone(model, pretrained)
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


@app.command()
def bench(
    profile: str = typer.Option("cpu", help=PROFILE_HELP),
    out: Path = typer.Option(Path("runs/bench"), help="Where bench.csv / .md / .html go."),
    strategy: Optional[list[str]] = typer.Option(None, help="Only these strategies (repeatable)."),
    hard_negatives: bool = typer.Option(True, help="Twins + sibling captions in every batch."),
    seed: int = typer.Option(0),
):
    """Every strategy on ShapesWorld retrieval: R@1 per split, twin accuracy, params, FLOPs, time."""
    from .bench import markdown_table, run_bench

    rows = run_bench(profile, out, strategy or None, hard_negatives, seed=seed)
    typer.echo(markdown_table(rows))
    typer.echo(f"written to {out}/bench.csv, bench.md, bench.html")


@app.command("list")
def list_cmd():
    """The registered strategies, by family."""
    from .strategies import list_strategies, strategy_class

    for name in list_strategies():
        cls = strategy_class(name)
        typer.echo(f"{cls.family:>8}  {name:<20} {cls.leaf:<28} {cls.reference}")


if __name__ == "__main__":
    app()
