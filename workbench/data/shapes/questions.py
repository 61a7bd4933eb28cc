"""ShapesWorld multiple-choice questions on clips and long videos, answered from the ground truth.

Question types (``qtype``), with the NExT-QA type code each is written under (Xiao et al.,
*NExT-QA*, CVPR 2021: Descriptive Count / Other, Causal How, Temporal Previous):

- ``count`` (DC): how many objects are there?
- ``colour`` (DO): what colour is the shape that <does the event>? The distractor's colour is
  always among the choices, so the event, not the colours seen, decides.
- ``direction`` (CH): which way does the <object> move? (left, right, up, down, or it stays still)
- ``order`` (TP): what happens first? / what happens last? (the other events of the video, and
  the reversed events, are among the wrong choices)

Every question has :data:`NUM_CHOICES` choices, exactly one right. Questions are lower-case
without a question mark, as NExT-QA writes them. Deterministic in ``(seed, video id)``.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .clips import (COLOURS, MOVE_KINDS, SINGLE_KINDS, Clip, EventSpec, caption, move_kind, pick,
                    reverse_spec, rng_for, verb_phrase)
from .long_videos import LongVideo

QTYPES = ("count", "colour", "direction", "order")
NEXTQA_TYPES = {"count": "DC", "colour": "DO", "direction": "CH", "order": "TP"}
NUM_CHOICES = 5
DIRECTION_ANSWERS = ("to the left", "to the right", "up", "down", "it stays still")
_DIRECTION_INDEX = {"move_left": 0, "move_right": 1, "move_up": 2, "move_down": 3}
_NUMBERS = ("one", "two", "three", "four", "five")
_FILLER_KINDS = MOVE_KINDS + ("grow", "shrink")


@dataclass(frozen=True)
class Question:
    """One multiple-choice question about one video."""

    video_id: str
    qid: int                  # index of the question within its video (NExT-QA's qid)
    question: str
    choices: tuple[str, ...]  # NUM_CHOICES candidate answers
    answer: int               # index of the right one
    qtype: str                # one of QTYPES

    @property
    def nextqa_type(self) -> str:
        return NEXTQA_TYPES[self.qtype]


def _permuted(items: list[str], rng: np.random.Generator) -> list[str]:
    return [items[i] for i in rng.permutation(len(items))]


def _shuffled(right: str, wrong: list[str], rng: np.random.Generator) -> tuple[tuple[str, ...], int]:
    options = [right] + [w for w in dict.fromkeys(wrong) if w != right][:NUM_CHOICES - 1]
    if len(options) != NUM_CHOICES:
        raise ValueError(f"need {NUM_CHOICES} distinct choices, got {options}")
    order = rng.permutation(NUM_CHOICES)
    return tuple(options[i] for i in order), int(np.argmax(order == 0))


def _count(num_objects: int, rng: np.random.Generator) -> tuple[str, tuple[str, ...], int]:
    right = _NUMBERS[num_objects - 1]
    choices, answer = _shuffled(right, [n for n in _NUMBERS if n != right], rng)
    return "how many objects are there", choices, answer


def _colour(spec: EventSpec, other_colours: list[str], rng: np.random.Generator):
    """What colour is the shape that does ``spec`` (the actor's colour must not change)."""
    colour = spec.looks[0][0]
    if spec.kind == "swap":  # the actor is the one moving that way
        spec = EventSpec(move_kind(spec.direction), spec.looks)
    verb = verb_phrase(spec, 0)
    others = [c for c in other_colours if c != colour]
    others += [c for c in _permuted(list(COLOURS), rng) if c not in others and c != colour]
    choices, answer = _shuffled(colour, others, rng)
    return f"what colour is the shape that {verb}", choices, answer


def _direction(kind: str, look: tuple[str, str], rng: np.random.Generator):
    right = DIRECTION_ANSWERS[_DIRECTION_INDEX.get(kind, 4)]
    choices, answer = _shuffled(right, list(DIRECTION_ANSWERS), rng)
    return f"which way does the {look[0]} {look[1]} move", choices, answer


def _order(events: list[EventSpec], which: str, rng: np.random.Generator):
    """What happens first (or last) among ``events``. Wrong choices: the other events, then the
    events reversed, then other things the same objects could have done."""
    texts = [caption(e, 0, definite=True) for e in events]
    target = 0 if which == "first" else len(events) - 1
    wrong = [t for i, t in enumerate(texts) if i != target]
    reversals = [caption(r, 0, definite=True) for r in map(reverse_spec, events) if r]
    looks = dict.fromkeys(e.looks[0] for e in events)
    fillers = [caption(EventSpec(kind, (look,)), 0, definite=True) for look in looks
               for kind in _FILLER_KINDS]
    for pool in (reversals, fillers):
        wrong += [t for t in _permuted(pool, rng) if t not in texts]
    choices, answer = _shuffled(texts[target], wrong, rng)
    return f"what happens {which}", choices, answer


def _questions(video_id: str, made: list[tuple[str, tuple, int, str]]) -> list[Question]:
    return [Question(video_id, i, text, choices, answer, qtype)
            for i, (text, choices, answer, qtype) in enumerate(made)]


def clip_questions(clip: Clip, seed: int = 0) -> list[Question]:
    """Questions whose answers the clip's ground truth fixes."""
    rng = rng_for(seed, 11, clip.clip_id)
    spec, first_scene = clip.spec, clip.scenes[0]
    made = [(*_count(len(first_scene), rng), "count")]
    colours = [o.colour for o in first_scene]
    if (spec.kind in SINGLE_KINDS and spec.kind not in ("change_colour", "stay")) or spec.kind == "swap":
        made.append((*_colour(spec, colours, rng), "colour"))
    if spec.kind in MOVE_KINDS or spec.kind == "stay":
        made.append((*_direction(spec.kind, spec.looks[0], rng), "direction"))
    if spec.kind == "swap":
        made.append((*_direction(move_kind(spec.direction), spec.looks[0], rng), "direction"))
    if spec.kind == "sequence":
        made.append((*_order(list(spec.parts), "first", rng), "order"))
    return _questions(clip.clip_id, made)


def long_video_questions(video: LongVideo, seed: int = 0) -> list[Question]:
    """Count, order (first and last), colour and direction questions on a long video."""
    rng = rng_for(seed, 12, video.video_id)
    specs = [e.spec for e in video.events]
    made = [(*_count(len(video.scenes[0]), rng), "count"),
            (*_order(specs, "first", rng), "order"), (*_order(specs, "last", rng), "order")]
    recoloured = {e.actor for e in video.events if e.kind == "change_colour"}
    verbs = [verb_phrase(e.spec, 0) for e in video.events]
    # the object must keep its colour, and no other object may do the same thing
    steady = [e for e, v in zip(video.events, verbs, strict=True)
              if e.actor not in recoloured and verbs.count(v) == 1]
    if steady:
        event = pick(rng, steady)
        colours = [o.colour for o in video.scenes[0]]
        made.append((*_colour(event.spec, colours, rng), "colour"))
    moves = [e for e in video.events if e.kind in MOVE_KINDS]
    movers = [e for e in moves if sum(m.actor == e.actor for m in moves) == 1]
    if movers:
        event = pick(rng, movers)
        made.append((*_direction(event.kind, event.spec.looks[0], rng), "direction"))
    return _questions(video.video_id, made)


def make_questions(clips: list[Clip], long_videos: list[LongVideo], seed: int = 0) -> list[Question]:
    """Every question on ``clips`` and ``long_videos``, clips first."""
    questions = [q for c in clips for q in clip_questions(c, seed)]
    return questions + [q for v in long_videos for q in long_video_questions(v, seed)]

