"""The text-side head (workbench/strategies/text_head.py): untrained it is the frozen text tower,
its token cache changes nothing but the time, and the cache is never used while the tower trains."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from workbench.backbones import load_backbone
from workbench.strategies import create_strategy
from workbench.strategies.text_head import TextHead, project_text, text_token_features

TEXTS = ["a red circle first grows, then moves to the left",
         "a red circle first moves to the right, then shrinks", "a blue square spins clockwise"]


def whole_context(head: TextHead, backbone, texts: list[str]) -> torch.Tensor:
    """The head as first written: the frozen tower run on every call, the layer over the whole context."""
    tokens, pad_mask, eot = text_token_features(backbone, texts)
    rows = torch.arange(len(eot))
    frozen = project_text(backbone.clip, tokens[rows, eot]).detach()
    mixed = head.layer(tokens.detach().float(), src_key_padding_mask=pad_mask)
    return F.normalize(frozen.float() + head.out(mixed[rows, eot]), dim=-1)


def frozen_backbone():
    backbone = load_backbone()
    for p in backbone.parameters():   # as every strategy leaves it
        p.requires_grad_(False)
    return backbone


def trained_head(backbone) -> TextHead:
    torch.manual_seed(0)
    head = TextHead.for_backbone(backbone)
    for p in head.parameters():  # an untrained head adds zero: give it something to add
        p.data.add_(0.05 * torch.randn_like(p))
    return head


def test_untrained_head_is_the_frozen_text_tower():
    backbone = load_backbone()
    model = create_strategy("post-transformer", backbone, text_head=True)
    expected = backbone.encode_text(TEXTS, normalize=True)
    assert torch.allclose(model.encode_text(TEXTS), expected, atol=1e-5)


def test_cached_tokens_give_the_same_embeddings_and_gradients():
    backbone = frozen_backbone()
    head = trained_head(backbone)
    reference = whole_context(head, backbone, TEXTS)
    reference_grad = torch.autograd.grad(reference[:, 0].sum(), head.layer.linear1.weight)[0]
    for _ in range(2):  # the first call fills the cache, the second reads it
        out = head(backbone, TEXTS)
        grad = torch.autograd.grad(out[:, 0].sum(), head.layer.linear1.weight)[0]
        assert torch.allclose(out, reference, atol=1e-5)
        assert torch.allclose(grad, reference_grad, atol=1e-5)
    assert set(head._frozen) == set(TEXTS)
    # the batch's order does not matter
    assert torch.allclose(head(backbone, TEXTS[::-1]), reference.flip(0), atol=1e-5)


def test_no_cache_while_the_text_tower_trains():
    backbone = frozen_backbone()
    head = trained_head(backbone)
    before = head(backbone, TEXTS[:1]).detach()
    assert set(head._frozen) == set(TEXTS[:1])
    head.clear_cache()
    backbone.clip.transformer.resblocks[0].mlp.c_fc.bias.requires_grad_(True)
    try:
        with torch.no_grad():
            backbone.clip.transformer.resblocks[0].mlp.c_fc.bias.add_(0.5)
            after = head(backbone, TEXTS[:1])
            backbone.clip.transformer.resblocks[0].mlp.c_fc.bias.sub_(0.5)
        assert not head._frozen                       # nothing kept while the tower can change
        assert not torch.allclose(after, before, atol=1e-3)  # and the change is seen
    finally:
        backbone.clip.transformer.resblocks[0].mlp.c_fc.bias.requires_grad_(False)


def test_the_cache_stays_under_its_byte_budget(monkeypatch):
    from workbench.strategies import text_head

    backbone = frozen_backbone()
    head = trained_head(backbone)
    reference = whole_context(head, backbone, TEXTS).detach()
    one_text = sum(t.nbytes for t in head.frozen_tokens(backbone, TEXTS[:1])[0])
    head.clear_cache()
    monkeypatch.setattr(text_head, "CACHE_BYTES", 2 * one_text)
    for text, expected in zip(TEXTS, reference):
        assert torch.allclose(head(backbone, [text])[0], expected, atol=1e-5)
    assert list(head._frozen) == TEXTS[1:]          # the oldest text was dropped
    assert head._frozen_bytes <= 2 * one_text + one_text // 2
