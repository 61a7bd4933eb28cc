"""Prompt tuning: learnable tokens fed to the frozen ILFM, on the text side and on the visual side.

- ``prompt-text``: Zhou et al., *Learning to Prompt for Vision-Language Models* (CoOp, IJCV 2022),
  the learnable text prompts ActionCLIP (Wang et al., 2021) uses for video. A few context vectors
  take the place of a hand-written prefix ("a video of") in the token embeddings of every
  caption; the text tower stays frozen and only the vectors train. Initialised from the words
  ``ctx_init``, the untrained model is zero-shot CLIP prompted with those words. The video side is
  frozen mean pooling, so it cannot see frame order: on time-reversed twins it stays at chance.
- ``prompt-visual``: deep visual prompts (VPT-deep, Jia et al., *Visual Prompt Tuning*, ECCV 2022)
  and cross-frame message tokens (X-CLIP, Ni et al., *Expanding Language-Image Pretrained Models
  for General Video Recognition*, ECCV 2022; Vita-CLIP, Wasim et al., CVPR 2023, prompts frames in
  a related way). In each of the last k blocks, every frame's class token is projected to a
  *message*; a small attention over the T messages lets the frames of a clip talk to each other;
  each frame's tokens then attend to its own message and the block's learnable prompt tokens,
  which are dropped after the block. X-CLIP's message attention has no frame positions (its order
  comes from a later temporal transformer), which under mean pooling would leave it blind to
  order, so frame position embeddings join the messages here.
  The frozen attention reads these extra tokens through a separate, zero-initialised gate per
  head (LLaMA-Adapter's zero-init attention, Zhang et al., ICLR 2024), so the untrained model is
  exactly the frozen ILFM and training grows the prompts' influence from nothing.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..base import VideoTextModel, register_strategy
from ._blocks import AdaptedBlocks, BlockAdapter, frame_positions, mlp_residual

# --- text: CoOp context vectors --------------------------------------------------------------


class TextContext(nn.Module):
    """CoOp's learnable context: ``[SOT] v_1 ... v_n <caption> [EOT]`` through the frozen text tower.

    The tower is not held here (it belongs to the backbone): :meth:`forward` takes the backbone.
    """

    def __init__(self, backbone, ctx_init: str, n_ctx: int) -> None:
        super().__init__()
        clip = backbone.clip
        parts = ("token_embedding", "positional_embedding", "transformer", "attn_mask", "ln_final", "text_projection")
        if (not all(hasattr(clip, part) for part in parts) or getattr(clip, "text_pool_type", None) != "argmax"
                or getattr(backbone.tokenizer, "sot_token_id", None) is None):
            raise TypeError(f"{backbone.name}: text prompts need open_clip's CLIP text tower (EOT pooling by "
                            "argmax) and its BPE tokenizer")
        words = backbone.tokenizer.encode(ctx_init) if ctx_init else []
        if ctx_init and n_ctx not in (0, len(words)):
            raise ValueError(f"ctx_init {ctx_init!r} has {len(words)} tokens but n_ctx={n_ctx} (0: as many as the words)")
        if not ctx_init and n_ctx <= 0:
            raise ValueError("without ctx_init, n_ctx must name how many context vectors to learn")
        if (n_ctx or len(words)) > clip.context_length - 3:
            raise ValueError(f"{n_ctx or len(words)} context vectors leave no room in {clip.context_length} tokens")
        table = clip.token_embedding.weight
        vectors = (table[torch.tensor(words, device=table.device)].detach().clone() if words
                   else 0.02 * torch.randn(n_ctx, table.shape[1], device=table.device, dtype=table.dtype))
        self.vectors = nn.Parameter(vectors)  # [n, width]

    def forward(self, backbone, texts: list[str]) -> torch.Tensor:
        """Texts -> normalised embeddings [N, D], as ``CLIP.encode_text`` with the context inserted."""
        clip, size = backbone.clip, len(self.vectors)
        texts = [texts] if isinstance(texts, str) else list(texts)
        ids = backbone.tokenizer(texts, context_length=clip.context_length - size).to(backbone.device)
        cast = clip.transformer.get_cast_dtype()
        words = clip.token_embedding(ids).to(cast)                          # [N, L-n, width]
        context = self.vectors.to(cast).expand(len(ids), -1, -1)            # [N, n, width]
        x = torch.cat([words[:, :1], context, words[:, 1:]], dim=1)         # SOT, context, caption
        x = x + clip.positional_embedding.to(cast)
        x = clip.ln_final(clip.transformer(x, attn_mask=clip.attn_mask))
        x = x[torch.arange(len(ids), device=x.device), ids.argmax(dim=-1) + size]  # EOT, moved by n
        projection = clip.text_projection
        if projection is not None:
            x = projection(x) if isinstance(projection, nn.Linear) else x @ projection
        return F.normalize(x, dim=-1)


@dataclass
class PromptTextConfig:
    ctx_init: str = "a video of"   # words the context vectors start from (CoOp's CTX_INIT); "": random
    n_ctx: int = 0                 # context vectors (CoOp's N_CTX; 0: one per token of ctx_init)


@register_strategy("prompt-text")
class PromptText(VideoTextModel):
    family = "adapted"
    leaf = "prompt tuning"
    reference = "CoOp (Zhou et al., IJCV 2022) text context, as ActionCLIP's prompts"
    temporal = False
    input_level = "features"
    order = 60

    def __init__(self, backbone, **cfg) -> None:
        self.config = PromptTextConfig(**cfg)
        super().__init__(backbone)
        # named text_*: the training loop then knows text embeddings change and re-encodes them
        self.text_context = TextContext(backbone, self.config.ctx_init, self.config.n_ctx)

    def encode_text(self, texts: list[str]) -> torch.Tensor:
        return self.text_context(self.backbone, texts)


# --- visual: deep prompts + cross-frame messages ---------------------------------------------


def gated_extra_attention(attn: nn.MultiheadAttention, queries: torch.Tensor, extra: torch.Tensor,
                          gate: torch.Tensor) -> torch.Tensor:
    """What the frozen attention reads from ``extra`` tokens, scaled per head by ``tanh(gate)``.

    queries [N, L, C] and extra [N, E, C] (both after the block's ln_1) -> [N, L, C], to be added
    to the block's own attention output. The extra tokens get a softmax of their own (queries
    never trade attention between them and the frame's tokens), so a zero gate adds exact zeros.
    """
    n, length, width = queries.shape
    heads = attn.num_heads
    weights = attn.in_proj_weight.chunk(3)
    biases = attn.in_proj_bias.chunk(3) if attn.in_proj_bias is not None else (None, None, None)

    def heads_first(tokens: torch.Tensor, which: int) -> torch.Tensor:  # [N, len, C] -> [N, h, len, C/h]
        return F.linear(tokens, weights[which], biases[which]).view(n, -1, heads, width // heads).transpose(1, 2)

    mixed = F.scaled_dot_product_attention(heads_first(queries, 0), heads_first(extra, 1), heads_first(extra, 2))
    mixed = mixed * torch.tanh(gate).view(1, heads, 1, 1)                  # [N, h, L, C/h]
    return F.linear(mixed.transpose(1, 2).reshape(n, length, width), attn.out_proj.weight)


class PromptBlock(BlockAdapter):
    """One block's prompt tokens, its cross-frame message path and the zero-init gate."""

    def __init__(self, width: int, heads: int, num_prompts: int, max_frames: int) -> None:
        super().__init__()
        self.prompts = nn.Parameter(0.02 * torch.randn(num_prompts, width)) if num_prompts else None
        self.message_fc = nn.Linear(width, width)           # class token -> this frame's message
        self.message_ln = nn.LayerNorm(width)
        self.message_attn = nn.MultiheadAttention(width, heads, batch_first=True)  # across the T frames
        # The zero gate keeps the untrained model exact whatever these hold, so they start at the
        # scale of the normalised messages they are added to, where the message attention sees them.
        self.frame_position = nn.Parameter(torch.randn(max_frames, width))
        self.gate = nn.Parameter(torch.zeros(heads))

    def extra_tokens(self, cls: torch.Tensor, num_frames: int) -> torch.Tensor:
        """Class tokens [B*T, C] -> each frame's message and the prompts: [B*T, 1+P, C]."""
        width = cls.shape[-1]
        message = self.message_fc(cls.view(-1, num_frames, width))         # [B, T, C]
        query = self.message_ln(message) + frame_positions(self.frame_position, num_frames)
        message = message + self.message_attn(query, query, query, need_weights=False)[0]
        tokens = [message.reshape(-1, 1, width)]
        if self.prompts is not None:
            tokens.append(self.prompts.expand(len(cls), -1, -1))
        return torch.cat(tokens, dim=1)

    def forward(self, block, x: torch.Tensor, num_frames: int) -> torch.Tensor:
        extra = self.extra_tokens(x[:, 0], num_frames)
        normed = block.ln_1(x)
        attended = block.attention(q_x=normed) + gated_extra_attention(block.attn, normed, block.ln_1(extra),
                                                                       self.gate)
        x = x + block.ls_1(attended)
        return x + mlp_residual(block, x)


@dataclass
class PromptVisualConfig:
    layers: int = 4              # the last k blocks get prompts and messages (0: every block, as VPT-deep)
    num_prompts: int = 4         # learnable prompt tokens per block (VPT-deep); 0: messages only
    max_frames: int = 32         # frame position embeddings of the message path
    text_context: bool = False   # also learn prompt-text's context vectors on the text side (CoOp)


@register_strategy("prompt-visual")
class PromptVisual(AdaptedBlocks):
    family = "adapted"
    leaf = "prompt tuning"
    reference = "VPT-deep (Jia et al., ECCV 2022) + X-CLIP cross-frame messages (Ni et al., ECCV 2022)"
    temporal = True
    input_level = "pixels"
    order = 61

    def __init__(self, backbone, **cfg) -> None:
        self.config = c = PromptVisualConfig(**cfg)
        super().__init__(backbone)
        self.adapt_blocks(c.layers, lambda visual: PromptBlock(
            visual.transformer.width, visual.transformer.resblocks[0].attn.num_heads, c.num_prompts, c.max_frames))
        if c.text_context:
            self.text_context = TextContext(backbone, PromptTextConfig.ctx_init, PromptTextConfig.n_ctx)

    def encode_text(self, texts: list[str]) -> torch.Tensor:
        if self.config.text_context:
            return self.text_context(self.backbone, texts)
        return super().encode_text(texts)
