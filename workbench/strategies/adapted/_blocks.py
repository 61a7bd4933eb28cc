"""Run a frozen open_clip ViT on frames that know which clip they belong to.

Frames go through the image tower as one ``[B*T]`` image batch, so a block on its own cannot
tell which tokens come from which frame of which clip. The strategies that model time *inside*
the ILFM need exactly that: ST-Adapter (a depthwise 3-D convolution over frames), AIM (the frozen
attention reused across frames) and cross-frame prompts (X-CLIP's per-frame message tokens).
:func:`encode_frames` is open_clip's ``VisionTransformer.forward`` written out once with the clip
length ``T`` passed to every block: a block with a :class:`BlockAdapter` runs through it, the
others run unchanged. Adapters live in the strategy, not in the backbone, so the caller's backbone
is only read (several strategies may share it), and the training loop gives them the full
learning rate (it keeps the small ``backbone_lr`` for parameters under ``backbone.``).

The token layout is open_clip's batch-first ``[N, L, C]`` with the class token first and the
``h x w`` patch grid after it; :func:`check_vit` refuses towers built otherwise.
"""
from __future__ import annotations

from collections.abc import Callable

import torch
from open_clip.transformer import ResidualAttentionBlock, VisionTransformer
from torch import nn
from torch.utils.checkpoint import checkpoint

from ..base import VideoTextModel


class BlockAdapter(nn.Module):
    """The trainable pieces of one frozen block; :meth:`forward` runs the block with them.

    Zero-initialised where the method does so, an adapter leaves its block's output unchanged
    until it is trained (the untrained strategy equals the frozen ILFM).
    """

    def forward(self, block: ResidualAttentionBlock, x: torch.Tensor, num_frames: int) -> torch.Tensor:
        """``x`` [B*T, L, C] (frames of one clip consecutive) -> [B*T, L, C]."""
        raise NotImplementedError


class AdaptedBlocks(VideoTextModel):
    """A strategy whose frame features come from the frozen ViT run with ``block_adapters``.

    Subclasses call :meth:`adapt_blocks` once, after ``super().__init__(backbone)``.
    """

    block_adapters: nn.ModuleDict  # keys: block indices as strings

    def adapt_blocks(self, layers: int, make: Callable[[VisionTransformer], BlockAdapter]) -> None:
        """Give each of the last ``layers`` blocks (0: all) the adapter ``make(image_tower)`` builds,
        on the backbone's device and dtype."""
        visual = check_vit(self.backbone)
        indices = chosen_layers(len(visual.transformer.resblocks), layers)
        adapters = nn.ModuleDict({str(i): make(visual) for i in indices})
        self.block_adapters = adapters.to(device=self.backbone.device, dtype=self.backbone.dtype)

    def frame_features(self, frames: torch.Tensor) -> torch.Tensor:
        return encode_frames(self.backbone, frames, self.block_adapters)


def check_vit(backbone) -> VisionTransformer:
    """The backbone's image tower, if it is an open_clip ViT these strategies can run."""
    visual = backbone.clip.visual
    if not isinstance(visual, VisionTransformer):
        raise TypeError(f"{backbone.name}: these strategies need open_clip's VisionTransformer image tower, "
                        f"got {type(visual).__name__}")
    blocks = visual.transformer.resblocks
    if not visual.transformer.batch_first or not all(type(b) is ResidualAttentionBlock for b in blocks):
        raise TypeError(f"{backbone.name}: these strategies need batch-first ResidualAttentionBlocks "
                        "(open_clip's custom blocks, e.g. qk_norm or scaled cosine attention, are not supported)")
    return visual


def chosen_layers(num_blocks: int, last: int) -> list[int]:
    """Indices of the last ``last`` blocks (0: every block)."""
    if not 0 <= last <= num_blocks:
        raise ValueError(f"layers={last}: the image tower has {num_blocks} blocks (0 means all of them)")
    return list(range(num_blocks - (last or num_blocks), num_blocks))


def attention_residual(block: ResidualAttentionBlock, x: torch.Tensor) -> torch.Tensor:
    """The block's attention branch, as its forward computes it: ``x + this`` is its first half."""
    return block.ls_1(block.attention(q_x=block.ln_1(x)))


def mlp_residual(block: ResidualAttentionBlock, x: torch.Tensor) -> torch.Tensor:
    """The block's MLP branch: ``x + this`` is its second half."""
    return block.ls_2(block.mlp(block.ln_2(x)))


def frames_to_time(x: torch.Tensor, num_frames: int) -> torch.Tensor:
    """[B*T, L, C] -> [B*L, T, C]: one sequence per token position, running over the frames."""
    bt, length, width = x.shape
    return x.view(bt // num_frames, num_frames, length, width).transpose(1, 2).reshape(-1, num_frames, width)


def time_to_frames(x: torch.Tensor, length: int) -> torch.Tensor:
    """[B*L, T, C] -> [B*T, L, C], the inverse of :func:`frames_to_time`."""
    bl, num_frames, width = x.shape
    return x.view(bl // length, length, num_frames, width).transpose(1, 2).reshape(-1, length, width)


def frame_positions(table: torch.Tensor, num_frames: int) -> torch.Tensor:
    """The first ``num_frames`` rows of a learnable [max_frames, C] frame-position table."""
    if num_frames > len(table):
        raise ValueError(f"{num_frames} frames, but max_frames is {len(table)}")
    return table[:num_frames]


def patch_prefix(grid_size: tuple[int, int], x: torch.Tensor) -> int:
    """How many tokens (the class token) come before the ``rows x cols`` patch grid in ``x`` [N, L, C]."""
    rows, cols = grid_size
    prefix = x.shape[1] - rows * cols
    if prefix != 1:
        raise ValueError(f"expected a class token and a {rows}x{cols} patch grid, got {x.shape[1]} tokens "
                         "(patch dropout must be off for adapters that need the grid)")
    return prefix


def encode_frames(backbone, frames: torch.Tensor, adapters: nn.ModuleDict) -> torch.Tensor:
    """Preprocessed frames [B,T,3,H,W] -> per-frame embeddings [B,T,D] through adapted blocks.

    Follows ``VisionTransformer.forward`` step by step (embeddings, blocks, pooling, projection),
    so with adapters that add exact zeros the result is bit-identical to ``backbone.encode_frames``
    on the same attention path (PyTorch takes its fused kernel only in eval mode when no
    attention parameter needs a gradient: compare with the backbone frozen, as strategies leave it).
    """
    if frames.ndim != 5:
        raise ValueError(f"frames must be [B,T,3,H,W], got shape {tuple(frames.shape)}")
    visual = check_vit(backbone)
    batch, num_frames = frames.shape[:2]
    x = visual._embeds(frames.flatten(0, 1).to(backbone.device, backbone.dtype))  # [B*T, L, C]
    transformer = visual.transformer
    for index, block in enumerate(transformer.resblocks):
        adapter = adapters[str(index)] if str(index) in adapters else None
        if transformer.grad_checkpointing and torch.is_grad_enabled():
            x = checkpoint(_run_block, block, adapter, x, num_frames, use_reentrant=False)
        else:
            x = _run_block(block, adapter, x, num_frames)
    pooled, _ = visual._pool(x)
    if visual.proj is not None:
        pooled = pooled @ visual.proj
    return pooled.view(batch, num_frames, -1)


def _run_block(block: ResidualAttentionBlock, adapter: BlockAdapter | None, x: torch.Tensor,
               num_frames: int) -> torch.Tensor:
    return block(x) if adapter is None else adapter(block, x, num_frames)
