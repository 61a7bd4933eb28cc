"""Twin data shared by the strategy tests: objects that grow, whose exact reversals shrink.

On a random-weight tiny CLIP, size changes move the frame features in a consistent direction
while positions barely do, so grow/shrink twins are the reliable synthetic order task.
"""
import numpy as np
import torch

from workbench.data.shapes.world import Background, Obj, render
from workbench.tasks.retrieval import similarity
from workbench.train import RetrievalData


def grow_shrink_clips(colours, shapes, frames: int = 4, size: int = 64) -> RetrievalData:
    """Each object grows over ``frames`` frames; its twin is the exact reversal and shrinks."""
    clips, captions, twin = [], [], []
    for colour in colours:
        for shape in shapes:
            scenes = [[Obj(shape, colour, "large", 0.5, 0.5, scale=s)] for s in np.linspace(0.3, 2.6, frames)]
            clip = torch.from_numpy(np.stack([render(s, Background(), size=size) for s in scenes])).permute(0, 3, 1, 2)
            i = len(captions)
            clips += [clip, clip.flip(0)]
            captions += [f"a {colour} {shape} grows", f"a {colour} {shape} shrinks"]
            twin += [i + 1, i]
    return RetrievalData(torch.stack(clips), captions, twin)


def right_object(model, data: RetrievalData) -> float:
    """% of clips whose best caption names the right object (its own caption or its twin's)."""
    sim, texts = similarity(model, data)
    best = [texts[j] for j in sim.argmax(1).tolist()]
    return 100.0 * float(np.mean([best[i] in (data.captions[i], data.captions[data.twin[i]])
                                  for i in range(len(data))]))


def tiny_backbone_snapshot(frames: int = 4):
    """The tiny CLIP (random weights) frozen, a probe batch, and what it computes before any
    strategy exists: ``(backbone, probe, features, state)`` for :func:`assert_untouched`."""
    from workbench.backbones.openclip import load_backbone

    torch.manual_seed(0)
    backbone = load_backbone("shapes-clip-tiny")
    for p in backbone.parameters():  # as every strategy leaves it; fixes the attention path too
        p.requires_grad_(False)
    probe = torch.randn(2, frames, 3, backbone.image_size, backbone.image_size)
    with torch.no_grad():
        features = backbone.encode_frames(probe)
    state = {k: v.clone() for k, v in backbone.state_dict().items()}
    return backbone, probe, features, state


def assert_untouched(snapshot) -> None:
    """The backbone a strategy was built from is bit-identical and still frozen."""
    backbone, probe, features, state = snapshot
    assert all(torch.equal(v, state[k]) for k, v in backbone.state_dict().items())
    assert not any(p.requires_grad for p in backbone.parameters())
    with torch.no_grad():
        assert torch.equal(backbone.encode_frames(probe), features)


def assert_one_step_reaches_only_trainable(model, backbone) -> None:
    """One forward + backward (2 frames, batch 1): gradients on exactly the trainable parameters,
    none on the backbone the strategy was built from."""
    frames = torch.randn(1, 2, 3, backbone.image_size, backbone.image_size)
    video, text = model(frames, ["a red circle grows"])
    assert video.shape == (1, backbone.embed_dim) and text.shape == (1, backbone.embed_dim)
    (video @ text.t()).sum().backward()
    trainable = set(map(id, model.trainable_parameters()))
    for n, p in model.named_parameters():
        assert (p.grad is not None) == (id(p) in trainable), n
    assert sum(p.grad.norm() for p in model.trainable_parameters()) > 0
    assert not any(p.grad is not None or p.requires_grad for p in backbone.parameters())
