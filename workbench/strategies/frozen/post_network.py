"""Post-network tuning: a small temporal head trained on the frozen ILFM's frame features.

The survey's "post-network tuning" leaf: the ILFM encodes every frame as it always did, and only a
head *after* it learns how frames relate in time. Three heads share one design, that of CLIP4Clip's
``seqTransf`` / ``seqLSTM`` similarity calculators (Luo et al., *CLIP4Clip*, Neurocomputing 2022)
and ActionCLIP's "Transf" fusion (Wang et al., *ActionCLIP*, arXiv 2109.08472):

    video = mean_t( x_t + out(head(LN(x) + frame_position)_t) )      x: [B,T,D] frame features

- ``post-transformer``: a temporal transformer over frames (CLIP4Clip seqTransf, ActionCLIP Transf);
- ``post-lstm``: an LSTM running forward over frames (CLIP4Clip seqLSTM);
- ``post-conv1d``: a stack of temporal 1-D convolutions (a local-window head).

The residual branch ends in a zero-initialised projection, so an untrained head *is* mean pooling
(bit for bit: a clip and its time-reversed twin tie exactly) and training moves it away from there.
The input LayerNorm makes the head indifferent to the scale of a backbone's features (raw CLIP
features have norms of about 10); the residual keeps the frozen features themselves, unchanged.
Trains on cached features (``input_level="features"``); both ILFM towers stay frozen.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from open_clip.transformer import Transformer
from torch import nn

from ..base import VideoTextModel, register_strategy

# Frame position embeddings are added to LayerNorm'd features (unit variance per channel); at this
# scale order is visible from the first step (BERT's 0.02 left a 4-layer head at chance for 100
# steps on ShapesWorld twins, where 0.2 and 1.0 both reached 100%).
POSITION_INIT_STD = 0.2


@dataclass
class PostNetworkConfig:
    layers: int = 1                 # temporal layers of the head
    width: int | None = None        # the head's hidden width; None: the joint-space size D
    max_frames: int = 64            # rows of the frame position table; longer clips are refused


@dataclass
class TransformerHeadConfig(PostNetworkConfig):
    layers: int = 4                 # CLIP4Clip seqTransf stacks 4 blocks
    head_width: int = 64            # width per attention head (heads = width // head_width)


@dataclass
class Conv1dHeadConfig(PostNetworkConfig):
    layers: int = 2                 # convolutions, each followed by GELU (two see 2*(k-1)+1 frames)
    kernel_size: int = 3            # frames one convolution sees


class PostNetwork(VideoTextModel):
    """Shared base: frame position embeddings, a temporal head, and the zero-initialised residual.

    Subclasses set ``config_class`` and build the head in :meth:`build_head`: a module mapping
    ``[B,T,D] -> [B,T,width]`` that must see frame order (mean pooling of its output follows).
    """

    family = "frozen"
    leaf = "post-network tuning"
    temporal = True
    input_level = "features"
    config_class: type[PostNetworkConfig] = PostNetworkConfig

    def __init__(self, backbone, **cfg) -> None:
        super().__init__(backbone)
        self.cfg = self.config_class(**cfg)
        dim = backbone.embed_dim
        width = self.cfg.width or dim
        self.norm = nn.LayerNorm(dim)
        self.frame_position = nn.Parameter(torch.randn(self.cfg.max_frames, dim) * POSITION_INIT_STD)
        self.head = self.build_head(dim, width)
        self.out = nn.Linear(width, dim)
        nn.init.zeros_(self.out.weight)  # zero residual: the untrained strategy is mean pooling
        nn.init.zeros_(self.out.bias)
        self.to(backbone.device)

    def build_head(self, dim: int, width: int) -> nn.Module:
        raise NotImplementedError

    def pool(self, features: torch.Tensor) -> torch.Tensor:
        """[B,T,D] frozen frame features -> [B,D] normalised video embedding."""
        t = features.shape[1]
        if t > self.cfg.max_frames:
            raise ValueError(f"{self.name}: {t} frames, but the frame position table has "
                             f"max_frames={self.cfg.max_frames}; create the strategy with a larger max_frames")
        features = features.to(self.out.weight.dtype)
        x = self.norm(features) + self.frame_position[:t]     # [B,T,D]
        residual = self.out(self.head(x))                      # [B,T,width] -> [B,T,D]
        return super().pool(features + residual)               # mean over T, normalised


class _StepOutputs(nn.Module):
    """Keep a recurrent module's per-step outputs ``[B,T,width]`` (drop its final state)."""

    def __init__(self, recurrent: nn.Module) -> None:
        super().__init__()
        self.recurrent = recurrent

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.recurrent(x)[0]


class _TimeConv(nn.Module):
    """Temporal convolutions over ``[B,T,C]`` (channels-last in, channels-last out)."""

    def __init__(self, dim: int, width: int, layers: int, kernel_size: int) -> None:
        super().__init__()
        convs = []
        for i in range(layers):
            convs += [nn.Conv1d(dim if i == 0 else width, width, kernel_size, padding="same"), nn.GELU()]
        self.convs = nn.Sequential(*convs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.convs(x.transpose(1, 2)).transpose(1, 2)   # [B,T,C] -> [B,C,T] -> [B,T,width]


@register_strategy("post-transformer")
class PostTransformer(PostNetwork):
    reference = "CLIP4Clip seqTransf (Luo et al., Neurocomputing 2022); ActionCLIP Transf (Wang et al., 2021)"
    order = 10
    config_class = TransformerHeadConfig

    def build_head(self, dim: int, width: int) -> nn.Module:
        heads = max(1, width // self.cfg.head_width)
        if width % heads:
            raise ValueError(f"post-transformer: width {width} is not divisible into {heads} heads")
        return nn.Sequential(nn.Linear(dim, width) if width != dim else nn.Identity(),
                             Transformer(width, self.cfg.layers, heads),  # open_clip's, batch-first
                             nn.LayerNorm(width))


@register_strategy("post-lstm")
class PostLSTM(PostNetwork):
    reference = "CLIP4Clip seqLSTM (Luo et al., Neurocomputing 2022)"
    order = 11

    def build_head(self, dim: int, width: int) -> nn.Module:
        return _StepOutputs(nn.LSTM(dim, width, num_layers=self.cfg.layers, batch_first=True))


@register_strategy("post-conv1d")
class PostConv1d(PostNetwork):
    reference = "temporal 1-D convolution head on frozen CLIP features (post-network tuning, Li et al. survey 2025)"
    order = 12
    config_class = Conv1dHeadConfig

    def build_head(self, dim: int, width: int) -> nn.Module:
        return _TimeConv(dim, width, self.cfg.layers, self.cfg.kernel_size)
