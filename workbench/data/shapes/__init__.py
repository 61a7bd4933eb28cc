"""ShapesWorld: a procedural, deterministic video world with exact annotations (DESIGN §3).

``world`` holds the vocabulary and the renderer; ``images`` the captioned stills the tiny CLIP is
pretrained on (``exposures``: long-exposure event stills, an optional share that teaches motion
words). Clips, long videos, questions and the on-disk dataset writers build on them.
"""
from .world import (BACKGROUND_KINDS, COLOURS, POSITIONS, SHAPES, SIZES, SPINNABLE, Background, Obj,
                    render)
from .images import PROBE_ATTRIBUTES, CaptionedImage, Probe, chance, probe, sample_images
# ``export`` (write_shapesworld) is left out: it imports the video encoder (PyAV, decord, torch).
from .clips import (ACTION_CLASSES, EVAL_SPLITS, EVENT_KINDS, Clip, EvalItem, EventSpec, caption,
                    evaluation_split, make_clips, reverse_spec)
from .long_videos import GroundedEvent, LongVideo, make_long_video, make_long_videos
from .questions import NEXTQA_TYPES, QTYPES, Question, clip_questions, long_video_questions, make_questions
