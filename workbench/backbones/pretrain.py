"""Pretrain the embedded tiny CLIP on ShapesWorld images (`workbench pretrain`).

A real open_clip model (config ``configs/shapes-clip-tiny.json``) trained with open_clip's own
contrastive loss (``open_clip.ClipLoss``), plus a NegCLIP-style hard-negative term (Yuksekgonul et
al., "When and why vision-language models behave like bags-of-words", ICLR 2023): each image's
caption is contrasted with a caption wrong in one detail, which is what teaches relations and
word order that in-batch contrast alone ignores.

Optionally (``phase_weight``) a labelled term teaches the image tower where a spinnable shape stands
within its symmetry period (``images.phase_stills``): a linear head on the normalised image
embedding regresses (cos, sin) of the phase. Spin direction is the order of those phases, and
captioned orientation stills alone teach it too slowly (README, benchmarks/results/spin-probes/).
The head is trained and checkpointed with the model but not exported: the model stays a plain CLIP.

Optionally (``exposure``) a share of each batch are long-exposure stills of events
(``exposures.exposure_stills``), captioned with motion words and contrasted with the
time-reversed caption, the way a web-trained CLIP learns motion words from photographs.

Batches are rendered on the fly, deterministically from ``(seed, step)``, so a run resumed after a
kill sees exactly the batches it would have seen. Checkpoints are written atomically every
``checkpoint_every`` steps; the finished model is exported in open_clip's ``local-dir:`` layout.
"""
from __future__ import annotations

import json
import math
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from ..config import CONFIGS_DIR, DEFAULT_MODEL, MODELS_DIR, cpu_has_fast_bf16, go_offline

go_offline()
import numpy as np  # noqa: E402
import open_clip  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from safetensors.torch import load_file, save_file  # noqa: E402
from tqdm.auto import tqdm  # noqa: E402

from ..data.shapes import sample_images  # noqa: E402
from ..data.shapes.exposures import exposure_stills  # noqa: E402
from ..data.shapes.images import phase_stills  # noqa: E402
from ..io import atomic_write  # noqa: E402


@dataclass
class PretrainConfig:
    model: str = DEFAULT_MODEL          # open_clip config name (ours are in backbones/configs/)
    steps: int = 1400                   # optimiser steps
    focus_from: int = 0                 # position-heavy batches ("focus", images.py) from this step on
    shape_focus_from: int = 600         # shape hard negatives (images.py) from this step on
    batch_size: int = 256               # images per step
    lr: float = 1e-3                    # peak AdamW learning rate
    warmup: int = 100                   # linear warm-up steps, then cosine decay to 10%
    weight_decay: float = 0.1           # AdamW weight decay (not on gains, biases, embeddings)
    hard_negative_weight: float = 1.0   # weight of the NegCLIP term (0 = plain CLIP training)
    seed: int = 0                       # data and init seed
    checkpoint_every: int = 100         # steps between atomic checkpoints
    bf16: bool | None = None            # bf16 autocast; None: only where the CPU has bf16 instructions
    orientation: float = 0.0            # share of orientation stills (images.orientation_image)
    phase_weight: float = 0.0           # weight of the phase term (module docstring; 0 = off)
    phase_batch: int = 64               # phase stills per step, besides the captioned batch
    exposure: float = 0.0               # share of long-exposure event stills (exposures.py; 0 = none)
    init_from: str | None = None        # start from this local-dir model (continued pretraining)
    device: str = "cpu"                 # "cuda": batches are still rendered on the CPU...
    render_workers: int | None = None   # ...by this many DataLoader workers; None: 0 on CPU, up to 8 on GPU


def create_tiny_clip(name: str = DEFAULT_MODEL):
    """A randomly initialised open_clip model from one of our JSON configs, and its tokenizer."""
    open_clip.add_model_config(CONFIGS_DIR)
    model = open_clip.create_model(name, pretrained=None)
    return model, open_clip.get_tokenizer(name)


_PHASE_STREAM = 1  # phase stills draw from (seed, step, 1), apart from the captioned batch's (seed, step)
_PHASE_HELD_OUT = 2  # ...and the held-out phase error's stills from (seed, 2)
_EXPOSURE_STREAM = 3  # exposure stills draw from (seed, step, 3)


def normalised(images: np.ndarray, mean, std) -> torch.Tensor:
    """uint8 [N,S,S,3] -> float [N,3,S,S] normalised as the model expects."""
    pixels = torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255
    return (pixels - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1)


def make_batch(cfg: PretrainConfig, step: int, image_size: int, mean, std):
    """Images [B,3,S,S], captions and hard negatives; then, with ``phase_weight``, phase stills
    [P,3,S,S] and their (cos, sin) targets [P,2] (else None, None)."""
    exposed = round(cfg.exposure * cfg.batch_size)
    items = sample_images((cfg.seed, step), cfg.batch_size - exposed, size_px=image_size,
                          focus=step >= cfg.focus_from, shape_focus=step >= cfg.shape_focus_from,
                          orientation=cfg.orientation)
    if exposed:
        items += exposure_stills((cfg.seed, step, _EXPOSURE_STREAM), exposed, size_px=image_size)
    pixels = normalised(np.stack([it.image for it in items]), mean, std)
    phase_pixels = phase_targets = None
    if cfg.phase_weight > 0:
        images, targets = phase_stills((cfg.seed, step, _PHASE_STREAM), cfg.phase_batch, size_px=image_size)
        phase_pixels, phase_targets = normalised(images, mean, std), torch.from_numpy(targets)
    return pixels, [it.caption for it in items], [it.hard_negative for it in items], phase_pixels, phase_targets


class _Batches(torch.utils.data.Dataset):
    """The training batches of ``steps``, one item each: a batch depends only on ``(seed, step)``,
    so DataLoader workers can render ahead without changing what training sees."""

    def __init__(self, cfg: PretrainConfig, steps: range, image_size: int, mean, std) -> None:
        self.cfg, self.steps, self.image_size, self.mean, self.std = cfg, steps, image_size, mean, std

    def __len__(self) -> int:
        return len(self.steps)

    def __getitem__(self, i: int):
        return make_batch(self.cfg, self.steps[i], self.image_size, self.mean, self.std)


def contrastive_loss(model, loss_fn, pixels, captions, negatives, tokenizer, hard_weight: float):
    """open_clip's symmetric InfoNCE, plus image->(caption vs its hard negative) cross-entropy."""
    texts = tokenizer(captions + negatives).to(pixels.device)
    image_f = F.normalize(model.encode_image(pixels), dim=-1)
    text_f = F.normalize(model.encode_text(texts), dim=-1)
    pos_f, neg_f = text_f[: len(captions)], text_f[len(captions):]
    scale = model.logit_scale.exp()
    loss = loss_fn(image_f, pos_f, scale)
    if hard_weight > 0:
        pair = scale * torch.stack([(image_f * pos_f).sum(-1), (image_f * neg_f).sum(-1)], dim=1)
        loss = loss + hard_weight * F.cross_entropy(pair, torch.zeros(len(captions), dtype=torch.long,
                                                                      device=pixels.device))
    return loss


def phase_error(predicted: torch.Tensor, target: torch.Tensor) -> float:
    """Mean angular error between predicted and true (cos, sin) phases, in symmetry periods
    (0 = exact; a head that guesses scores 0.25)."""
    error = torch.atan2(predicted[:, 1], predicted[:, 0]) - torch.atan2(target[:, 1], target[:, 0])
    return (torch.remainder(error + torch.pi, 2 * torch.pi) - torch.pi).abs().mean().item() / (2 * torch.pi)


def phase_prediction(model, head: torch.nn.Module, pixels: torch.Tensor) -> torch.Tensor:
    """The phase head on the normalised image embedding (scaled by 10, so a unit-norm input does
    not cap the head's output)."""
    return head(10 * F.normalize(model.encode_image(pixels), dim=-1))


def _lr_at(cfg: PretrainConfig, step: int) -> float:
    if step < cfg.warmup:
        return cfg.lr * (step + 1) / cfg.warmup
    progress = (step - cfg.warmup) / max(1, cfg.steps - cfg.warmup)
    return cfg.lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(1.0, progress))))


def _optimizer(model, cfg: PretrainConfig, head: torch.nn.Module | None = None) -> torch.optim.Optimizer:
    decay, no_decay = [], []
    named = list(model.named_parameters()) + (list(head.named_parameters("phase_head")) if head else [])
    for name, p in named:
        (no_decay if p.ndim < 2 or "embedding" in name or "logit_scale" in name else decay).append(p)
    return torch.optim.AdamW([{"params": decay, "weight_decay": cfg.weight_decay},
                              {"params": no_decay, "weight_decay": 0.0}],
                             lr=cfg.lr, betas=(0.9, 0.98), eps=1e-6)


def _save_checkpoint(run_dir: Path, model, optimizer, state: dict, head=None) -> None:
    atomic_write(run_dir / "model.safetensors", lambda p: save_file(model.state_dict(), p))
    if head is not None:
        atomic_write(run_dir / "phase_head.safetensors", lambda p: save_file(head.state_dict(), p))
    atomic_write(run_dir / "optimizer.pt", lambda p: torch.save(optimizer.state_dict(), p))
    # state.json last: it is what marks the checkpoint complete
    atomic_write(run_dir / "state.json", lambda p: Path(p).write_text(json.dumps(state, indent=1)))


def _load_checkpoint(run_dir: Path, model, optimizer, head=None) -> dict:
    state_file = run_dir / "state.json"
    if not state_file.exists():
        return {"step": 0, "wall_s": 0.0}
    model.load_state_dict(load_file(str(run_dir / "model.safetensors")))
    if head is not None:
        head.load_state_dict(load_file(str(run_dir / "phase_head.safetensors")))
    optimizer.load_state_dict(torch.load(run_dir / "optimizer.pt", weights_only=True))
    return json.loads(state_file.read_text())


def export_local_dir(model, tokenizer, name: str, out_dir: Path, extra: dict | None = None) -> Path:
    """Write open_clip's ``local-dir:`` layout (fp16 weights: half the file) plus training facts."""
    from .openclip import Backbone, save_backbone

    open_clip.add_model_config(CONFIGS_DIR)
    save_backbone(Backbone(model, tokenizer, name, None, open_clip.get_model_config(name)), out_dir,
                  dtype=torch.float16)
    if extra is not None:
        atomic_write(out_dir / "training.json", lambda p: Path(p).write_text(json.dumps(extra, indent=1)))
    return out_dir


def pretrain(cfg: PretrainConfig, run_dir: Path, export_dir: Path | None = None,
             progress: bool = True, max_steps_this_run: int | None = None) -> Path | None:
    """Train (resuming from ``run_dir`` if a checkpoint is there) and export the model.

    ``max_steps_this_run`` time-boxes one invocation (a laptop session, a CI job): it stops
    after that many steps without exporting, exactly as a kill would; the next call resumes from
    the last checkpoint. Returns the export folder, or None when stopped early.
    """
    torch.manual_seed(cfg.seed)
    device = torch.device(cfg.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(f"pretrain: device={cfg.device!r}, but PyTorch sees no CUDA GPU here")
    bf16 = (device.type == "cuda" or cpu_has_fast_bf16()) if cfg.bf16 is None else cfg.bf16
    model, tokenizer = create_tiny_clip(cfg.model)
    if cfg.init_from:
        weights = Path(cfg.init_from) / "open_clip_model.safetensors"
        if not weights.exists():
            raise FileNotFoundError(f"init_from={cfg.init_from!r}: no {weights.name} there (give a local-dir "
                                    "model folder, e.g. assets/models/shapes-clip-tiny)")
        model.load_state_dict({k: v.float() for k, v in load_file(str(weights)).items()})
    head = torch.nn.Linear(model.visual.output_dim, 2) if cfg.phase_weight > 0 else None
    model.to(device)
    if head is not None:
        head.to(device)
    optimizer = _optimizer(model, cfg, head)
    trained = list(model.parameters()) + (list(head.parameters()) if head is not None else [])
    state = _load_checkpoint(run_dir, model, optimizer, head)
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "config.json").write_text(json.dumps(asdict(cfg), indent=1))
    loss_fn = open_clip.ClipLoss()
    mean, std = model.visual.image_mean, model.visual.image_std
    size = model.visual.image_size[0] if isinstance(model.visual.image_size, tuple) else model.visual.image_size
    model.train()
    stop_at = cfg.steps if max_steps_this_run is None else min(cfg.steps, state["step"] + max_steps_this_run)
    steps = range(state["step"], stop_at)
    workers = cfg.render_workers
    if workers is None:
        workers = 0 if device.type == "cpu" else max(0, min(8, (os.cpu_count() or 1) - 1))
    batches = torch.utils.data.DataLoader(_Batches(cfg, steps, size, mean, std), batch_size=None,
                                          num_workers=workers, pin_memory=device.type == "cuda",
                                          prefetch_factor=4 if workers else None)
    bar = tqdm(zip(steps, batches), initial=state["step"], total=cfg.steps, disable=not progress,
               desc="pretrain")
    if head is not None:
        held_out = phase_stills((cfg.seed, _PHASE_HELD_OUT), 256, size_px=size)
        held_out = normalised(held_out[0], mean, std).to(device), torch.from_numpy(held_out[1]).to(device)
    started = time.perf_counter() - state["wall_s"]
    for step, (pixels, captions, negatives, phase_pixels, phase_targets) in bar:
        for group in optimizer.param_groups:
            group["lr"] = _lr_at(cfg, step)
        pixels = pixels.to(device, non_blocking=True)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            loss = contrastive_loss(model, loss_fn, pixels, captions, negatives, tokenizer,
                                    cfg.hard_negative_weight)
            if head is not None:
                predicted = phase_prediction(model, head, phase_pixels.to(device, non_blocking=True))
                loss = loss + cfg.phase_weight * F.mse_loss(predicted.float(), phase_targets.to(device))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(trained, 1.0)
        optimizer.step()
        with torch.no_grad():  # CLIP's clamp: temperature never below 1/100
            model.logit_scale.clamp_(0, math.log(100))
        bar.set_postfix(loss=f"{loss.item():.3f}")
        done = step + 1
        if done % cfg.checkpoint_every == 0 or done == cfg.steps:
            state = {"step": done, "wall_s": time.perf_counter() - started, "loss": loss.item()}
            if head is not None:  # held-out phase error: is the image tower learning the phase?
                model.eval()
                with torch.no_grad():
                    state["phase_error"] = phase_error(phase_prediction(model, head, held_out[0]).float(),
                                                       held_out[1])
                model.train()
            _save_checkpoint(run_dir, model, optimizer, state, head)
            with open(run_dir / "log.jsonl", "a") as log:
                log.write(json.dumps(state) + "\n")
    bar.close()
    if stop_at < cfg.steps:  # time-boxed: stop as a kill would, the next call resumes
        return None
    export_dir = export_dir or MODELS_DIR / cfg.model
    model.cpu()
    return export_local_dir(model, tokenizer, cfg.model, export_dir,
                            extra={"config": asdict(cfg), "wall_s": state["wall_s"],
                                   "final_loss": state.get("loss")})
