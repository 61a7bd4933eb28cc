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
    steps: int = typer.Option(1400, help="Optimiser steps."),
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


if __name__ == "__main__":
    app()
