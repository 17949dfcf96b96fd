"""Loading one image, safely: any file a user may hand over is decoded here, or refused in words.

Only photo formats (Pillow would run Ghostscript for EPS), at most ``MAX_IMAGE_PIXELS`` (checked
from the header before decoding; a larger JPEG is decoded at a reduced scale instead), upright
per its EXIF tag, as 8-bit RGB whatever its mode. Every failure is an ``ImageLoadError`` naming
the file.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import IO

import numpy as np
from PIL import Image, ImageOps


class ImageLoadError(ValueError):
    """An image file is missing, corrupt, truncated or too large. The message names the file."""


# Formats that photos come in. Pillow can open more (EPS runs Ghostscript, for one), and an
# upload must never start a program.
IMAGE_FORMATS = ("JPEG", "PNG", "GIF", "WEBP", "TIFF", "BMP")
# 25 megapixels decode to at most ~100 MB (RGBA); larger files are refused before decoding,
# except JPEGs, which decode at 1/2, 1/4 or 1/8 scale for nearly free.
MAX_IMAGE_PIXELS = 25_000_000


def load_rgb_image(path_or_file: str | Path | IO[bytes], max_pixels: int = MAX_IMAGE_PIXELS) -> Image.Image:
    """Open an image file fully decoded as an 8-bit RGB PIL image, upright per its EXIF tag.

    Handles grayscale, palette, RGBA (composited on white), CMYK and 16-bit files. A JPEG above
    ``max_pixels`` is decoded at a reduced scale that fits; any other file above it is refused
    before its pixels are read. Any failure raises ImageLoadError naming the file.
    """
    if isinstance(path_or_file, (str, os.PathLike)):
        name = str(path_or_file)
    else:  # an open file: its name attribute, if any, is the best description we have
        name = str(getattr(path_or_file, "name", "<file object>"))
    try:
        with Image.open(path_or_file, formats=IMAGE_FORMATS) as image:
            width, height = image.size
            if width * height > max_pixels and image.format in ("JPEG", "MPO"):
                # Aim at a quarter of the cap: still more pixels than any view needs, and the
                # decoder skips 3/4 of the work (draft picks a scale of at least this size).
                scale = (width * height / (max_pixels / 4)) ** 0.5
                image.draft("RGB", (int(width / scale), int(height / scale)))
            if image.width * image.height > max_pixels:
                raise ImageLoadError(f"image too large: {name} is {width} x {height} pixels, more "
                                     f"than the {max_pixels / 1e6:g}-megapixel limit")
            # load() decodes every byte now, so a truncated file fails here and not in a worker.
            image.load()
            image = ImageOps.exif_transpose(image)
            return _to_rgb(image)
    except ImageLoadError:
        raise
    except FileNotFoundError as error:
        raise ImageLoadError(f"image file not found: {name}") from error
    except Image.DecompressionBombError as error:
        raise ImageLoadError(f"image too large to decode safely: {name} ({error})") from error
    except Image.UnidentifiedImageError as error:
        raise ImageLoadError(f"cannot decode image {name}: not a {', '.join(IMAGE_FORMATS)} file") from error
    except Exception as error:  # noqa: BLE001  a corrupt file can make a decoder raise anything
        raise ImageLoadError(f"cannot decode image {name}: {type(error).__name__}: {error}") from error


def _to_rgb(image: Image.Image) -> Image.Image:
    """Convert any Pillow mode to RGB without the usual surprises."""
    if image.mode in ("I", "I;16", "I;16B", "I;16L", "F"):
        # Pillow's own convert clips 16-bit values to 255 (a white image), so rescale instead.
        values = np.asarray(image, dtype=np.float32)
        if image.mode != "F" or values.max() > 255:
            values = values / 257.0
        image = Image.fromarray(np.clip(values + 0.5, 0, 255).astype(np.uint8), mode="L")
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        # Dropping alpha would show whatever colour hides under transparent pixels (often black).
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        image = Image.alpha_composite(background, rgba)
    return image.convert("RGB")
