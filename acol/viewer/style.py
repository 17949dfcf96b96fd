"""How the views look: one drawing style for the pictures Python draws (``acol.viewer.drawing``) and the
ones the browser draws from a payload (``acol.viewer.payload`` sends these values to viewer.js).

- A map is coloured with COLORMAP (``COLOR_LUT``: its 256 colours, 0-255 floats) and blended over
  the photo at MAP_OPACITY.
- Erased feature cells are washed out in ERASED_COLOR at ERASED_OPACITY, whole cells at a time, as
  an eraser would: near-white, which no map colour is (inferno ends in pale yellow) and no class
  is named after (the teaching classes are red-, blue-, yellow- and green-crest: a blue wash on a
  blue crest said the wrong thing).
- The predicted box is PREDICTED_BOX_COLOR, the true boxes TRUE_BOX_COLOR, both
  ``box_line_width`` pixels wide.
"""

from __future__ import annotations

import numpy as np
from matplotlib import colormaps

COLORMAP = "inferno"     # perceptually uniform and colour-blind safe, unlike 'jet'
COLOR_LUT = (colormaps[COLORMAP](np.linspace(0, 1, 256))[:, :3] * 255).astype(np.float32)
MAP_OPACITY = 0.55
ERASED_COLOR = np.array([250, 250, 250])
ERASED_OPACITY = 0.75
KEPT_SWATCH = np.array([128, 128, 128])  # a legend's kept cell: the photo as it is, a mid grey here
ERASED_SWATCH = (KEPT_SWATCH * (1 - ERASED_OPACITY) + ERASED_COLOR * ERASED_OPACITY).astype(int)  # and washed out
PREDICTED_BOX_COLOR = (0, 200, 255)
TRUE_BOX_COLOR = (60, 255, 60)


def box_line_width(shape) -> int:
    """The width in pixels of the boxes' lines on a picture of this shape."""
    return max(2, round(max(shape[:2]) / 150))
