"""One training loop for every strategy x task, on Hugging Face ``accelerate``.

The same code trains on one CPU (today) and on many GPUs or machines (``accelerate launch`` /
``torchrun``): ``accelerate`` wraps the model for DDP, scales the loss for AMP and gathers. The
loop is contrastive (video <-> text InfoNCE, as CLIP4Clip and every strategy here train), with an
explicit *hard negative* option: batches hold time-reversed twins side by side and each clip's
sibling captions (same object, another event) as extra negatives, and an explicit twin term
(:func:`twin_loss`) scores each clip against exactly its twin's caption. In-batch contrast alone
rarely pits a clip against a caption that differs only in direction or order (DESIGN §4).

Frozen feature-level strategies train on cached frame features (``data/features.py``) and never
run the backbone; a frozen strategy that reads the ILFM's insides (side-tuning's tokens:
``frozen_backbone_pass``) gets its frozen pass run once per clip before the first step
(:func:`frozen_pass_of`; several processes share it out, each encoding 1/world of the clips);
frozen text towers are encoded once. Checkpoints hold only the trainable
parameters (safetensors) and the optimiser state, written atomically (by the main process); a
killed run resumes from its last checkpoint.

Several processes train exactly as one does (the same parameters up to floating-point summation
order; ``tests/test_train.py`` checks 2 CPU processes against 1). ``TrainConfig.batch_size`` is
the *global* batch: every process draws the same batch from an rng seeded by (seed, step) alone,
encodes only its own contiguous shard of the batch positions (twins may fall on different
processes), and all-gathers the video embeddings, so the contrastive loss sees the whole batch,
not a per-process one (a per-process InfoNCE would see fewer negatives and rarely a clip's twin).
The gather carries no gradient for the other processes' rows (open_clip's
``gather_features(local_loss=False, gather_with_grad=False)``): each process back-propagates only
into its own clips, scaled by ``world_size`` (:class:`_ScaleGrad`), so that DDP's *average* of
the processes' gradients is the one-process gradient. Every process encodes all of the batch's
texts (a trainable text side gets the full-batch gradient on each process; DDP's average keeps it).
A strategy's ``auxiliary_loss`` (distillation) reads the local shard's inputs: it runs per shard,
weighted by shard size / batch size, so the shards' terms add up to the one-process mean (it must
be a mean over the clips, as distillation's is; the logged loss sums the shares). No
strategy has BatchNorm (the distillation student uses GroupNorm), so no statistic depends on how
the batch is split.
"""
from __future__ import annotations

import ctypes
import json
import math
import re
import time
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, replace
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from tqdm.auto import tqdm

from .io import atomic_write


@dataclass
class TrainConfig:
    steps: int = 300                # optimiser steps (at most max_epochs passes over the data)
    max_epochs: float | None = None  # cap steps at this many passes over the data (None: no cap;
    #                                  the profiles' budgets set 50: bench.train_config)
    batch_size: int = 32            # clips per step, GLOBAL: split across processes, the loss sees all
    lr: float = 1e-3                # peak learning rate (AdamW), cosine decay after warm-up
    backbone_lr: float = 1e-5       # learning rate for parameters that belong to the ILFM itself
    weight_decay: float = 0.01
    warmup: int = 20                # linear warm-up steps
    hard_negatives: bool = True     # twins + sibling captions in every batch (see module docstring)
    twin_weight: float = 5.0        # weight of the explicit twin term (twin_loss; needs hard_negatives)
    twin_scale: float = 100.0       # its softmax scale
    seed: int = 0                   # data order and initialisation
    checkpoint_every: int = 100     # steps between atomic checkpoints (0: only at the end)
    amp: bool = True                # bf16 autocast on CUDA (CPU runs stay fp32: on the two-core build
    #                                 machine, without bf16 instructions, an st-adapter step took 61-67 s in
    #                                 CPU bf16 autocast against 3.1-3.3 s in fp32; with AMX, pixel-level steps
    #                                 gained 0.8-1.4x, benchmarks/bench_cpu_amp.py)
    flush_denormals: bool = True    # treat denormal floats as zero while training (denormals_flushed):
    #                                 on CPU they appear as training settles and each op on them is slow;
    #                                 side-evl's steps went from 0.11 to 0.5 s after ~600 steps without this
    #                                 (benchmarks/bench_denormals.py)


@dataclass
class RetrievalData:
    """Clips with one caption each, and the hard-negative structure ShapesWorld provides."""

    frames: torch.Tensor                    # uint8 [N,T,3,H,W] decoded clips
    captions: list[str]                     # caption of clip i
    twin: list[int | None]                  # index of clip i's time-reversed twin, if any
    negatives: list[list[str]] = field(default_factory=list)  # extra hard-negative captions per clip
    features: torch.Tensor | None = None    # cached frozen frame features [N,T,D], if computed

    def __len__(self) -> int:
        return len(self.captions)

    def subset(self, index: list[int]) -> "RetrievalData":
        where = {old: new for new, old in enumerate(index)}
        return RetrievalData(self.frames[index], [self.captions[i] for i in index],
                             [where.get(self.twin[i]) if self.twin[i] is not None else None for i in index],
                             [self.negatives[i] for i in index] if self.negatives else [],
                             None if self.features is None else self.features[index])


def sample_batch(data: RetrievalData, batch_size: int, rng: np.random.Generator,
                 hard_negatives: bool) -> tuple[list[int], list[str]]:
    """Clip indices for one step, and the extra negative captions.

    With hard negatives, half the batch are anchors and the other half their twins (or random
    clips where a clip has none), and each anchor brings one sibling caption as a negative.
    """
    n = len(data)
    if not hard_negatives:
        return list(rng.choice(n, size=min(batch_size, n), replace=False)), []
    anchors = rng.choice(n, size=min(max(1, batch_size // 2), n), replace=False)
    index, extra = [], []
    for a in anchors:
        index.append(int(a))
        if data.twin[a] is not None:
            index.append(int(data.twin[a]))
        if data.negatives and data.negatives[a]:
            extra.append(data.negatives[a][int(rng.integers(len(data.negatives[a])))])
    index = list(dict.fromkeys(index))[:batch_size]
    return index, extra


def batch_texts(captions: list[str], extra: list[str]) -> list[str]:
    """The distinct texts of a batch: its captions first, then the extra negatives."""
    return list(dict.fromkeys(captions + extra))


def contrastive_loss(video: torch.Tensor, text: torch.Tensor, texts: list[str], captions: list[str],
                     scale: float) -> torch.Tensor:
    """Symmetric InfoNCE with several clips per caption allowed and extra text negatives.

    video: [B,D] normalised clips; text: [U,D] normalised embeddings of ``texts`` (distinct; the
    batch's captions plus extra negatives). A clip's target is its caption's column; a caption's
    targets are all clips that carry it (uniformly), so identical captions are never pushed apart.
    """
    column = {t: i for i, t in enumerate(texts)}
    logits = scale * video @ text.t()                          # [B,U]
    targets = torch.tensor([column[c] for c in captions], device=video.device)
    v2t = F.cross_entropy(logits, targets)
    positives = torch.zeros(len(texts), len(captions), device=video.device)
    positives[targets, torch.arange(len(captions), device=video.device)] = 1.0
    used = positives.sum(1) > 0                                # captions present in the batch
    t2v_targets = positives[used] / positives[used].sum(1, keepdim=True)
    t2v = torch.sum(-t2v_targets * F.log_softmax(logits.t()[used], dim=1), dim=1).mean()
    return (v2t + t2v) / 2


def twin_loss(video: torch.Tensor, text: torch.Tensor, texts: list[str], captions: list[str],
              pairs: list[tuple[int, int]], scale: float) -> torch.Tensor | None:
    """Each clip of a time-reversed twin pair against exactly its twin's caption.

    ``pairs`` are batch positions ``(p, q)`` of twins. For clip p: a two-way softmax over
    (its caption, its twin's caption). In the batch-wide InfoNCE that choice is one term among
    dozens and its gradient is small while twins still embed alike (a symmetric start: the
    clips tie and so do, nearly, their captions); here it is the whole loss.
    """
    if not pairs:
        return None
    column = {t: i for i, t in enumerate(texts)}
    own = torch.tensor([column[captions[p]] for p, q in pairs] + [column[captions[q]] for p, q in pairs],
                       device=video.device)
    other = torch.tensor([column[captions[q]] for p, q in pairs] + [column[captions[p]] for p, q in pairs],
                         device=video.device)
    clips = torch.tensor([p for p, _ in pairs] + [q for _, q in pairs], device=video.device)
    v = video[clips]
    logits = scale * torch.stack([(v * text[own]).sum(-1), (v * text[other]).sum(-1)], dim=1)
    return F.cross_entropy(logits, torch.zeros(len(clips), dtype=torch.long, device=video.device))


def twin_pairs(data: "RetrievalData", index: list[int]) -> list[tuple[int, int]]:
    """Batch positions (p, q), p < q, of clips that are each other's twin with different captions."""
    where = {clip: pos for pos, clip in enumerate(index)}
    return [(p, where[data.twin[c]]) for p, c in enumerate(index)
            if data.twin[c] is not None and where.get(data.twin[c], -1) > p
            and data.captions[c] != data.captions[data.twin[c]]]


class _ScaleGrad(torch.autograd.Function):
    """Identity forward (bit for bit); the backward multiplies the gradient by ``factor``."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, factor: float) -> torch.Tensor:
        ctx.factor = factor
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        return grad * ctx.factor, None


def _shard(n: int, rank: int, world: int) -> slice:
    """Process ``rank``'s batch positions: contiguous, sizes differ by at most one, in rank order."""
    base, extra = divmod(n, world)
    start = rank * base + min(rank, extra)
    return slice(start, start + base + (rank < extra))


def gather_batch(local: torch.Tensor, n: int, accelerator) -> torch.Tensor:
    """Every process's shard of a global batch of ``n`` rows, in batch order: ``[n, ...]``.

    The other processes' rows are constants; this process's rows are ``local`` itself with its
    gradient multiplied by the number of processes. Every process computes the same full-batch
    loss L, so process r back-propagates ``world * dL/dv_i`` into its own clips i; DDP averages
    (divides the sum by ``world``), which leaves ``sum_i dL/dv_i dv_i/dθ``: the one-process
    gradient. Shards are padded to equal size for ``all_gather`` (they differ by at most one).
    """
    world, rank = accelerator.num_processes, accelerator.process_index
    parts = _all_gather_rows(local.detach(), [len(range(n)[_shard(n, r, world)]) for r in range(world)])
    return torch.cat([_ScaleGrad.apply(local, float(world)) if r == rank else part for r, part in enumerate(parts)])


def _all_gather_rows(local: torch.Tensor, sizes: list[int]) -> list[torch.Tensor]:
    """Every process's ``local`` rows, given how many each holds (``sizes``, the same list on every
    process): padded to equal size for ``all_gather``, then cut back. No gradient flows."""
    padded = local.new_zeros(max(sizes), *local.shape[1:])
    rows = min(len(local), len(padded))
    padded[:rows] = local[:rows]
    parts = [torch.empty_like(padded) for _ in sizes]
    torch.distributed.all_gather(parts, padded)
    return [part[:size] for part, size in zip(parts, sizes)]


def sized_to(cfg: TrainConfig, num_items: int) -> TrainConfig:
    """``cfg`` with its steps capped at ``max_epochs`` passes over ``num_items`` pairs.

    Profiles give one step budget per input level, sized for ShapesWorld retrieval (4,000 steps
    of 32 = 20 epochs of 6,400 clips at ``cpu``); the grounding moments are 183, and 4,000 steps
    over them (700 epochs) overfit: R1@0.5 with the dense head fell from 45.8 at 300 steps to
    33.9 at 1,000 and 25.4 at 4,000 (README, Grounding)."""
    if not cfg.max_epochs or num_items <= 0:
        return cfg
    cap = max(1, math.ceil(cfg.max_epochs * num_items / cfg.batch_size))
    return replace(cfg, steps=min(cfg.steps, cap))


def _lr_factor(cfg: TrainConfig, step: int) -> float:
    if step < cfg.warmup:
        return (step + 1) / cfg.warmup
    progress = (step - cfg.warmup) / max(1, cfg.steps - cfg.warmup)
    return 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))


def build_optimizer(model, cfg: TrainConfig) -> torch.optim.Optimizer:
    """AdamW; the ILFM's own pretrained weights get the small ``backbone_lr``
    (``model.is_pretrained_weight``), new modules the full ``lr``."""
    groups: dict[str, list] = {"new": [], "backbone": []}
    for name, p in model.named_parameters():
        if p.requires_grad:
            groups["backbone" if model.is_pretrained_weight(name) else "new"].append(p)
    params = [{"params": groups["new"], "lr": cfg.lr, "base_lr": cfg.lr},
              {"params": groups["backbone"], "lr": cfg.backbone_lr, "base_lr": cfg.backbone_lr}]
    return torch.optim.AdamW([g for g in params if g["params"]], weight_decay=cfg.weight_decay)


def trainable_state(model) -> dict[str, torch.Tensor]:
    names = {id(p) for p in model.trainable_parameters()}
    return {n: p.detach().cpu().contiguous() for n, p in model.named_parameters() if id(p) in names}


def save_checkpoint(run_dir: Path, model, optimizer, state: dict) -> None:
    atomic_write(run_dir / "trainable.safetensors", lambda p: save_file(trainable_state(model), p))
    atomic_write(run_dir / "optimizer.pt", lambda p: torch.save(optimizer.state_dict(), p))
    atomic_write(run_dir / "state.json", lambda p: Path(p).write_text(json.dumps(state)))  # last: marks complete


def load_trainable(model, path: Path) -> None:
    """Load a strategy's trained parameters (safetensors) into a freshly created strategy."""
    missing = set(trainable_state(model))
    state = load_file(str(path))
    model.load_state_dict(state, strict=False)
    unknown = set(state) - missing
    if unknown:
        raise ValueError(f"{path}: parameters not in this strategy: {sorted(unknown)[:5]}")


def _resume(run_dir: Path | None, model, optimizer) -> dict:
    if run_dir is None or not (run_dir / "state.json").exists():
        return {"step": 0, "wall_s": 0.0, "losses": []}
    load_trainable(model, run_dir / "trainable.safetensors")
    optimizer.load_state_dict(torch.load(run_dir / "optimizer.pt", weights_only=True))
    return json.loads((run_dir / "state.json").read_text())


def flushing_denormals() -> bool:
    """Whether this thread now treats denormal floats as zero. PyTorch can set that
    (``torch.set_flush_denormal``) but not read it, so a denormal result tells."""
    return (torch.tensor(torch.finfo(torch.float32).tiny) / 2).item() == 0.0


def on_every_cpu_thread(fn: Callable[[], Any]) -> list[Any]:
    """Run ``fn()`` on each thread of PyTorch's OpenMP pool, the calling thread among them, and
    return what each gave; only the calling thread where the pool cannot be reached (a build
    without GNU-compatible OpenMP). For per-thread CPU state such as flush-to-zero: each thread
    has its own MXCSR register, so ``torch.set_flush_denormal`` on the main thread leaves the
    pool's other threads, which run their share of every large matmul, on the slow path
    (``benchmarks/bench_denormals.py``, two threads: 146 ms a step flushed on the main thread
    only, 54 ms flushed on both, 277 ms on neither)."""
    gomp = _openmp_runtime()
    if gomp is None:
        return [fn()]
    results, errors = [], []

    def each(_) -> None:
        try:
            results.append(fn())
        except BaseException as error:  # an exception cannot cross into C: re-raised below
            errors.append(error)

    callback = _GOMP_FN(each)
    gomp.GOMP_parallel(callback, None, 0, 0)  # 0 threads: the pool's size (torch.get_num_threads)
    if errors:
        raise errors[0]
    return results


_GOMP_FN = ctypes.CFUNCTYPE(None, ctypes.c_void_p)


@lru_cache(maxsize=1)
def _openmp_runtime():
    """The OpenMP runtime this process loaded for PyTorch (GNU libgomp, or LLVM / Intel's, which
    export the same entry point), found among its mapped libraries; None if there is none."""
    try:
        maps = Path("/proc/self/maps").read_text().split()
    except OSError:
        return None
    paths = [p for p in maps if p.startswith("/") and re.search(r"lib(gomp|iomp5|omp)[^/]*\.so", p)]
    for path in dict.fromkeys(paths):
        try:
            lib = ctypes.CDLL(path)
            lib.GOMP_parallel.argtypes = [_GOMP_FN, ctypes.c_void_p, ctypes.c_uint, ctypes.c_uint]
            lib.GOMP_parallel.restype = None
            return lib
        except (OSError, AttributeError):
            continue
    return None


@contextmanager
def denormals_flushed(on: bool = True):
    """Treat denormal floats (below 1.2e-38) as zero inside the block, on every thread PyTorch
    computes with (:func:`on_every_cpu_thread`), and restore the calling thread's setting on all
    of them after it: the CPU's flag is global state, which other code (e.g. hypothesis) checks.
    A CPU that cannot flush ignores it."""
    before = flushing_denormals()
    on_every_cpu_thread(lambda: torch.set_flush_denormal(on))
    try:
        yield
    finally:
        on_every_cpu_thread(lambda: torch.set_flush_denormal(before))


def train_retrieval(model, data: RetrievalData, cfg: TrainConfig, run_dir: Path | None = None,
                    accelerator=None, progress: bool = True,
                    max_steps_this_run: int | None = None) -> dict:
    """Train ``model`` on clip-caption pairs; returns {"steps", "wall_s", "losses"}.

    Feature-level strategies read ``data.features`` (compute them with
    :class:`workbench.data.features.FeatureCache`); pixel-level ones read ``data.frames``.
    With ``run_dir`` the run checkpoints there and resumes from it. ``max_steps_this_run``
    time-boxes one call: it stops as a kill would, and the next call resumes. Denormal floats
    count as zero while it runs (``cfg.flush_denormals``: :func:`denormals_flushed`).
    """
    with denormals_flushed(cfg.flush_denormals):
        return _train_retrieval(model, data, cfg, run_dir, accelerator, progress, max_steps_this_run)


def _train_retrieval(model, data: RetrievalData, cfg: TrainConfig, run_dir: Path | None,
                     accelerator, progress: bool, max_steps_this_run: int | None) -> dict:
    from accelerate import Accelerator

    cfg = sized_to(cfg, len(data))
    accelerator = accelerator or Accelerator(cpu=not torch.cuda.is_available(),
                                             mixed_precision="bf16" if cfg.amp and torch.cuda.is_available() else "no")
    torch.manual_seed(cfg.seed)
    if not model.trainable_parameters():
        return {"steps": 0, "wall_s": 0.0, "losses": []}
    optimizer = build_optimizer(model, cfg)
    state = _resume(run_dir, model, optimizer)
    model, optimizer = accelerator.prepare(model, optimizer)
    core = accelerator.unwrap_model(model)
    world = accelerator.num_processes
    use_features = core.input_level == "features"
    if use_features and data.features is None:
        raise ValueError(f"{core.name} trains on cached frame features: set data.features first")
    # a pixel-level strategy whose ILFM features are frozen reads them from the cache (base.py)
    beside_pixels = not use_features and core.frozen_frame_features and data.features is not None
    once = not use_features and core.frozen_backbone_pass     # the frozen pass, computed below
    text_cache = _frozen_text_encoder(core) if core.text_is_frozen else None
    model.train()
    bar = tqdm(range(state["step"], cfg.steps), initial=state["step"], total=cfg.steps,
               disable=not progress or not accelerator.is_main_process, desc=f"train {core.name}")
    started = time.perf_counter() - state["wall_s"]
    stop_at = state["step"] + max_steps_this_run if max_steps_this_run is not None else cfg.steps
    if once and state["step"] < stop_at:   # inside the timed run: this pass is part of training's cost
        frozen = frozen_pass_of(core, data.frames, accelerator.device, progress and accelerator.is_main_process,
                                accelerator=accelerator)
    for step in bar:
        if step >= stop_at:
            break
        for group in optimizer.param_groups:
            group["lr"] = group["base_lr"] * _lr_factor(cfg, step)
        # The same global batch on every process. The trailing 0 was the process index: kept so
        # one-process runs draw the batches they always drew.
        rng = np.random.default_rng((cfg.seed, step, 0))
        index, extra = sample_batch(data, cfg.batch_size, rng, cfg.hard_negatives)
        captions = [data.captions[i] for i in index]
        texts = batch_texts(captions, extra)
        if len(index) < world:
            raise ValueError(f"a batch of {len(index)} clips cannot be split across {world} processes")
        mine = _shard(len(index), accelerator.process_index, world) if world > 1 else slice(None)
        local = index[mine]
        with accelerator.autocast():
            # uint8 frames travel to the device and are resized / normalised there
            if use_features:
                inputs = data.features[local].to(accelerator.device)
            elif once:
                inputs = tuple(part[local].to(accelerator.device) for part in frozen)
            else:
                inputs = core.backbone.preprocess(data.frames[local].to(accelerator.device))
            cached = data.features[local].to(accelerator.device) if beside_pixels else None
            # Through the (DDP-wrapped) forward, so gradients are synchronised across processes.
            if text_cache is not None:
                video, text = model(inputs, features=cached), text_cache(texts)
            else:
                video, text = model(inputs, texts, features=cached)
            if world > 1:
                video = gather_batch(video, len(index), accelerator)
            loss = contrastive_loss(video, text, texts, captions, core.logit_scale)
            if cfg.hard_negatives and cfg.twin_weight:
                extra_twin = twin_loss(video, text, texts, captions, twin_pairs(data, index), cfg.twin_scale)
                if extra_twin is not None:
                    loss = loss + cfg.twin_weight * extra_twin
            logged = loss.detach()
            # e.g. distillation toward a teacher; on the local shard (its inputs are local)
            extra_loss = core.auxiliary_loss(inputs, video[mine] if world > 1 else video, features=cached)
            if extra_loss is not None:
                if world > 1:  # this shard's share of the batch mean; the shares add up across processes
                    extra_loss = extra_loss * (len(local) / len(index))
                    share = extra_loss.detach().clone()
                    torch.distributed.all_reduce(share)
                    logged = logged + share
                else:
                    logged = logged + extra_loss.detach()
                loss = loss + extra_loss
        optimizer.zero_grad(set_to_none=True)
        accelerator.backward(loss)
        accelerator.clip_grad_norm_(core.trainable_parameters(), 1.0)
        optimizer.step()
        state["losses"].append(round(logged.item(), 5))
        bar.set_postfix(loss=f"{logged.item():.3f}")
        done = step + 1
        if run_dir is not None and accelerator.is_main_process and (
                done == cfg.steps or (cfg.checkpoint_every and done % cfg.checkpoint_every == 0)):
            state.update(step=done, wall_s=time.perf_counter() - started)
            save_checkpoint(run_dir, core, optimizer, state)
    bar.close()
    final = min(stop_at, cfg.steps)
    if state["step"] != final:   # else the last checkpoint recorded it: a reload reports the same time
        state.update(step=final, wall_s=time.perf_counter() - started)
    return {"steps": state["step"], "wall_s": state["wall_s"], "losses": state["losses"]}


@torch.no_grad()
def frozen_pass_of(model, frames: torch.Tensor, device, progress: bool = False,
                   batch_size: int = 32, accelerator=None) -> tuple[torch.Tensor, ...]:
    """A ``frozen_backbone_pass`` strategy's :meth:`frozen_pass` over all uint8 clips [N,T,3,H,W],
    batch by batch on ``device``, kept in host memory: training indexes it instead of re-encoding.

    With several processes (``accelerator``), the batches are dealt out in turn (process r encodes
    batches r, r + world, ...) and each round's outputs are all-gathered, so every process ends
    with the whole pass in clip order, having encoded 1/world of it (one process: every batch, in order)."""
    world = accelerator.num_processes if accelerator is not None else 1
    rank = accelerator.process_index if accelerator is not None else 0
    starts = list(range(0, len(frames), batch_size))

    def encode(start: int) -> tuple[torch.Tensor, ...]:
        pixels = model.backbone.preprocess(frames[start:start + batch_size].to(device))
        return model.frozen_pass(pixels.to(model.backbone.dtype))

    parts: list[tuple[torch.Tensor, ...]] = []
    rounds = range(0, len(starts), world)
    for first in tqdm(rounds, disable=not progress, desc=f"frozen pass {model.name}"):
        group = starts[first:first + world]        # this round's batches, one per process
        if world == 1:
            parts.append(tuple(x.cpu() for x in encode(group[0])))
            continue
        # a process left without a batch in the last round encodes the round's first (then dropped)
        mine = encode(group[rank] if rank < len(group) else group[0])
        sizes = [len(frames[s:s + batch_size]) for s in group] + [0] * (world - len(group))
        parts.append(tuple(torch.cat(_all_gather_rows(x, sizes)).cpu() for x in mine))
    return tuple(torch.cat(column) for column in zip(*parts))


def _frozen_text_encoder(model):
    """Encode each distinct text once: a frozen text tower gives the same answer every time."""
    cache: dict[str, torch.Tensor] = {}

    def encode(texts: list[str]) -> torch.Tensor:
        missing = [t for t in texts if t not in cache]
        if missing:
            with torch.no_grad():
                for t, f in zip(missing, model.encode_text(missing)):
                    cache[t] = f
        return torch.stack([cache[t] for t in texts])

    return encode


def config_dict(cfg: TrainConfig) -> dict:
    return asdict(cfg)
