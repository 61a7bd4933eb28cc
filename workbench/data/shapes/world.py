"""ShapesWorld's vocabulary and renderer: the objects, how they look, and how words name them.

Everything visual in ShapesWorld goes through :func:`render` — pretraining images, clip frames and
long-video frames alike — so the tiny CLIP sees the same world at pretraining and at video time.
Scenes are plain data (:class:`Obj`, :class:`Background`); randomness lives in the callers, which
pass a seeded ``numpy.random.Generator`` so the same seed gives the same pixels.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np
from PIL import Image, ImageDraw

SHAPES = ("circle", "square", "triangle", "star", "diamond", "cross")
# Shapes whose rotation is visible (a spinning circle looks still).
SPINNABLE = ("square", "triangle", "star", "cross")
# Rotational symmetry period in degrees: a spin step must stay under half of it to look one way.
SYMMETRY = {"square": 90.0, "cross": 90.0, "star": 72.0, "triangle": 120.0}
COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (225, 35, 35),
    "green": (40, 185, 60),
    "blue": (45, 95, 235),
    "yellow": (240, 220, 40),
    "purple": (155, 60, 205),
    "orange": (250, 140, 25),
    "white": (240, 240, 240),
    "cyan": (40, 215, 225),
}
# Radius as a fraction of the image side.
SIZES: dict[str, float] = {"small": 0.095, "large": 0.175}
# 3x3 grid, row-major; the phrase is what captions say.
POSITIONS = ("top left", "top", "top right", "left", "center", "right",
             "bottom left", "bottom", "bottom right")
POSITION_PHRASES = {
    "top left": "in the top left", "top": "at the top", "top right": "in the top right",
    "left": "on the left", "center": "in the center", "right": "on the right",
    "bottom left": "in the bottom left", "bottom": "at the bottom",
    "bottom right": "in the bottom right",
}
COUNT_WORDS = ("zero", "one", "two", "three", "four")
BACKGROUND_KINDS = ("plain", "noise", "stripes", "checker")


@dataclass(frozen=True)
class Obj:
    """One object in one frame. ``x, y`` is the centre in [0, 1] image coordinates (y down)."""

    shape: str
    colour: str
    size: str
    x: float
    y: float
    angle: float = 0.0      # degrees, counter-clockwise
    scale: float = 1.0      # multiplies the size's radius (grow / shrink / appear)
    rgb: tuple[int, int, int] | None = None  # overrides the colour's RGB (colour changes mid-clip)

    @property
    def radius(self) -> float:
        return SIZES[self.size] * self.scale

    @property
    def description(self) -> str:
        return f"{self.colour} {self.shape}"

    def moved(self, **changes) -> "Obj":
        return replace(self, **changes)

    def box(self) -> tuple[float, float, float, float]:
        """Axis-aligned box [x1, y1, x2, y2] in [0, 1] coordinates, clipped to the image."""
        r = self.radius
        return (max(0.0, self.x - r), max(0.0, self.y - r), min(1.0, self.x + r), min(1.0, self.y + r))


@dataclass(frozen=True)
class Background:
    kind: str = "plain"     # one of BACKGROUND_KINDS
    grey: int = 50          # base grey level; dark so every colour (white included) stands out
    seed: int = 0           # texture seed: the same background on every frame of a clip


def random_background(rng: np.random.Generator) -> Background:
    return Background(kind=str(rng.choice(BACKGROUND_KINDS)), grey=int(rng.integers(25, 85)),
                      seed=int(rng.integers(1 << 30)))


def cell_centre(position: str) -> tuple[float, float]:
    """Centre of a 3x3 grid cell in [0, 1] coordinates."""
    i = POSITIONS.index(position)
    return ((i % 3) * 2 + 1) / 6, ((i // 3) * 2 + 1) / 6


def position_of(x: float, y: float) -> str:
    """The 3x3 grid cell a point lies in."""
    col, row = min(int(x * 3), 2), min(int(y * 3), 2)
    return POSITIONS[row * 3 + col]


def _outline(obj: Obj, px: float) -> list[tuple[float, float]] | None:
    """Polygon of the object in pixels (None for circles, drawn as ellipses)."""
    cx, cy, r = obj.x * px, obj.y * px, obj.radius * px
    if obj.shape == "circle":
        return None
    if obj.shape == "square":
        unit = [(-0.8, -0.8), (0.8, -0.8), (0.8, 0.8), (-0.8, 0.8)]
    elif obj.shape == "triangle":
        unit = [(0.0, -1.0), (0.95, 0.75), (-0.95, 0.75)]
    elif obj.shape == "diamond":
        unit = [(0.0, -1.0), (0.7, 0.0), (0.0, 1.0), (-0.7, 0.0)]
    elif obj.shape == "star":
        unit = [((1.0 if k % 2 == 0 else 0.42) * math.sin(k * math.pi / 5),
                 -(1.0 if k % 2 == 0 else 0.42) * math.cos(k * math.pi / 5)) for k in range(10)]
    elif obj.shape == "cross":
        a, b = 0.33, 0.95
        unit = [(-a, -b), (a, -b), (a, -a), (b, -a), (b, a), (a, a), (a, b), (-a, b),
                (-a, a), (-b, a), (-b, -a), (-a, -a)]
    else:
        raise ValueError(f"unknown shape {obj.shape!r}; ShapesWorld has {SHAPES}")
    t = math.radians(obj.angle)
    cos, sin = math.cos(t), math.sin(t)
    return [(cx + r * (u * cos + v * sin), cy + r * (-u * sin + v * cos)) for u, v in unit]


def _background_array(bg: Background, px: int) -> np.ndarray:
    rng = np.random.default_rng(bg.seed)
    base = np.full((px, px), float(bg.grey), dtype=np.float32)
    yy, xx = np.mgrid[0:px, 0:px] / px
    if bg.kind == "noise":
        coarse = rng.normal(0, 9, size=(8, 8)).astype(np.float32)
        base += np.kron(coarse, np.ones((px // 8 + 1, px // 8 + 1), np.float32))[:px, :px]
    elif bg.kind == "stripes":
        freq, phase = rng.uniform(4, 10), rng.uniform(0, 2 * math.pi)
        base += 10 * np.sin(2 * math.pi * freq * (xx + yy) + phase)
    elif bg.kind == "checker":
        n = int(rng.integers(3, 7))
        base += 10 * (((xx * n).astype(int) + (yy * n).astype(int)) % 2 * 2 - 1)
    rgb = np.repeat(base[..., None], 3, axis=2)
    return np.clip(rgb, 0, 255).astype(np.uint8)


def render(objects: list[Obj], background: Background = Background(), size: int = 128,
           supersample: int = 2) -> np.ndarray:
    """Draw a scene: uint8 [size, size, 3]. Objects are drawn in list order (later on top)."""
    px = size * supersample
    canvas = Image.fromarray(_background_array(background, px))
    draw = ImageDraw.Draw(canvas)
    for obj in objects:
        if obj.scale <= 0:
            continue
        fill = obj.rgb or COLOURS[obj.colour]
        poly = _outline(obj, px)
        if poly is None:
            r = obj.radius * px
            draw.ellipse([obj.x * px - r, obj.y * px - r, obj.x * px + r, obj.y * px + r], fill=fill)
        else:
            draw.polygon(poly, fill=fill)
    if supersample > 1:
        canvas = canvas.resize((size, size), Image.Resampling.BOX)
    return np.asarray(canvas)
