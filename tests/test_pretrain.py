"""`workbench pretrain`: real contrastive training that resumes exactly after an interruption."""
import json
import math
import os
import signal
import subprocess
import sys
import time

import pytest
import torch
from safetensors.torch import load_file

from workbench.backbones.pretrain import PretrainConfig, pretrain

TINY = dict(batch_size=8, steps=6, warmup=2, checkpoint_every=2, bf16=False)


def _weights(folder):
    return load_file(str(folder / "open_clip_model.safetensors"))


@pytest.mark.parametrize("phase_weight", [0.0, 1.0], ids=["contrastive", "with-phase-term"])
def test_interrupted_run_resumes_to_the_same_weights(tmp_path, phase_weight):
    """With the phase term its head is checkpointed too: a resumed run that lost it would not
    train the same image tower."""
    cfg = PretrainConfig(**TINY, phase_weight=phase_weight, phase_batch=4)
    straight = pretrain(cfg, tmp_path / "a", tmp_path / "a_out", progress=False)
    # Stop after 3 steps: the checkpoint at step 2 survives, step 3 is lost as in a kill.
    assert pretrain(cfg, tmp_path / "b", tmp_path / "b_out", progress=False, max_steps_this_run=3) is None
    assert json.loads((tmp_path / "b" / "state.json").read_text())["step"] == 2
    resumed = pretrain(cfg, tmp_path / "b", tmp_path / "b_out", progress=False)
    a, b = _weights(straight), _weights(resumed)
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], msg=k)
    log = [json.loads(line) for line in (tmp_path / "a" / "log.jsonl").read_text().splitlines()]
    assert log[-1]["loss"] < log[0]["loss"] + 1.0  # trains (a tiny run's loss need not fall much)
    # the phase head is training's, not the model's: the export is a plain CLIP either way, and
    # the log says how well the phase is read from held-out stills (a guess scores 0.25 periods)
    assert not any("phase" in k for k in a)
    assert all((0 <= r["phase_error"] <= 0.5) if phase_weight else "phase_error" not in r for r in log)


def test_exported_model_loads_through_open_clip_local_dir(tmp_path):
    from workbench import load_backbone

    out = pretrain(PretrainConfig(**{**TINY, "steps": 2}), tmp_path / "run", tmp_path / "model", progress=False)
    bb = load_backbone(f"local-dir:{out}")
    assert bb.image_size == 64 and bb.embed_dim == 128
    assert (out / "open_clip_model.safetensors").stat().st_size < 40e6


def test_sigkill_leaves_a_loadable_checkpoint(tmp_path):
    """A real SIGKILL mid-run: the last checkpoint is complete (atomic writes) and resumes."""
    run_dir = tmp_path / "run"
    code = ("from pathlib import Path; from workbench.backbones.pretrain import PretrainConfig, pretrain; "
            f"pretrain(PretrainConfig(batch_size=8, steps=10_000, checkpoint_every=1, bf16=False), "
            f"Path({str(run_dir)!r}), Path({str(tmp_path / 'out')!r}), progress=False)")
    proc = subprocess.Popen([sys.executable, "-c", code], env={**os.environ, "OMP_NUM_THREADS": "1"})
    deadline = time.time() + 120
    while not (run_dir / "state.json").exists() and time.time() < deadline:
        time.sleep(0.2)
    time.sleep(1.0)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    step = json.loads((run_dir / "state.json").read_text())["step"]
    assert step >= 1
    cfg = PretrainConfig(batch_size=8, steps=step + 1, checkpoint_every=1, bf16=False)
    out = pretrain(cfg, run_dir, tmp_path / "out", progress=False)
    assert json.loads((run_dir / "state.json").read_text())["step"] == step + 1
    assert (out / "open_clip_model.safetensors").exists()


def test_init_from_continues_a_trained_model(tmp_path):
    """Continued pretraining (``init_from``) starts from the given model, not random weights: at a
    negligible learning rate the export is the shipped model again; a missing folder is named."""
    from workbench.config import DEFAULT_MODEL, MODELS_DIR

    shipped = MODELS_DIR / DEFAULT_MODEL
    cfg = PretrainConfig(**{**TINY, "steps": 1, "lr": 1e-12, "orientation": 0.5}, init_from=str(shipped))
    out = pretrain(cfg, tmp_path / "run", tmp_path / "model", progress=False)
    a, b = _weights(shipped), _weights(out)
    for k in a:
        torch.testing.assert_close(a[k].float(), b[k].float(), msg=k)
    with pytest.raises(FileNotFoundError, match="no open_clip_model.safetensors"):
        pretrain(PretrainConfig(**TINY, init_from=str(tmp_path / "nowhere")), tmp_path / "r2", tmp_path / "m2",
                 progress=False)


@pytest.mark.skipif(torch.cuda.is_available(), reason="the message is for machines without CUDA")
def test_cuda_without_a_gpu_fails_at_once(tmp_path):
    with pytest.raises(RuntimeError, match="no CUDA GPU"):
        pretrain(PretrainConfig(**TINY, device="cuda"), tmp_path / "run", tmp_path / "model", progress=False)


@pytest.mark.gpu
def test_gpu_pretraining_resumes_and_exports_a_cpu_loadable_model(tmp_path):
    cfg = PretrainConfig(**{**TINY, "bf16": True}, device="cuda")
    assert pretrain(cfg, tmp_path / "run", tmp_path / "out", progress=False, max_steps_this_run=3) is None
    out = pretrain(cfg, tmp_path / "run", tmp_path / "out", progress=False)
    log = [json.loads(line) for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == [2, 4, 6] and all(math.isfinite(r["loss"]) for r in log)
    from workbench import load_backbone

    assert load_backbone(f"local-dir:{out}").embed_dim == 128


def test_rendering_workers_do_not_change_what_training_sees(tmp_path):
    """Batches rendered ahead by DataLoader workers (what a GPU run uses) train the same weights."""
    inline = pretrain(PretrainConfig(**{**TINY, "steps": 3}, render_workers=0), tmp_path / "a", tmp_path / "a_out",
                      progress=False)
    ahead = pretrain(PretrainConfig(**{**TINY, "steps": 3}, render_workers=2), tmp_path / "b", tmp_path / "b_out",
                     progress=False)
    a, b = _weights(inline), _weights(ahead)
    for k in a:
        torch.testing.assert_close(a[k], b[k], msg=k)


def test_exposure_share_of_pretraining_batches():
    """``exposure``: that share of each batch are long-exposure event stills, against their
    reversed captions; without it the batch is exactly the shipped recipe's."""
    from workbench.backbones.pretrain import make_batch
    from workbench.data.shapes.exposures import exposure_stills

    plain = make_batch(PretrainConfig(batch_size=20), 3, 64, (0.5,) * 3, (0.25,) * 3)
    mixed = make_batch(PretrainConfig(batch_size=20, exposure=0.25), 3, 64, (0.5,) * 3, (0.25,) * 3)
    assert mixed[0].shape == plain[0].shape == (20, 3, 64, 64)
    from workbench.data.shapes import sample_images

    shipped = sample_images((0, 3), 20, focus=True)  # the default recipe's batch at step 3
    assert plain[1] == [it.caption for it in shipped]
    stills = exposure_stills((0, 3, 3), 5)
    assert mixed[1][-5:] == [s.caption for s in stills] and mixed[2][-5:] == [s.hard_negative for s in stills]
    assert not set(mixed[1][-5:]) & set(plain[1])
