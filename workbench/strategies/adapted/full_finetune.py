"""Full fine-tuning: both CLIP towers train, frames are mean-pooled (ViFi-CLIP).

Rasheed et al., *Fine-tuned CLIP Models are Efficient Video Learners* (CVPR 2023): no temporal
module at all; fine-tuning the image and text encoders end to end with frame-level mean pooling
already adapts CLIP to video, because the gradients of the pooled video embedding reach every
frame. The temperature ``logit_scale`` stays fixed, as in every strategy here (base.py).

Like every strategy that changes the ILFM, this one trains a private copy of the backbone
(:func:`private_backbone`): the caller may build several strategies from one loaded backbone, and
creating or training one never alters another. The copy sits at ``self.backbone``, so the training
loop gives its parameters the small ``backbone_lr`` (ViFi-CLIP fine-tunes at a few 1e-6).
"""
from __future__ import annotations

import copy
from dataclasses import dataclass
from itertools import chain

from ..base import VideoTextModel, register_strategy


def private_backbone(backbone, visual_only: bool = False):
    """A deep copy of ``backbone`` that a strategy may change without touching the caller's.

    With ``visual_only`` only the image tower (``clip.visual``) is copied; the text tower, the
    logit scale and every other module or tensor stay shared with ``backbone`` (enough when only
    the image tower changes, and it spares the text tower's memory: 63M parameters on ViT-B/32).
    Shared tensors keep whatever ``requires_grad`` they had (frozen, after ``super().__init__``).
    """
    if not visual_only:
        return copy.deepcopy(backbone)
    clip, visual = backbone.clip, backbone.clip.visual
    inside = {id(t) for t in chain(visual.modules(), visual.parameters(), visual.buffers())}
    # deepcopy returns whatever a memo already holds for an id, so these are shared, not copied
    shared = {id(t): t for t in chain(clip.modules(), clip.parameters(), clip.buffers())
              if t is not clip and id(t) not in inside}
    return copy.deepcopy(backbone, memo=shared)


@dataclass
class FullFinetuneConfig:
    train_text: bool = True   # fine-tune the text tower too (ViFi-CLIP); False: image tower only


@register_strategy("full-finetune")
class FullFinetune(VideoTextModel):
    family = "adapted"
    leaf = "full fine-tuning"
    reference = "ViFi-CLIP (Rasheed et al., CVPR 2023)"
    temporal = False
    input_level = "pixels"
    order = 10

    def __init__(self, backbone, **cfg) -> None:
        self.config = FullFinetuneConfig(**cfg)
        super().__init__(backbone)
        self.backbone = private_backbone(backbone, visual_only=not self.config.train_text)
        tuned = self.backbone.clip if self.config.train_text else self.backbone.clip.visual
        for p in tuned.parameters():
            p.requires_grad_(True)
        self.backbone.clip.logit_scale.requires_grad_(False)  # the temperature stays fixed
