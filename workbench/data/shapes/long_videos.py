"""ShapesWorld long videos: several events back to back, for temporal and spatio-temporal grounding.

A long video holds 2-3 objects on one background and 3-5 events in a row (each ~1-1.25 s at
8 fps, separated by 0-0.5 s of stillness, with still lead-in and tail: about 4-9 s). Each event
is one object doing one thing (moves left/right/up/down, grows, shrinks, spins, changes colour)
and comes with:

- a natural-language query ("the red circle moves to the left"), unique within its video;
- its window ``[start, end)`` in frames and ``[start, end]`` in seconds (windows never overlap;
  every frame inside one shows the actor changing, every frame outside shows it still);
- the acting object's box ``[x1, y1, x2, y2]`` in pixels on every frame (the tube);
- per-2-second-clip saliency scores, as QVHighlights annotates them (Lei et al., *QVHighlights*,
  NeurIPS 2021): a clip's score grows with how much of it the event covers.

These are what Charades-STA (Gao et al., *TALL*, ICCV 2017), QVHighlights and HC-STVG (Tang et
al., *Human-centric Spatio-Temporal Video Grounding With Visual Transformers*, TCSVT 2021)
annotate on real videos; :mod:`~workbench.data.shapes.export` writes them in those layouts.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .clips import (ACTIONS, COLOURS, FPS, MOVE_KINDS, SPINNABLE, Change, EventSpec, SceneVideo,
                    caption, pick, random_change, rng_for)
from .world import POSITIONS, SHAPES, SIZES, Background, Obj, cell_centre, random_background

CLIP_SECONDS = 2.0          # QVHighlights clip length
EVENTS = (3, 5)             # events per video, inclusive range
EVENT_FRAMES = (8, 10)      # frames per event, inclusive range
GAP_FRAMES = (0, 4)         # still frames between events
EDGE_FRAMES = (2, 5)        # still frames before the first and after the last event
FAMILIES = ("move", "move", "grow", "shrink", "spin", "change_colour")  # moves twice as likely

Scene = tuple[Obj, ...]


@dataclass(frozen=True)
class GroundedEvent:
    """One event of a long video and where it happens."""

    query: str
    kind: str                # one of clips.SINGLE_KINDS (no appear/disappear/stay)
    action: str              # its action class
    actor: int               # index of the acting object in every scene
    start_frame: int         # first frame of the event
    end_frame: int           # one past its last frame
    fps: int
    spec: EventSpec

    @property
    def start(self) -> float:
        return self.start_frame / self.fps

    @property
    def end(self) -> float:
        return self.end_frame / self.fps


@dataclass(frozen=True)
class LongVideo(SceneVideo):
    """A long video: per-frame scenes and the grounded events."""

    video_id: str
    split: str
    scenes: tuple[Scene, ...]
    background: Background
    events: tuple[GroundedEvent, ...]
    objects: tuple[str, ...]   # every object at the start, "red circle"
    fps: int = FPS

    def boxes(self, actor: int, size: int | None = None) -> list[tuple[float, float, float, float]]:
        """Object ``actor``'s box [x1, y1, x2, y2] on every frame (pixels if ``size``, else [0, 1])."""
        scale = size or 1
        return [tuple(v * scale for v in scene[actor].box()) for scene in self.scenes]

    def tube(self, event: int, size: int | None = None) -> dict[int, tuple[float, float, float, float]]:
        """Frame index -> the actor's box, over the event's window."""
        e = self.events[event]
        boxes = self.boxes(e.actor, size)
        return {t: boxes[t] for t in range(e.start_frame, e.end_frame)}

    def saliency(self, event: int, clip_seconds: float = CLIP_SECONDS) -> list[tuple[int, int]]:
        """``(clip_id, score)`` for every ``clip_seconds`` clip the event overlaps; score in 1..4
        is ``ceil(4 * covered fraction of the clip)``."""
        e = self.events[event]
        scores = []
        for clip_id in range(math.ceil(self.duration / clip_seconds)):
            lo, hi = clip_id * clip_seconds, min((clip_id + 1) * clip_seconds, self.duration)
            covered = min(hi, e.end) - max(lo, e.start)
            if covered > 1e-9:
                scores.append((clip_id, max(1, min(4, math.ceil(4 * covered / clip_seconds - 1e-9)))))
        return scores

    def annotation(self, size: int | None = None) -> dict:
        """JSON-ready ground truth (no pixels)."""
        return {"video_id": self.video_id, "split": self.split, "num_frames": self.num_frames,
                "fps": self.fps, "duration": self.duration, "objects": list(self.objects),
                "events": [{"query": e.query, "kind": e.kind, "action": e.action,
                            "start": e.start, "end": e.end, "start_frame": e.start_frame,
                            "end_frame": e.end_frame,
                            "boxes": {t: list(b) for t, b in self.tube(i, size).items()},
                            "saliency": self.saliency(i)}
                           for i, e in enumerate(self.events)]}


def _objects(rng: np.random.Generator) -> list[Obj]:
    """2-3 objects of distinct looks in distinct 3x3 cells, clear of each other."""
    n = int(rng.integers(2, 4))
    while True:
        cells = rng.choice(len(POSITIONS), size=n, replace=False)
        objects: list[Obj] = []
        for cell in cells:
            looks = {(o.colour, o.shape) for o in objects}
            colour, shape = pick(rng, COLOURS), pick(rng, SHAPES)
            while (colour, shape) in looks:
                colour, shape = pick(rng, COLOURS), pick(rng, SHAPES)
            size = "small" if rng.random() < 0.7 else "large"
            inner = SIZES[size] + 0.02  # a large object in a corner cell would touch the edge
            x, y = (min(max(c + float(rng.uniform(-0.04, 0.04)), inner), 1 - inner)
                    for c in cell_centre(POSITIONS[cell]))
            objects.append(Obj(shape, colour, size, x, y, angle=float(rng.uniform(-15, 15))))
        if all(_clear(a, b) for i, a in enumerate(objects) for b in objects[i + 1:]):
            return objects


def _clear(a: Obj, b: Obj) -> bool:
    return math.hypot(a.x - b.x, a.y - b.y) >= a.radius + b.radius + 0.03


def _fits(state: list[Obj], actor: int, change: Change) -> bool:
    """The change keeps the actor inside the image and clear of the other objects throughout."""
    for p in np.linspace(0, 1, 6):
        obj = change.apply(state[actor], p)
        r = obj.radius
        if not (r + 0.01 <= obj.x <= 1 - r - 0.01 and r + 0.01 <= obj.y <= 1 - r - 0.01):
            return False
        if not all(_clear(obj, other) for i, other in enumerate(state) if i != actor):
            return False
    return True


def _random_event(rng: np.random.Generator, state: list[Obj]) -> tuple[int, Change] | None:
    """A feasible change of a random object, or None."""
    actor = int(rng.integers(len(state)))
    obj = state[actor]
    family = pick(rng, FAMILIES)
    if family == "move":
        kind = pick(rng, MOVE_KINDS)
        change = random_change(kind, rng, obj, distance=(0.2, 0.35))
    elif family in ("grow", "shrink"):
        factor = float(rng.uniform(1.4, 1.7) if family == "grow" else rng.uniform(0.55, 0.7))
        if not 0.45 <= obj.scale * factor <= 1.8:
            return None
        change = Change(family, scale=(1.0, factor))
    elif family == "spin":
        if obj.shape not in SPINNABLE:
            return None
        change = random_change(pick(rng, ("spin_clockwise", "spin_counterclockwise")), rng, obj)
    else:
        taken = {o.colour for o in state}  # a new colour keeps every object's name unique
        after = pick(rng, [c for c in COLOURS if c not in taken])
        change = Change("change_colour", colours=(obj.colour, after))
    return (actor, change) if _fits(state, actor, change) else None


def _settled(obj: Obj) -> Obj:
    """The object at the end of a change, as a plain object (colour by name, no RGB override)."""
    return obj.moved(rgb=None)


def make_long_video(seed: int, index: int, split: str = "train", fps: int = FPS) -> LongVideo:
    """Long video number ``index`` of ``split``; deterministic in ``(seed, split, index)``."""
    for attempt in range(100):  # a crowded start can leave no room for 3 events: draw again
        video = _long_video(rng_for(seed, 2, split, index, attempt), f"long_{split}_{index:04d}", split, fps)
        if len(video.events) >= EVENTS[0]:
            return video
    raise RuntimeError(f"could not place {EVENTS[0]} events in {video.video_id}")


def _long_video(rng: np.random.Generator, video_id: str, split: str, fps: int) -> LongVideo:
    state = _objects(rng)
    objects = tuple(o.description for o in state)
    scenes: list[Scene] = [tuple(state)] * int(rng.integers(EDGE_FRAMES[0], EDGE_FRAMES[1] + 1))
    events: list[GroundedEvent] = []
    for k in range(int(rng.integers(EVENTS[0], EVENTS[1] + 1))):
        if k:
            scenes += [tuple(state)] * int(rng.integers(GAP_FRAMES[0], GAP_FRAMES[1] + 1))
        picked = _unique_event(rng, state, {caption(e.spec, 0, definite=True) for e in events})
        if picked is None:
            break
        actor, change, query = picked
        length = int(rng.integers(EVENT_FRAMES[0], EVENT_FRAMES[1] + 1))
        start, settled = len(scenes), _settled(change.apply(state[actor], 1.0))
        for j in range(1, length + 1):
            frame = list(state)
            frame[actor] = change.apply(state[actor], j / length) if j < length else settled
            scenes.append(tuple(frame))
        spec = change.spec((state[actor].colour, state[actor].shape))
        state[actor] = settled
        events.append(GroundedEvent(query, change.kind, ACTIONS[change.kind], actor, start,
                                    start + length, fps, spec))
    scenes += [tuple(state)] * int(rng.integers(EDGE_FRAMES[0], EDGE_FRAMES[1] + 1))
    return LongVideo(video_id, split, tuple(scenes), random_background(rng), tuple(events), objects, fps)


def _unique_event(rng: np.random.Generator, state: list[Obj], used: set[str],
                  tries: int = 100) -> tuple[int, Change, str] | None:
    for _ in range(tries):
        picked = _random_event(rng, state)
        if picked is None:
            continue
        actor, change = picked
        spec = change.spec((state[actor].colour, state[actor].shape))
        # one wording per event kind and object, so no two queries of a video mean the same
        if caption(spec, 0, definite=True) not in used:
            return actor, change, caption(spec, int(rng.integers(12)), definite=True)
    return None


def make_long_videos(seed: int, n: int, split: str = "train", fps: int = FPS) -> list[LongVideo]:
    """``n`` long videos of ``split`` ("train" or "test")."""
    return [make_long_video(seed, i, split, fps) for i in range(n)]

