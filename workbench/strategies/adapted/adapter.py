"""Adapters: small trainable modules inside the frozen ViT's blocks that model time.

Two methods of the survey's *adapter* leaf, both starting exactly at the frozen ILFM (their last
layer is zero-initialised, so the untrained model equals zero-shot mean pooling) and both
training only their adapters:

- ``st-adapter``: Pan et al., *ST-Adapter: Parameter-Efficient Image-to-Video Transfer Learning*
  (NeurIPS 2022). Before a block's attention (optionally also before its MLP), patch tokens go
  through ``Linear down -> depthwise 3-D convolution over (T, h, w) -> Linear up`` and are added
  back; the class token passes through unchanged. As in the authors' code, the depthwise
  convolution is the zero-initialised part (its output is then zero whatever the projections
  hold), and the default kernel (3, 1, 1) mixes each patch with the same patch in the
  neighbouring frames.
- ``aim``: Yang et al., *AIM: Adapting Image Models for Efficient Video Action Recognition*
  (ICLR 2023). Each block runs three times through its own frozen weights: the attention over
  the T frames of every token position (temporal adaptation, through a T-adapter), the attention
  over the tokens of a frame (spatial adaptation, an S-adapter with a skip connection on its
  output), and the MLP with a parallel joint adapter scaled by s = 0.5. Adapters are
  ``Linear(C, C/4) -> GELU -> Linear(C/4, C)`` with the second layer zero-initialised.
  Attention alone cannot see order, so frame position embeddings tell the frames apart. AIM's
  CLIP code adds one, zero-initialised, to every token before the blocks; grown from zero it
  barely steers the frozen attention within a short run (measured on the random tiny CLIP: twin
  accuracy stayed at 50%). As AIM's own DeiT variant does, they are added inside the temporal
  branch instead, to the normalised tokens the reused attention compares, where the
  zero-initialised T-adapter hides them until it trains. So they can start large (std 2, twice
  the tokens' scale), and position rather than content first decides where the reused attention
  looks (measured: std 1 reached 67% twin accuracy in the test's short run, std 2 100%); the
  untrained model is still exactly the frozen ILFM.

Both run the frozen blocks through :mod:`._blocks`, which knows how many frames a clip has.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ..base import register_strategy
from ._blocks import (AdaptedBlocks, BlockAdapter, attention_residual, frame_positions, frames_to_time,
                      mlp_residual, patch_prefix, time_to_frames)


# --- ST-Adapter ------------------------------------------------------------------------------


@dataclass
class STAdapterConfig:
    channels: int = 0                          # bottleneck width (0: half the block width, the paper's 384 for 768)
    kernel: tuple[int, int, int] = (3, 1, 1)   # depthwise kernel over (frames, rows, cols); odd sizes
    layers: int = 0                            # adapt the last k blocks (0: every block, as the paper)
    pre_attn: bool = True                      # an adapter before each block's attention (the paper's figure)
    pre_mlp: bool = False                      # and one before each MLP (the authors' "24x384" variant)


class SpatioTemporalAdapter(nn.Module):
    """``x + up(dwconv3d(down(x)))`` on the patch tokens; the class token passes through."""

    def __init__(self, width: int, channels: int, kernel: tuple[int, int, int], grid_size: tuple[int, int]) -> None:
        super().__init__()
        if len(kernel) != 3 or any(k % 2 == 0 for k in kernel):
            raise ValueError(f"kernel {kernel}: three odd sizes (frames, rows, cols), so the output keeps the grid")
        self.grid_size = tuple(grid_size)  # (rows, cols) of patches
        self.down = nn.Linear(width, channels)
        self.conv = nn.Conv3d(channels, channels, kernel, padding=tuple(k // 2 for k in kernel), groups=channels)
        self.up = nn.Linear(channels, width)
        for zero in (self.conv.weight, self.conv.bias, self.down.bias, self.up.bias):
            nn.init.zeros_(zero)

    def forward(self, x: torch.Tensor, num_frames: int) -> torch.Tensor:
        prefix, (rows, cols) = patch_prefix(self.grid_size, x), self.grid_size
        patches = self.down(x[:, prefix:])                                  # [B*T, h*w, c]
        channels = patches.shape[-1]
        grid = patches.view(-1, num_frames, rows, cols, channels).permute(0, 4, 1, 2, 3)  # [B, c, T, h, w]
        mixed = self.conv(grid).permute(0, 2, 3, 4, 1).reshape(patches.shape)  # [B*T, h*w, c]
        return torch.cat([x[:, :prefix], x[:, prefix:] + self.up(mixed)], dim=1)


class STAdapterBlock(BlockAdapter):
    def __init__(self, width: int, channels: int, kernel, grid_size, pre_attn: bool, pre_mlp: bool) -> None:
        super().__init__()
        self.pre_attn = SpatioTemporalAdapter(width, channels, kernel, grid_size) if pre_attn else None
        self.pre_mlp = SpatioTemporalAdapter(width, channels, kernel, grid_size) if pre_mlp else None

    def forward(self, block, x: torch.Tensor, num_frames: int) -> torch.Tensor:
        if self.pre_attn is not None:
            x = self.pre_attn(x, num_frames)
        x = x + attention_residual(block, x)
        if self.pre_mlp is not None:
            x = self.pre_mlp(x, num_frames)
        return x + mlp_residual(block, x)


@register_strategy("st-adapter")
class STAdapter(AdaptedBlocks):
    family = "adapted"
    leaf = "adapters"
    reference = "ST-Adapter (Pan et al., NeurIPS 2022)"
    temporal = True
    input_level = "pixels"
    order = 40

    def __init__(self, backbone, **cfg) -> None:
        self.config = c = STAdapterConfig(**cfg)
        if not (c.pre_attn or c.pre_mlp):
            raise ValueError("st-adapter needs pre_attn or pre_mlp (or both)")
        super().__init__(backbone)

        def make(visual) -> STAdapterBlock:
            width = visual.transformer.width
            return STAdapterBlock(width, c.channels or width // 2, tuple(c.kernel), visual.grid_size,
                                  c.pre_attn, c.pre_mlp)

        self.adapt_blocks(c.layers, make)


# --- AIM -------------------------------------------------------------------------------------


@dataclass
class AIMConfig:
    ratio: float = 0.25      # adapter bottleneck as a fraction of the block width (paper: 0.25)
    scale: float = 0.5       # s, the weight of the joint adapter beside the MLP (paper: 0.5)
    layers: int = 0          # adapt the last k blocks (0: every block, as the paper)
    max_frames: int = 32     # frame positions of the temporal attention
    temporal_adapters: int = 1  # 1: a T-adapter after the temporal attention; 2: also one before it


class Bottleneck(nn.Module):
    """AIM's adapter without its skip connection: ``Linear -> GELU -> Linear``, output zero at init."""

    def __init__(self, width: int, hidden: int) -> None:
        super().__init__()
        self.down = nn.Linear(width, hidden)
        self.act = nn.GELU()
        self.up = nn.Linear(hidden, width)
        nn.init.zeros_(self.up.weight)
        nn.init.zeros_(self.up.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.up(self.act(self.down(x)))


class AIMBlock(BlockAdapter):
    def __init__(self, width: int, hidden: int, scale: float, temporal_adapters: int, max_frames: int) -> None:
        super().__init__()
        self.frame_position = nn.Parameter(2 * torch.randn(max_frames, width))  # see the module docstring
        # with skip (identity at init): reshapes what the frozen attention compares across frames
        self.temporal_in = Bottleneck(width, hidden) if temporal_adapters == 2 else None
        self.temporal = Bottleneck(width, hidden)  # T-adapter, no skip: its output is the residual
        self.spatial = Bottleneck(width, hidden)   # S-adapter, skip: attention + adapter(attention)
        self.joint = Bottleneck(width, hidden)     # beside the MLP, scaled by s
        self.scale = scale

    def forward(self, block, x: torch.Tensor, num_frames: int) -> torch.Tensor:
        length = x.shape[1]
        positions = frame_positions(self.frame_position, num_frames)
        over_time = block.ln_1(frames_to_time(x, num_frames)) + positions  # [B*L, T, C]
        if self.temporal_in is not None:
            over_time = over_time + self.temporal_in(over_time)
        over_time = self.temporal(block.attention(q_x=over_time))
        x = x + time_to_frames(over_time, length)
        spatial = block.attention(q_x=block.ln_1(x))
        x = x + block.ls_1(spatial + self.spatial(spatial))
        normed = block.ln_2(x)
        x = x + block.ls_2(block.mlp(normed))
        return x + self.scale * self.joint(normed)


@register_strategy("aim")
class AIM(AdaptedBlocks):
    family = "adapted"
    leaf = "adapters"
    reference = "AIM (Yang et al., ICLR 2023)"
    temporal = True
    input_level = "pixels"
    order = 41

    def __init__(self, backbone, **cfg) -> None:
        self.config = c = AIMConfig(**cfg)
        if c.temporal_adapters not in (1, 2):
            raise ValueError(f"temporal_adapters={c.temporal_adapters}: 1 or 2 (AIM's num_tadapter)")
        super().__init__(backbone)

        def make(visual) -> AIMBlock:
            width = visual.transformer.width
            return AIMBlock(width, max(1, round(width * c.ratio)), c.scale, c.temporal_adapters, c.max_frames)

        self.adapt_blocks(c.layers, make)
