"""Taps into the image tower (workbench/backbones/taps.py): what they record, and that they leave
no trace. Fast tests use the tiny config; ``slow`` ones the real ViT-B-32 architecture (random
weights).
"""
import pytest
import torch
from open_clip.transformer import VisionTransformer

from workbench.backbones import TapError, attention_weights, layer_tokens, load_backbone, patch_tokens, queries_keys
from workbench.backbones.taps import _self_attention

TAPS = {"patch_tokens": patch_tokens, "layer_tokens": layer_tokens, "attention_weights": attention_weights,
        "queries_keys": queries_keys}


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    return load_backbone("shapes-clip-tiny")


@pytest.fixture(scope="module")
def vit_b_32():
    torch.manual_seed(0)
    return load_backbone("ViT-B-32")


def _images(backbone, n=2):
    size = backbone.image_size
    return torch.randn(n, 3, size, size, generator=torch.Generator().manual_seed(3))


def _footprint(model):
    """Everything a tap could leave behind: hooks, instance attributes, flags."""
    return [(name, len(m._forward_hooks), len(m._forward_pre_hooks), sorted(m.__dict__))
            for name, m in model.named_modules()] + [model.clip.visual.transformer.grad_checkpointing]


# --- patch tokens -----------------------------------------------------------------------------


@torch.no_grad()
def test_patch_tokens_are_projected_into_the_joint_space(tiny, monkeypatch):
    x = _images(tiny)
    with patch_tokens(tiny) as rec:
        pooled = tiny.encode_images(x)
    grid = tiny.image_size // 8
    assert rec.tokens.shape == (2, grid * grid, tiny.embed_dim) and rec.grid_size == (grid, grid)
    assert torch.equal(rec.pooled, pooled)  # CLS through the same projection is encode_image
    # open_clip's own token output is after ln_post but before the projection
    visual = tiny.clip.visual
    monkeypatch.setattr(visual, "output_tokens", True)
    _, raw_tokens = visual(x)
    assert torch.allclose(rec.tokens, raw_tokens @ visual.proj, atol=1e-6)


# --- layer tokens -----------------------------------------------------------------------------


@torch.no_grad()
def test_layer_tokens_cover_every_block(tiny):
    x = _images(tiny)
    with layer_tokens(tiny) as rec:
        pooled = tiny.encode_images(x)
    visual = tiny.clip.visual
    assert len(rec.tokens) == len(visual.transformer.resblocks) == 6 and rec.layers == list(range(6))
    assert all(t.shape == (2, 1 + 64, 192) for t in rec.tokens)
    # the last block's CLS token is what the tower pools
    assert torch.allclose(visual.ln_post(rec.tokens[-1][:, 0]) @ visual.proj, pooled, atol=1e-6)


def test_layer_tokens_selection(tiny):
    with layer_tokens(tiny, layers=[-1, 0]) as rec:
        tiny.encode_images(_images(tiny, 1))
    assert rec.layers == [0, 5] and len(rec.tokens) == 2
    with pytest.raises(TapError, match="out of range"):
        layer_tokens(tiny, layers=[6])


# --- attention weights ------------------------------------------------------------------------


def test_attention_weights_are_probabilities_per_head(tiny):
    with attention_weights(tiny) as rec:
        tiny.encode_images(_images(tiny))
    assert len(rec.weights) == 6
    for w in rec.weights:
        assert w.shape == (2, 3, 65, 65)  # width 192 / head_width 64 = 3 heads; 1 + 8x8 tokens
        assert (w >= 0).all() and torch.allclose(w.sum(-1), torch.ones(2, 3, 65), atol=1e-5)


def test_attention_weights_stay_in_the_autograd_graph(tiny):
    x = _images(tiny).requires_grad_()
    with attention_weights(tiny) as rec:
        pooled = tiny.encode_images(x)
    # gradient relevancy: d(output)/d(attention) for every block
    grads = torch.autograd.grad(pooled[:, 0].sum(), rec.weights, retain_graph=True)
    assert all(g is not None and g.abs().sum() > 0 for g in grads)
    # and from a scalar of the attention weights back to the pixels
    rec.weights[2][:, :, 0, 1:].sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0


def test_attention_weights_ignore_grad_checkpointing_recomputation(tiny):
    visual = tiny.clip.visual
    visual.set_grad_checkpointing(True)
    try:
        x = _images(tiny).requires_grad_()
        with attention_weights(tiny) as rec:
            tiny.encode_images(x).sum().backward()
        assert len(rec.calls) == 1 and len(rec.weights) == 6
        assert visual.transformer.grad_checkpointing  # restored
    finally:
        visual.set_grad_checkpointing(False)


@pytest.mark.parametrize("mask", ["none", "float", "bool"])
@torch.no_grad()
def test_written_out_attention_matches_multihead_attention(mask):
    torch.manual_seed(4)
    attn = torch.nn.MultiheadAttention(16, 4, batch_first=True).eval()
    x = torch.randn(2, 5, 16)
    causal = torch.ones(5, 5, dtype=torch.bool).triu(1)
    attn_mask = {"none": None, "bool": causal,
                 "float": torch.zeros(5, 5).masked_fill(causal, float("-inf"))}[mask]
    expected, expected_weights = attn(x, x, x, attn_mask=attn_mask, average_attn_weights=False)
    out, weights = _self_attention(attn, x, attn_mask)
    assert torch.allclose(out, expected, atol=1e-6) and torch.allclose(weights, expected_weights, atol=1e-6)


def test_attention_taps_do_not_nest(tiny):
    with attention_weights(tiny):
        with pytest.raises(TapError, match="already tapped"):
            attention_weights(tiny)


def test_attention_weights_through_a_lora_adapter():
    peft = pytest.importorskip("peft")
    torch.manual_seed(5)
    bb = load_backbone("shapes-clip-tiny")
    x = _images(bb)
    plain = bb.encode_images(x).detach()
    peft.get_peft_model(bb.clip, peft.LoraConfig(r=4, target_modules=["attn"], init_lora_weights=False))
    adapted = bb.encode_images(x).detach()
    with attention_weights(bb) as rec:
        inside = bb.encode_images(x)
    assert not torch.allclose(adapted, plain, atol=1e-3)  # the adapter is active ...
    assert torch.allclose(inside, adapted, atol=1e-5) and len(rec.weights) == 6  # ... and tapped
    inside.sum().backward()
    lora = [p for n, p in bb.clip.named_parameters() if "lora_A" in n and "visual" in n]
    assert lora and all(p.grad is not None and p.grad.abs().sum() > 0 for p in lora)


def test_taps_accept_the_raw_vision_transformer(tiny):
    with attention_weights(tiny.clip.visual) as rec:
        tiny.clip.visual(_images(tiny, 1))
    assert len(rec.weights) == 6


def test_custom_attention_blocks_are_refused():
    tower = VisionTransformer(image_size=32, patch_size=16, width=32, layers=1, heads=2, mlp_ratio=2.0,
                              output_dim=16, qk_norm=True)
    with pytest.raises(TapError, match="MultiheadAttention"):
        attention_weights(tower)
    with pytest.raises(TapError, match="VisionTransformer"):
        attention_weights(torch.nn.Linear(2, 2))


# --- queries and keys -------------------------------------------------------------------------


@torch.no_grad()
def test_queries_keys_are_what_each_block_compares(tiny):
    """The recorded queries and keys of the chosen blocks give exactly the attention those blocks
    apply (softmax of their scaled products, per head)."""
    x = _images(tiny)
    with queries_keys(tiny, layers=[-1, 2]) as qk, attention_weights(tiny) as attn:
        tiny.encode_images(x)
    assert qk.layers == [2, 5] and len(qk.queries) == len(qk.keys) == 2
    heads = tiny.clip.visual.transformer.resblocks[0].attn.num_heads
    for block, q, k in zip(qk.layers, qk.queries, qk.keys):
        assert q.shape == k.shape == (2, heads, attn.weights[block].shape[-1], q.shape[-1])
        probs = (q @ k.transpose(-2, -1) * q.shape[-1] ** -0.5).softmax(-1)
        assert torch.allclose(probs, attn.weights[block], atol=1e-5)
    with pytest.raises(TapError, match="out of range"):
        queries_keys(tiny, layers=[6]).__enter__()


# --- every tap: no trace, exception safety, several calls -------------------------------------


@pytest.mark.parametrize("tap", TAPS.values(), ids=TAPS.keys())
@torch.no_grad()
def test_tap_leaves_outputs_and_model_unchanged(tiny, tap):
    x = _images(tiny)
    before, reference = _footprint(tiny), tiny.encode_images(x)
    with tap(tiny):
        inside = tiny.encode_images(x)
        assert _footprint(tiny) != before  # the tap is really installed
    assert torch.allclose(inside, reference, atol=1e-5)
    assert _footprint(tiny) == before
    assert torch.equal(tiny.encode_images(x), reference)


@pytest.mark.parametrize("tap", TAPS.values(), ids=TAPS.keys())
def test_tap_is_removed_when_the_block_raises(tiny, tap):
    before = _footprint(tiny)
    with pytest.raises(KeyError, match="boom"):
        with tap(tiny):
            tiny.encode_images(_images(tiny, 1))
            raise KeyError("boom")
    assert _footprint(tiny) == before


@torch.no_grad()
def test_several_calls_concatenate_along_the_batch(tiny):
    with attention_weights(tiny) as attn, patch_tokens(tiny) as patches:
        first = tiny.encode_images(_images(tiny, 2))
        second = tiny.encode_images(_images(tiny, 1))
    assert len(attn.calls) == 2 and attn.weights[0].shape[0] == 3
    assert torch.allclose(patches.pooled, torch.cat([first, second]))


def test_nothing_recorded_is_an_error(tiny):
    with patch_tokens(tiny) as rec:
        pass
    with pytest.raises(TapError, match="nothing recorded"):
        rec.tokens


@pytest.mark.gpu
def test_attention_weights_on_cuda(tiny):
    gpu = load_backbone("shapes-clip-tiny", device="cuda")
    gpu.clip.load_state_dict(tiny.clip.state_dict())
    x = _images(gpu).cuda().requires_grad_()
    with torch.no_grad():
        reference = gpu.encode_images(x)  # the fused kernel
    with attention_weights(gpu) as rec:
        inside = gpu.encode_images(x)
    assert torch.nn.functional.cosine_similarity(inside, reference).min() > 0.999
    assert torch.allclose(rec.weights[0].sum(-1), torch.ones_like(rec.weights[0][..., 0]), atol=1e-3)
    rec.weights[-1][:, :, 0, 1:].sum().backward()
    assert x.grad.abs().sum() > 0


# --- the real ViT-B-32 architecture -----------------------------------------------------------


@pytest.mark.slow
def test_vit_b_32_taps(vit_b_32):
    x = _images(vit_b_32, 1).requires_grad_()
    with (attention_weights(vit_b_32) as attn, layer_tokens(vit_b_32) as layers,
          patch_tokens(vit_b_32) as patches):
        pooled = vit_b_32.encode_images(x)
    assert len(attn.weights) == len(layers.tokens) == 12
    assert attn.weights[0].shape == (1, 12, 50, 50)  # 12 heads; 1 + 7x7 tokens
    assert torch.allclose(attn.weights[-1].sum(-1), torch.ones(1, 12, 50), atol=1e-5)
    assert patches.tokens.shape == (1, 49, 512) and torch.equal(patches.pooled, pooled)
    attn.weights[-1][:, :, 0, 1:].sum().backward()
    assert x.grad.abs().sum() > 0


@pytest.mark.slow
@torch.no_grad()
def test_vit_b_32_outputs_unchanged(vit_b_32):
    x = _images(vit_b_32, 1)
    before, reference = _footprint(vit_b_32), vit_b_32.encode_images(x)
    with attention_weights(vit_b_32), layer_tokens(vit_b_32), patch_tokens(vit_b_32):
        inside = vit_b_32.encode_images(x)
    assert torch.allclose(inside, reference, atol=1e-4)
    assert _footprint(vit_b_32) == before and torch.equal(vit_b_32.encode_images(x), reference)
