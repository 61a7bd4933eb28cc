"""Long-exposure stills of ShapesWorld events: motion words for the tiny CLIP's pretraining.

A web-trained CLIP knows what "moves to the left", "spins clockwise" or "first ..., then ..."
mean from photographs that show motion in one frame: long exposures, motion trails, strobe
shots, before-and-after pictures. The tiny CLIP's pretraining stills (``images``) never name a
motion, so its text tower has never placed a motion word, and a clip's caption and its
time-reversed twin's sit at cosine 0.95-0.98 for most event kinds (README,
benchmarks/results/spin-probes/): the video strategies then have to learn, per sentence, which
way the two differ.

:func:`exposure_still` is ShapesWorld's version of such a photograph: a clip's frames blended with
weights that double from frame to frame (a rear-curtain flash: the last frame is solid, earlier
ones fade into a trail), so which way things went is visible in one image. :func:`exposure_stills`
captions each with the clip's own caption and uses its time-reversed twin's caption as the hard
negative, which is what makes direction words matter (NegCLIP, ``images`` docstring). They are
stills: the strategies still have to read the order from a clip's separate, unblended frames.
``workbench pretrain --exposure SHARE`` mixes them into the pretraining batches.
"""
from __future__ import annotations

import numpy as np

from .clips import BASE_KINDS, Clip, _clip, _twin
from .images import CaptionedImage

EXPOSURE_FRAMES = 8  # frames blended into one still (the clips' default length)
_GROWTH = 2.0        # each frame weighs this much more than the one before it


def exposure_weights(num_frames: int) -> np.ndarray:
    """Per-frame blend weights, summing to 1, doubling from frame to frame."""
    weights = _GROWTH ** np.arange(num_frames, dtype=np.float64)
    return weights / weights.sum()


def exposure_still(clip: Clip, size: int = 64) -> np.ndarray:
    """The clip as one long-exposure photograph: uint8 [size, size, 3]."""
    frames = clip.frames(size).astype(np.float64)
    blended = np.tensordot(exposure_weights(len(frames)), frames, axes=1)
    return np.clip(np.rint(blended), 0, 255).astype(np.uint8)


def exposure_clip(rng: np.random.Generator, num_frames: int = EXPOSURE_FRAMES) -> Clip:
    """A random clip of any event kind (reversed kinds through the base kind's twin)."""
    kind = BASE_KINDS[int(rng.integers(len(BASE_KINDS)))]
    clip = _clip(kind, rng, num_frames, f"exposure_{kind}", "train")
    if clip.twin_caption is not None and rng.random() < 0.5:
        clip = _twin(clip, f"exposure_{kind}_r", rng)[1]
    return clip


def exposure_stills(seed: int | tuple, n: int, size_px: int = 64) -> list[CaptionedImage]:
    """``n`` captioned long-exposure stills, deterministic in ``seed``. The hard negative is the
    time-reversed twin's caption, or a same-object sibling for events with no twin."""
    rng = np.random.default_rng(seed)
    stills = []
    for _ in range(n):
        clip = exposure_clip(rng)
        stills.append(CaptionedImage(image=exposure_still(clip, size_px), caption=clip.caption,
                                     hard_negative=clip.hard_negatives()[0]))
    return stills
