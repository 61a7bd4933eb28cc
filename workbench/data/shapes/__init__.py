"""ShapesWorld: a procedural, deterministic video world with exact annotations (DESIGN §3).

``world`` holds the vocabulary and the renderer; ``images`` the captioned stills the tiny CLIP is
pretrained on. Clips, long videos, questions and the on-disk dataset writers build on them.
"""
from .world import (BACKGROUND_KINDS, COLOURS, POSITIONS, SHAPES, SIZES, SPINNABLE, Background, Obj,
                    render)
from .images import PROBE_ATTRIBUTES, CaptionedImage, Probe, chance, probe, sample_images
