"""A trainable text-side head over the frozen text tower's tokens: post-network tuning for text.

Why it exists. A video strategy learns to tell a clip from its time-reversed twin only if the
two captions ("grows" / "shrinks", "first A, then B" / "first B, then A") are apart in the joint
space. An ILFM pretrained on still images never saw motion words: the embedded tiny CLIP gives
such twin captions cosines of 0.92-0.999 at its pooled (EOT) output, so a strategy whose text
side is frozen has nothing to separate twins *toward* and stays near chance however good its
temporal head is. Real CLIPs know motion words better, but not time order (the survey's point
about ILFMs being "bag-of-words" on temporal language).

The frozen tower's *token* outputs still differ (a word's own token, and a causal tower's
later tokens, carry it), so this head reads all of them: one trainable transformer layer over
the frozen token outputs (after ``ln_final``), the EOT token's result projected to the joint
space through a zero-initialised linear map and added to the frozen embedding. Untrained, it
is exactly the frozen text tower; the ILFM's own weights never change, so it keeps the *frozen
features* of the taxonomy and is a post-network head on the text side, as CLIP4Clip's seqTransf
is on the video side. Strategies get it by default when they train anything and leave the text
tower frozen (``VideoTextModel.text_head_default``); ``create_strategy(..., text_head=False)``
turns it off, and ``workbench bench --no-text-head`` measures the difference.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def text_token_features(backbone, texts: list[str]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The frozen text tower's per-token outputs: ``(tokens [N,L,W], pad_mask [N,L], eot [N])``.

    ``tokens`` are after ``ln_final`` (before the projection); ``pad_mask`` is True past the EOT
    token; ``eot`` is each text's EOT position. Needs open_clip's CLIP text tower (EOT pooling).
    """
    clip = backbone.clip
    if getattr(clip, "text_pool_type", None) != "argmax" or not hasattr(clip, "token_embedding"):
        raise TypeError(f"{backbone.name}: the text head needs open_clip's CLIP text tower (EOT pooling by argmax)")
    ids = backbone.tokenize(list(texts))
    cast = clip.transformer.get_cast_dtype()
    x = clip.token_embedding(ids).to(cast) + clip.positional_embedding.to(cast)
    x = clip.ln_final(clip.transformer(x, attn_mask=clip.attn_mask))
    eot = ids.argmax(dim=-1)
    pad_mask = torch.arange(ids.shape[1], device=ids.device)[None] > eot[:, None]
    return x, pad_mask, eot


def project_text(clip, x: torch.Tensor) -> torch.Tensor:
    """Apply the text tower's output projection (a matrix or an ``nn.Linear``) to ``x [...,W]``."""
    projection = clip.text_projection
    if projection is None:
        return x
    return projection(x) if isinstance(projection, nn.Linear) else x @ projection


class TextHead(nn.Module):
    """One transformer layer over frozen text tokens; a zero-init residual on the EOT embedding."""

    def __init__(self, width: int, embed_dim: int, heads: int = 4) -> None:
        super().__init__()
        heads = heads if width % heads == 0 else 1
        self.layer = nn.TransformerEncoderLayer(width, heads, dim_feedforward=2 * width, dropout=0.0,
                                                batch_first=True, norm_first=True)
        self.out = nn.Linear(width, embed_dim)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    @classmethod
    def for_backbone(cls, backbone) -> "TextHead":
        clip = backbone.clip
        return cls(clip.transformer.width, backbone.embed_dim).to(backbone.device)

    def forward(self, backbone, texts: list[str]) -> torch.Tensor:
        """Texts -> normalised embeddings [N,D]: the frozen EOT embedding plus this head's residual."""
        clip = backbone.clip
        with torch.no_grad():
            tokens, pad_mask, eot = text_token_features(backbone, texts)
            rows = torch.arange(len(eot), device=eot.device)
            frozen = project_text(clip, tokens[rows, eot])
        mixed = self.layer(tokens.float(), src_key_padding_mask=pad_mask)
        residual = self.out(mixed[rows, eot])
        return F.normalize(frozen.float() + residual, dim=-1)
