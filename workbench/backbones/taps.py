"""Taps: read what a CLIP image tower computes inside, without changing what it outputs.

Four context managers over a :class:`~workbench.backbones.openclip.Backbone`, an open_clip
``CLIP`` or its ``VisionTransformer``. Each yields a recorder that fills during the forward calls
made inside the ``with`` block; on exit every hook and patched attribute is removed, also when
the block raises::

    with attention_weights(backbone) as rec:
        backbone.encode_images(x)
    rec.weights          # one [N, heads, L, L] tensor per block, still in the autograd graph

- ``patch_tokens``: patch tokens in the joint (text) space, ``[N, L-1, D]`` — the dense features
  of MaskCLIP-style grounding (Zhou et al., *Extract Free Dense Labels from CLIP*, ECCV 2022).
- ``layer_tokens``: the residual stream after each block, ``[N, L, width]``.
- ``queries_keys``: each block's self-attention queries and keys per head, ``[N, heads, L, d]``
  (EVL's temporal cross attention compares them across frames).
- ``attention_weights``: per-head attention probabilities, for attention rollout (Abnar & Zuidema,
  ACL 2020) and gradient relevancy (Chefer et al., ICCV 2021).

L = 1 + number of patches (the CLS token comes first). When several forward calls run inside one
block, a recorder concatenates them along N; ``rec.calls`` keeps them apart. Take gradients with
respect to recorded tensors from a single call: concatenated tensors are copies.
"""
from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

import torch
import torch.nn.functional as F
from open_clip.transformer import VisionTransformer
from torch import nn


class TapError(ValueError):
    """The model cannot be tapped this way (architecture not supported, nothing recorded)."""


class Recorder:
    """What a tap saw: ``calls[i]`` holds the tensors recorded during the i-th forward call."""

    def __init__(self) -> None:
        self.calls: list[list[torch.Tensor]] = []

    def _start_call(self, *_) -> None:
        self.calls.append([])

    def _record(self, tensor: torch.Tensor) -> None:
        if not self.calls:  # the transformer was called without going through the tower
            self._start_call()
        self.calls[-1].append(tensor)

    def _merged(self) -> list[torch.Tensor]:
        if not self.calls:
            raise TapError("nothing recorded: run the model inside the `with` block")
        if len(self.calls) == 1:
            return self.calls[0]  # the graph's own tensors, so autograd.grad can use them
        return [torch.cat(parts) for parts in zip(*self.calls)]


class PatchTokens(Recorder):
    """Patch tokens and the pooled image embedding, both projected into the joint space."""

    def __init__(self, grid_size: tuple[int, int]) -> None:
        super().__init__()
        self.grid_size = grid_size  # (rows, cols) of patches: tokens.view(N, *grid_size, D) is a map

    @property
    def tokens(self) -> torch.Tensor:  # [N, L-1, D]
        return self._merged()[0]

    @property
    def pooled(self) -> torch.Tensor:  # [N, D], equal to encode_image's output
        return self._merged()[1]


class LayerTokens(Recorder):
    """The residual stream after each tapped block, CLS first."""

    def __init__(self, layers: list[int]) -> None:
        super().__init__()
        self.layers = layers  # block indices, in order

    @property
    def tokens(self) -> list[torch.Tensor]:  # per layer [N, L, width]
        return self._merged()


class QueriesKeys(Recorder):
    """Each tapped block's self-attention queries and keys, per head, before any scaling."""

    def __init__(self, layers: list[int]) -> None:
        super().__init__()
        self.layers = layers  # block indices, in order

    @property
    def queries(self) -> list[torch.Tensor]:  # per layer [N, heads, L, head width]
        return self._merged()[0::2]

    @property
    def keys(self) -> list[torch.Tensor]:  # per layer [N, heads, L, head width]
        return self._merged()[1::2]


class AttentionWeights(Recorder):
    """Per-head attention probabilities of every block (rows sum to 1)."""

    @property
    def weights(self) -> list[torch.Tensor]:  # per block [N, heads, L, L]
        return self._merged()


def vision_tower(model: nn.Module) -> VisionTransformer:
    """The ``VisionTransformer`` inside a Backbone, a CLIP, or the tower itself."""
    visual = getattr(getattr(model, "clip", model), "visual", model)
    if not isinstance(visual, VisionTransformer):
        raise TapError(f"taps need open_clip's VisionTransformer image tower, got {type(visual).__name__}")
    return visual


@contextlib.contextmanager
def _tapped(visual: VisionTransformer, recorder: Recorder,
            install: Callable[[list[Callable[[], None]]], None]) -> Iterator[Recorder]:
    """Install taps, yield the recorder, then undo every change even if the block raised."""
    undo = [visual.register_forward_pre_hook(recorder._start_call).remove]
    checkpointing = visual.transformer.grad_checkpointing
    visual.transformer.grad_checkpointing = False  # recomputation in backward would record twice
    try:
        install(undo)  # appends each undo step as it goes, so a failure midway is undone too
        yield recorder
    finally:
        visual.transformer.grad_checkpointing = checkpointing
        for step in reversed(undo):
            step()


def _project(x: torch.Tensor, proj: torch.Tensor | None) -> torch.Tensor:
    return x @ proj if proj is not None else x


def patch_tokens(model: nn.Module) -> contextlib.AbstractContextManager[PatchTokens]:
    """Record patch tokens after ``ln_post`` and the projection ``visual.proj``: ``[N, L-1, D]``.

    open_clip's ``output_tokens=True`` stops before the projection; these tokens live in the
    same space as text embeddings, so a patch can be scored against a caption.
    """
    visual = vision_tower(model)
    if visual.attn_pool is not None or visual.final_ln_after_pool or visual.pool_type not in ("tok", "avg"):
        raise TapError("patch_tokens supports CLS-token or average pooling with ln_post before pooling")
    recorder = PatchTokens(tuple(visual.grid_size))

    def on_ln_post(module: nn.Module, args, out: torch.Tensor) -> None:  # out [N, L, width]
        tokens = out[:, 1:]
        pooled = out[:, 0] if visual.pool_type == "tok" else tokens.mean(dim=1)
        recorder._record(_project(tokens, visual.proj))
        recorder._record(_project(pooled, visual.proj))

    def install(undo: list[Callable[[], None]]) -> None:
        undo.append(visual.ln_post.register_forward_hook(on_ln_post).remove)

    return _tapped(visual, recorder, install)


def layer_tokens(model: nn.Module,
                 layers: list[int] | None = None) -> contextlib.AbstractContextManager[LayerTokens]:
    """Record the tokens after each block in ``layers`` (default: all; negative indices count back).

    Layers come back in block order, whatever order they were asked in.
    """
    visual = vision_tower(model)
    blocks = visual.transformer.resblocks
    indices = _block_indices(len(blocks), layers)
    recorder = LayerTokens(indices)

    def on_block(module: nn.Module, args, out: torch.Tensor) -> None:  # out [N, L, width]
        recorder._record(out)

    def install(undo: list[Callable[[], None]]) -> None:
        for index in indices:
            undo.append(blocks[index].register_forward_hook(on_block).remove)

    return _tapped(visual, recorder, install)


def queries_keys(model: nn.Module,
                 layers: list[int] | None = None) -> contextlib.AbstractContextManager[QueriesKeys]:
    """Record the queries and keys of each block in ``layers`` (default: all; negative indices
    count back): what its self-attention compares, split into heads, ``[N, heads, L, d]``.

    For attention *across* frames (EVL's temporal cross attention compares one frame's queries
    with its neighbours' keys). A forward pre-hook on each block's ``nn.MultiheadAttention``
    applies the module's own input projection to the (already LayerNormed) input; the block's
    output is untouched. Under a peft LoRA layer these are the base layer's queries and keys,
    without the adapter.
    """
    visual = vision_tower(model)
    blocks = visual.transformer.resblocks
    indices = _block_indices(len(blocks), layers)
    recorder = QueriesKeys(indices)

    def on_attention(attn: nn.MultiheadAttention, args) -> None:  # args[0]: query [N, L, width]
        x = args[0]
        n, length, width = x.shape
        heads = attn.num_heads
        q, k = F.linear(x, attn.in_proj_weight[:2 * width], attn.in_proj_bias[:2 * width]).chunk(2, dim=-1)
        recorder._record(q.view(n, length, heads, width // heads).transpose(1, 2))
        recorder._record(k.view(n, length, heads, width // heads).transpose(1, 2))

    def install(undo: list[Callable[[], None]]) -> None:
        for index in indices:
            undo.append(_multihead_attention(blocks[index]).register_forward_pre_hook(on_attention).remove)

    return _tapped(visual, recorder, install)


def _block_indices(depth: int, layers: list[int] | None) -> list[int]:
    """Sorted block indices for ``layers`` (None: all; negative ones count back)."""
    every = range(depth)
    try:
        return sorted({every[i] for i in (every if layers is None else layers)})
    except IndexError:
        raise TapError(f"layers {layers} out of range for a {depth}-block transformer") from None


def _self_attention(attn: nn.MultiheadAttention, x: torch.Tensor,
                    attn_mask: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
    """``attn(x, x, x)`` for batch-first ``x [N, L, C]``, written out so that the returned
    probabilities ``[N, heads, L, L]`` are the very tensor multiplied with the values."""
    n, length, width = x.shape
    heads = attn.num_heads
    qkv = F.linear(x, attn.in_proj_weight, attn.in_proj_bias)  # [N, L, 3C]
    q, k, v = qkv.view(n, length, 3, heads, width // heads).permute(2, 0, 3, 1, 4)  # each [N, h, L, d]
    logits = (q * (width // heads) ** -0.5) @ k.transpose(-2, -1)  # [N, h, L, L]
    if attn_mask is not None:
        mask = attn_mask.view(n, heads, length, length) if attn_mask.ndim == 3 else attn_mask
        logits = logits.masked_fill(mask, float("-inf")) if mask.dtype == torch.bool else logits + mask
    weights = logits.softmax(dim=-1)
    mixed = F.dropout(weights, attn.dropout, attn.training) @ v  # [N, h, L, d]
    mixed = mixed.transpose(1, 2).reshape(n, length, width)  # heads side by side again
    out = F.linear(mixed, attn.out_proj.weight, attn.out_proj.bias)
    return out, weights


def _multihead_attention(block: nn.Module) -> nn.MultiheadAttention:
    """The block's ``nn.MultiheadAttention``, also under a wrapper that runs it (peft's LoRA layer)."""
    attn = block.attn
    base = attn.get_base_layer() if hasattr(attn, "get_base_layer") else attn
    if not isinstance(base, nn.MultiheadAttention):
        kind = f"{type(attn).__module__}.{type(attn).__qualname__}"
        raise TapError(f"attention_weights needs nn.MultiheadAttention blocks, found {kind} "
                       "(open_clip's custom blocks, e.g. qk_norm or scaled cosine attention, are not supported)")
    _check_self_attention(base)
    return base


def _check_self_attention(attn: nn.MultiheadAttention) -> None:
    if not (attn.batch_first and attn._qkv_same_embed_dim and attn.bias_k is None):
        raise TapError("attention_weights needs batch-first self-attention without bias_k/bias_v")
    if "forward" in attn.__dict__:
        raise TapError("this model's attention is already tapped (attention_weights cannot nest)")


def attention_weights(model: nn.Module) -> contextlib.AbstractContextManager[AttentionWeights]:
    """Record every block's per-head attention ``[N, heads, L, L]``, kept in the autograd graph.

    open_clip calls each block's ``nn.MultiheadAttention`` with ``need_weights=False`` (so that
    the fused kernel runs), and even with ``need_weights=True`` PyTorch returns a *view* of the
    probabilities that the output was not computed from, so ``autograd.grad(output, weights)``
    would fail. Inside the ``with`` block each module's ``forward`` is therefore shadowed (an
    instance attribute; a hook cannot change what runs) by the same attention written out with
    the module's own parameters: outputs match up to float rounding, and the recorded weights
    are the ones the output depends on (gradient relevancy, Chefer et al. 2021). A peft LoRA
    layer around the attention is tapped through its base layer, with the adapter merged in.
    """
    visual = vision_tower(model)
    attns = [_multihead_attention(block) for block in visual.transformer.resblocks]
    recorder = AttentionWeights()

    def tapped_forward(attn: nn.MultiheadAttention) -> Callable:
        def forward(query, key, value, key_padding_mask=None, need_weights=True, attn_mask=None,
                    average_attn_weights=True, is_causal=False):
            if not (query is key is value) or key_padding_mask is not None or is_causal:
                raise TapError("attention_weights taps self-attention without padding or causal masks")
            out, weights = _self_attention(attn, query, attn_mask)
            recorder._record(weights)
            if not need_weights:  # what open_clip asks for; keep nn.MultiheadAttention's contract
                return out, None
            return out, weights.mean(dim=1) if average_attn_weights else weights

        return forward

    def install(undo: list[Callable[[], None]]) -> None:
        for attn in attns:
            attn.forward = tapped_forward(attn)
            undo.append(lambda attn=attn: delattr(attn, "forward"))

    return _tapped(visual, recorder, install)
