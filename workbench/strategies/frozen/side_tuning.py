"""Side-tuning: a small decoder *beside* the frozen ILFM reads its last layers' tokens (EVL).

Lin et al., *Frozen CLIP Models are Efficient Video Learners* (EVL, ECCV 2022). The image tower runs
under ``torch.no_grad`` — no autograd graph is ever built through it, so training costs one frozen
forward plus a light side network, and backbone memory does not grow with the batch's gradients.
From each of the last ``k`` blocks the side network takes every frame's tokens (CLS and patches,
via :func:`workbench.backbones.taps.layer_tokens`; ``token_pool=2`` averages the patch grid 2x2
first, four times cheaper to train but measured worse: below) and, stage by stage (one per
tapped block):

1. projects them into the side width (LayerNorm + Linear: blocks differ in scale; the tokens
   never change, so the frozen pass normalises them once and the LayerNorm's scale and shift
   are folded into the Linear: :meth:`SideStage.project`);
2. tells them when they happened: learnable frame position embeddings, and a depthwise temporal
   1-D convolution across frames at each token position (EVL's local temporal modules);
3. lets learnable query token(s) cross-attend to all frames' tokens at once (a pre-LN decoder
   block: open_clip's ``ResidualAttentionBlock`` with ``is_cross_attention=True``).

With ``cross_frame=True`` a stage also adds EVL's third temporal module, its *temporal cross
attention*: each patch's frozen query against the previous and next frames' frozen keys (the
block's own projections, :func:`~workbench.backbones.taps.queries_keys`), the attention summed per
patch offset (:func:`cross_frame_attention`, computed once in the frozen pass) and turned into a
feature by one learned, zero-initialised vector per offset and direction. Off by default: on the
tiny CLIP it did not help (83.1 % of held-out twins at the ``cpu`` profile, 602 s), because that
model's attention between patches is nearly uniform in every block (a patch's highest probability
over the next frame's 64 patches: 0.020-0.025; uniform 0.016), so where it goes says little about
where content went. EVL's ViT-B/16 CLIP attends by content; the option is for real weights.

The queries' final state goes through a zero-initialised projection into the joint space and is
added to the mean-pooled frame (CLS) features, as EVL adds its decoder output to CLIP's feature;
so the untrained strategy is zero-shot mean pooling exactly. Text tower frozen. The backbone is
only read, never changed: no copy of it is needed. ``frame_features`` stay the ILFM's own (the side
network gives one clip-level residual, not per-frame features).

Because the backbone never changes, what the side network reads is the same at every step:
``frozen_backbone_pass`` (``strategies/base.py``). Training runs :meth:`SideEVL.frozen_pass` once
per training clip (frame features and the tapped tokens, normalised and kept in float16: 0.8 MB
per 8-frame clip of the tiny CLIP) and then trains only the side network, with the profile's
``pass_train_steps`` at twice the default learning rate (``SideEVL.lr``);
:meth:`SideEVL.encode_video` is the same two calls, so training and evaluation see the same numbers.
The pass runs under bf16 autocast on a GPU or a CPU with bf16 instructions (``pass_bf16``): 2.2-2.8
times faster on the build machine's AMX, tokens within cosine 0.998 of the fp32 pass's.

Measured at the ``cpu`` profile (6,400 clips of 8 frames, two CPU cores, README "Strategy
comparison"): the pass takes about 3 minutes in fp32, 1.5-1.8 in bf16. Held-out twin accuracy:
51.1 % after the 150 pixel-level steps that re-encoding allowed in 10 minutes; with the side network
at half the image tower's width (the earlier default), 61.9 % after 700 steps on the pass and 88.1 %
after 4,000 (25 minutes). A quarter of the width (48 for the tiny CLIP: the default now) makes a
step about half as costly, and depth matters more than width: after 3,500 steps 83.1 % reading the
last 4 blocks (86.1 % after 4,000, over the budget), 84.4 % reading all 6 at width 32 (over the
budget), 75.6 % reading the last 2 at width 96 after 3,200
(``benchmarks/results/strategies-cpu-side-evl-steps/``). Those runs used a learning rate of 1e-3. At
2e-3 (``SideEVL.lr``, the default now) the same 3,500 steps reach 87.8 % (4e-3: 86.7 %), and with
the bf16 pass, the folded LayerNorms and denormals flushed on every thread, 4,000 steps fit the
budget: 90.6 % in 524 s, pass included. So the ``cpu`` profile gives 4,000. More do not help
(6,000: 88.6 %); rerun with :meth:`SideStage.across_time` (other rounding), 89.4 % in 518 s, and
83.6 % with seed 1, 88.9 % with seed 2: five runs of these defaults give 83.6-90.6 (mean 88.1),
near the 90 % line, not reliably over it. ``token_pool=2`` loses too much: 76.9 % after 4,000 steps
at width 96 (spin direction falls to chance, left/right to 72.9 %: the side network needs every
patch).
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from open_clip.transformer import ResidualAttentionBlock
from torch import nn

from ...backbones.taps import layer_tokens, queries_keys, vision_tower
from ...config import cpu_has_fast_bf16
from ..base import VideoTextModel, register_strategy
from .post_network import POSITION_INIT_STD


@dataclass
class SideEVLConfig:
    layers: int = 4                 # last-k backbone blocks read by the side network (EVL: 4)
    token_pool: int = 1             # patch grid average-pooled by this factor first (1: every token, as EVL)
    width: int | None = None        # side-network width; None: a quarter of the image tower's width
    head_width: int = 64            # width per attention head of the decoder
    queries: int = 1                # learnable query tokens (EVL: one)
    kernel_size: int = 3            # frames seen by the depthwise temporal convolution
    max_frames: int = 64            # rows of the frame position table; longer clips are refused
    pass_bf16: bool | None = None   # the frozen pass under bf16 autocast; None: on a GPU, or a CPU
    #                                 with bf16 instructions (config.cpu_has_fast_bf16), where it pays
    cross_frame: bool = False       # EVL's temporal cross attention: where each patch's attention
    #                                 goes in the neighbouring frames (cross_frame_attention)
    cross_frame_radius: int | None = 2   # patch offsets kept per axis (farther mass: one bin);
    #                                 None: every offset, as EVL (memory grows with the grid squared)


class SideStage(nn.Module):
    """One tapped block's tokens, placed in time, then read by the queries."""

    def __init__(self, in_width: int, width: int, heads: int, kernel_size: int, max_frames: int,
                 offsets: int = 0) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(in_width)  # its scale and shift only: the pass normalised the tokens
        self.proj = nn.Linear(in_width, width)
        self.frame_position = nn.Parameter(torch.randn(max_frames, width) * POSITION_INIT_STD)
        self.temporal_conv = nn.Conv1d(width, width, kernel_size, padding="same", groups=width)
        self.decoder = ResidualAttentionBlock(width, heads, is_cross_attention=True)
        # EVL's temporal cross attention: one learned vector per patch offset and direction (its
        # w1, w2), weighted by the attention mass there; zero at init, as EVL's
        self.cross_frame = nn.Linear(2 * offsets, width, bias=False) if offsets else None
        if self.cross_frame is not None:
            nn.init.zeros_(self.cross_frame.weight)

    def forward(self, query: torch.Tensor, tokens: torch.Tensor,
                flow: torch.Tensor | None = None) -> torch.Tensor:
        """query [B,Q,w], normalised tokens [B,T,L,W] (:func:`normalised_tokens`) and, with
        ``cross_frame``, the patches' binned attention to their neighbouring frames [B,T,L-1,2*O]
        (:func:`cross_frame_attention`) -> query [B,Q,w]."""
        x = self.project(tokens)
        if flow is not None:
            x = x + F.pad(self.cross_frame(flow.to(x.dtype)), (0, 0, 1, 0))   # CLS gets none, as EVL
        return self.read(query, x)

    def project(self, tokens: torch.Tensor) -> torch.Tensor:
        """Normalised tokens [...,W] -> ``proj(norm(raw tokens))`` [...,w], with the LayerNorm's
        scale and shift folded into the projection's weights: one matmul over the tokens, no
        LayerNorm forward or backward on them at every step (measured about a sixth of a step:
        ``benchmarks/bench_side_step.py``). Same function, same gradients for every parameter."""
        weight = self.proj.weight * self.norm.weight                           # [w,W]
        bias = self.proj.bias + self.proj.weight @ self.norm.bias              # [w]
        return F.linear(tokens, weight, bias)

    def read(self, query: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """query [B,Q,w], projected tokens [B,T,L,w] -> query [B,Q,w]."""
        t = x.shape[1]
        x = x + self.frame_position[:t, None]                                  # [B,T,L,w]
        x = (x + self.across_time(x)).flatten(1, 2)                            # [B,T*L,w]
        return self.decoder(query, k_x=x, v_x=x)

    def across_time(self, x: torch.Tensor) -> torch.Tensor:
        """``temporal_conv`` (depthwise, over frames) at every token position of [B,T,L,w].

        The Conv1d's own weights, run as a 2-D convolution with a (k, 1) kernel on the view
        [B,w,T,L] of the tokens: that view is the channels-last layout, which the CPU's
        convolution reads in place, so no transposed copy [B*L,w,T] is made. Same function and
        gradients as the Conv1d; a step 1.1-1.3x faster (``benchmarks/bench_side_step.py``)."""
        conv = self.temporal_conv
        out = F.conv2d(x.permute(0, 3, 1, 2), conv.weight.unsqueeze(-1), conv.bias,
                       padding="same", groups=conv.groups)                     # [B,w,T,L]
        return out.permute(0, 2, 3, 1)


def offset_bins(grid: tuple[int, int], radius: int | None) -> tuple[torch.Tensor, int]:
    """Each (query patch, key patch) pair of a ``grid`` -> its offset's bin [P,P], and the number
    of bins. An offset is (key row - query row, key column - query column); with ``radius`` r,
    offsets within r on both axes get a bin each and every farther pair shares one last bin, so
    each row of binned attention still sums to 1; with None, every offset gets its own bin
    ((2h-1)(2w-1) of them, EVL's relative table)."""
    rows, cols = grid
    r = torch.arange(rows).repeat_interleave(cols)
    c = torch.arange(cols).repeat(rows)
    dr, dc = r[None, :] - r[:, None], c[None, :] - c[:, None]                # [P,P]
    if radius is None:
        return (dr + rows - 1) * (2 * cols - 1) + dc + cols - 1, (2 * rows - 1) * (2 * cols - 1)
    side = 2 * radius + 1
    inside = (dr.abs() <= radius) & (dc.abs() <= radius)
    return torch.where(inside, (dr + radius) * side + dc + radius, side * side), side * side + 1


def cross_frame_attention(queries: torch.Tensor, keys: torch.Tensor, grid: tuple[int, int],
                          radius: int | None) -> torch.Tensor:
    """EVL's temporal cross attention, its fixed part: a frozen block's patch queries of frame t
    against the patch keys of frames t-1 and t+1 (softmax over the keys, averaged over heads), the
    probabilities summed per patch offset (:func:`offset_bins`).

    queries, keys [B,T,heads,L,d] (CLS first) -> [B,T,P,2*O]: per patch, O bins looking back, then
    O looking ahead; zero where there is no neighbouring frame. Where a patch's content went
    between frames is motion; a learned vector per bin (:attr:`SideStage.cross_frame`) turns the
    distribution into a feature. The frozen ILFM's queries and keys never change, so the frozen
    pass computes this once per clip."""
    b, t = queries.shape[:2]
    index, bins = offset_bins(grid, radius)
    q, k = queries[..., 1:, :].float(), keys[..., 1:, :].float()
    out = q.new_zeros(b, t, 2, q.shape[-2], bins)
    for side, (now, then) in enumerate(((slice(1, None), slice(None, -1)), (slice(None, -1), slice(1, None)))):
        logits = q[:, now] * q.shape[-1] ** -0.5 @ k[:, then].transpose(-2, -1)     # bf16 under autocast
        probs = logits.float().softmax(-1).mean(2)                           # [B,T-1,P,P]
        out[:, now, side].scatter_add_(-1, index.to(probs.device).expand_as(probs), probs)
    return out.transpose(2, 3).flatten(3)                                    # [B,T,P,2*O]


def normalised_tokens(tokens: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    """Tokens [...,W] -> each normalised over its width (a LayerNorm without scale and shift, in
    float32): what :meth:`SideStage.project` reads. The tapped tokens never change, so
    :meth:`SideEVL.frozen_pass` does this once per clip instead of once per step."""
    return F.layer_norm(tokens.float(), tokens.shape[-1:], eps=eps)


class SideDecoder(nn.Module):
    """Per-layer tokens of B*T frames -> one [B,D] residual in the joint space (zero at init)."""

    def __init__(self, in_width: int, embed_dim: int, cfg: SideEVLConfig, offsets: int = 0) -> None:
        super().__init__()
        width = cfg.width or max(1, in_width // 4)
        heads = max(1, width // cfg.head_width)
        if width % heads:
            raise ValueError(f"side-evl: width {width} is not divisible into {heads} heads")
        self.query = nn.Parameter(torch.randn(cfg.queries, width) * 0.02)
        self.stages = nn.ModuleList(SideStage(in_width, width, heads, cfg.kernel_size, cfg.max_frames, offsets)
                                    for _ in range(cfg.layers))
        self.out_norm = nn.LayerNorm(width)
        self.out = nn.Linear(width, embed_dim)
        nn.init.zeros_(self.out.weight)  # zero residual: the untrained strategy is mean pooling
        nn.init.zeros_(self.out.bias)

    def forward(self, tokens: torch.Tensor, flow: torch.Tensor | None = None) -> torch.Tensor:
        """tokens [B,T,k,L,W]: each frame's tokens after each tapped block, shallowest first, each
        normalised (:func:`normalised_tokens`); with ``cross_frame``, flow [B,T,k,L-1,2*O] (each
        block's :func:`cross_frame_attention`) -> [B,D]."""
        query = self.query.expand(tokens.shape[0], -1, -1)                   # [B,Q,w]
        for i, stage in enumerate(self.stages):
            query = stage(query, tokens[:, :, i].to(self.query.dtype), None if flow is None else flow[:, :, i])
        return self.out(self.out_norm(query.mean(dim=1)))                    # [B,D]


@register_strategy("side-evl")
class SideEVL(VideoTextModel):
    family = "frozen"
    leaf = "side-tuning"
    reference = "EVL (Lin et al., ECCV 2022)"
    temporal = True
    input_level = "pixels"
    frozen_backbone_pass = True
    step_budget = "pass_train_steps"   # steps on the recorded pass, each far cheaper than a pixel step
    lr = 2e-3                          # twice TrainConfig's: 87.8 % of twins at 3,500 steps, not 82.5-83.1
    order = 20

    def __init__(self, backbone, **cfg) -> None:
        super().__init__(backbone)
        self.cfg = SideEVLConfig(**cfg)
        depth = len(vision_tower(backbone).transformer.resblocks)
        if not 1 <= self.cfg.layers <= depth:
            raise ValueError(f"side-evl: layers={self.cfg.layers}, but the image tower has {depth} blocks")
        self.tapped = list(range(depth - self.cfg.layers, depth))
        if self.cfg.token_pool < 1:
            raise ValueError(f"side-evl: token_pool={self.cfg.token_pool}, must be 1 (every token) or more")
        self.grid = tuple(vision_tower(backbone).grid_size)
        if self.cfg.cross_frame and self.cfg.token_pool > 1:
            raise ValueError("side-evl: cross_frame reads every patch; it cannot be combined with token_pool > 1")
        offsets = offset_bins(self.grid, self.cfg.cross_frame_radius)[1] if self.cfg.cross_frame else 0
        self.side = SideDecoder(vision_tower(backbone).transformer.width, backbone.embed_dim, self.cfg, offsets)
        self.side.to(backbone.device)

    def frozen_pass(self, frames: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """[B,T,3,H,W] -> frozen frame features [B,T,D] (float32) and tapped tokens [B,T,k,L,W], each
        normalised over its width (:func:`normalised_tokens`), kept in float16; with
        ``cross_frame``, also each tapped block's :func:`cross_frame_attention` [B,T,k,L-1,2*O]
        (float16)."""
        b, t = frames.shape[:2]
        if t > self.cfg.max_frames:
            raise ValueError(f"side-evl: {t} frames, but max_frames={self.cfg.max_frames}")
        autocast = torch.autocast(self.backbone.device.type, torch.bfloat16, enabled=self.pass_bf16)
        qk = queries_keys(self.backbone, self.tapped) if self.cfg.cross_frame else contextlib.nullcontext()
        with torch.no_grad(), autocast, layer_tokens(self.backbone, self.tapped) as rec, qk as attn:
            features = self.backbone.encode_frames(frames).float()          # [B,T,D]
            tokens = torch.stack([x.float() for x in rec.tokens], dim=1)    # [B*T,k,1+h*w,W]
            flow = [cross_frame_attention(q.unflatten(0, (b, t)), k.unflatten(0, (b, t)), self.grid,
                                          self.cfg.cross_frame_radius)
                    for q, k in zip(attn.queries, attn.keys)] if self.cfg.cross_frame else []
        if self.cfg.token_pool > 1:
            tokens = torch.cat([tokens[:, :, :1], self._pooled_patches(tokens[:, :, 1:])], dim=2)
        tokens = normalised_tokens(tokens, self.side.stages[0].norm.eps)
        frozen = features, tokens.half().view(b, t, *tokens.shape[1:])
        return frozen + (torch.stack(flow, dim=2).half(),) if flow else frozen

    @property
    def pass_bf16(self) -> bool:
        """Does :meth:`frozen_pass` run under bf16 autocast (``SideEVLConfig.pass_bf16``)?"""
        if self.cfg.pass_bf16 is not None:
            return self.cfg.pass_bf16
        if self.backbone.dtype != torch.float32:   # a backbone loaded in half precision runs as it is
            return False
        return self.backbone.device.type == "cuda" or cpu_has_fast_bf16()

    def _pooled_patches(self, patches: torch.Tensor) -> torch.Tensor:
        """[N,k,h*w,W] patch tokens -> [N,k,h'*w',W], each 2-D window of ``token_pool`` patches
        averaged (a ragged last row or column keeps a smaller window)."""
        n, k, _, width = patches.shape
        h, w = self.grid
        grid = patches.reshape(n * k, h, w, width).permute(0, 3, 1, 2)       # [N*k,W,h,w]
        pooled = F.avg_pool2d(grid, self.cfg.token_pool, ceil_mode=True)
        return pooled.flatten(2).transpose(1, 2).reshape(n, k, -1, width)

    def encode_frozen(self, frozen: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        """(features [B,T,D], tokens [B,T,k,L,W][, flow]) -> [B,D]: mean-pooled frozen CLS features
        + the side network's residual."""
        features, tokens, *flow = frozen
        residual = self.side(tokens, *flow)                                   # [B,D]
        return self.pool(features.to(residual.dtype) + residual[:, None])    # mean + residual

    def encode_video(self, frames: torch.Tensor) -> torch.Tensor:
        """[B,T,3,H,W] -> [B,D]: the frozen pass, then the side network on it."""
        return self.encode_frozen(self.frozen_pass(frames))
