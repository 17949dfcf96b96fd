"""One synthetic "bird", drawn: what makes ACoL's story visible in a picture.

Each picture shows one object on a cluttered background:

- a small HEAD (about 4-11% of the object's box, median 6%): a saturated, class-specific colour
  AND shape. It is the only unambiguous class evidence: no distractor ever has a head colour.
- a large BODY (an ellipse, 6-9x the area of a disc of the head's radius; ~10x the head's own
  area on average, as some head shapes are hollow) with stripes whose tilt, and a faint tint
  whose hue, depend on the class. This evidence is weaker: the tilt is jittered, the tint is
  faint, and 30% of bodies borrow the pattern of a random class. Small body-like patches of
  random classes also sit in the background.

A classifier trained on labels alone latches onto the head; erase the head and the body is
still better-than-chance evidence, which ACoL's second classifier is meant to discover.
``render_sample`` draws one from a random generator alone (``acol.data.synthetic`` makes the
data set of them).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from PIL import Image, ImageDraw

# Saturated head colours; each class also gets its own head shape (same index).
HEAD_COLORS = {
    "red": (225, 35, 35),
    "blue": (35, 75, 235),
    "yellow": (240, 215, 25),
    "green": (30, 185, 50),
    "magenta": (215, 35, 205),
    "cyan": (25, 205, 215),
    "orange": (250, 135, 15),
    "purple": (125, 30, 215),
}
# The blue head is a cross: as a square (the clutter draws grey squares of a head's size, some as
# dark) a model could learn blue birds from their bodies and its map missed the blue head
# (checkpoints/README.md, "The blue head's shape").
HEAD_SHAPES = ("disc", "cross", "triangle", "diamond", "ring", "square", "hollow-square", "half-disc")
MAX_CLASSES = len(HEAD_SHAPES)

HEAD_AREA_DIVISOR = (6.0, 9.0)  # a disc of the head's radius has the body's area divided by this

# How weak the body evidence is (see the module docstring).
BODY_BORROW_PROBABILITY = 0.3  # chance the body shows a random class's pattern
STRIPE_ANGLE_JITTER_DEG = 5.0  # 10 made the tilts of neighbouring classes (30 degrees apart) overlap
# The stripes' period, as a share of the picture's side: 10-15 pixels at the teaching model's 146,
# one to two of its feature cells (8 pixels). Finer stripes (0.045-0.065, about one cell) left
# neighbouring tilts hard to tell apart in its features (B named 30-degree bodies 60 in 4 of 10).
STRIPE_PERIOD = (0.075, 0.1)
MAX_TINT = 0.2  # fraction of the head colour's chroma tinting the body
DECOYS = (0, 3)  # the background holds from 0 to 2 body-like patches of random classes
# Background and distractor colours stay below this chroma (max - min channel), far from any
# head colour (chroma >= 185), so a head colour never appears outside the head.
MAX_CLUTTER_CHROMA = 50


@dataclass
class SyntheticSample:
    """One rendered image with its ground truth, before any transform."""

    image: np.ndarray  # uint8 [H, W, 3]
    label: int
    box: tuple[float, float, float, float]  # XYXY, tight around head | body, pixel edges
    head_mask: np.ndarray  # bool [H, W]
    body_mask: np.ndarray  # bool [H, W], visible body pixels (excludes the head)
    body_class: int  # the class whose pattern the body shows: the label unless it borrowed another's


@lru_cache(maxsize=8)
def _pixel_grid(size: int) -> tuple[np.ndarray, np.ndarray]:
    """x and y coordinates of pixel centres, [size, size] each."""
    centres = np.arange(size, dtype=np.float32) + 0.5
    return np.meshgrid(centres, centres)


def ellipse_mask(size: int, center, semi_axes, angle: float) -> np.ndarray:
    """Bool mask of a filled ellipse rotated by `angle` radians."""
    x, y = _pixel_grid(size)
    dx, dy = x - center[0], y - center[1]
    u = dx * np.cos(angle) + dy * np.sin(angle)
    v = -dx * np.sin(angle) + dy * np.cos(angle)
    return (u / semi_axes[0]) ** 2 + (v / semi_axes[1]) ** 2 <= 1.0


def head_mask(size: int, shape: str, center, radius: float) -> np.ndarray:
    """Bool mask of a head of the given HEAD_SHAPES name, about 2*radius across, upright."""
    x, y = _pixel_grid(size)
    u, v = (x - center[0]) / radius, (y - center[1]) / radius  # in head radii
    r2 = u * u + v * v
    chebyshev = np.maximum(np.abs(u), np.abs(v))
    if shape == "disc":
        return r2 <= 1.0
    if shape == "square":
        return chebyshev <= 0.85
    if shape == "triangle":  # apex up
        return (v <= 0.7) & (np.abs(u) <= 0.6 * (v + 1.0))
    if shape == "diamond":
        return np.abs(u) + np.abs(v) <= 1.15
    if shape == "ring":
        return (r2 <= 1.0) & (r2 >= 0.55**2)
    if shape == "cross":
        return (chebyshev <= 1.0) & (np.minimum(np.abs(u), np.abs(v)) <= 0.3)
    if shape == "hollow-square":
        return (chebyshev <= 0.9) & (chebyshev >= 0.45)
    if shape == "half-disc":
        return (r2 <= 1.0) & (v <= 0.1)
    raise ValueError(f"unknown head shape {shape!r}")


def _clutter_color(rng: np.random.Generator, low: int = 50, high: int = 200) -> np.ndarray:
    """A random desaturated colour (chroma < MAX_CLUTTER_CHROMA)."""
    offsets = rng.uniform(-0.5, 0.5, 3) * (MAX_CLUTTER_CHROMA - 2)
    return rng.uniform(low, high) + offsets


@dataclass
class BodyPattern:
    """The class evidence painted on a body: stripe orientation and a faint tint."""

    stripe_angle: float  # radians
    tint: np.ndarray  # RGB offset added to the neutral body colour

    @classmethod
    def sample(cls, rng: np.random.Generator, pattern_class: int, num_classes: int) -> "BodyPattern":
        """The noisy pattern of `pattern_class`: its stripes' tilt from the horizontal (evenly
        spread over 0-90 degrees, to either side), a head-hue tint.

        A class is a tilt *to either side*, never one direction: training flips pictures
        left-right, which turns stripes at +30 degrees into stripes at -30 degrees. (Directions
        spread over 0-180 degrees made classes 1 and 3 mirror images of each other.)"""
        tilt = 0.5 * np.pi * pattern_class / max(num_classes - 1, 1)
        angle = rng.choice([-1.0, 1.0]) * tilt + np.deg2rad(rng.normal(0, STRIPE_ANGLE_JITTER_DEG))
        head_color = np.array(list(HEAD_COLORS.values())[pattern_class], dtype=np.float32)
        tint = rng.uniform(0, MAX_TINT) * (head_color - head_color.mean())
        return cls(angle, tint)


def paint_body(canvas: np.ndarray, mask: np.ndarray, pattern: BodyPattern, rng: np.random.Generator) -> None:
    """Paint a striped, tinted, neutral-coloured body into canvas (float [H, W, 3]) where mask."""
    size = canvas.shape[0]
    x, y = _pixel_grid(size)
    period = size * rng.uniform(*STRIPE_PERIOD)
    along = x[mask] * np.cos(pattern.stripe_angle) + y[mask] * np.sin(pattern.stripe_angle)
    stripes = 0.5 + 0.5 * np.sin(2 * np.pi * along / period + rng.uniform(0, 2 * np.pi))
    base = rng.uniform(95, 165) + np.array([12.0, 3.0, -12.0]) + pattern.tint  # warm neutral
    darkening = 1.0 - rng.uniform(0.25, 0.45) * stripes
    canvas[mask] = base[None, :] * darkening[:, None]


def render_background(rng: np.random.Generator, size: int, num_classes: int) -> np.ndarray:
    """Noise texture, small desaturated shapes, and a few body-like patches of random classes."""
    coarse = rng.uniform(-30, 30, (5, 5, 3)).astype(np.float32)
    texture = np.stack([np.asarray(Image.fromarray(coarse[..., c]).resize((size, size), Image.BILINEAR))
                        for c in range(3)], axis=-1)
    canvas = np.clip(_clutter_color(rng, 70, 180) + texture, 0, 255)

    picture = Image.fromarray(canvas.astype(np.uint8))
    draw = ImageDraw.Draw(picture)
    for _ in range(rng.integers(12, 21)):
        cx, cy = rng.uniform(0, size, 2)
        r = size * rng.uniform(0.02, 0.06)
        color = tuple(int(c) for c in np.clip(_clutter_color(rng), 0, 255))
        kind = rng.integers(3)
        if kind == 0:
            draw.ellipse([cx - r, cy - r * rng.uniform(0.5, 1), cx + r, cy + r], fill=color)
        elif kind == 1:
            draw.rectangle([cx - r, cy - r * rng.uniform(0.4, 1), cx + r, cy + r], fill=color)
        else:
            draw.polygon([(cx, cy - r), (cx + r, cy + r), (cx - r, cy + r)], fill=color)
    canvas = np.asarray(picture, dtype=np.float32).copy()

    for _ in range(rng.integers(*DECOYS)):  # decoys: parts of other "birds", never a head
        a = size * rng.uniform(0.07, 0.12)
        patch = ellipse_mask(size, rng.uniform(0, size, 2), (a, a * rng.uniform(0.5, 0.7)), rng.uniform(0, np.pi))
        paint_body(canvas, patch, BodyPattern.sample(rng, int(rng.integers(num_classes)), num_classes), rng)
    return canvas


def render_sample(rng: np.random.Generator, label: int, num_classes: int, size: int,
                  headless: bool = False) -> SyntheticSample:
    """Render one image of class `label` using only randomness from `rng`; a ``headless`` bird
    has no head and its body shows a random class's pattern, whatever the label."""
    canvas = render_background(rng, size, num_classes)

    # Body: an ellipse; head: a disc-sized shape at one end of the long axis, overlapping it.
    a = size * rng.uniform(0.15, 0.22)
    b = a * rng.uniform(0.5, 0.65)
    tilt = np.deg2rad(rng.uniform(-25, 25))
    head_radius = np.sqrt(a * b / rng.uniform(*HEAD_AREA_DIVISOR))  # disc area = body area / divisor
    side = rng.choice([-1.0, 1.0])
    head_offset = side * (a + 0.35 * head_radius) * np.array([np.cos(tilt), np.sin(tilt)])
    # Half extents of head | body around the body centre, to keep the whole object in frame.
    half_w = max(np.hypot(a * np.cos(tilt), b * np.sin(tilt)), abs(head_offset[0]) + 1.2 * head_radius)
    half_h = max(np.hypot(a * np.sin(tilt), b * np.cos(tilt)), abs(head_offset[1]) + 1.2 * head_radius)
    center = np.array([rng.uniform(half_w + 2, size - half_w - 2), rng.uniform(half_h + 2, size - half_h - 2)])

    borrowed = rng.random() < BODY_BORROW_PROBABILITY or headless
    pattern_class = int(rng.integers(num_classes)) if borrowed else label
    body = ellipse_mask(size, center, (a, b), tilt)
    paint_body(canvas, body, BodyPattern.sample(rng, pattern_class, num_classes), rng)

    head = head_mask(size, HEAD_SHAPES[label], center + head_offset, head_radius) & (not headless)
    head_color = np.array(list(HEAD_COLORS.values())[label], dtype=np.float32)
    canvas[head] = head_color + rng.uniform(-12, 12, 3)
    body &= ~head

    canvas += rng.normal(0, 5, canvas.shape).astype(np.float32)  # sensor noise, everywhere
    image = np.clip(canvas + 0.5, 0, 255).astype(np.uint8)
    return SyntheticSample(image, label, mask_box(head | body), head, body, pattern_class)


def mask_box(mask: np.ndarray) -> tuple[float, float, float, float]:
    """Tight XYXY box (pixel edges) around the True pixels of a [H, W] mask."""
    rows = np.flatnonzero(mask.any(axis=1))
    cols = np.flatnonzero(mask.any(axis=0))
    if rows.size == 0:
        raise ValueError("empty mask has no box")
    return float(cols[0]), float(rows[0]), float(cols[-1] + 1), float(rows[-1] + 1)


