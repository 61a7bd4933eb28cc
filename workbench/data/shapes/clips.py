"""ShapesWorld clips: short captioned videos of one event, each with an exact time-reversed twin.

A clip is T frames of one or two objects on a background that stays fixed over the clip. The
event is one of :data:`EVENT_KINDS` — moves left/right/up/down, grows, shrinks, spins clockwise
or counterclockwise, changes colour, appears, disappears, stays still, two objects swap places,
approach or move apart, and ordered pairs ("first the red circle moves to the left, then it
grows"). Positions, sizes, angles and colours change continuously (nothing snaps to the 3x3
grid); single-object clips sometimes hold a still distractor. Scenes are data (per-frame tuples
of :class:`~workbench.data.shapes.world.Obj`); pixels are rendered on demand by
:meth:`Clip.frames`, through the same renderer the tiny CLIP was pretrained on.

**Time-reversed twins.** Every event with a direction in time has a twin whose scenes are the
clip's scenes in reverse order — so ``twin.frames() == clip.frames()[::-1]`` exactly — and whose
caption says the reversed event (left/right, grows/shrinks, appears/disappears, clockwise/
counterclockwise, approach/move apart, red-to-blue/blue-to-red, and "first A, then B" becomes
"first reverse(B), then reverse(A)"). Only "stays still" has no twin.

**Evaluation protocol** (:func:`evaluation_split`; the survey's central point made measurable).
Each item is an evaluation clip with candidate captions, exactly one of them true; a model picks
the candidate whose text embedding is closest to the clip's video embedding.

- ``appearance``: the candidates describe the *same event* done by *other objects* (looks that
  appear nowhere in the clip). One frame suffices: static cues are enough. 4 candidates.
- ``motion``: the candidates describe the *same object* doing *other events*, never the clip's
  own reversal (moves left vs moves up, grows, spins, stays still...). The set of frames tells
  them apart, their order does not matter: motion cues are needed. 4 candidates.
- ``order``: time-reversed twin pairs. Both clips of a pair are items with the same two
  candidates in the same order (the forward caption, then the reversed one). The two clips hold
  the same frames, so a model blind to frame order gives both the same scores, picks the same
  candidate for both, and is right on exactly one: it scores exactly chance (50 %).

Hard negatives for training: each clip knows its twin's caption and a few *same-object
siblings* (same object, another event); :meth:`Clip.hard_negatives` returns them.

Determinism: every clip draws from a ``numpy`` generator seeded by ``(seed, split, kind,
index)``, so a clip does not depend on how many others are generated or in which order, and
``make_clips`` with the same arguments gives identical scenes, captions and frames.
"""
from __future__ import annotations

import math
import zlib
from dataclasses import dataclass, replace
from typing import Callable

import numpy as np

from .images import with_article
from .world import (COLOURS, SHAPES, SIZES, SPINNABLE, SYMMETRY, Background, Obj, random_background,
                    render)

MOVE_KINDS = ("move_left", "move_right", "move_up", "move_down")
EVENT_KINDS = MOVE_KINDS + (
    "grow", "shrink", "spin_clockwise", "spin_counterclockwise", "change_colour", "appear",
    "disappear", "stay", "swap", "approach", "move_apart", "sequence")
# Event kind -> action class (the event type, whoever does it). Ordered pairs are not an action.
ACTIONS = {
    "move_left": "moving left", "move_right": "moving right", "move_up": "moving up",
    "move_down": "moving down", "grow": "growing", "shrink": "shrinking",
    "spin_clockwise": "spinning clockwise", "spin_counterclockwise": "spinning counterclockwise",
    "change_colour": "changing colour", "appear": "appearing", "disappear": "disappearing",
    "stay": "staying still", "swap": "swapping places", "approach": "approaching",
    "move_apart": "moving apart",
}
ACTION_CLASSES = tuple(ACTIONS.values())
# Kind of the time-reversed event (None: reversal gives the same event, i.e. no twin).
REVERSE_KIND = {
    "move_left": "move_right", "move_right": "move_left", "move_up": "move_down",
    "move_down": "move_up", "grow": "shrink", "shrink": "grow",
    "spin_clockwise": "spin_counterclockwise", "spin_counterclockwise": "spin_clockwise",
    "change_colour": "change_colour", "appear": "disappear", "disappear": "appear", "stay": None,
    "swap": "swap", "approach": "move_apart", "move_apart": "approach", "sequence": "sequence",
}


def twin_pair(event: str) -> str:
    """A kind with its time reversal, as the twin test groups them: "grow/shrink", "swap"."""
    return "/".join(sorted({event, REVERSE_KIND.get(event) or event}))


# Kinds generated directly; their twins supply the reversed kinds.
BASE_KINDS = ("move_left", "move_up", "grow", "spin_clockwise", "change_colour", "appear",
              "stay", "swap", "approach", "sequence")
SINGLE_KINDS = MOVE_KINDS + ("grow", "shrink", "spin_clockwise", "spin_counterclockwise",
                             "change_colour", "appear", "disappear", "stay")
PAIR_KINDS = ("swap", "approach", "move_apart")
EVAL_SPLITS = ("appearance", "motion", "order")
MOTION_SPLIT_KINDS = MOVE_KINDS + ("grow", "shrink", "spin_clockwise", "spin_counterclockwise",
                                   "stay")
SPLITS = ("train", "eval")
FPS = 8
DIRECTIONS = ("left", "right", "up", "down")
OPPOSITE = {"left": "right", "right": "left", "up": "down", "down": "up"}
_DIRECTION_PHRASE = {"left": "to the left", "right": "to the right", "up": "up", "down": "down"}
_VECTOR = {"left": (-1, 0), "right": (1, 0), "up": (0, -1), "down": (0, 1)}

# Verb phrases of single-object events; placeholders: {d} direction phrase, {dw} direction word,
# {rot} rotation sense, {c1}/{c2} colours before/after.
_VERB_PHRASES = {
    "move": ("moves {d}", "goes {d}", "slides {d}", "travels {dw}ward"),
    "grow": ("grows", "gets bigger", "becomes larger", "expands"),
    "shrink": ("shrinks", "gets smaller", "becomes smaller", "contracts"),
    "spin": ("spins {rot}", "rotates {rot}", "turns {rot}", "twirls {rot}"),
    "change_colour": ("turns from {c1} to {c2}", "changes colour from {c1} to {c2}", "turns {c2}",
                      "becomes {c2}"),
    "appear": ("appears", "shows up", "comes into view", "pops up"),
    "disappear": ("disappears", "vanishes", "goes out of view", "goes away"),
    "stay": ("stays still", "does not move", "remains in place", "stays where it is"),
}
# Whole sentences of two-object events and ordered pairs; {a}/{b} the objects, {s} the subject.
_SENTENCES = {
    "swap": ("{a} and {b} swap places, {the_a} moving {d}", "{a} moves {d} and swaps places with {b}",
             "{a} trades places with {b} by moving {d}"),
    "approach": ("{a} and {b} move toward each other", "{a} and {b} approach each other",
                 "{a} and {b} come closer together"),
    "move_apart": ("{a} and {b} move apart", "{a} and {b} move away from each other",
                   "{a} and {b} drift apart"),
    "sequence": ("first {s} {vp1}, then it {vp2}", "{s} {vp1} and then {vp2}",
                 "{s} first {vp1}, then {vp2}"),
}
_NUM_TEMPLATES = 12  # template indices are drawn below this and taken modulo each list's length

Look = tuple[str, str]  # (colour, shape)


# --------------------------------------------------------------------------------------------
# Events and their captions
# --------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class EventSpec:
    """What happens in a clip, in words: enough to caption it and to caption its reversal."""

    kind: str                               # one of EVENT_KINDS
    looks: tuple[Look, ...]                 # (colour, shape) of the named objects at the start; actor first
    direction: str | None = None            # swap: where the actor goes
    colours: tuple[str, str] | None = None  # change_colour: (before, after)
    parts: tuple["EventSpec", ...] = ()     # sequence: the two single-object events, in order


def move_kind(direction: str) -> str:
    return f"move_{direction}"


def _family(kind: str) -> str:
    if kind in MOVE_KINDS:
        return "move"
    return "spin" if kind.startswith("spin") else kind


def reverse_spec(spec: EventSpec) -> EventSpec | None:
    """The event seen backwards in time, or None when it reads the same ("stays still")."""
    kind = REVERSE_KIND[spec.kind]
    if kind is None:
        return None
    if spec.kind == "sequence":
        parts = tuple(reverse_spec(p) for p in reversed(spec.parts))
        return replace(spec, parts=parts, looks=parts[0].looks)
    if spec.kind == "change_colour":
        before, after = spec.colours
        looks = ((after, spec.looks[0][1]),) + spec.looks[1:]
        return replace(spec, looks=looks, colours=(after, before))
    if spec.kind == "swap":
        return replace(spec, direction=OPPOSITE[spec.direction])
    return replace(spec, kind=kind)


def _noun(words: str, definite: bool) -> str:
    return f"the {words}" if definite else with_article(words)


def _subject(look: Look, phrase: str, definite: bool) -> str:
    colour, shape = look
    # "a circle turns from red to blue", not "a red circle turns from red to blue"
    return _noun(shape if "{c1}" in phrase else f"{colour} {shape}", definite)


def _phrase(kind: str, template: int) -> str:
    options = _VERB_PHRASES[_family(kind)]
    return options[template % len(options)]


def _fill(phrase: str, spec: EventSpec) -> str:
    direction = spec.direction or (spec.kind.split("_", 1)[1] if spec.kind in MOVE_KINDS else "")
    c1, c2 = spec.colours or ("", "")
    rotation = spec.kind.split("_", 1)[1] if spec.kind.startswith("spin") else ""
    return phrase.format(d=_DIRECTION_PHRASE.get(direction, ""), dw=direction, rot=rotation,
                         c1=c1, c2=c2)


def verb_phrase(spec: EventSpec, template: int = 0) -> str:
    """What the actor of a single-object event does, without the subject: "moves to the left"."""
    return _fill(_phrase(spec.kind, template), spec)


def caption(spec: EventSpec, template: int = 0, definite: bool = False) -> str:
    """The sentence for an event; ``template`` picks the wording, ``definite`` says "the" not "a"."""
    if spec.kind in SINGLE_KINDS:
        phrase = _phrase(spec.kind, template)
        return f"{_subject(spec.looks[0], phrase, definite)} {_fill(phrase, spec)}"
    options = _SENTENCES[spec.kind]
    sentence = options[template % len(options)]
    if spec.kind == "sequence":
        first, second = spec.parts
        subject = _subject(spec.looks[0], _phrase(first.kind, template), definite)
        return sentence.format(s=subject, vp1=verb_phrase(first, template),
                               vp2=verb_phrase(second, template))
    a, b = (_noun(f"{colour} {shape}", definite) for colour, shape in spec.looks)
    return sentence.format(a=a, b=b, the_a=_noun("{} {}".format(*spec.looks[0]), True),
                           d=_DIRECTION_PHRASE.get(spec.direction or "", ""))


def num_templates(spec: EventSpec) -> int:
    if spec.kind in _SENTENCES:
        return len(_SENTENCES[spec.kind])
    return len(_VERB_PHRASES[_family(spec.kind)])


# --------------------------------------------------------------------------------------------
# Changes of one object over a clip (shared with the long videos)
# --------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Change:
    """A continuous change of one object; ``apply(obj, p)`` gives it at progress ``p`` in [0, 1]."""

    kind: str                                  # one of SINGLE_KINDS
    shift: tuple[float, float] = (0.0, 0.0)    # move: displacement (dx, dy) over the change
    scale: tuple[float, float] = (1.0, 1.0)    # grow/shrink: scale factor at p=0 and p=1
    turn: float = 0.0                          # spin: degrees, counterclockwise positive
    colours: tuple[str, str] | None = None     # change_colour: (before, after)
    reveal: float = 0.0                        # appear: hidden while p < reveal

    def apply(self, obj: Obj, p: float) -> Obj:
        p = float(p)
        dx, dy = self.shift
        s0, s1 = self.scale
        obj = obj.moved(x=obj.x + dx * p, y=obj.y + dy * p, angle=obj.angle + self.turn * p,
                        scale=obj.scale * (s0 + (s1 - s0) * p))
        if self.colours:
            a, b = (np.asarray(COLOURS[c], dtype=float) for c in self.colours)
            rgb = tuple(int(round(v)) for v in a + (b - a) * p)
            obj = obj.moved(colour=self.colours[int(p >= 0.5)], rgb=rgb)
        if self.kind == "appear" and p < self.reveal:
            obj = obj.moved(scale=0.0)
        return obj

    def spec(self, look: Look) -> EventSpec:
        return EventSpec(self.kind, (look,), colours=self.colours)


def random_change(kind: str, rng: np.random.Generator, obj: Obj,
                  distance: tuple[float, float] = (0.3, 0.45),
                  growth: tuple[float, float] = (0.6, 1.4)) -> Change:
    """A random instance of ``kind`` for ``obj`` (placement is the caller's job)."""
    if kind in MOVE_KINDS:
        vx, vy = _VECTOR[kind.split("_", 1)[1]]
        d = float(rng.uniform(*distance))
        return Change(kind, shift=(vx * d, vy * d))
    if kind in ("grow", "shrink"):
        return Change(kind, scale=growth if kind == "grow" else growth[::-1])
    if kind.startswith("spin"):
        sign = -1.0 if kind == "spin_clockwise" else 1.0  # Obj.angle is counterclockwise
        return Change(kind, turn=sign * float(rng.uniform(0.6, 1.2)) * SYMMETRY[obj.shape])
    if kind == "change_colour":
        return Change(kind, colours=(obj.colour, pick(rng, [c for c in COLOURS if c != obj.colour])))
    if kind == "appear":
        return Change(kind, reveal=float(rng.uniform(0.3, 0.7)))
    if kind == "stay":
        return Change(kind)
    raise ValueError(f"{kind!r} is not a single-object event; choose from {SINGLE_KINDS}")


# --------------------------------------------------------------------------------------------
# Clips
# --------------------------------------------------------------------------------------------

Scene = tuple[Obj, ...]


class SceneVideo:
    """Per-frame scenes on one background, rendered to pixels on demand (clips, long videos)."""

    scenes: tuple[Scene, ...]
    background: Background
    fps: int

    @property
    def num_frames(self) -> int:
        return len(self.scenes)

    @property
    def duration(self) -> float:
        return self.num_frames / self.fps

    def frames(self, size: int = 64) -> np.ndarray:
        """uint8 [T, size, size, 3]."""
        return render_scenes(self.scenes, self.background, size)


@dataclass(frozen=True)
class Clip(SceneVideo):
    """One captioned clip: per-frame scenes, rendered to pixels on demand."""

    clip_id: str
    event: str                      # event kind, one of EVENT_KINDS
    action: str | None              # action class (ACTION_CLASSES); None for ordered pairs
    caption: str
    objects: tuple[str, ...]        # every object at the start, "red circle"; the actor first
    twin_id: str | None             # the time-reversed twin; None for "stays still"
    twin_caption: str | None
    split: tuple[str, ...]          # "train" or "eval", plus the evaluation splits it belongs to
    scenes: tuple[Scene, ...]       # objects per frame, in drawing order
    background: Background          # the same on every frame
    actor: int                      # index of the acting object in every scene
    spec: EventSpec                 # the event in words
    template: int                   # wording of the caption (and of its twin and siblings)
    siblings: tuple[str, ...]       # same object(s), another event: hard negatives
    fps: int = FPS

    def boxes(self, size: int | None = None) -> list[tuple[float, float, float, float] | None]:
        """The actor's box [x1, y1, x2, y2] per frame (pixels if ``size``, else [0, 1]); None
        where it is hidden."""
        return [_box(scene[self.actor], size) for scene in self.scenes]

    def hard_negatives(self) -> list[str]:
        """Captions a model must rank below the true one: the twin's, then same-object siblings."""
        return ([self.twin_caption] if self.twin_caption else []) + list(self.siblings)

    def captions(self) -> list[str]:
        """Every wording of this clip's caption (the chosen one first)."""
        others = [caption(self.spec, t) for t in range(num_templates(self.spec))]
        return [self.caption] + [c for c in others if c != self.caption]

    def annotation(self, size: int | None = None) -> dict:
        """JSON-ready ground truth (no pixels)."""
        return {"clip_id": self.clip_id, "caption": self.caption, "captions": self.captions(),
                "event": self.event, "action": self.action, "objects": list(self.objects),
                "twin_id": self.twin_id, "twin_caption": self.twin_caption,
                "hard_negatives": self.hard_negatives(), "split": list(self.split),
                "num_frames": self.num_frames, "fps": self.fps,
                "boxes": [list(b) if b else None for b in self.boxes(size)]}


def render_scenes(scenes: tuple[Scene, ...], background: Background, size: int) -> np.ndarray:
    """Scenes -> uint8 [T, size, size, 3]."""
    return np.stack([render(list(scene), background, size) for scene in scenes])


def _box(obj: Obj, size: int | None) -> tuple[float, float, float, float] | None:
    if obj.scale <= 0:
        return None
    box = obj.box()
    return tuple(v * size for v in box) if size else box


def pick(rng: np.random.Generator, options):
    options = list(options)
    return options[int(rng.integers(len(options)))]


def rng_for(*keys: int | str) -> np.random.Generator:
    """A generator seeded by a tuple of ints and strings (strings by CRC-32)."""
    return np.random.default_rng([k if isinstance(k, int) else zlib.crc32(k.encode()) for k in keys])


def _random_look(rng: np.random.Generator, exclude=(), shapes=SHAPES) -> Look:
    while True:
        look = (pick(rng, COLOURS), pick(rng, shapes))
        if look not in exclude:
            return look


def _place(rng: np.random.Generator, radius: float, shift: tuple[float, float]) -> tuple[float, float]:
    """A start point from which an object of ``radius`` can move by ``shift`` inside the image."""
    margin = radius + 0.02
    point = []
    for d in shift:
        low, high = margin + max(0.0, -d), 1 - margin - max(0.0, d)
        point.append(float(rng.uniform(low, high)) if low < high else 0.5 - d / 2)
    return point[0], point[1]


def _fit_shift(change: Change, radius: float) -> Change:
    """Shorten a move that cannot fit in the image with this radius."""
    room = 1 - 2 * (radius + 0.02)
    dx, dy = change.shift
    longest = max(abs(dx), abs(dy))
    if longest <= room:
        return change
    return replace(change, shift=(dx * room / longest, dy * room / longest))


SceneFn = Callable[[float], Scene]


def _single_object(kinds: tuple[str, ...], rng: np.random.Generator) -> tuple[SceneFn, EventSpec]:
    """One object doing ``kinds`` one after the other over the clip (one kind: the whole clip)."""
    spin = any(k.startswith("spin") for k in kinds)
    colour, shape = _random_look(rng, shapes=SPINNABLE if spin else SHAPES)
    size = pick(rng, SIZES)
    angle = float(rng.uniform(0, 360)) if spin else float(rng.uniform(-15, 15))
    obj = Obj(shape, colour, size, 0.5, 0.5, angle=angle)
    changes, state = [], obj
    for kind in kinds:
        change = random_change(kind, rng, state)
        changes.append(change)
        state = change.apply(state, 1.0)
    biggest = SIZES[size] * max(max(c.scale) for c in changes)
    changes = [_fit_shift(c, biggest) for c in changes]
    total = tuple(sum(c.shift[i] for c in changes) for i in range(2))
    x, y = _place(rng, biggest, total)
    obj = obj.moved(x=x, y=y)
    n = len(changes)

    def scene(u: float) -> Scene:
        state = obj
        for k, change in enumerate(changes):
            state = change.apply(state, min(max(u * n - k, 0.0), 1.0))
        return (state,)

    specs, state = [], obj
    for change in changes:
        specs.append(change.spec((state.colour, state.shape)))
        state = change.apply(state, 1.0)
    spec = specs[0] if n == 1 else EventSpec("sequence", specs[0].looks, parts=tuple(specs))
    return scene, spec


def _sequence_kinds(rng: np.random.Generator) -> tuple[str, str]:
    """Two single-object events of different families (move, size, spin, colour)."""
    families = {"move": MOVE_KINDS, "size": ("grow", "shrink"),
                "spin": ("spin_clockwise", "spin_counterclockwise"), "colour": ("change_colour",)}
    first, second = rng.choice(list(families), size=2, replace=False)
    return pick(rng, families[first]), pick(rng, families[second])


def _two_objects(rng: np.random.Generator) -> tuple[Obj, Obj]:
    a_look = _random_look(rng)
    b_look = _random_look(rng, exclude=(a_look,))
    a = Obj(a_look[1], a_look[0], pick(rng, SIZES), 0.5, 0.5, angle=float(rng.uniform(-15, 15)))
    b = Obj(b_look[1], b_look[0], pick(rng, SIZES), 0.5, 0.5, angle=float(rng.uniform(-15, 15)))
    return a, b


def _along(axis: int, main: float, cross: float) -> tuple[float, float]:
    return (main, cross) if axis == 0 else (cross, main)


def _swap(rng: np.random.Generator) -> tuple[SceneFn, EventSpec]:
    """Two objects trade places along one axis, passing on opposite arcs."""
    a, b = _two_objects(rng)
    axis = int(rng.integers(2))
    near, far = float(rng.uniform(0.21, 0.29)), float(rng.uniform(0.71, 0.79))
    start_a, start_b = (near, far) if rng.random() < 0.5 else (far, near)
    cross, arc = float(rng.uniform(0.38, 0.62)), 0.12

    def scene(u: float) -> Scene:
        bend = arc * math.sin(math.pi * u)
        main_a = start_a + (start_b - start_a) * u
        main_b = start_b + (start_a - start_b) * u
        xa, ya = _along(axis, main_a, cross - bend)
        xb, yb = _along(axis, main_b, cross + bend)
        return a.moved(x=xa, y=ya), b.moved(x=xb, y=yb)

    toward_higher = start_b > start_a
    direction = ("right" if toward_higher else "left") if axis == 0 else ("down" if toward_higher else "up")
    return scene, EventSpec("swap", ((a.colour, a.shape), (b.colour, b.shape)), direction=direction)


def _approach(rng: np.random.Generator) -> tuple[SceneFn, EventSpec]:
    """Two objects on a line move toward each other (the twin: they move apart)."""
    a, b = _two_objects(rng)
    while True:
        ra, rb = a.radius, b.radius
        near = (ra + rb) / 2 + float(rng.uniform(0.03, 0.06))   # half the final gap between centres
        far_max = 0.5 - max(ra, rb) - 0.03
        if far_max - near >= 0.08:
            break
        a, b = a.moved(size="small"), b.moved(size="small")
    far = min(near + float(rng.uniform(0.12, 0.2)), far_max)
    axis = int(rng.integers(2))
    centre, cross = 0.5 + float(rng.uniform(-0.02, 0.02)), float(rng.uniform(0.3, 0.7))
    side = 1.0 if rng.random() < 0.5 else -1.0  # which side object a starts on

    def scene(u: float) -> Scene:
        half = far + (near - far) * u
        xa, ya = _along(axis, centre - side * half, cross)
        xb, yb = _along(axis, centre + side * half, cross)
        return a.moved(x=xa, y=ya), b.moved(x=xb, y=yb)

    return scene, EventSpec("approach", ((a.colour, a.shape), (b.colour, b.shape)))


def _distractor(rng: np.random.Generator, scene: SceneFn, exclude: set[Look]) -> Obj | None:
    """A still object placed clear of the actor's whole path, or None if there is no room."""
    path = [scene(u)[0] for u in np.linspace(0, 1, 9)]
    look = _random_look(rng, exclude=exclude)
    size = pick(rng, SIZES)
    radius = SIZES[size]
    for _ in range(30):
        x, y = (float(v) for v in rng.uniform(radius + 0.02, 1 - radius - 0.02, size=2))
        if all(math.hypot(x - o.x, y - o.y) > radius + SIZES[o.size] * max(o.scale, 1) + 0.04
               for o in path):
            return Obj(look[1], look[0], size, x, y, angle=float(rng.uniform(-15, 15)))
    return None


def _looks_in(scenes: tuple[Scene, ...]) -> set[Look]:
    return {(o.colour, o.shape) for scene in scenes for o in scene}


def _generate(kind: str, rng: np.random.Generator) -> tuple[SceneFn, EventSpec, int]:
    """Scene function, event spec and actor index for a clip of ``kind``."""
    if kind == "swap":
        scene, spec = _swap(rng)
        return scene, spec, 0
    if kind == "approach":
        scene, spec = _approach(rng)
        return scene, spec, 0
    kinds = _sequence_kinds(rng) if kind == "sequence" else (kind,)
    scene, spec = _single_object(kinds, rng)
    if rng.random() >= 0.5:
        return scene, spec, 0
    path_looks = {(o.colour, o.shape) for u in np.linspace(0, 1, 3) for o in scene(u)}
    extra = _distractor(rng, scene, path_looks)
    if extra is None:
        return scene, spec, 0
    return (lambda u: (extra,) + scene(u)), spec, 1


def _siblings(spec: EventSpec, rng: np.random.Generator, template: int, k: int = 3) -> tuple[str, ...]:
    """Captions of the same object(s) doing other events (never the event or its reversal)."""
    if spec.kind == "sequence":
        first, second = spec.parts
        # the same two events in the other order, and each with the other one reversed
        lead = second if second.colours else replace(second, looks=first.looks)
        options = ((lead, first), (first, _other_way(second, rng)), (_other_way(first, rng), second))
        return tuple(caption(EventSpec("sequence", a.looks, parts=(a, b)), template) for a, b in options)
    own = {spec.kind, REVERSE_KIND[spec.kind]}
    if spec.kind in PAIR_KINDS:
        pool = [EventSpec("swap", spec.looks, direction=d) for d in DIRECTIONS
                if spec.kind != "swap" or d not in (spec.direction, OPPOSITE[spec.direction])]
        pool += [EventSpec(kind, spec.looks) for kind in ("approach", "move_apart") if kind not in own]
    else:
        colour, shape = spec.looks[0]
        kinds = [kind for kind in SINGLE_KINDS if kind not in own
                 and (shape in SPINNABLE or not kind.startswith("spin"))]
        pool = [EventSpec(kind, spec.looks, colours=(colour, pick(rng, [c for c in COLOURS if c != colour]))
                          if kind == "change_colour" else None) for kind in kinds]
    order = rng.permutation(len(pool))[:k]
    return tuple(caption(pool[i], template) for i in order)


def _other_way(part: EventSpec, rng: np.random.Generator) -> EventSpec:
    """The same kind of change the other way: reversed, or to another colour."""
    if not part.colours:
        return reverse_spec(part)
    other = pick(rng, [c for c in COLOURS if c not in part.colours])
    return replace(part, colours=(part.colours[0], other))


def _clip(kind: str, rng: np.random.Generator, num_frames: int, clip_id: str, split: str) -> Clip:
    scene, spec, actor = _generate(kind, rng)
    scenes = tuple(scene(t / (num_frames - 1)) for t in range(num_frames))
    template = int(rng.integers(_NUM_TEMPLATES))
    reverse = reverse_spec(spec)
    return Clip(clip_id=clip_id, event=kind, action=ACTIONS.get(kind), caption=caption(spec, template),
                objects=_descriptions(scenes[0], actor), twin_id=None,
                twin_caption=caption(reverse, template) if reverse else None, split=(split,),
                scenes=scenes, background=random_background(rng), actor=actor, spec=spec,
                template=template, siblings=_siblings(spec, rng, template))


def _descriptions(scene: Scene, actor: int) -> tuple[str, ...]:
    order = [actor] + [i for i in range(len(scene)) if i != actor]
    return tuple(scene[i].description for i in order)


def _twin(clip: Clip, twin_id: str, rng: np.random.Generator) -> tuple[Clip, Clip]:
    """The clip and its time-reversed twin, linked to each other."""
    spec = reverse_spec(clip.spec)
    scenes = clip.scenes[::-1]
    twin = replace(clip, clip_id=twin_id, event=spec.kind, action=ACTIONS.get(spec.kind),
                   caption=clip.twin_caption, objects=_descriptions(scenes[0], clip.actor),
                   twin_id=clip.clip_id, twin_caption=clip.caption, scenes=scenes, spec=spec,
                   siblings=_siblings(spec, rng, clip.template))
    return replace(clip, twin_id=twin_id), twin


def _eval_tags(clip: Clip) -> tuple[str, ...]:
    tags = ["appearance"]
    if clip.event in MOTION_SPLIT_KINDS:
        tags.append("motion")
    if clip.twin_id:
        tags.append("order")
    return tuple(tags)


def make_clips(seed: int, per_kind: int, num_frames: int, split: str = "train") -> list[Clip]:
    """About ``per_kind`` clips of every event kind, each followed by its twin.

    Reversible kinds come in pairs (``per_kind`` "moves left" clips whose twins are the
    ``per_kind`` "moves right" clips); kinds that are their own reversal (changes colour, swap,
    ordered pairs) get ``ceil(per_kind / 2)`` clips plus their twins. ``split`` ("train" or
    "eval") picks an independent random stream, so the two never share a clip.
    """
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; choose from {SPLITS}")
    if num_frames < 2:
        raise ValueError(f"a clip needs at least 2 frames, got num_frames={num_frames}")
    clips = []
    for kind in BASE_KINDS:
        self_twin = REVERSE_KIND[kind] == kind
        for i in range(math.ceil(per_kind / 2) if self_twin else per_kind):
            rng = rng_for(seed, SPLITS.index(split), EVENT_KINDS.index(kind), i)
            clip = _clip(kind, rng, num_frames, f"{split}_{kind}_{i:04d}", split)
            if clip.twin_caption is None:
                clips.append(clip)
                continue
            twin_id = f"{split}_{REVERSE_KIND[kind]}_{i:04d}r"
            clips.extend(_twin(clip, twin_id, rng))
    if split == "eval":
        clips = [replace(c, split=c.split + _eval_tags(c)) for c in clips]
    return clips


# --------------------------------------------------------------------------------------------
# Evaluation splits
# --------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class EvalItem:
    """One multiple-choice item of an evaluation split: pick the true caption for the clip."""

    split: str                   # "appearance", "motion" or "order"
    clip: Clip
    candidates: tuple[str, ...]  # captions, exactly one true
    answer: int                  # index of the true caption

    @property
    def chance(self) -> float:
        return 1.0 / len(self.candidates)


def _with_answer(split: str, clip: Clip, wrong: list[str], rng: np.random.Generator) -> EvalItem:
    candidates = [clip.caption] + wrong
    order = rng.permutation(len(candidates))
    shuffled = tuple(candidates[i] for i in order)
    return EvalItem(split, clip, shuffled, int(np.argmax(order == 0)))


def _relooked(spec: EventSpec, looks: tuple[Look, ...], rng: np.random.Generator) -> EventSpec:
    """The same event done by objects with other looks."""
    if spec.kind == "sequence":
        parts, look = [], looks[0]
        for part in spec.parts:
            part = _relooked(part, (look,), rng)
            parts.append(part)
            look = (part.colours[1], look[1]) if part.colours else look
        return replace(spec, looks=looks, parts=tuple(parts))
    if spec.kind == "change_colour":
        after = pick(rng, [c for c in COLOURS if c != looks[0][0]])
        return replace(spec, looks=looks, colours=(looks[0][0], after))
    return replace(spec, looks=looks)


def _spec_looks(spec: EventSpec) -> set[Look]:
    looks = set(spec.looks)
    for part in (spec,) + spec.parts:
        if part.colours:
            looks |= {(c, part.looks[0][1]) for c in part.colours}
    return looks


def _appearance_item(clip: Clip, rng: np.random.Generator, k: int = 4) -> EvalItem:
    shapes = SPINNABLE if _needs_spin(clip.spec) else SHAPES
    present = _looks_in(clip.scenes)
    wrong: list[str] = []
    while len(wrong) < k - 1:
        looks: list[Look] = []
        for _ in clip.spec.looks:
            looks.append(_random_look(rng, exclude=present | set(looks), shapes=shapes))
        spec = _relooked(clip.spec, tuple(looks), rng)
        text = caption(spec, clip.template)
        if not (_spec_looks(spec) & present) and text not in wrong:
            wrong.append(text)
    return _with_answer("appearance", clip, wrong, rng)


def _needs_spin(spec: EventSpec) -> bool:
    return any(p.kind.startswith("spin") for p in (spec,) + spec.parts)


def _motion_item(clip: Clip, rng: np.random.Generator, k: int = 4) -> EvalItem:
    shape = clip.spec.looks[0][1]
    own = {clip.event, REVERSE_KIND[clip.event]}
    kinds = [kind for kind in MOTION_SPLIT_KINDS if kind not in own
             and (shape in SPINNABLE or not kind.startswith("spin"))]
    chosen = rng.permutation(len(kinds))[:k - 1]
    wrong = [caption(EventSpec(kinds[i], clip.spec.looks), clip.template) for i in chosen]
    return _with_answer("motion", clip, wrong, rng)


def _order_items(clips: list[Clip]) -> list[EvalItem]:
    by_id = {c.clip_id: c for c in clips}
    items = []
    for clip in clips:
        twin = by_id.get(clip.twin_id or "")
        if twin is None:
            continue
        forward = clip if not clip.clip_id.endswith("r") else twin
        candidates = (forward.caption, forward.twin_caption)
        items.append(EvalItem("order", clip, candidates, 0 if clip is forward else 1))
    return items


def evaluation_split(name: str, seed: int = 0, per_kind: int = 4, num_frames: int = 8, *,
                     clips: list[Clip] | None = None) -> list[EvalItem]:
    """The ``appearance``, ``motion`` or ``order`` split (see the module docstring).

    Built from ``make_clips(seed, per_kind, num_frames, split="eval")``, or from ``clips`` when
    given (e.g. the evaluation clips already written to disk).
    """
    if name not in EVAL_SPLITS:
        raise ValueError(f"unknown evaluation split {name!r}; choose from {EVAL_SPLITS}")
    clips = clips if clips is not None else make_clips(seed, per_kind, num_frames, split="eval")
    if name == "order":
        return _order_items(clips)
    members = [c for c in clips if name in _eval_tags(c)]
    make_item = _appearance_item if name == "appearance" else _motion_item
    return [make_item(c, rng_for(seed, 7, name, c.clip_id)) for c in members]
