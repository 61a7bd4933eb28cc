"""ShapesWorld still images with captions: the pretraining data of the embedded tiny CLIP.

Captions name attributes (colour, shape, size), 3x3 positions, pairwise relations and counts, in
several templates, and never a motion word (motion is what the video strategies must learn).
Optional *orientation stills* name how a square, triangle, star or cross stands (upright, leaning
left, leaning right); the shipped model's recipe has none.
Each image also gets a *hard negative* caption that differs in one detail (another colour, the
two objects of a relation swapped, ...): CLIP-style in-batch contrast ignores word order unless
batches hold such negatives (NegCLIP, Yuksekgonul et al., ICLR 2023).

The zero-shot probes (:func:`probe_set`) are what ``workbench eval-ilfm`` measures and the model
card reports: for each attribute, a held-out image and the candidate captions that differ only
in that attribute.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .world import (COLOURS, COUNT_WORDS, POSITION_PHRASES, POSITIONS, SHAPES, SIZES, SPINNABLE,
                    SYMMETRY, Obj, cell_centre, random_background, render)

RELATIONS = {  # relation -> (axis, sign): "A <rel> B" holds when sign * (A - B) along axis > 0
    "to the left of": (0, -1), "to the right of": (0, 1), "above": (1, -1), "below": (1, 1),
}
PROBE_ATTRIBUTES = ("colour", "shape", "size", "position", "relation", "count", "orientation")
# How a spinnable shape stands against its upright pose (orientation_of). Spin direction is the
# order in which a clip's frames pass through these; a model never told them has no reason to
# keep them. Orientation stills (``sample_images(orientation=...)``, `workbench pretrain
# --orientation`) caption them; the shipped model was trained without, and a short continued
# pretraining with them alone did not teach it; with the labelled phase term (phase_stills,
# `--phase-weight`) it did (README, benchmarks/results/spin-probes/).
ORIENTATIONS = ("upright", "leaning left", "leaning right")
_UPRIGHT = 1 / 8       # |tilt| under this fraction of the symmetry period reads as upright
_AMBIGUOUS = 0.35      # beyond this fraction the shape looks as much left- as right-leaning
_CLEAR = 0.4           # oriented_object keeps this far (as a fraction of _UPRIGHT) from the upright edge


@dataclass
class CaptionedImage:
    image: np.ndarray        # uint8 [H, W, 3]
    caption: str
    hard_negative: str       # a caption that is wrong in exactly one detail


def _pick(rng: np.random.Generator, options):
    return options[int(rng.integers(len(options)))]


def random_object(rng: np.random.Generator, position: str | None = None, size: str | None = None) -> Obj:
    """An object in a 3x3 cell, jittered inside it so the cell stays unambiguous."""
    position = position or _pick(rng, POSITIONS)
    size = size or _pick(rng, tuple(SIZES))
    cx, cy = cell_centre(position)
    jitter = 0.06  # of the cell's 0.167 half-width: the centre never looks like a neighbour cell
    return Obj(shape=_pick(rng, SHAPES), colour=_pick(rng, tuple(COLOURS)), size=size,
               x=cx + rng.uniform(-jitter, jitter), y=cy + rng.uniform(-jitter, jitter),
               angle=float(rng.uniform(-15, 15)))


def _other(rng: np.random.Generator, options, current):
    return _pick(rng, tuple(o for o in options if o != current))


def describe_single(obj: Obj, position: str, fields: tuple[str, ...]) -> str:
    """Caption for one object naming exactly ``fields`` (a subset of size/colour/shape/position)."""
    words = [obj.size if "size" in fields else None, obj.colour if "colour" in fields else None,
             obj.shape if "shape" in fields else "shape"]
    text = with_article(" ".join(w for w in words if w))
    return f"{text} {POSITION_PHRASES[position]}" if "position" in fields else text


_SINGLE_FIELDS = (("colour", "shape"), ("size", "colour", "shape"), ("colour", "shape", "position"),
                  ("size", "colour", "shape", "position"), ("size", "shape", "position"),
                  ("colour", "position"), ("shape", "position"), ("size", "colour"))


def single_object_image(rng: np.random.Generator, size_px: int = 64, focus: bool = False,
                        shape_focus: bool = False) -> CaptionedImage:
    """One object; with ``focus`` the caption names its position more often and the hard
    negative moves it more often; with ``shape_focus`` half the hard negatives that can change
    the shape do (see ``sample_images``)."""
    position = _pick(rng, POSITIONS)
    obj = random_object(rng, position)
    if focus and rng.random() < 0.7:
        fields = _pick(rng, tuple(f for f in _SINGLE_FIELDS if "position" in f))
        changed = "position" if rng.random() < 0.5 else _pick(rng, fields)
    else:
        fields = _pick(rng, _SINGLE_FIELDS)
        changed = _pick(rng, tuple(f for f in fields))
    if shape_focus and "shape" in fields and rng.random() < 0.5:
        changed = "shape"
    neg_obj, neg_pos = obj, position
    if changed == "colour":
        neg_obj = obj.moved(colour=_other(rng, tuple(COLOURS), obj.colour))
    elif changed == "shape":
        neg_obj = obj.moved(shape=_other(rng, SHAPES, obj.shape))
    elif changed == "size":
        neg_obj = obj.moved(size=_other(rng, tuple(SIZES), obj.size))
    else:
        neg_pos = _other(rng, POSITIONS, position)
    image = render([obj], random_background(rng), size=size_px)
    return CaptionedImage(image, describe_single(obj, position, fields),
                          describe_single(neg_obj, neg_pos, fields))


def tilt(obj: Obj) -> float:
    """Signed tilt in degrees from the shape's upright pose, in [-period/2, period/2);
    counterclockwise (leaning left) is positive, as ``Obj.angle``."""
    period = SYMMETRY[obj.shape]
    return (obj.angle + period / 2) % period - period / 2


def orientation_of(obj: Obj) -> str:
    """One of :data:`ORIENTATIONS` for a spinnable shape."""
    a = tilt(obj) / SYMMETRY[obj.shape]
    return "upright" if abs(a) < _UPRIGHT else "leaning left" if a > 0 else "leaning right"


def oriented_object(rng: np.random.Generator, position: str, orientation: str | None = None) -> Obj:
    """A spinnable object whose tilt clearly reads as ``orientation`` (random when None)."""
    obj = random_object(rng, position).moved(shape=_pick(rng, SPINNABLE))
    orientation = orientation or _pick(rng, ORIENTATIONS)
    period = SYMMETRY[obj.shape]
    if orientation == "upright":
        a = rng.uniform(-_UPRIGHT, _UPRIGHT) * (1 - _CLEAR)
    else:
        a = rng.uniform(_UPRIGHT * (1 + _CLEAR), _AMBIGUOUS) * (1 if orientation == "leaning left" else -1)
    return obj.moved(angle=float(a * period + period * rng.integers(0, 360 // int(period))))


def phase_of(obj: Obj) -> float:
    """Where a spinnable shape stands within its symmetry period, as an angle in radians
    (2 pi times ``angle / period``): a spin turns it steadily one way, whatever the shape."""
    return 2 * np.pi * (obj.angle % SYMMETRY[obj.shape]) / SYMMETRY[obj.shape]


def phase_stills(seed: int | tuple, n: int, size_px: int = 64) -> tuple[np.ndarray, np.ndarray]:
    """``n`` stills of one spinnable shape at any angle (uint8 [n,S,S,3]) and each one's target
    (cos, sin) of :func:`phase_of` ([n,2] float32): the labelled signal of `workbench pretrain
    --phase-weight`. Captions alone teach the lean too slowly (README)."""
    rng = np.random.default_rng(seed)
    images, phases = [], []
    for _ in range(n):
        obj = random_object(rng).moved(shape=_pick(rng, SPINNABLE), angle=float(rng.uniform(0, 360)))
        phases.append(phase_of(obj))
        images.append(render([obj], random_background(rng), size=size_px))
    phases = np.asarray(phases)
    return np.stack(images), np.stack([np.cos(phases), np.sin(phases)], axis=1).astype(np.float32)


def orientation_caption(obj: Obj, position: str, orientation: str, with_position: bool) -> str:
    text = f"{with_article(obj.description)} {orientation}"
    return f"{text} {POSITION_PHRASES[position]}" if with_position else text


def orientation_image(rng: np.random.Generator, size_px: int = 64) -> CaptionedImage:
    """A spinnable object at any rotation, captioned with how it stands (upright, leaning left
    or right); the hard negative names another orientation."""
    position = _pick(rng, POSITIONS)
    obj = oriented_object(rng, position)
    orientation = orientation_of(obj)
    wrong = _other(rng, ORIENTATIONS, orientation)
    with_position = bool(rng.random() < 0.3)
    image = render([obj], random_background(rng), size=size_px)
    return CaptionedImage(image, orientation_caption(obj, position, orientation, with_position),
                          orientation_caption(obj, position, wrong, with_position))


def _two_objects(rng: np.random.Generator, relation: str) -> tuple[Obj, Obj]:
    """Two objects of different looks placed so that ``first <relation> second`` holds clearly."""
    axis, sign = RELATIONS[relation]
    while True:
        a_pos, b_pos = rng.choice(len(POSITIONS), size=2, replace=False)
        a_cell, b_cell = cell_centre(POSITIONS[a_pos]), cell_centre(POSITIONS[b_pos])
        if sign * (a_cell[axis] - b_cell[axis]) > 0.2:
            break
    a = random_object(rng, POSITIONS[a_pos])
    b = random_object(rng, POSITIONS[b_pos])
    while (b.colour, b.shape) == (a.colour, a.shape):
        b = b.moved(colour=_other(rng, tuple(COLOURS), a.colour))
    return a, b


def with_article(phrase: str) -> str:
    return f"{'an' if phrase[0] in 'aeiou' else 'a'} {phrase}"


def relation_caption(a: Obj, relation: str, b: Obj) -> str:
    return f"{with_article(a.description)} {relation} {with_article(b.description)}"


def relation_image(rng: np.random.Generator, size_px: int = 64) -> CaptionedImage:
    relation = _pick(rng, tuple(RELATIONS))
    a, b = _two_objects(rng, relation)
    image = render([a, b], random_background(rng), size=size_px)
    return CaptionedImage(image, relation_caption(a, relation, b), relation_caption(b, relation, a))


def count_caption(objects: list[Obj]) -> str:
    n = len(objects)
    looks = {(o.colour, o.shape) for o in objects}
    if len(looks) == 1:
        colour, shape = looks.pop()
        return f"{COUNT_WORDS[n]} {colour} {shape}s" if n > 1 else f"one {colour} {shape}"
    return f"{COUNT_WORDS[n]} shapes"


def count_image(rng: np.random.Generator, size_px: int = 64, n: int | None = None) -> CaptionedImage:
    n = n or int(rng.integers(1, 5))
    cells = rng.choice(len(POSITIONS), size=n, replace=False)
    same = rng.random() < 0.3
    objects = [random_object(rng, POSITIONS[c], size="small") for c in cells]
    if same:
        objects = [o.moved(colour=objects[0].colour, shape=objects[0].shape) for o in objects]
    image = render(objects, random_background(rng), size=size_px)
    wrong_n = _other(rng, (1, 2, 3, 4), n)
    negative = count_caption(objects).replace(COUNT_WORDS[n], COUNT_WORDS[wrong_n], 1)
    if wrong_n == 1 and negative.endswith("s") and not negative.endswith("shapes"):
        negative = negative[:-1]
    elif n == 1 and wrong_n > 1 and not negative.endswith("s"):
        negative += "s"
    return CaptionedImage(image, count_caption(objects), negative)


# Mixture used for pretraining: most images teach attributes and positions; relations and counts
# need their own share or CLIP-style training never sees them.
MIXTURE = ((single_object_image, 0.5), (relation_image, 0.35), (count_image, 0.15))
# In-batch contrast never needs *where* an object is (colour + shape + size already tell 96 looks
# apart), so with MIXTURE alone position and relations stayed near chance (measured: 14% and 48%
# at step 600, learned position embeddings).
# Focus batches name positions in most captions and make half the hard negatives a moved object.
FOCUS_MIXTURE = ((single_object_image, 0.55), (relation_image, 0.4), (count_image, 0.05))
# Shape is the slowest attribute (measured: 32% at step 600 of focus batches, while position was
# 100% and relations 95%): the last phase makes half the shape-naming hard negatives another shape.


def sample_images(seed: int | tuple, n: int, size_px: int = 64, focus: bool = False,
                  shape_focus: bool = False, orientation: float = 0.0) -> list[CaptionedImage]:
    """``n`` captioned images, deterministic in ``seed`` (pass ``(seed, step)`` for a training
    batch); ``focus`` selects the position-heavy mixture, ``shape_focus`` shape hard negatives,
    ``orientation`` the share of :func:`orientation_image` stills."""
    rng = np.random.default_rng(seed)
    makers, weights = zip(*(FOCUS_MIXTURE if focus else MIXTURE))
    if orientation > 0:
        total = sum(weights)
        makers = makers + (orientation_image,)
        weights = tuple(w / total * (1 - orientation) for w in weights) + (orientation,)
    choice = rng.choice(len(makers), size=n, p=np.asarray(weights) / sum(weights))
    return [makers[k](rng, size_px, focus, shape_focus) if makers[k] is single_object_image
            else makers[k](rng, size_px) for k in choice]


@dataclass
class Probe:
    image: np.ndarray
    candidates: list[str]    # captions that differ only in the probed attribute
    answer: int              # index of the true caption


def probe(attribute: str, rng: np.random.Generator, size_px: int = 64) -> Probe:
    """One zero-shot question about ``attribute`` (see PROBE_ATTRIBUTES)."""
    bg = random_background(rng)
    if attribute in ("colour", "shape", "size", "position"):
        position = _pick(rng, POSITIONS)
        obj = random_object(rng, position)
        fields = {"colour": ("colour", "shape"), "shape": ("colour", "shape"),
                  "size": ("size", "colour", "shape"), "position": ("colour", "shape", "position")}[attribute]
        if attribute == "position":
            options = [describe_single(obj, p, fields) for p in POSITIONS]
            answer = POSITIONS.index(position)
        else:
            values = {"colour": tuple(COLOURS), "shape": SHAPES, "size": tuple(SIZES)}[attribute]
            options = [describe_single(obj.moved(**{attribute: v}), position, fields) for v in values]
            answer = values.index(getattr(obj, attribute))
        return Probe(render([obj], bg, size=size_px), options, answer)
    if attribute == "relation":
        item = relation_image(rng, size_px)
        flip = bool(rng.integers(2))
        options = [item.hard_negative, item.caption] if flip else [item.caption, item.hard_negative]
        return Probe(item.image, options, int(flip))
    if attribute == "count":
        n = int(rng.integers(1, 5))
        cells = rng.choice(len(POSITIONS), size=n, replace=False)
        objects = [random_object(rng, POSITIONS[c], size="small") for c in cells]
        options = [f"{COUNT_WORDS[k]} shape" + ("s" if k > 1 else "") for k in (1, 2, 3, 4)]
        return Probe(render(objects, bg, size=size_px), options, n - 1)
    if attribute == "orientation":
        position = _pick(rng, POSITIONS)
        obj = oriented_object(rng, position)
        options = [orientation_caption(obj, position, o, False) for o in ORIENTATIONS]
        return Probe(render([obj], bg, size=size_px), options, ORIENTATIONS.index(orientation_of(obj)))
    raise ValueError(f"unknown attribute {attribute!r}; choose from {PROBE_ATTRIBUTES}")


def chance(attribute: str) -> float:
    """Accuracy of a uniform guess on :func:`probe` for ``attribute``, in percent."""
    k = {"colour": len(COLOURS), "shape": len(SHAPES), "size": len(SIZES),
         "position": len(POSITIONS), "relation": 2, "count": 4,
         "orientation": len(ORIENTATIONS)}[attribute]
    return 100.0 / k
