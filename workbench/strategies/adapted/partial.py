"""Partial tuning: only a chosen subset of the ILFM's own parameters trains.

One class, :class:`PartialTuning`, with three subsets (``mode``), each registered under its own name:

- ``partial-lastk``: the last ``k`` blocks of the image tower, its final LayerNorm (``ln_post``)
  and its projection (``proj``) — the "tune the top layers" baseline of transfer learning
  (Yosinski et al., *How transferable are features in deep neural networks?*, NeurIPS 2014).
- ``partial-layernorm``: only the LayerNorm scales and shifts of both towers (the LN-tuning
  baseline; Zhao et al., *Tuning LayerNorm in Attention*, ICLR 2024).
- ``partial-bitfit``: only the bias terms of both towers, LayerNorm shifts included (Ben Zaken et
  al., *BitFit: Simple Parameter-efficient Fine-tuning for Transformer-based Masked
  Language-models*, ACL 2022).

Frames are mean-pooled, so a clip and its time-reversed twin tie exactly; with ``temporal_head``
the post-network temporal transformer (``frozen/post_network.py``, CLIP4Clip seqTransf) pools the
tuned frame features instead and the strategy sees frame order. The tuned parameters live in a
private copy of the backbone (image tower only for ``lastk``), so the caller's backbone never
changes; that copy sits at ``self.backbone``, where the training loop gives it ``backbone_lr``.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..base import VideoTextModel, register_strategy
from ..frozen.post_network import PostTransformer
from .full_finetune import private_backbone

MODES = ("lastk", "layernorm", "bitfit")


@dataclass
class PartialConfig:
    mode: str = "lastk"           # which subset trains: "lastk", "layernorm" or "bitfit"
    k: int = 2                    # lastk: how many of the image tower's last blocks train
    temporal_head: bool = False   # pool with the post-network temporal transformer (else mean)
    head_layers: int = 4          # temporal_head: its transformer layers (CLIP4Clip seqTransf: 4)


def temporal_head(backbone, layers: int) -> PostTransformer:
    """The post-network temporal transformer, reused as-is: its ``pool`` maps [B,T,D] -> [B,D].

    It is built on the strategy's own backbone (the same object, so no parameter is counted
    twice), and it freezes that backbone: build it before unfreezing what the strategy trains.
    """
    return PostTransformer(backbone, layers=layers)


class HeadOrMeanPool(VideoTextModel):
    """Pooling for strategies whose temporal head is optional: ``self.head`` (set in every
    ``__init__``, None without a head) pools the frames, else the mean does."""

    def pool(self, features: torch.Tensor) -> torch.Tensor:
        """[B,T,D] frame features -> [B,D] normalised: the temporal head, or the mean."""
        return self.head.pool(features) if self.head is not None else super().pool(features)


class LayerNormThenShift(nn.LayerNorm):
    """open_clip's LayerNorm with its shift added after the normalisation rather than inside it:
    the same output and gradients, same parameter names. BitFit swaps it in for LayerNorms whose
    scale is frozen and whose shift trains: for that mask, CUDA's layer_norm backward returned an
    empty shift gradient on batches of over 65,536 token rows (torch 2.11 on an H100, the `gpu`
    profile's 64 clips x 16 frames x 65 tokens), and training stopped at its first step."""

    fp32 = False   # open_clip's LayerNormFp32 normalises in float32

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.layer_norm(x.float() if self.fp32 else x, self.normalized_shape, self.weight, None, self.eps)
        return (y + self.bias).to(x.dtype)   # open_clip's LayerNorms hand back the input's dtype


def shift_after_norm(model: nn.Module) -> None:
    """Swap every open_clip LayerNorm in ``model`` for :class:`LayerNormThenShift`."""
    for module in model.modules():
        kind = type(module)
        if kind.__module__.startswith("open_clip") and kind.__name__ in ("LayerNorm", "LayerNormFp32") \
                and module.bias is not None:
            module.__class__ = LayerNormThenShift
            module.fp32 = kind.__name__ == "LayerNormFp32"


class PartialTuning(HeadOrMeanPool):
    family = "adapted"
    leaf = "partial tuning"
    input_level = "pixels"

    def __init__(self, backbone, **cfg) -> None:
        self.config = PartialConfig(**cfg)
        if self.config.mode not in MODES:
            raise ValueError(f"partial tuning mode must be one of {MODES}, got {self.config.mode!r}")
        super().__init__(backbone)
        self.backbone = private_backbone(backbone, visual_only=self.config.mode == "lastk")
        self.temporal = self.config.temporal_head
        self.head = temporal_head(self.backbone, self.config.head_layers) if self.temporal else None
        for p in self.tuned_parameters():
            p.requires_grad_(True)
        if self.config.mode == "bitfit":
            shift_after_norm(self.backbone)

    def tuned_parameters(self) -> list[nn.Parameter]:
        """The ILFM parameters this mode trains (in the private copy)."""
        clip, mode = self.backbone.clip, self.config.mode
        if mode == "lastk":
            blocks = clip.visual.transformer.resblocks
            if not 1 <= self.config.k <= len(blocks):
                raise ValueError(f"partial-lastk: k must be in 1..{len(blocks)} (the image tower's "
                                 f"blocks), got {self.config.k}")
            tuned = [*blocks[-self.config.k:].parameters(), *clip.visual.ln_post.parameters()]
            return tuned + ([clip.visual.proj] if clip.visual.proj is not None else [])
        if mode == "layernorm":
            return [p for m in clip.modules() if isinstance(m, nn.LayerNorm) for p in m.parameters()]
        # bitfit; a SigLIP-style logit_bias is the temperature's partner, which stays fixed
        return [p for name, p in clip.named_parameters() if name.endswith("bias") and not name.startswith("logit_")]


class _SmallSubset(PartialTuning):
    """LayerNorm- or bias-only tuning: a few thousand ILFM weights that need a new-module rate."""

    def is_pretrained_weight(self, name: str) -> bool:
        return False


@register_strategy("partial-lastk")
class PartialLastK(PartialTuning):
    reference = "last-k block tuning (Yosinski et al., NeurIPS 2014)"
    order = 20

    def __init__(self, backbone, **cfg) -> None:
        super().__init__(backbone, mode="lastk", **cfg)


@register_strategy("partial-layernorm")
class PartialLayerNorm(_SmallSubset):
    reference = "LayerNorm tuning (Zhao et al., ICLR 2024)"
    order = 21

    def __init__(self, backbone, **cfg) -> None:
        super().__init__(backbone, mode="layernorm", **cfg)


@register_strategy("partial-bitfit")
class PartialBitFit(_SmallSubset):
    reference = "BitFit (Ben Zaken et al., ACL 2022)"
    order = 22

    def __init__(self, backbone, **cfg) -> None:
        super().__init__(backbone, mode="bitfit", **cfg)
