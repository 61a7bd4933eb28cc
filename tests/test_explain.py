"""Explainability (workbench/explain.py): raw attention, rollout, gradient relevancy per frame.

Golden test: on ShapesWorld frames holding one object, the relevancy of the object's caption
puts far more of its mass inside the object's box than a uniform map would, on every frame.
"""
import numpy as np
import pytest
import torch

from workbench.backbones import load_backbone
from workbench.data.shapes.world import COLOURS, Background, Obj, render
from workbench.explain import METHODS, explain, mass_inside, rollout
from workbench.strategies import create_strategy

SIZE = 64


@pytest.fixture(scope="module")
def backbone():
    return load_backbone()


def one_object_frames():
    """Six frames, each one object at a different place, and its caption and box (pixels)."""
    rng = np.random.default_rng(3)
    shapes = ["circle", "square", "triangle", "star", "diamond", "cross"]
    colours = [c for c in COLOURS if c not in ("white", "gray", "grey", "black")][:6]
    frames, captions, boxes = [], [], []
    for i, shape in enumerate(shapes):
        obj = Obj(shape, colours[i % len(colours)], "large", float(rng.uniform(0.25, 0.75)),
                  float(rng.uniform(0.25, 0.75)))
        frames.append(render([obj], Background(), SIZE))
        captions.append(f"a {obj.description}")
        boxes.append(tuple(v * SIZE for v in obj.box()))
    return torch.from_numpy(np.stack(frames)).permute(0, 3, 1, 2).contiguous(), captions, boxes


def test_relevancy_lands_on_the_named_object(backbone):
    frames, captions, boxes = one_object_frames()
    inside, uniform, hits = [], [], []
    for frame, caption, box in zip(frames, captions, boxes):
        maps = explain(backbone, frame[None], caption, "relevancy").maps          # [1,8,8]
        inside.append(float(mass_inside(maps, [box], SIZE)[0]))
        uniform.append(float(mass_inside(torch.ones_like(maps), [box], SIZE)[0]))
        peak = torch.zeros_like(maps).flatten()
        peak[int(maps.flatten().argmax())] = 1
        hits.append(float(mass_inside(peak.view_as(maps), [box], SIZE)[0]))
    # a uniform map puts the box's area share inside it; relevancy puts several times more
    assert np.mean(inside) > 2.5 * np.mean(uniform), (inside, uniform)
    assert all(i > u for i, u in zip(inside, uniform)), (inside, uniform)
    assert np.mean(hits) >= 5 / 6, hits


def test_rollout_rows_sum_to_one_and_shapes(backbone):
    frames, captions, _ = one_object_frames()
    from workbench.backbones.taps import attention_weights

    with torch.no_grad(), attention_weights(backbone) as rec:
        backbone.encode_images(backbone.preprocess(frames[:2]))
    flow = rollout(rec.weights)
    assert torch.allclose(flow.sum(-1), torch.ones(flow.shape[:2]), atol=1e-5)
    grid = tuple(backbone.clip.visual.grid_size)
    for method in METHODS:
        ex = explain(backbone, frames[:3], captions[0], method)
        assert ex.maps.shape == (3, *grid) and (ex.maps >= 0).all()
        norm = ex.normalized()
        assert float(norm.min()) == 0.0 and abs(float(norm.max()) - 1.0) < 1e-6
        assert ex.upsampled(SIZE).shape == (3, SIZE, SIZE)


def test_layer_head_and_strategy(backbone):
    frames, captions, boxes = one_object_frames()
    heads = backbone.clip.visual.transformer.resblocks[0].attn.num_heads
    a0 = explain(backbone, frames[:2], method="attention", layer=0, head=0).maps
    a1 = explain(backbone, frames[:2], method="attention", layer=0, head=heads - 1).maps
    assert not torch.allclose(a0, a1)                     # heads look at different things
    with pytest.raises(ValueError, match="layer"):
        explain(backbone, frames[:1], method="attention", layer=99)
    with pytest.raises(ValueError, match="head"):
        explain(backbone, frames[:1], method="attention", head=heads)
    with pytest.raises(ValueError, match="query"):
        explain(backbone, frames[:1], method="relevancy")
    # a temporal strategy: one video, relevancy per frame, through its own video score
    model = create_strategy("post-transformer", backbone)
    ex = explain(model, frames[:4], captions[0], "relevancy")
    assert ex.maps.shape[0] == 4 and ex.score is not None
    assert float(mass_inside(ex.maps[:1], boxes[:1], SIZE)[0]) > float(
        mass_inside(torch.ones_like(ex.maps[:1]), boxes[:1], SIZE)[0])


def test_frame_grid_and_timeline_figures(backbone):
    from workbench.figures import frame_grid, grounding_timeline

    frames, captions, boxes = one_object_frames()
    ex = explain(backbone, frames[:3], captions[0], "relevancy")
    fig = frame_grid(frames[:3], ex.maps, boxes=boxes[:3], true_boxes=[boxes[0], None, boxes[2]],
                     titles=["a", "b", "c"], columns=2)
    assert sum(t.type == "image" for t in fig.data) == 3 and sum(t.type == "heatmap" for t in fig.data) == 3
    assert len(fig.layout.shapes) == 5
    fig = grounding_timeline([0.1, 0.5, 0.2], [0.0, 0.5, 1.0], [[0.4, 0.9, 0.8], [0, 0.2, 0.1]], [[0.5, 1.0]], "q")
    assert len(fig.data) == 1 and len(fig.layout.shapes) == 3
