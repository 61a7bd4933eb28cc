"""LoRA: low-rank updates to the image tower's attention, through Hugging Face ``peft``.

Hu et al., *LoRA: Low-Rank Adaptation of Large Language Models* (ICLR 2022): a frozen weight W
gets a trainable update (alpha / r) * B A with A [r, in], B [out, r] and B = 0 at the start, so
the untrained strategy is the ILFM itself. LoRA changes how each frame is encoded but not how
frames relate: on its own (``lora``) frames are still mean-pooled and a clip ties with its
time-reversed twin exactly, as the survey notes. ``lora-temporal`` adds the post-network
temporal transformer (``frozen/post_network.py``, CLIP4Clip seqTransf) after the tuned frames.

peft and open_clip: every block's ``attn`` is a ``torch.nn.MultiheadAttention``, which peft wraps
as a whole (``peft.tuners.lora.layer.MultiheadAttention``): LoRA on the fused q/k/v projection
``in_proj_weight`` and on ``out_proj``. The fused kernel never calls ``out_proj.forward``, so peft
merges W + BA into the weights before each call and subtracts it after; the call's arguments
(``need_weights``, ``attn_mask``, key and value) pass through unchanged, so the attention-weight
taps still work. Two consequences: ``dropout`` has no effect on ``attn`` targets (no input to
drop), and the frozen weights drift by float rounding (about 1e-7 after hundreds of steps). The
MLP's ``mlp.c_fc`` / ``mlp.c_proj`` are plain ``nn.Linear`` layers, adapted the ordinary way.

LoRA goes into a private copy of the image tower (the text tower stays shared and frozen), so
the caller's backbone is never changed.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

from peft import LoraConfig, inject_adapter_in_model

from ..base import register_strategy
from .full_finetune import private_backbone
from .partial import HeadOrMeanPool, temporal_head

BLOCK_TARGETS = ("attn", "mlp.c_fc", "mlp.c_proj")  # paths inside one open_clip ResidualAttentionBlock


@dataclass
class LoRAStrategyConfig:
    rank: int = 8                            # r, the rank of each update B A
    alpha: float = 16.0                      # the update is scaled by alpha / rank
    dropout: float = 0.0                     # dropout on the LoRA input (Linear targets only, see docstring)
    targets: tuple[str, ...] = ("attn",)     # what LoRA adapts in every image block: BLOCK_TARGETS
    head_layers: int = 4                     # lora-temporal: layers of the temporal transformer head


@register_strategy("lora")
class LoRA(HeadOrMeanPool):
    family = "adapted"
    leaf = "LoRA"
    reference = "LoRA (Hu et al., ICLR 2022) via peft"
    temporal = False
    input_level = "pixels"
    order = 50
    with_head = False   # lora-temporal: pool with the post-network temporal transformer
    # LoRA factors live inside the ILFM's copy (``backbone.``), so they train at ``backbone_lr``;
    # TrainConfig's 1e-5 suits full fine-tuning and leaves new low-rank factors almost still
    # (150 cpu steps moved nothing). 5e-4 is what the tests found stable.
    backbone_lr = 5e-4

    def __init__(self, backbone, **cfg) -> None:
        self.config = LoRAStrategyConfig(**cfg)
        unknown = sorted(set(self.config.targets) - set(BLOCK_TARGETS))
        if unknown or not self.config.targets:
            raise ValueError(f"{self.name}: targets must be a non-empty subset of {BLOCK_TARGETS}, got "
                             f"{self.config.targets}")
        super().__init__(backbone)
        self.backbone = private_backbone(backbone, visual_only=True)
        # the head freezes the backbone it is built on: build it before LoRA adds its weights
        self.head = temporal_head(self.backbone, self.config.head_layers) if self.with_head else None
        paths = "|".join(re.escape(t) for t in self.config.targets)
        lora = LoraConfig(r=self.config.rank, lora_alpha=self.config.alpha, lora_dropout=self.config.dropout,
                          # blocks only: an attention pooler's `attn` (SigLIP-style towers) stays as it is
                          target_modules=rf"transformer\.resblocks\.\d+\.(?:{paths})")
        inject_adapter_in_model(lora, self.backbone.clip.visual)  # in place; only lora_ weights train
        self.to(backbone.device)


@register_strategy("lora-temporal")
class LoRATemporal(LoRA):
    reference = "LoRA (Hu et al., ICLR 2022) + CLIP4Clip seqTransf head (Luo et al., 2022)"
    temporal = True
    order = 51
    with_head = True
