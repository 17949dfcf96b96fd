"""Synthetic "birds" that make ACoL's story visible.

Each image shows one object on a cluttered background:

- a small HEAD (about 4-11% of the object's box, median 6%): a saturated, class-specific colour
  AND shape. It is the only unambiguous class evidence: no distractor ever has a head colour.
- a large BODY (an ellipse, 6-9x the area of a disc of the head's radius; ~10x the head's own
  area on average, as some head shapes are hollow) with stripes whose orientation, and a faint
  tint whose hue, depend on the class. This evidence is weaker: the angle is jittered, the tint
  is faint, and 30% of bodies borrow the pattern of a random class. Small body-like patches of
  random classes also sit in the background.

A classifier trained on labels alone latches onto the head; erase the head and the body is
still better-than-chance evidence, which ACoL's second classifier is meant to discover.

A set may also hold birds whose head is hidden (``headless_fraction``), their body showing a
random class's pattern, labelled with a class of their own, NO_CREST (``no_crest=True`` adds it to
the class names). Without it one of the crest classes is learned as "a bird, and none of the
other heads": the default answer, whose map lights wherever, never on its own head (seen with 4
classes: one class, A naming it for every bird whose head was painted out, its map on the body).
With a class for "a bird with no crest", the default has a name of its own, and every crest class
must be found by its crest. (Tried first, and not enough: pictures with no bird, or headless birds
labelled at random.)

Item i is generated from (seed, i) alone, so the dataset is random-access, needs no files, and
is the same on every run. Items follow acol.data's (image, target) format; target also holds
"head_mask" and "body_mask" (bool [H, W]) which are passed through the transform with the image,
so they stay aligned with it after resizes, crops and flips.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass, replace
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw
from PIL.PngImagePlugin import PngInfo
from torch.utils.data import Dataset
from torchvision import tv_tensors

from acol.data.records import make_boxes, transform_sample

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
HEAD_SHAPES = ("disc", "square", "triangle", "diamond", "ring", "cross", "hollow-square", "half-disc")
MAX_CLASSES = len(HEAD_SHAPES)
NO_CREST = "no-crest"  # the class of a bird whose head is hidden (headless_fraction)

HEAD_AREA_DIVISOR = (6.0, 9.0)  # a disc of the head's radius has the body's area divided by this

# How weak the body evidence is (see module docstring).
BODY_BORROW_PROBABILITY = 0.3  # chance the body shows a random class's pattern
STRIPE_ANGLE_JITTER_DEG = 10.0
STRIPE_PERIOD = (0.045, 0.065)  # the stripes' period, as a share of the picture's side
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


@dataclass(frozen=True)
class Parts:
    """Where one picture's parts are, at the picture's own resolution, and the name of the class
    whose pattern its body shows (``None`` when the generator did not say)."""

    head: np.ndarray  # bool [H, W]
    body: np.ndarray  # bool [H, W], the visible body (the head excluded)
    body_class: str | None = None

    def at(self, x: float, y: float) -> str:
        """"head", "body" or "outside": the part under pixel ``(x, y)``."""
        row, col = min(int(y), self.head.shape[0] - 1), min(int(x), self.head.shape[1] - 1)
        return "head" if self.head[row, col] else "body" if self.body[row, col] else "outside"

    def resized(self, size: tuple[int, int]) -> "Parts":
        """The parts of the same picture shown at ``size = (width, height)`` (nearest pixel)."""
        def scaled(mask):
            return np.asarray(Image.fromarray(mask).resize(size, Image.Resampling.NEAREST))
        return Parts(scaled(self.head), scaled(self.body), self.body_class)

    def save(self, path) -> None:
        """One 8-bit PNG: 0 outside, 1 body, 2 head, the body's class in its text (``load`` reads it)."""
        info = PngInfo()
        if self.body_class is not None:
            info.add_text("body_class", self.body_class)
        Image.fromarray(self.body.astype(np.uint8) + 2 * self.head.astype(np.uint8)).save(path, pnginfo=info)

    @classmethod
    def load(cls, path) -> "Parts":
        with Image.open(path) as picture:
            values = np.asarray(picture)
            return cls(values == 2, values == 1, picture.info.get("body_class"))


class SyntheticParts(Dataset):
    """`num_images` synthetic head+body objects of `num_classes` crest classes (at most 8) and,
    with ``no_crest``, the class NO_CREST of headless birds after them.

    Crest labels are balanced: item i has label i % num_classes. Everything else about item i is
    drawn from np.random.default_rng([seed, i]). A share ``headless_fraction`` of the items
    (drawn apart, so the other items are the same pictures whatever the share) show a bird whose
    head is hidden, labelled NO_CREST (the module docstring says why).
    """

    def __init__(self, num_images: int, num_classes: int = 4, image_size: int = 160, seed: int = 0,
                 transform=None, headless_fraction: float = 0.0, no_crest: bool = False):
        if headless_fraction and not no_crest:
            raise ValueError("headless birds need the no-crest class: pass no_crest=True")
        if not 2 <= num_classes <= MAX_CLASSES:
            raise ValueError(f"num_classes must be between 2 and {MAX_CLASSES}, got {num_classes}")
        self.num_images = num_images
        self.num_classes = num_classes
        self.image_size = image_size
        self.seed = seed
        self.transform = transform
        self.headless_fraction = headless_fraction
        self.class_names = [f"{color}-crest" for color in list(HEAD_COLORS)[:num_classes]] + [NO_CREST] * no_crest

    @classmethod
    def for_classes(cls, class_names: list[str], num_images: int, image_size: int = 160, seed: int = 0,
                    transform=None) -> "SyntheticParts":
        """Pictures of a model trained on this generator, with its ``class_names``: its crest
        classes, and the no-crest class when it has one (every bird here has its head)."""
        no_crest = NO_CREST in class_names
        return cls(num_images, len(class_names) - no_crest, image_size, seed, transform, no_crest=no_crest)

    def __len__(self) -> int:
        return self.num_images

    @property
    def labels(self) -> list[int]:
        """The label of every item, without rendering anything."""
        return [self.num_classes if self.headless(index) else index % self.num_classes
                for index in range(self.num_images)]

    def headless(self, index: int) -> bool:
        """Whether item ``index`` is a headless bird (of the no-crest class)."""
        return bool(self.headless_fraction) and \
            np.random.default_rng([self.seed, index, 1]).random() < self.headless_fraction

    def render(self, index: int) -> SyntheticSample:
        """Draw item `index` (untransformed)."""
        if not 0 <= index < self.num_images:
            raise IndexError(f"index {index} out of range for {self.num_images} images")
        rng = np.random.default_rng([self.seed, index])
        sample = render_sample(rng, index % self.num_classes, self.num_classes, self.image_size, self.headless(index))
        return replace(sample, label=self.num_classes) if self.headless(index) else sample

    def __getitem__(self, index: int):
        sample = self.render(index)
        image = tv_tensors.Image(torch.from_numpy(sample.image).permute(2, 0, 1))
        boxes = make_boxes([sample.box], *sample.image.shape[:2])
        # uint8 masks: geometric transforms interpolate Masks with nearest-neighbour, not bools.
        masks = {name: tv_tensors.Mask(torch.from_numpy(mask.astype(np.uint8)))
                 for name, mask in (("head_mask", sample.head_mask), ("body_mask", sample.body_mask))}
        image, boxes, masks = transform_sample(self.transform, image, boxes, masks)
        target = {"label": sample.label, "body_class": sample.body_class, "boxes": boxes, "image_id": f"synthetic-{self.seed}-{index}",
                  "path": f"synthetic://seed{self.seed}/{index}"}
        target.update({name: mask.as_subclass(torch.Tensor).bool() for name, mask in masks.items()})
        return image, target


# ----------------------------------------------------------------------------------------------
# Rendering


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


# ----------------------------------------------------------------------------------------------
# Example files for the app and docs


def write_examples(out_dir: str | Path, indices, seed: int = 0, num_classes: int = 4,
                   image_size: int = 160) -> Path:
    """Write the pictures ``indices`` (or ``range(indices)`` for a count) of a seed as PNGs,
    labels.csv (`path,label,x0,y0,x1,y1`, readable by CSVBoxDataset; labels are class names) and
    each picture's parts in ``parts/<name>.png`` (``acol.story.Parts``: its head, its body, the
    class its body's pattern shows), so a viewer can check what a model's maps found on it.
    Returns the CSV path."""
    out_dir = Path(out_dir)
    (out_dir / "parts").mkdir(parents=True, exist_ok=True)
    dataset = SyntheticParts(max(indices) + 1 if not isinstance(indices, int) else indices,
                             num_classes=num_classes, image_size=image_size, seed=seed)
    csv_path = out_dir / "labels.csv"
    with open(csv_path, "w", newline="") as file:
        writer = csv.writer(file)
        writer.writerow(["path", "label", "x0", "y0", "x1", "y1"])
        for index in range(indices) if isinstance(indices, int) else indices:
            sample = dataset.render(index)
            name = f"synthetic_{seed}_{index:04d}.png"
            Image.fromarray(sample.image).save(out_dir / name)
            Parts(sample.head_mask, sample.body_mask, dataset.class_names[sample.body_class]).save(
                out_dir / "parts" / name)
            writer.writerow([name, dataset.class_names[sample.label], *(f"{v:g}" for v in sample.box)])
    return csv_path
