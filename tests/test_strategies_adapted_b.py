"""Adapted-feature strategies, group B: adapters (ST-Adapter, AIM) and prompt tuning (text, visual).

Built on the tiny CLIP config with random weights (fast, and independent of the pretrained asset).
Random CLIP frame features change a lot when an object grows or shrinks, so the order tests use
grow/shrink twins: a clip of an object growing and its exact time reversal, captioned "... shrinks".
Behaviour checked here:

- st-adapter, aim and prompt-visual start bit-identical to the frozen ILFM (their residual
  branches are zero-initialised), so at exactly 50% twin accuracy, and tell twins apart after a
  short training run;
- prompt-text's text path is open_clip's ``encode_text`` with the context vectors in place of the
  words they start from; it stays at exactly 50% on twins (the video side is mean pooling) while
  it learns appearance (the loss falls, the right object wins more often);
- the backbone passed in is never changed, whatever the strategy trains.
"""
import copy

import numpy as np
import pytest
import torch
import twins

from workbench.backbones.openclip import load_backbone
from workbench.strategies import create_strategy, flops_per_clip, list_strategies
from workbench.tasks.retrieval import evaluate_retrieval
from workbench.train import TrainConfig, load_trainable, train_retrieval, trainable_state

NAMES = ["st-adapter", "aim", "prompt-text", "prompt-visual"]
INSIDE = ["st-adapter", "aim", "prompt-visual"]  # temporal modelling inside the frozen blocks
FRAMES = 4
# InfoNCE with hard negatives alone (the explicit twin term off): these runs test each strategy's
# mechanics at one tuned budget; `workbench bench` measures the twin term.
TRAIN = TrainConfig(steps=30, batch_size=8, lr=1e-2, warmup=3, checkpoint_every=0, amp=False, seed=0,
                    twin_weight=0.0)


@pytest.fixture(scope="module")
def tiny():
    """The tiny CLIP (random weights), a probe batch, and what it computes before any strategy exists."""
    return twins.tiny_backbone_snapshot(FRAMES)


assert_untouched = twins.assert_untouched


@pytest.fixture(scope="module")
def clips(tiny):
    data = twins.grow_shrink_clips(("red", "green"), ("circle", "square", "triangle"), FRAMES)
    with torch.no_grad():  # prompt-text is a feature-level strategy: it trains on cached frame features
        data.features = tiny[0].encode_frames(tiny[0].preprocess(data.frames))
    return data


def test_registered_in_survey_order():
    adapted = list_strategies("adapted")
    assert [n for n in adapted if n in NAMES] == NAMES


def _expected_trainable(name: str, model) -> int:
    """Trainable parameter count from the architecture's sizes (nothing tiny-specific)."""
    visual = model.backbone.clip.visual
    width, blocks = visual.transformer.width, len(visual.transformer.resblocks)
    if name == "st-adapter":
        c = width // 2  # down C->c, depthwise (3,1,1) conv, up c->C
        return blocks * (width * c + c + 3 * c + c + c * width + width)
    if name == "aim":
        h = width // 4  # three bottlenecks and the frame positions of the temporal attention, a block
        return blocks * (3 * (width * h + h + h * width + width) + model.config.max_frames * width)
    if name == "prompt-text":
        return 3 * model.backbone.clip.transformer.width  # "a video of": three context vectors
    heads = visual.transformer.resblocks[0].attn.num_heads
    per_block = (4 * width                           # prompt tokens
                 + width * width + width + 2 * width  # message_fc, message_ln
                 + 4 * width * width + 4 * width      # message_attn (in and out projections)
                 + model.config.max_frames * width + heads)  # frame positions, gate
    return model.config.layers * per_block


@pytest.mark.parametrize("name", NAMES)
def test_creation_counts_and_untouched_backbone(tiny, name):
    backbone = tiny[0]
    model = create_strategy(name, backbone)
    assert model.name == name and model.family == "adapted" and model.leaf and model.reference
    assert model.temporal == (name != "prompt-text")
    assert model.input_level == ("features" if name == "prompt-text" else "pixels")
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable and not any(n.startswith("backbone.") for n in trainable)  # the ILFM stays frozen
    assert model.backbone is backbone  # only read: the strategies keep their modules beside it
    counts = model.parameter_counts()
    assert counts["trainable"] == _expected_trainable(name, model)
    assert counts["total"] == sum(p.numel() for p in backbone.parameters()) + counts["trainable"]
    # text embeddings change only where text context vectors train
    assert model.text_is_frozen == (name != "prompt-text")
    assert_untouched(tiny)


@pytest.mark.parametrize("name", INSIDE)
def test_untrained_is_the_frozen_ilfm_exactly(tiny, name):
    backbone, probe, features = tiny[:3]
    model = create_strategy(name, backbone)
    with torch.no_grad():
        assert torch.equal(model.frame_features(probe), features)  # zero residual branches add exact zeros
    mean = create_strategy("mean-pool", backbone)
    assert torch.equal(model.encode_video(probe), mean.encode_video(probe))  # with gradients, too


def test_prompt_text_is_clip_encode_text_with_context(tiny):
    backbone = tiny[0]
    captions = ["a red circle grows", "a blue square shrinks and then grows again"]
    model = create_strategy("prompt-text", backbone)  # context vectors start as "a video of"
    with torch.no_grad():
        expected = backbone.encode_text([f"a video of {c}" for c in captions], normalize=True)
        assert torch.allclose(model.encode_text(captions), expected, atol=1e-6)
    random_context = create_strategy("prompt-text", backbone, ctx_init="", n_ctx=5)
    assert random_context.parameter_counts()["trainable"] == 5 * backbone.clip.transformer.width
    assert random_context.encode_text(captions).norm(dim=-1).allclose(torch.ones(2))
    with_text = create_strategy("prompt-visual", backbone, text_context=True)
    assert not with_text.text_is_frozen
    with torch.no_grad():
        assert torch.allclose(with_text.encode_text(captions), expected, atol=1e-6)


def test_options_choose_blocks_and_bad_ones_are_refused(tiny):
    backbone, probe = tiny[:2]
    assert sorted(create_strategy("st-adapter", backbone, layers=2).block_adapters) == ["4", "5"]
    assert len(create_strategy("aim", backbone, layers=0).block_adapters) == 6
    variants = [create_strategy("st-adapter", backbone, pre_mlp=True, kernel=(3, 3, 3), channels=16),
                create_strategy("aim", backbone, temporal_adapters=2, layers=3),
                create_strategy("prompt-visual", backbone, num_prompts=0, layers=0)]
    with torch.no_grad():
        assert all(torch.equal(model.frame_features(probe), tiny[2]) for model in variants)
    with pytest.raises(ValueError, match="temporal_adapters"):
        create_strategy("aim", backbone, temporal_adapters=3)
    with pytest.raises(ValueError, match="6 blocks"):
        create_strategy("aim", backbone, layers=7)
    with pytest.raises(ValueError, match="odd"):
        create_strategy("st-adapter", backbone, kernel=(2, 1, 1))
    with pytest.raises(ValueError, match="pre_attn or pre_mlp"):
        create_strategy("st-adapter", backbone, pre_attn=False)
    with pytest.raises(ValueError, match="n_ctx"):
        create_strategy("prompt-text", backbone, ctx_init="a video of", n_ctx=2)
    with pytest.raises(TypeError):
        create_strategy("prompt-visual", backbone, depth=3)
    with pytest.raises(ValueError, match="max_frames"):
        create_strategy("prompt-visual", backbone, max_frames=2).frame_features(probe)


def test_gradient_checkpointing_gives_the_same_outputs_and_gradients(tiny):
    backbone, probe = tiny[:2]
    torch.manual_seed(1)
    plain = create_strategy("aim", backbone)
    with torch.no_grad():
        for p in plain.trainable_parameters():  # make every branch count
            p.normal_(std=0.05)
    checkpointed = copy.deepcopy(plain)
    checkpointed.backbone.clip.visual.transformer.grad_checkpointing = True
    outputs = []
    for model in (plain, checkpointed):
        out = model.encode_video(probe)
        out.sum().backward()
        outputs.append((out, [p.grad for p in model.trainable_parameters()]))
    assert torch.allclose(outputs[0][0], outputs[1][0], atol=1e-6)
    assert all(torch.allclose(a, b, atol=1e-5) for a, b in zip(outputs[0][1], outputs[1][1]))


def test_flops_per_clip(tiny):
    backbone = tiny[0]
    base = flops_per_clip(create_strategy("mean-pool", backbone), 8)
    for name in NAMES:
        flops = flops_per_clip(create_strategy(name, backbone), 8)
        # adapters and prompts add to the ViT's work; text context only changes the text side
        assert flops > base if name in INSIDE else flops == base, name


@pytest.fixture(scope="module")
def trained(tiny, clips):
    """Each strategy trained once on the twins: (model, before, after, losses, object before/after)."""
    runs = {}

    def run(name):
        if name not in runs:
            torch.manual_seed(0)
            model = create_strategy(name, tiny[0])
            before, object_before = evaluate_retrieval(model, clips), twins.right_object(model, clips)
            log = train_retrieval(model, clips, TRAIN, progress=False)
            runs[name] = (model, before, evaluate_retrieval(model, clips), log["losses"], object_before,
                          twins.right_object(model, clips))
        return runs[name]

    return run


@pytest.mark.parametrize("name", INSIDE)
def test_temporal_strategies_tell_twins_apart(tiny, trained, name):
    model, before, after, losses, *_ = trained(name)
    assert before["twin_accuracy"] == 50.0  # starts as the frozen ILFM, mean pooled: blind to order
    assert after["twin_accuracy"] >= 75.0, after
    assert np.mean(losses[-5:]) < np.mean(losses[:5])
    assert_untouched(tiny)


def test_prompt_text_learns_appearance_but_not_order(tiny, trained):
    model, before, after, losses, object_before, object_after = trained("prompt-text")
    assert before["twin_accuracy"] == after["twin_accuracy"] == 50.0  # mean pooled frozen frames
    assert np.mean(losses[-5:]) < np.mean(losses[:5]) - 0.1
    assert object_after >= object_before + 20, (object_before, object_after)
    assert_untouched(tiny)


def test_trained_parameters_reload_into_a_fresh_strategy(tiny, clips, trained, tmp_path):
    from safetensors.torch import save_file

    model = trained("st-adapter")[0]
    save_file(trainable_state(model), str(tmp_path / "trainable.safetensors"))
    fresh = create_strategy("st-adapter", tiny[0])
    load_trainable(fresh, tmp_path / "trainable.safetensors")
    with torch.no_grad():
        assert torch.equal(fresh.encode_video(tiny[1]), model.eval().encode_video(tiny[1]))


@pytest.fixture(scope="module")
def vit_b32():
    return load_backbone("ViT-B-32")


@pytest.mark.slow
@pytest.mark.parametrize("name", NAMES)
def test_vit_b32_forward_backward(vit_b32, name):
    twins.assert_one_step_reaches_only_trainable(create_strategy(name, vit_b32), vit_b32)
