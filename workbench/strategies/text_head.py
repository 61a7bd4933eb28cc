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

CACHE_BYTES = 1 << 30   # at most this much of frozen text tokens kept per head (oldest texts dropped first)


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
    """One transformer layer over frozen text tokens; a zero-init residual on the EOT embedding.

    Speed: while the text tower is frozen (the case the head is made for), each distinct text's
    tokens are computed once and kept (:meth:`frozen_tokens`), as training's text cache does for
    frozen embeddings; and the layer runs only up to the batch's longest text, not over the
    tower's whole context (the padding it drops is masked out anyway). Same result, in a
    fraction of the time: ``benchmarks/bench_text_head.py`` measures it.
    """

    def __init__(self, width: int, embed_dim: int, heads: int = 4) -> None:
        super().__init__()
        heads = heads if width % heads == 0 else 1
        self.layer = nn.TransformerEncoderLayer(width, heads, dim_feedforward=2 * width, dropout=0.0,
                                                batch_first=True, norm_first=True)
        self.out = nn.Linear(width, embed_dim)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)
        # text -> (its frozen tokens up to EOT [len, W], its frozen embedding [D]); not saved
        self._frozen: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
        self._frozen_bytes = 0

    @classmethod
    def for_backbone(cls, backbone) -> "TextHead":
        clip = backbone.clip
        return cls(clip.transformer.width, backbone.embed_dim).to(backbone.device)

    def clear_cache(self) -> None:
        """Forget every kept text's frozen tokens (they are recomputed on the next call)."""
        self._frozen.clear()
        self._frozen_bytes = 0

    def frozen_tokens(self, backbone, texts: list[str]) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Per text: the frozen tower's tokens up to its EOT [len, W] and its frozen embedding [D].

        Kept per distinct text while the text tower is frozen; recomputed every call while any
        of its weights trains (the cache would go stale)."""
        clip = backbone.clip
        keep = not any(p.requires_grad for p in clip.transformer.parameters()) and not (
            clip.token_embedding.weight.requires_grad or clip.positional_embedding.requires_grad)
        cache = self._frozen if keep else {}
        missing = list(dict.fromkeys(t for t in texts if t not in cache))
        if missing:
            with torch.no_grad():
                tokens, _, eot = text_token_features(backbone, missing)
                frozen = project_text(clip, tokens[torch.arange(len(eot), device=eot.device), eot])
                for i, text in enumerate(missing):
                    cache[text] = (tokens[i, :int(eot[i]) + 1].float().clone(), frozen[i].float().clone())
        found = [cache[t] for t in texts]
        if keep:
            self._frozen_bytes += sum(cache[t][0].nbytes + cache[t][1].nbytes for t in missing)
            while self._frozen_bytes > CACHE_BYTES and len(cache) > len(missing):
                tokens, embedding = cache.pop(next(iter(cache)))
                self._frozen_bytes -= tokens.nbytes + embedding.nbytes
        return found

    def forward(self, backbone, texts: list[str]) -> torch.Tensor:
        """Texts -> normalised embeddings [N,D]: the frozen EOT embedding plus this head's residual."""
        frozen = self.frozen_tokens(backbone, texts)
        device = self.out.weight.device
        lengths = torch.tensor([len(tokens) for tokens, _ in frozen], device=device)
        tokens = nn.utils.rnn.pad_sequence([tokens.to(device) for tokens, _ in frozen], batch_first=True)
        pad_mask = torch.arange(tokens.shape[1], device=device)[None] >= lengths[:, None]
        mixed = self.layer(tokens, src_key_padding_mask=pad_mask)
        residual = self.out(mixed[torch.arange(len(frozen), device=device), lengths - 1])
        embeddings = torch.stack([embedding.to(device) for _, embedding in frozen])
        return F.normalize(embeddings + residual, dim=-1)
