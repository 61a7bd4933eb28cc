"""Adapted-feature strategies, group A: full fine-tuning, partial tuning, the extra motion model, LoRA.

Built on the tiny CLIP config with random weights (fast, and independent of the pretrained asset).
Random CLIP frame features barely register where an object is, but they change a lot when it grows
or shrinks, so the order tests use grow/shrink twins: a clip of an object growing and its exact
time reversal, captioned "... shrinks". Behaviour checked here:

- every strategy starts as (or within float rounding of) zero-shot mean pooling;
- the temporal ones (extra-motion, lora-temporal) start at exactly 50% twin accuracy and tell
  twins apart after a short training run, their loss falling below the ln 2 that no order-blind
  model can go under when every batch holds twin pairs;
- the order-blind ones (full fine-tuning, partial tuning, LoRA alone) stay at exactly 50% after
  training, while LoRA alone still learns appearance (which object is it) down towards ln 2;
- the backbone passed in is never changed, whatever the strategy trains.
"""
import copy
from dataclasses import replace

import numpy as np
import pytest
import torch
import twins
from safetensors.torch import load_file

from workbench.backbones.openclip import load_backbone
from workbench.backbones.taps import attention_weights
from workbench.strategies import create_strategy, flops_per_clip, list_strategies
from workbench.tasks.retrieval import embed_videos, evaluate_retrieval
from workbench.train import RetrievalData, TrainConfig, load_trainable, train_retrieval

NAMES = ["full-finetune", "partial-lastk", "partial-layernorm", "partial-bitfit", "extra-motion", "lora",
         "lora-temporal"]
ORDER_BLIND = ["full-finetune", "partial-lastk", "partial-layernorm", "partial-bitfit"]
FRAMES = 4
# Short runs. Batches of 4 are two twin pairs (train.py's hard negatives), so the contrast is mostly
# about order; a model that cannot see order then has a loss floor of ln 2 (twins tie). LoRA's
# weights sit under `backbone.`, where train.py gives the backbone_lr. The explicit twin term is
# off so the floor is InfoNCE's alone (with it, an order-blind model's floor is ln 2 higher).
TRAIN = TrainConfig(steps=40, batch_size=4, lr=5e-3, backbone_lr=5e-4, warmup=3, checkpoint_every=0,
                    amp=False, seed=0, twin_weight=0.0)
ORDER_BLIND_FLOOR = float(np.log(2))


def grow_shrink_clips(colours=("red", "green", "blue"), shapes=("circle", "square", "triangle", "star"), size=64) -> RetrievalData:
    return twins.grow_shrink_clips(colours, shapes, FRAMES, size)


right_object = twins.right_object


@pytest.fixture(scope="module")
def tiny():
    """The tiny CLIP (random weights), a probe batch, and what it computes before any strategy exists."""
    return twins.tiny_backbone_snapshot(FRAMES)


assert_untouched = twins.assert_untouched


@pytest.fixture(scope="module")
def clips():
    return grow_shrink_clips()


def test_registered_in_survey_order():
    adapted = list_strategies("adapted")
    assert [n for n in adapted if n in NAMES] == NAMES


def _expected_trainable(name: str, model, backbone) -> set[str]:
    """Names of the parameters each strategy should train, derived from the architecture."""
    names = dict(model.named_parameters())
    visual = "backbone.clip.visual."
    if name == "full-finetune":
        return {n for n in names if n.startswith("backbone.")} - {"backbone.clip.logit_scale"}
    if name == "partial-lastk":
        last = len(backbone.clip.visual.transformer.resblocks) - 2
        tops = tuple(f"{visual}transformer.resblocks.{i}." for i in (last, last + 1))
        return {n for n in names if n.startswith(tops + (f"{visual}ln_post.",)) or n == f"{visual}proj"}
    if name == "partial-layernorm":
        norms = {f"backbone.{m}." for m, mod in model.backbone.named_modules() if isinstance(mod, torch.nn.LayerNorm)}
        return {n for n in names if n.rsplit(".", 1)[0] + "." in norms}
    if name == "partial-bitfit":
        return {n for n in names if n.startswith("backbone.") and n.endswith("bias")}
    if name == "extra-motion":
        return {n for n in names if n.startswith(("motion.", "fuse."))}
    lora = {n for n in names if "lora_" in n}
    return lora | ({n for n in names if n.startswith("head.")} if name == "lora-temporal" else set())


@pytest.mark.parametrize("name", NAMES)
def test_creation_counts_and_untouched_backbone(tiny, name):
    backbone = tiny[0]
    model = create_strategy(name, backbone)
    assert model.name == name and model.family == "adapted" and model.input_level == "pixels"
    assert model.leaf and model.reference
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable == _expected_trainable(name, model, backbone)
    counts = model.parameter_counts()
    assert 0 < counts["trainable"] < counts["total"]
    # the ILFM is counted once, whether the strategy copied its image tower, both towers, or neither
    added = sum(p.numel() for n, p in model.named_parameters() if not n.startswith("backbone.") or "lora_" in n)
    assert counts["total"] == sum(p.numel() for p in backbone.parameters()) + added
    # what trains is never a tensor of the caller's backbone
    assert not {id(p) for p in model.trainable_parameters()} & {id(p) for p in backbone.parameters()}
    assert_untouched(tiny)


def test_count_formulas(tiny):
    backbone = tiny[0]
    width = backbone.clip.visual.transformer.width
    layers = len(backbone.clip.visual.transformer.resblocks)
    # LoRA on a fused q/k/v projection (A [r,C], B [3C,r]) and on out_proj (A [r,C], B [C,r]): 6rC a block
    assert create_strategy("lora", backbone, rank=4).parameter_counts()["trainable"] == 6 * 4 * width * layers
    both = create_strategy("lora", backbone, rank=4, targets=("attn", "mlp.c_fc"))
    assert both.parameter_counts()["trainable"] == (6 + 5) * 4 * width * layers  # c_fc: [r,C] + [4C,r]
    full = create_strategy("full-finetune", backbone, train_text=False).parameter_counts()
    assert full["trainable"] == sum(p.numel() for p in backbone.clip.visual.parameters())
    assert_untouched(tiny)


def test_lora_wraps_attention_in_a_private_image_tower(tiny):
    backbone, probe = tiny[:2]
    model = create_strategy("lora", backbone)
    assert model.backbone.clip.transformer is backbone.clip.transformer  # text tower shared, not copied
    assert model.backbone.clip.visual is not backbone.clip.visual
    attn = model.backbone.clip.visual.transformer.resblocks[0].attn
    assert type(attn).__module__.startswith("peft.")
    # the wrapper passes every argument through: a mask and need_weights act as on the original
    original = backbone.clip.visual.transformer.resblocks[0].attn
    tokens = torch.randn(2, 5, original.embed_dim)
    mask = torch.triu(torch.full((5, 5), float("-inf")), diagonal=1)
    with torch.no_grad():
        out, weights = attn(tokens, tokens, tokens, need_weights=True, attn_mask=mask)
        expected, expected_weights = original(tokens, tokens, tokens, need_weights=True, attn_mask=mask)
    assert torch.allclose(out, expected, atol=1e-5) and torch.allclose(weights, expected_weights, atol=1e-6)
    assert weights[:, 0, 1:].abs().max() == 0  # the causal mask was applied
    with torch.no_grad():
        for p in model.trainable_parameters():  # make the low-rank updates non-zero
            p.normal_(std=0.05)
    # peft passes need_weights through: the attention taps still read per-head weights
    with attention_weights(model.backbone) as rec:
        changed = model.frame_features(probe)
    assert len(rec.weights) == len(backbone.clip.visual.transformer.resblocks)
    assert torch.allclose(rec.weights[0].sum(-1), torch.ones(()), atol=1e-5)
    assert not torch.allclose(changed, tiny[2], atol=1e-3)
    assert_untouched(tiny)


def test_bad_options_are_refused(tiny):
    backbone = tiny[0]
    with pytest.raises(ValueError, match="k must be in 1..6"):
        create_strategy("partial-lastk", backbone, k=7)
    with pytest.raises(ValueError, match="targets"):
        create_strategy("lora", backbone, targets=("out_proj",))
    with pytest.raises(TypeError):
        create_strategy("extra-motion", backbone, depth=3)
    with pytest.raises(TypeError):
        create_strategy("partial-bitfit", backbone, mode="lastk")  # the name fixes the mode


def test_bitfit_adds_layernorm_shifts_after_the_norm_with_the_same_outputs_and_gradients(tiny):
    """BitFit's LayerNorms add their trained shift after a scale-only norm (a CUDA layer_norm
    backward returned an empty shift gradient for large batches): nothing else may change."""
    from open_clip.transformer import LayerNorm

    from workbench.strategies.adapted.partial import LayerNormThenShift

    backbone, probe = tiny[0], tiny[1]
    model = create_strategy("partial-bitfit", backbone)
    norms = [m for m in model.backbone.modules() if isinstance(m, torch.nn.LayerNorm)]
    assert norms and all(type(m) is LayerNormThenShift for m in norms)
    assert all(m.bias.requires_grad and not m.weight.requires_grad for m in norms)
    plain = copy.deepcopy(model)
    for m in plain.backbone.modules():
        if isinstance(m, LayerNormThenShift):
            m.__class__ = LayerNorm
    with torch.no_grad():   # shifts away from their pretrained values, so a lost shift would show
        for a, b in zip((m.bias for m in norms), (m.bias for m in plain.backbone.modules() if isinstance(m, LayerNorm))):
            a.add_(0.1)
            b.add_(0.1)
    direction = torch.randn(backbone.embed_dim, generator=torch.Generator().manual_seed(0))
    outputs = []
    for m in (model, plain):
        video, text = m(probe, ["a red circle grows", "a blue star shrinks"])
        ((video @ direction).sum() + (text @ direction).sum()).backward()
        outputs.append((video, text, [p.grad for p in m.trainable_parameters()]))
    (video, text, grads), (video0, text0, grads0) = outputs
    assert torch.allclose(video, video0, atol=1e-5) and torch.allclose(text, text0, atol=1e-5)
    assert len(grads) == len(grads0) and all(torch.allclose(g, g0, atol=1e-5) for g, g0 in zip(grads, grads0))
    assert_untouched(tiny)


@pytest.mark.parametrize("name,cfg", [(n, {}) for n in NAMES] + [("partial-lastk", {"temporal_head": True})])
def test_untrained_is_mean_pooling(tiny, name, cfg):
    backbone, probe = tiny[:2]
    mean = create_strategy("mean-pool", backbone)
    model = create_strategy(name, backbone, **cfg)
    assert model.temporal == (name in ("extra-motion", "lora-temporal") or bool(cfg))
    with torch.no_grad():
        assert torch.allclose(model.encode_video(probe), mean.encode_video(probe), atol=1e-5)


def test_flops_per_clip(tiny):
    backbone = tiny[0]
    base = flops_per_clip(create_strategy("mean-pool", backbone), 8)
    for name in NAMES:
        flops = flops_per_clip(create_strategy(name, backbone), 8)
        # the same ViT runs on every frame; extra models, LoRA's updates and heads add to it
        assert flops > base if name in ("extra-motion", "lora", "lora-temporal") else flops == base, name


def _train(tiny, clips, name, **cfg) -> tuple[dict, dict, dict, float, float]:
    torch.manual_seed(0)  # the new modules' initialisation, whichever tests ran before
    model = create_strategy(name, tiny[0], **cfg)
    before, object_before = evaluate_retrieval(model, clips), right_object(model, clips)
    log = train_retrieval(model, clips, TRAIN, progress=False)
    after, object_after = evaluate_retrieval(model, clips), right_object(model, clips)
    assert_untouched(tiny)
    return before, after, log, object_before, object_after


@pytest.mark.parametrize("name,cfg", [("extra-motion", {}), ("lora-temporal", {"head_layers": 1})])
def test_temporal_strategies_tell_twins_apart(tiny, clips, name, cfg):
    before, after, log, *_ = _train(tiny, clips, name, **cfg)
    assert before["twin_accuracy"] == 50.0  # starts as mean pooling: blind to order
    assert after["twin_accuracy"] >= 75.0, after
    assert min(log["losses"]) < ORDER_BLIND_FLOOR  # below what any order-blind model can reach


def test_extra_motion_trains_the_same_from_cached_frame_features(tiny, clips, monkeypatch):
    """Its ILFM features are frozen, so training reads them from the cache (frozen_frame_features)
    and runs only the motion stream on pixels: the same run as re-encoding every step."""
    backbone = tiny[0]
    with torch.no_grad():
        features = backbone.encode_frames(backbone.preprocess(clips.frames))
    cached = replace(clips, features=features)
    runs = []
    for data in (clips, cached):
        if data is cached:   # from here on the ILFM must not run at all
            monkeypatch.setattr(backbone, "encode_frames", lambda *a, **k: pytest.fail("ILFM re-encoded"))
        torch.manual_seed(0)
        model = create_strategy("extra-motion", backbone)
        log = train_retrieval(model, data, replace(TRAIN, steps=10), progress=False)
        runs.append((log["losses"], {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad},
                     embed_videos(model, data)))   # evaluation reads the cache too
    (losses, pixels, videos), (losses_cached, from_cache, videos_cached) = runs
    assert np.allclose(losses, losses_cached, atol=1e-5)
    assert all(torch.allclose(pixels[n], from_cache[n], atol=1e-5) for n in pixels)
    assert torch.allclose(videos, videos_cached, atol=1e-4)
    with pytest.raises(NotImplementedError):   # a strategy whose ILFM features change cannot
        create_strategy("lora", backbone).encode_video_with_features(clips.frames[:1].float(), features[:1])


def test_lora_alone_learns_appearance_but_not_order(tiny, clips):
    before, after, log, object_before, object_after = _train(tiny, clips, "lora")
    assert before["twin_accuracy"] == after["twin_accuracy"] == 50.0  # per-frame updates, mean pooled
    assert min(log["losses"]) >= ORDER_BLIND_FLOOR - 1e-4
    # ... yet it learns: the loss falls towards that floor, and more clips find their object
    assert np.mean(log["losses"][-5:]) < np.mean(log["losses"][:5]) - 0.1, log["losses"]
    assert object_after > object_before, (object_before, object_after)


def test_lora_checkpoint_round_trip(tiny, clips, tmp_path):
    """peft swaps the attention's frozen weights on every call; only the lora_ tensors are saved."""
    model = create_strategy("lora-temporal", tiny[0], head_layers=1)
    train_retrieval(model, clips, replace(TRAIN, steps=2), run_dir=tmp_path, progress=False)
    saved = load_file(str(tmp_path / "trainable.safetensors"))
    assert saved and all("lora_" in n or n.startswith("head.") for n in saved)
    restored = create_strategy("lora-temporal", tiny[0], head_layers=1)
    load_trainable(restored, tmp_path / "trainable.safetensors")
    frames = tiny[0].preprocess(clips.frames[:2])
    with torch.no_grad():
        assert torch.allclose(restored.eval().encode_video(frames), model.eval().encode_video(frames), atol=1e-6)


@pytest.mark.parametrize("name", ORDER_BLIND)
def test_tuned_but_order_blind(tiny, clips, name):
    model = create_strategy(name, tiny[0])
    start = [p.detach().clone() for p in model.trainable_parameters()]
    train_retrieval(model, clips, replace(TRAIN, steps=3), progress=False)
    assert any(not torch.equal(p, q) for p, q in zip(model.trainable_parameters(), start))  # it trained
    assert evaluate_retrieval(model, clips)["twin_accuracy"] == 50.0
    assert_untouched(tiny)


@pytest.fixture(scope="module")
def vit_b32():
    return load_backbone("ViT-B-32")


@pytest.mark.slow
@pytest.mark.parametrize("name", NAMES)
def test_vit_b32_forward_backward(vit_b32, name):
    twins.assert_one_step_reaches_only_trainable(create_strategy(name, vit_b32), vit_b32)
