"""Frozen-feature strategies (workbench/strategies/frozen/): post-network heads, EVL side-tuning and
the distilled student. Fast tests use the tiny config with random weights on rendered ShapesWorld
clips of one object growing or shrinking (each clip's twin is the same frames reversed, with the
other verb in its caption); ``slow`` ones the real ViT-B-32 architecture (random weights).
"""
import copy

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from workbench import load_backbone
from workbench.backbones.taps import layer_tokens
from workbench.bench import train_config
from workbench.config import get_profile
from workbench.data.shapes import COLOURS, SHAPES, Background, Obj, render
from workbench.strategies import create_strategy, flops_per_clip, list_strategies
from workbench.strategies.frozen.distillation import student_speedup
from workbench.strategies.frozen.side_tuning import cross_frame_attention, normalised_tokens, offset_bins
from workbench.tasks.retrieval import evaluate_retrieval
from workbench.train import RetrievalData, TrainConfig, contrastive_loss, sample_batch, train_retrieval

POST = ["post-transformer", "post-lstm", "post-conv1d"]
FROZEN = POST + ["side-evl", "distill-student"]
FRAMES = 4


def growing_twins(n_pairs: int, seed: int, frames: int = FRAMES) -> RetrievalData:
    """One object changing size; clip 2k grows, clip 2k+1 is it reversed (shrinks).

    Growth, not left/right motion: a randomly initialised ViT's CLS feature barely encodes where an
    object is (a shift changes it by a second-order, appearance-dependent amount), but how much of
    the frame the object covers moves it along a consistent direction, so frame order is learnable
    from the frozen features of an untrained tiny CLIP.
    """
    rng = np.random.default_rng(seed)
    clips, captions, twin = [], [], []
    for k in range(n_pairs):
        shape, colour = str(rng.choice(SHAPES)), str(rng.choice(list(COLOURS)))
        x, y = rng.uniform(0.35, 0.65, size=2)
        background = Background(grey=int(rng.integers(25, 85)))
        clip = np.stack([render([Obj(shape, colour, "large", x, y, scale=scale)], background, size=64)
                         for scale in np.linspace(0.4, 1.6, frames)])
        clip = torch.from_numpy(clip).permute(0, 3, 1, 2)                 # [T,3,H,W] uint8
        clips += [clip, clip.flip(0)]
        captions += [f"a {colour} {shape} grows", f"a {colour} {shape} shrinks"]
        twin += [2 * k + 1, 2 * k]
    return RetrievalData(torch.stack(clips), captions, twin, [[] for _ in captions])


@torch.no_grad()
def with_features(data: RetrievalData, backbone) -> RetrievalData:
    data.features = backbone.encode_frames(backbone.preprocess(data.frames))
    return data


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    return load_backbone("shapes-clip-tiny")


@pytest.fixture(scope="module")
def probe_frames(tiny):
    """A fixed batch of preprocessed clips, and the backbone's output on it before any strategy."""
    frames = tiny.preprocess(growing_twins(2, seed=99).frames)
    with torch.no_grad():
        return frames, tiny.encode_frames(frames)


@pytest.fixture(scope="module")
def train_data(tiny):
    return with_features(growing_twins(32, seed=0), tiny)


@pytest.fixture(scope="module")
def test_data(tiny):
    return with_features(growing_twins(16, seed=1), tiny)


def _backbone_unchanged(backbone, probe_frames):
    frames, before = probe_frames
    with torch.no_grad():
        assert torch.equal(backbone.encode_frames(frames), before)
    assert not any(p.requires_grad for p in backbone.parameters())


# --- creation, parameters, FLOPs --------------------------------------------------------------


@pytest.mark.parametrize("name", FROZEN)
def test_created_by_name_trains_only_its_own_parameters(name, tiny, probe_frames):
    assert name in list_strategies("frozen")
    model = create_strategy(name, tiny)
    assert model.family == "frozen" and model.temporal and model.reference
    assert model.input_level == ("features" if name in POST else "pixels") and model.leaf != "?"
    counts = model.parameter_counts()
    backbone_ids = {id(p) for p in tiny.parameters()}
    assert 0 < counts["trainable"] < counts["total"]
    assert not any(id(p) in backbone_ids for p in model.trainable_parameters())
    assert counts["total"] == sum(p.numel() for p in tiny.parameters()) + counts["trainable"]
    assert model.text_is_frozen
    # One large optimiser step leaves the backbone exactly as it was.
    optimizer = torch.optim.SGD(model.trainable_parameters(), lr=1.0)
    model.encode_video(probe_frames[0]).sum().backward()
    optimizer.step()
    _backbone_unchanged(tiny, probe_frames)


def test_post_network_heads_and_side_network_add_compute_while_the_student_removes_it(tiny):
    base = flops_per_clip(create_strategy("mean-pool", tiny), 8)
    flops = {name: flops_per_clip(create_strategy(name, tiny), 8) for name in FROZEN}
    assert all(flops[name] > base for name in POST + ["side-evl"])
    assert 0 < flops["distill-student"] < base / 4   # the student replaces the image tower


def test_bad_options_are_refused_with_a_clear_message(tiny):
    model = create_strategy("post-transformer", tiny, max_frames=4, layers=1)
    with pytest.raises(ValueError, match="max_frames"):
        model.pool(torch.zeros(1, 5, tiny.embed_dim))
    with pytest.raises(ValueError, match="blocks"):
        create_strategy("side-evl", tiny, layers=99)
    with pytest.raises(TypeError, match="unexpected keyword"):
        create_strategy("post-lstm", tiny, kernel_size=3)  # a conv1d option


# --- behaviour: time-reversed twins -----------------------------------------------------------


@pytest.mark.parametrize("name", POST)
def test_post_network_heads_start_as_mean_pooling_and_learn_order(name, tiny, train_data, test_data,
                                                                  probe_frames):
    torch.manual_seed(0)
    model = create_strategy(name, tiny)
    mean_pool = create_strategy("mean-pool", tiny)
    assert torch.equal(model.pool(test_data.features), mean_pool.pool(test_data.features))
    assert evaluate_retrieval(model, test_data)["twin_accuracy"] == 50.0
    train_retrieval(model, train_data, TrainConfig(steps=100, batch_size=16, lr=5e-3, warmup=5,
                                                   checkpoint_every=0), progress=False)
    assert evaluate_retrieval(model, test_data)["twin_accuracy"] >= 75.0
    _backbone_unchanged(tiny, probe_frames)


def test_side_network_starts_as_mean_pooling_and_learns_order(tiny, train_data, test_data, probe_frames):
    torch.manual_seed(0)
    model = create_strategy("side-evl", tiny)
    assert evaluate_retrieval(model, test_data)["twin_accuracy"] == 50.0
    train_retrieval(model, train_data, TrainConfig(steps=60, batch_size=8, lr=5e-3, warmup=5,
                                                   checkpoint_every=0), progress=False)
    assert evaluate_retrieval(model, test_data)["twin_accuracy"] >= 75.0
    _backbone_unchanged(tiny, probe_frames)


def test_side_network_training_runs_the_frozen_backbone_once_per_clip(tiny, train_data):
    """Side-tuning reads tokens of a backbone that never changes: training computes them once per
    clip (``frozen_backbone_pass``), not at every step, so 30 steps cost one pass over the clips."""
    model = copy.deepcopy(create_strategy("side-evl", tiny))
    calls = []
    encode = model.backbone.encode_frames
    model.backbone.encode_frames = lambda pixels, **kw: calls.append(len(pixels)) or encode(pixels, **kw)
    before = [p.detach().clone() for p in model.side.parameters()]
    train_retrieval(model, train_data, TrainConfig(steps=30, batch_size=8, checkpoint_every=0), progress=False)
    assert sum(calls) == len(train_data)                       # every clip once, no clip twice
    assert any(not torch.equal(a, b) for a, b in zip(before, model.side.parameters()))
    cfg, default = train_config(get_profile("cpu"), model, True, 0), TrainConfig()
    assert (cfg.steps, cfg.lr, cfg.backbone_lr) == (get_profile("cpu").pass_train_steps, 2e-3, default.backbone_lr)
    assert train_config(get_profile("cpu"), create_strategy("post-transformer", tiny), True, 0).lr == default.lr


def _tapped_tokens(model, frames: torch.Tensor) -> torch.Tensor:
    """The raw tokens ``model`` (side-evl) taps, in float32: [B,T,k,L,W]."""
    with torch.no_grad(), layer_tokens(model.backbone, model.tapped) as rec:
        model.backbone.encode_frames(frames)
    return torch.stack(rec.tokens, dim=1).unflatten(0, frames.shape[:2])


def test_side_network_token_pool_averages_the_patch_grid(tiny, probe_frames):
    """``token_pool=2`` gives CLS plus one token per 2x2 window of patches, each their mean (then
    normalised, as every token the side network reads)."""
    frames = probe_frames[0]
    every, pooled = (create_strategy("side-evl", tiny, token_pool=k, pass_bf16=False).frozen_pass(frames)
                     for k in (1, 2))
    rows, cols = tiny.clip.visual.grid_size
    assert torch.equal(every[0], pooled[0])                      # the frame features are the ILFM's own
    assert pooled[1].shape[3] == 1 + (rows // 2) * (cols // 2)
    raw = _tapped_tokens(create_strategy("side-evl", tiny), frames)
    window = raw[..., 1:, :].unflatten(3, (rows, cols))[..., :2, :2, :].mean(dim=(3, 4))
    assert torch.allclose(pooled[1][..., 1, :].float(), normalised_tokens(window), atol=0.01)
    assert torch.equal(pooled[1][..., 0, :], every[1][..., 0, :])
    with pytest.raises(ValueError, match="token_pool"):
        create_strategy("side-evl", tiny, token_pool=0)


def test_side_network_reads_tokens_normalised_once_with_the_same_function_and_gradients(tiny, probe_frames):
    """The pass stores tokens normalised; a stage folds its LayerNorm's scale and shift into its
    projection. That must be the unfolded ``proj(norm(tokens))``, value and gradients, for any
    LayerNorm parameters, and the fp32 pass must give the backbone's own frame features."""
    frames, before = probe_frames
    model = create_strategy("side-evl", tiny, pass_bf16=False)
    features, tokens = model.frozen_pass(frames)
    assert torch.equal(features, before)
    raw = _tapped_tokens(model, frames)
    assert torch.allclose(tokens.float(), normalised_tokens(raw), atol=5e-3)   # float16 storage
    torch.manual_seed(0)
    stage = model.side.stages[0]
    with torch.no_grad():
        stage.norm.weight.normal_(1, 0.5)
        stage.norm.bias.normal_(0, 0.5)
    raw = raw[:, :, 0]
    grads = []
    for out in (stage.project(normalised_tokens(raw)), stage.proj(stage.norm(raw))):
        stage.zero_grad()
        (out * torch.linspace(-1, 1, out.shape[-1])).sum().backward()
        grads.append([p.grad.clone() for p in (stage.norm.weight, stage.norm.bias, stage.proj.weight, stage.proj.bias)])
        grads[-1].append(out.detach())
    for folded, unfolded in zip(*grads):
        assert torch.allclose(folded, unfolded, rtol=1e-4, atol=1e-4 * unfolded.abs().max().item())


@pytest.mark.parametrize("kernel_size", [3, 4])
def test_side_stage_runs_its_temporal_conv1d_where_the_tokens_lie(tiny, kernel_size):
    """``across_time`` is the stage's depthwise Conv1d over each token position's frames (odd and
    even kernels: "same" padding puts the extra zero after): values, and gradients of the tokens
    and of the convolution's weights."""
    torch.manual_seed(0)
    stage = create_strategy("side-evl", tiny, kernel_size=kernel_size).side.stages[0]
    conv = stage.temporal_conv
    with torch.no_grad():
        conv.weight.normal_(0, 0.5)
        conv.bias.normal_(0, 0.5)
    tokens = torch.randn(2, 8, 5, conv.in_channels)                         # [B,T,L,w]

    def conv1d(x):   # the Conv1d itself, over a transposed copy [B*L,w,T]
        b, t, length, w = x.shape
        return conv(x.permute(0, 2, 3, 1).reshape(b * length, w, t)).view(b, length, w, t).permute(0, 3, 1, 2)

    results = []
    for mix in (stage.across_time, conv1d):
        conv.zero_grad()
        x = tokens.clone().requires_grad_()
        out = mix(x)
        (out * torch.linspace(-1, 1, out.shape[-1])).sum().backward()
        results.append([out.detach(), x.grad, conv.weight.grad.clone(), conv.bias.grad.clone()])
    for ours, theirs in zip(*results):
        assert torch.allclose(ours, theirs, rtol=1e-5, atol=1e-5)


def _sliding_content(frames: int, grid: tuple[int, int], heads: int = 2) -> tuple[torch.Tensor, torch.Tensor]:
    """Queries and keys [1,T,heads,1+P,P] of patches whose content slides one column right per
    frame: patch (r, c) of frame t holds what patch (r, c-1) held at t-1 (one-hot content, sharp
    queries, wrapping round)."""
    rows, cols = grid
    r, c = torch.arange(rows).repeat_interleave(cols), torch.arange(cols).repeat(rows)
    content = torch.stack([F.one_hot(r * cols + (c - t) % cols, rows * cols).float() for t in range(frames)])
    keys = F.pad(content, (0, 0, 1, 0))[None, :, None].expand(1, frames, heads, -1, -1)   # CLS row: zeros
    return keys * 60.0, keys


def test_cross_frame_attention_finds_where_each_patch_went(tiny):
    """EVL's temporal cross attention, its fixed part: with content sliding one column right per
    frame, every patch's attention to the previous frame lies at offset (0, -1) and to the next
    at (0, +1); the first frame has nothing behind it, the last nothing ahead; with a radius,
    farther offsets (the wrap-round) land in one last bin."""
    grid, frames = (4, 5), 3
    queries, keys = _sliding_content(frames, grid)
    index, bins = offset_bins(grid, None)
    assert bins == 7 * 9 and index[0, 1] == 3 * 9 + 4 + 1 and index[1, 0] == 3 * 9 + 4 - 1
    flow = cross_frame_attention(queries, keys, grid, None)[0]              # [T,P,2*O]
    back, ahead = flow[..., :bins], flow[..., bins:]
    wrapped = torch.arange(20) % 5 == 0                       # column 0 came from column 4
    assert torch.allclose(back[1:, ~wrapped, 3 * 9 + 4 - 1], torch.ones(1), atol=1e-4)
    assert torch.allclose(back[1:, wrapped, 3 * 9 + 4 + 4], torch.ones(1), atol=1e-4)
    assert torch.allclose(ahead[:-1, torch.arange(20) % 5 != 4, 3 * 9 + 4 + 1], torch.ones(1), atol=1e-4)
    assert back[0].abs().sum() == 0 and ahead[-1].abs().sum() == 0
    windowed = cross_frame_attention(queries, keys, grid, 1)[0]
    assert windowed.shape[-1] == 2 * 10
    assert torch.allclose(windowed[1:, ~wrapped, 3], torch.ones(1), atol=1e-4)       # (0, -1) in a 3x3 window
    assert torch.allclose(windowed[1:, wrapped, 9], torch.ones(1), atol=1e-4)        # beyond it
    sums = windowed.sum(-1)                       # each direction sums to 1 where there is a neighbour
    assert torch.allclose(sums, torch.tensor([1.0, 2.0, 1.0])[:, None].expand(3, 20), atol=1e-4)


def test_side_network_cross_frame_flow_is_order_sensitive_and_starts_at_zero(tiny, probe_frames):
    """The pass's cross-frame attention of a reversed clip is the forward clip's read backwards,
    with looking back and looking ahead exchanged: unlike a bag of frames, it says which way things
    moved. Its learned vectors start at zero, so the untrained strategy is still mean pooling."""
    frames = probe_frames[0][:1]
    model = create_strategy("side-evl", tiny, cross_frame=True, cross_frame_radius=1, pass_bf16=False)
    features, tokens, flow = model.frozen_pass(frames)
    _, _, reversed_flow = model.frozen_pass(frames.flip(1))
    bins = flow.shape[-1] // 2
    swapped = torch.cat([flow[..., bins:], flow[..., :bins]], dim=-1).flip(1)
    assert torch.allclose(reversed_flow.float(), swapped.float(), atol=1e-3)
    assert (reversed_flow.float() - flow.float()).abs().max() > 0.01     # it differs (fp16 rounding: 1e-4)
    assert flow.shape == (1, frames.shape[1], 4, 64, 2 * 10) and flow.dtype == torch.float16
    assert torch.equal(model.encode_video(frames.flip(1)), model.encode_video(frames))
    with pytest.raises(ValueError, match="token_pool"):
        create_strategy("side-evl", tiny, cross_frame=True, token_pool=2)


def test_side_network_with_cross_frame_attention_learns_order(tiny, train_data, test_data):
    torch.manual_seed(0)
    model = create_strategy("side-evl", tiny, cross_frame=True)
    assert evaluate_retrieval(model, test_data)["twin_accuracy"] == 50.0
    train_retrieval(model, train_data, TrainConfig(steps=60, batch_size=8, lr=5e-3, warmup=5,
                                                   checkpoint_every=0), progress=False)
    assert evaluate_retrieval(model, test_data)["twin_accuracy"] >= 75.0
    assert all(stage.cross_frame.weight.abs().sum() > 0 for stage in model.side.stages)


def test_side_network_pass_in_bf16_stays_close_and_keeps_twins_equal(tiny, probe_frames):
    """Under bf16 autocast (the default where the CPU has bf16 instructions) the pass gives nearly
    the fp32 pass's numbers, and a clip's frames still encode the same whatever their order, so
    the untrained strategy is still exactly order-blind."""
    frames = probe_frames[0]
    exact = create_strategy("side-evl", tiny, pass_bf16=False).frozen_pass(frames)
    model = create_strategy("side-evl", tiny, pass_bf16=True)
    fast = model.frozen_pass(frames)
    for a, b in zip(exact, fast):
        assert torch.cosine_similarity(a.float(), b.float(), dim=-1).min() > 0.999
    assert not torch.equal(exact[1], fast[1])                    # it did run in bf16
    assert torch.equal(model.encode_video(frames.flip(1)), model.encode_video(frames))


def test_side_network_builds_no_graph_through_the_backbone(tiny, probe_frames):
    model = copy.deepcopy(create_strategy("side-evl", tiny))
    for p in model.backbone.parameters():  # even a trainable-looking backbone gets no gradient
        p.requires_grad_(True)
    video = model.encode_video(probe_frames[0])
    (video @ torch.randn(video.shape[1])).sum().backward()
    assert all(p.grad is None for p in model.backbone.parameters())
    assert all(p.grad is not None for p in model.side.parameters())


# --- behaviour: distillation --------------------------------------------------------------------


def _distill(model, data: RetrievalData, steps: int, batch_size: int = 8) -> None:
    """The training loop with the 2-line hook train.py is to gain (contrastive + auxiliary loss)."""
    optimizer = torch.optim.AdamW(model.trainable_parameters(), lr=3e-3)
    model.train()
    for step in range(steps):
        index, _ = sample_batch(data, batch_size, np.random.default_rng(step), hard_negatives=True)
        captions = [data.captions[i] for i in index]
        texts = list(dict.fromkeys(captions))
        inputs = model.backbone.preprocess(data.frames[index])
        video = model(inputs)
        with torch.no_grad():
            text = model.encode_text(texts)
        loss = contrastive_loss(video, text, texts, captions, model.logit_scale)
        loss = loss + model.auxiliary_loss(inputs, video)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()


@torch.no_grad()
def _agreement(model, data: RetrievalData) -> float:
    """Mean cosine similarity of the student's and the teacher's embeddings of every clip."""
    model.eval()
    frames = model.backbone.preprocess(data.frames)
    return torch.cosine_similarity(model.encode_video(frames), model.teacher_embedding(frames)).mean().item()


def test_student_moves_toward_its_teacher(tiny, train_data, test_data, probe_frames):
    torch.manual_seed(0)
    model = create_strategy("distill-student", tiny)
    before = _agreement(model, test_data)
    _distill(model, train_data, steps=15)
    after = _agreement(model, test_data)
    assert after > before + 0.5 and after > 0.7
    _backbone_unchanged(tiny, probe_frames)


def test_student_takes_a_trained_strategy_as_teacher(tiny, probe_frames):
    teacher = create_strategy("post-transformer", tiny, layers=1)
    with torch.no_grad():
        teacher.out.weight.normal_()  # a teacher that is no longer plain mean pooling
    model = create_strategy("distill-student", tiny, teacher=teacher)
    frames = probe_frames[0]
    assert torch.equal(model.teacher_embedding(frames), teacher.encode_video(frames).detach())
    assert not any(p is q for p in model.parameters() for q in teacher.parameters() if q.requires_grad)
    assert set(model.state_dict()) == {f"backbone.{k}" for k in tiny.state_dict()} | {
        f"student.{k}" for k in model.student.state_dict()}


def test_student_trains_on_cached_targets_without_running_the_ilfm(tiny, train_data):
    """The teacher's targets come from the feature cache: the same targets as running the frozen
    ILFM (or a feature-level teacher) on the frames, and training never calls the image tower."""
    frames, features = tiny.preprocess(train_data.frames[:4]), train_data.features[:4]
    teacher = create_strategy("post-transformer", tiny, layers=1)
    with torch.no_grad():
        teacher.out.weight.normal_()
    for model in (create_strategy("distill-student", tiny), create_strategy("distill-student", tiny, teacher=teacher)):
        model.eval()
        assert torch.allclose(model.teacher_embedding(frames, features), model.teacher_embedding(frames), atol=1e-5)
    cfg = TrainConfig(steps=15, batch_size=8, lr=3e-3, warmup=0, twin_weight=0.0, checkpoint_every=0)
    students = []
    for from_cache in (True, False):
        torch.manual_seed(0)
        model = copy.deepcopy(create_strategy("distill-student", tiny))
        model.frozen_frame_features = from_cache      # False: the teacher runs on every batch's frames
        calls = []
        encode = model.backbone.encode_frames
        model.backbone.encode_frames = lambda pixels, **kw: calls.append(len(pixels)) or encode(pixels, **kw)
        before = _agreement(model, train_data)
        calls.clear()
        train_retrieval(model, train_data, cfg, progress=False)
        assert (calls == []) == from_cache                          # from the cache, the ILFM never ran
        assert _agreement(model, train_data) > before + 0.5         # and the student learned its teacher
        students.append(model.student.state_dict())
    assert all(torch.allclose(a, b, atol=1e-5) for a, b in zip(students[0].values(), students[1].values()))
    assert train_config(get_profile("cpu"), model, True, 0).steps == get_profile("cpu").student_train_steps


def test_student_speedup_is_measured(tiny):
    speed = student_speedup(create_strategy("distill-student", tiny), num_frames=2, batch_size=2, repeats=1)
    assert speed["student_clips_per_s"] > 0 and speed["teacher_clips_per_s"] > 0
    assert speed["speedup"] == pytest.approx(speed["student_clips_per_s"] / speed["teacher_clips_per_s"])


# --- the real ViT-B-32 architecture ----------------------------------------------------------


@pytest.fixture(scope="module")
def vit_b_32():
    torch.manual_seed(0)
    return load_backbone("ViT-B-32")


@pytest.mark.slow
@pytest.mark.parametrize("name", FROZEN)
def test_vit_b_32_forward_backward_reaches_only_trainable_parameters(name, vit_b_32):
    model = create_strategy(name, vit_b_32)
    size = vit_b_32.image_size
    frames = torch.randn(1, 2, 3, size, size, generator=torch.Generator().manual_seed(0))
    video, text = model(frames, ["a red circle moves right", "a red circle moves left"])
    assert video.shape == (1, vit_b_32.embed_dim) and text.shape == (2, vit_b_32.embed_dim)
    (video @ text.t()).sum().backward()
    trainable = {id(p) for p in model.trainable_parameters()}
    for p in model.parameters():
        assert (p.grad is not None) == (id(p) in trainable)
