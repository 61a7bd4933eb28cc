"""Where and when does the model look for this query: attention maps per frame, for any strategy
built on an open_clip ViT.

Three methods, each giving one heatmap per frame over the patch grid, ``[T, rows, cols]``:

- ``"attention"``: raw attention of the CLS token to the patches in one block (one head, or the
  mean over heads). Query-independent: what the image tower attends to, not why.
- ``"rollout"``: attention rollout (Abnar & Zuidema, *Quantifying Attention Flow in
  Transformers*, ACL 2020): each block's head-averaged attention, mixed half-and-half with the
  identity for the residual connection and renormalised, multiplied from the first block up to
  ``layer``; the CLS row says how much each patch flows into the output. Query-independent.
- ``"relevancy"``: gradient-weighted relevancy (Chefer, Gur & Wolf, *Generic Attention-model
  Explainability for Interpreting Bi-Modal and Encoder-Decoder Transformers*, ICCV 2021): the
  query's score is the strategy's own video-text similarity; from the identity, every block from
  ``layer`` on adds ``mean_heads(relu(grad * attention)) @ R`` to the relevancy ``R``. It depends
  on the query and on the strategy (a temporal head weights the frames it cares about), so the
  maps also differ in strength between frames: *when* as well as *where*.

The attention probabilities come from :func:`workbench.backbones.taps.attention_weights`, which
keeps them in the autograd graph. A strategy is any :class:`~workbench.strategies.base.VideoTextModel`
(``create_strategy(name, backbone)``); a bare :class:`~workbench.backbones.openclip.Backbone` is
explained as mean pooling of its frames.
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from .backbones.taps import attention_weights, vision_tower

METHODS = ("attention", "rollout", "relevancy")


@dataclass
class Explanation:
    """Per-frame heatmaps and what made them."""

    maps: torch.Tensor        # [T, rows, cols] on the patch grid, >= 0 (raw scale; see normalized())
    method: str               # one of METHODS
    layer: int                # block index: the attention block, rollout's last, relevancy's first
    head: int | None          # attention head, or None for the mean over heads
    score: float | None       # the strategy's similarity of the video with the query (relevancy)

    def normalized(self, per_frame: bool = False) -> torch.Tensor:
        """Maps scaled to [0, 1]: jointly over all frames (keeps *when*), or each frame alone."""
        dims = (1, 2) if per_frame else (0, 1, 2)
        low = self.maps.amin(dim=dims, keepdim=True)
        span = (self.maps.amax(dim=dims, keepdim=True) - low).clamp(min=1e-12)
        return (self.maps - low) / span

    def upsampled(self, size: int, per_frame: bool = False) -> torch.Tensor:
        """[T, size, size] normalised maps, bilinearly resized to the frame size for overlays."""
        maps = self.normalized(per_frame)[:, None]
        return F.interpolate(maps, size=(size, size), mode="bilinear", align_corners=False)[:, 0]


def _as_strategy(model):
    """A VideoTextModel as given; a Backbone wrapped as mean pooling (nothing trained)."""
    if hasattr(model, "encode_video"):
        return model
    from .strategies import create_strategy

    flags = [(p, p.requires_grad) for p in model.parameters()]
    strategy = create_strategy("mean-pool", model)      # which freezes the backbone: undo that
    for p, flag in flags:
        p.requires_grad_(flag)
    return strategy


def _pixels(model, frames: torch.Tensor) -> torch.Tensor:
    """[T,3,H,W] uint8 (preprocessed here) or float (already preprocessed) -> float on the model's device."""
    if frames.ndim != 4 or frames.shape[1] != 3:
        raise ValueError(f"frames must be [T,3,H,W], got shape {tuple(frames.shape)}")
    backbone = model.backbone
    if frames.dtype == torch.uint8:
        frames = backbone.preprocess(frames)
    return frames.to(device=backbone.device, dtype=backbone.dtype)


def _pick_heads(weights: torch.Tensor, head: int | None) -> torch.Tensor:
    """[N, heads, L, L] -> [N, L, L]: one head, or their mean."""
    if head is None:
        return weights.mean(dim=1)
    if not -weights.shape[1] <= head < weights.shape[1]:
        raise ValueError(f"head {head} out of range: the model has {weights.shape[1]} heads")
    return weights[:, head]


def _layer_index(layer: int | None, blocks: int, default: int) -> int:
    index = default if layer is None else layer
    if not -blocks <= index < blocks:
        raise ValueError(f"layer {layer} out of range: the image tower has {blocks} blocks")
    return index % blocks


def rollout(weights: list[torch.Tensor], head: int | None = None, residual: float = 0.5) -> torch.Tensor:
    """Attention rollout ``[N, L, L]`` through the given blocks (first to last); every row sums to 1."""
    flow = None
    for w in weights:
        a = _pick_heads(w.float(), head)
        eye = torch.eye(a.shape[-1], dtype=a.dtype, device=a.device)
        a = residual * eye + (1 - residual) * a
        a = a / a.sum(dim=-1, keepdim=True)
        flow = a if flow is None else a @ flow
    return flow


def gradient_relevancy(weights: list[torch.Tensor], grads: list[torch.Tensor],
                       head: int | None = None) -> torch.Tensor:
    """Chefer et al.'s relevancy ``[N, L, L]``: R = I, then R += mean_heads(relu(grad*A)) @ R per block."""
    relevancy = None
    for w, g in zip(weights, grads):
        cam = _pick_heads((g.float() * w.float()).clamp(min=0), head)          # [N, L, L]
        if relevancy is None:
            relevancy = torch.eye(cam.shape[-1], dtype=cam.dtype, device=cam.device).expand_as(cam).clone()
        relevancy = relevancy + cam @ relevancy
    return relevancy


def _per_call(recorder) -> list[list[torch.Tensor]]:
    """Recorded attention per block, each a list over forward calls (the graph's own tensors)."""
    if not recorder.calls:
        raise RuntimeError("the strategy never ran its image tower on the frames")
    return [list(parts) for parts in zip(*recorder.calls)]


def explain(model, frames: torch.Tensor, query: str | None = None, method: str = "relevancy",
            layer: int | None = None, head: int | None = None) -> Explanation:
    """Heatmaps ``[T, rows, cols]`` of where the model looks in each frame (see the module docstring).

    ``model``: a strategy or a Backbone. ``frames``: ``[T,3,H,W]`` uint8 (preprocessed here) or
    float (preprocessed). ``query``: the sentence (needed by ``"relevancy"``). ``layer``: the block
    shown by ``"attention"`` (default: the last), the last block rolled out by ``"rollout"``
    (default: the last), the first block that adds relevancy in ``"relevancy"`` (default: 0, every
    block, as in the paper). ``head``: one attention head, or ``None`` for the mean.
    """
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; choose one of {METHODS}")
    if method == "relevancy":
        if not query:
            raise ValueError("method 'relevancy' explains a query's score: pass query='...'")
        return explain_queries(model, frames, [query], layer, head)[0]
    model = _as_strategy(model)
    blocks, grid = _tower_shape(model)
    used = _layer_index(layer, blocks, blocks - 1)
    with _recording(model, frames, need_grad=False) as (recorder, _):
        weights = [torch.cat(block).detach() for block in _per_call(recorder)]
    flow = _pick_heads(weights[used].float(), head) if method == "attention" else rollout(weights[:used + 1], head)
    return Explanation(_cls_maps(flow, frames.shape[0], grid), method, used, head, None)


def explain_queries(model, frames: torch.Tensor, queries: list[str], layer: int | None = None,
                    head: int | None = None) -> list[Explanation]:
    """Gradient relevancy of several queries about the same frames: one forward pass, one
    backward pass per query (what :func:`explain` does for one)."""
    model = _as_strategy(model)
    blocks, grid = _tower_shape(model)
    start = _layer_index(layer, blocks, 0)
    out = []
    with _recording(model, frames, need_grad=True) as (recorder, video):
        text = model.encode_text(list(queries)).to(video.dtype)                  # [Q,D]
        scores = (video * text).sum(-1)                                          # [Q]
        per_block = _per_call(recorder)
        flat = [w for block in per_block[start:] for w in block]
        calls = len(per_block[0])
        weights = [torch.cat(block).detach() for block in per_block[start:]]
        for q in range(len(queries)):
            grads = torch.autograd.grad(scores[q], flat, retain_graph=q + 1 < len(queries), allow_unused=True)
            grads = [torch.zeros_like(w) if g is None else g for w, g in zip(flat, grads)]
            grads = [torch.cat(grads[i * calls:(i + 1) * calls]) for i in range(len(weights))]
            flow = gradient_relevancy(weights, grads, head)
            out.append(Explanation(_cls_maps(flow, frames.shape[0], grid), "relevancy", start, head,
                                   float(scores[q].detach())))
    return out


def _tower_shape(model) -> tuple[int, tuple[int, int]]:
    visual = vision_tower(model.backbone)
    return len(visual.transformer.resblocks), tuple(visual.grid_size)


@contextlib.contextmanager
def _recording(model, frames: torch.Tensor, need_grad: bool):
    """Run the strategy on the frames as one video with attention recorded; yields
    ``(recorder, video embedding [1,D])``. With ``need_grad`` the attention joins the autograd graph."""
    was_training = model.training
    model.eval()
    pixels = _pixels(model, frames).detach().requires_grad_(need_grad)   # a leaf, so attention is in the graph
    try:
        with torch.set_grad_enabled(need_grad), attention_weights(model.backbone) as recorder:
            yield recorder, model.encode_video(pixels[None])
    finally:
        model.train(was_training)


def _cls_maps(flow: torch.Tensor, num_frames: int, grid: tuple[int, int]) -> torch.Tensor:
    """The CLS row of ``[N, L, L]`` over the patches, as ``[T, rows, cols]`` (>= 0)."""
    maps = flow[:, 0, 1:]
    if maps.shape[0] != num_frames:                     # a strategy that ran its tower more than once
        maps = maps.view(-1, num_frames, maps.shape[-1]).mean(0)
    return maps.reshape(num_frames, *grid).clamp(min=0).cpu()


def mass_inside(maps: torch.Tensor, boxes, image_size: int) -> torch.Tensor:
    """Share of each frame's map ``[T,rows,cols]`` on patches whose centre lies in its box
    ``[x1,y1,x2,y2]`` (pixels of a ``image_size`` frame): 1 = all of it inside."""
    t, rows, cols = maps.shape
    ys = (torch.arange(rows) + 0.5) * image_size / rows
    xs = (torch.arange(cols) + 0.5) * image_size / cols
    out = []
    for m, (x1, y1, x2, y2) in zip(maps, boxes):
        inside = ((xs[None] >= x1) & (xs[None] <= x2) & (ys[:, None] >= y1) & (ys[:, None] <= y2)).float()
        out.append((m * inside).sum() / m.sum().clamp(min=1e-12))
    return torch.stack(out)
