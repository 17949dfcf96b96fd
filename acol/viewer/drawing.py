"""How the pictures are drawn: one explanation's maps, erased features and boxes, as RGB arrays.

    explanation.display --+-- overlay_map(branch A's map)                 "Branch A's map"
     (the image, at most  +-- overlay_mask(branch B's erase mask)         "Erased features"
      DISPLAY_SIDE)       +-- overlay_map(branch B's map)                 "Branch B's map"
                          +-- overlay_map(fused map) + draw_boxes         "Fused map + box"
    render_panels -> Panels -+-> page_pictures: each with its colour key (the viewer)
                             +-> four_panel_figure -> write_figure_png (the export and the CLI)
    sweep_strip, compare_picture: the viewer's "Delta sweep" and "Compare with CAM" tabs
    feature_cell: the feature cell under a click on the erased panel (erasing by hand)

A map is shown resized to the picture's pixels, then min-max normalized (``upsampled``); the box
drawn is the box ``acol evaluate`` scores, cut where wsolevaluation cuts it, from the map resized
to the model's input square (``Explanation.scored_boxes``), then scaled to the picture. Erased
features are painted as whole feature cells with the grid drawn, because ACoL erases features,
not pixels. Everything is a
numpy uint8 ``[H, W, 3]`` array drawn with numpy and Pillow, fast enough to redraw on every
slider move; only the exported figure uses matplotlib (an Agg canvas, no display), arranging
the same arrays. The colours are ``acol.viewer.style``'s, which the browser's drawing sends too, so the
page, the scripts' pictures and the figure agree.
"""

from __future__ import annotations

import textwrap
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from matplotlib import colormaps, font_manager
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.cm import ScalarMappable
from matplotlib.colors import ListedColormap, Normalize
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from PIL import Image, ImageDraw, ImageFont

from ..core.maps import score_map
from ..evaluation.explain import DISPLAY_SIDE, scaled_size
from ..evaluation.explanation import Explanation
from ..evaluation.words import caption_head, erasing_phrase
from .style import (COLOR_LUT, COLORMAP, ERASED_COLOR, ERASED_OPACITY, ERASED_SWATCH, KEPT_SWATCH, MAP_OPACITY,
                    PREDICTED_BOX_COLOR, TRUE_BOX_COLOR, box_line_width)

_FONT = ImageFont.truetype(font_manager.findfont("DejaVu Sans"), 13)  # has δ; ships with matplotlib


# ----------------------------------------------------------------------------------------------
# Numpy RGB pictures


def upsampled(localization_map: torch.Tensor, picture: np.ndarray) -> np.ndarray:
    """A feature-resolution map ``[h, w]`` as the picture's score map: resized to its pixels,
    then min-max normalized (the same map as evaluation cuts boxes from, at the picture's size)."""
    return score_map(localization_map.float().cpu(), picture.shape[:2])


def overlay_map(picture: np.ndarray, heat: np.ndarray) -> np.ndarray:
    """Colour a ``[0, 1]`` map of the picture's size with COLORMAP and blend it over the picture."""
    colors = COLOR_LUT[np.clip(heat * 255 + 0.5, 0, 255).astype(np.uint8)]
    return (picture * (1 - MAP_OPACITY) + colors * MAP_OPACITY).astype(np.uint8)


def overlay_mask(picture: np.ndarray, mask: torch.Tensor) -> np.ndarray:
    """Wash out the erased cells of a feature-resolution ``mask [h, w]`` as whole blocks, with the
    feature grid drawn, so it is plain that features are erased, not pixels."""
    mask = mask.cpu().numpy()
    height, width = picture.shape[:2]
    rows = np.arange(height) * mask.shape[0] // height  # nearest-neighbour: the cell of each pixel
    cols = np.arange(width) * mask.shape[1] // width
    erased = mask[rows][:, cols]
    out = picture.astype(np.float32)
    out[erased] = out[erased] * (1 - ERASED_OPACITY) + ERASED_COLOR * ERASED_OPACITY
    grid_rows, grid_cols = np.flatnonzero(np.diff(rows)) + 1, np.flatnonzero(np.diff(cols)) + 1
    out[grid_rows] = out[grid_rows] * 0.5 + 127  # cell borders, half-way to grey
    out[:, grid_cols] = out[:, grid_cols] * 0.5 + 127
    return out.astype(np.uint8)


def feature_cell(explanation: Explanation, x: float, y: float) -> tuple[int, int] | None:
    """The feature cell ``(row, col)`` drawn at pixel ``(x, y)`` of a page picture (the display
    picture with its colour key on the right, as ``page_pictures`` makes it), or None when the
    pixel is off the picture (on the key, say). Cells are found as ``overlay_mask`` paints them."""
    height, width = explanation.display.shape[:2]
    rows, cols = explanation.output.features.shape[-2:]
    if not (0 <= x < width and 0 <= y < height):
        return None
    return int(y) * rows // height, int(x) * cols // width


def draw_boxes(picture: np.ndarray, predicted=None, true_boxes=()) -> np.ndarray:
    """The picture with the true boxes (green) and the predicted box (cyan) drawn on it."""
    image = Image.fromarray(picture)
    draw = ImageDraw.Draw(image)
    width = box_line_width(picture.shape)
    for box, color in [(box, TRUE_BOX_COLOR) for box in true_boxes] + [(predicted, PREDICTED_BOX_COLOR)]:
        if box is not None and box[2] > box[0] and box[3] > box[1]:
            x0, y0, x1, y1 = box  # pixel edges: the last covered column is x1 - 1
            draw.rectangle((x0, y0, max(x0, x1 - 1), max(y0, y1 - 1)), outline=color, width=width)
    return np.asarray(image)


def map_with_box(explanation: Explanation, box_threshold: float) -> tuple[np.ndarray, np.ndarray, float | None]:
    """The fused map over the picture with its box, the box, and its IoU with the true box.

    The box surrounds the largest region of the fused score map above ``box_threshold``, cut and
    scored as wsolevaluation does (``Explanation.scored_boxes``). IoU is with the best-matching
    true box, None when no true box is known.
    """
    heat = upsampled(explanation.output.fused_map[0], explanation.display)
    boxes, ious = explanation.scored_boxes(explanation.output.fused_map, [box_threshold])
    box, iou = boxes[0, 0], None if ious is None else float(ious[0, 0])
    return draw_boxes(overlay_map(explanation.display, heat), box, explanation.display_boxes()), box, iou


def placeholder(text: str, size: tuple[int, int] = (DISPLAY_SIDE, DISPLAY_SIDE)) -> np.ndarray:
    """A light grey ``size = (width, height)`` picture saying why a view is empty."""
    image = Image.new("RGB", size, (236, 236, 236))
    ImageDraw.Draw(image).multiline_text((size[0] / 2, size[1] / 2), text, fill=(70, 70, 70),
                                         font=_FONT, anchor="mm", align="center")
    return np.asarray(image)


def titled(picture: np.ndarray, title: str) -> np.ndarray:
    """The picture under a white band holding ``title``."""
    band = Image.new("RGB", (picture.shape[1], 22), "white")
    ImageDraw.Draw(band).text((picture.shape[1] / 2, 11), title, fill="black", font=_FONT, anchor="mm")
    return np.concatenate([np.asarray(band), picture])


def side_by_side(pictures: list[np.ndarray], gap: int = 8) -> np.ndarray:
    """Pictures in a row on white, top-aligned, ``gap`` pixels apart."""
    height = max(p.shape[0] for p in pictures)
    row = []
    for picture in pictures:
        padded = np.full((height, picture.shape[1], 3), 255, np.uint8)
        padded[:picture.shape[0]] = picture
        row += [padded, np.full((height, gap, 3), 255, np.uint8)]
    return np.concatenate(row[:-1], axis=1)


def colorbar(height: int, legend: bool = False) -> np.ndarray:
    """A vertical key ``height`` pixels tall: COLORMAP from 0 to 1, or (``legend=True``) the
    erased-feature colour."""
    key = Image.new("RGB", (72, height), "white")
    draw = ImageDraw.Draw(key)
    if legend:
        middle = height // 2
        draw.rectangle((4, middle - 20, 16, middle - 8), fill=tuple(ERASED_SWATCH), outline="black")
        draw.text((20, middle - 14), "erased", fill="black", font=_FONT, anchor="lm")
        draw.rectangle((4, middle + 8, 16, middle + 20), fill=tuple(KEPT_SWATCH), outline="black")
        draw.text((20, middle + 14), "kept", fill="black", font=_FONT, anchor="lm")
        return np.asarray(key)
    top, bottom = 8, max(9, height - 8)
    ramp = COLOR_LUT[np.linspace(255, 0, bottom - top).round().astype(int)]  # 1 at the top, as matplotlib
    key.paste(Image.fromarray(np.repeat(ramp[:, None], 13, axis=1).astype(np.uint8)), (4, top))
    draw.rectangle((4, top, 16, bottom - 1), outline="black")
    for value in (0.0, 0.5, 1.0):
        y = bottom - 1 - value * (bottom - top - 1)
        draw.line((16, y, 20, y), fill="black")
        draw.text((22, y), f"{value:g}", fill="black", font=_FONT, anchor="lm")
    return np.asarray(key)


# ----------------------------------------------------------------------------------------------
# The four views


@dataclass
class Panels:
    """The four views of one explanation, as RGB arrays the size of its display picture."""

    branch_a: np.ndarray
    erased: np.ndarray | None       # None for a one-branch CAM model: nothing is erased
    branch_b: np.ndarray | None
    fused: np.ndarray               # with the predicted box (cyan) and true boxes (green)
    titles: tuple[str, str, str, str]
    predicted_box: np.ndarray       # xyxy in display pixels
    iou: float | None               # None when the true box is unknown
    caption: str                    # one line: class, probability, threshold, IoU
    note: str = ""                  # what the viewer's status line adds: "Not made for this picture: ..."


def render_panels(explanation: Explanation, box_threshold: float, note: str = "") -> Panels:
    """Draw branch A's map, the erased features, branch B's map and the fused map with its box;
    ``note`` (Markdown, as the viewer's status line has it) goes under the figure's caption."""
    output, display = explanation.output, explanation.display
    branch_a = overlay_map(display, upsampled(output.localization_maps[0][0], display))
    fused, box, iou = map_with_box(explanation, box_threshold)
    feature_h, feature_w = output.features.shape[-2:]
    caption = caption_head(explanation)
    if explanation.num_branches > 1:
        mask = output.erase_masks[1][0]
        erased = overlay_mask(display, mask)
        branch_b = overlay_map(display, upsampled(output.localization_maps[1][0], display))
        how = "by hand" if explanation.erased_by_hand else f"δ = {explanation.erase_threshold:.2f}"
        caption += " · " + erasing_phrase(how, int(mask.sum()), mask.numel())
        titles = ("Branch A's map", f"Erased features ({feature_h}x{feature_w}, {how})",
                  "Branch B's map (on erased features)", "Fused map max(A, B) + box")
    else:
        erased = branch_b = None
        titles = ("Class activation map (CAM)", "Erased features: none (CAM)",
                  "Branch B: none (CAM)", "CAM map + box")
    caption += f" · box above {box_threshold:.2f}"
    if iou is not None:
        caption += f" · IoU with true box {iou:.2f}"
    return Panels(branch_a, erased, branch_b, fused, titles, box, iou, caption, note)


ONE_BRANCH_NOTE = "one-branch CAM model:\nnothing is erased,\nthere is no branch B"


def page_pictures(panels: Panels) -> list[np.ndarray]:
    """The four views as the viewer shows them, each with its colour key on the right."""
    size = panels.branch_a.shape[1::-1]
    pictures = []
    for picture, is_mask in ((panels.branch_a, False), (panels.erased, True),
                             (panels.branch_b, False), (panels.fused, False)):
        if picture is None:
            pictures.append(placeholder(ONE_BRANCH_NOTE, size))
        else:
            pictures.append(np.concatenate([picture, colorbar(picture.shape[0], legend=is_mask)], axis=1))
    return pictures


def four_panel_figure(panels: Panels) -> Figure:
    """The four views in one matplotlib figure (Agg canvas, no display), with colorbars."""
    height, width = panels.branch_a.shape[:2]
    figure = Figure(figsize=(17, 3.4 * height / width + 1.5), layout="constrained")
    FigureCanvasAgg(figure)
    mask_colors = ListedColormap([KEPT_SWATCH / 255, ERASED_SWATCH / 255])
    pictures = (panels.branch_a, panels.erased, panels.branch_b, panels.fused)
    for axes, picture, title in zip(figure.subplots(1, 4), pictures, panels.titles):
        axes.set_axis_off()
        axes.set_title(title, fontsize=11)
        if picture is None:
            axes.text(0.5, 0.5, ONE_BRANCH_NOTE, ha="center", va="center", transform=axes.transAxes, color="0.3")
            continue
        axes.imshow(picture)
        if picture is panels.erased:
            key = figure.colorbar(ScalarMappable(Normalize(0, 1), mask_colors), ax=axes, shrink=0.7,
                                  ticks=[0.25, 0.75])
            key.ax.set_yticklabels(["kept", "erased"])
        else:
            figure.colorbar(ScalarMappable(Normalize(0, 1), colormaps[COLORMAP]), ax=axes, shrink=0.7,
                            label="normalized activation")
        if picture is panels.fused:
            handles = [Line2D([], [], color=np.array(PREDICTED_BOX_COLOR) / 255, lw=2, label="predicted box")]
            if panels.iou is not None:
                handles.append(Line2D([], [], color=np.array(TRUE_BOX_COLOR) / 255, lw=2, label="true box"))
            axes.legend(handles=handles, loc="upper center", bbox_to_anchor=(0.5, 0), ncols=2, frameon=False)
    note = textwrap.fill(panels.note.replace("**", ""), 150)
    figure.suptitle(panels.caption + (f"\n{note}" if note else ""), fontsize=12)
    return figure


def write_figure_png(panels: Panels, path: str | Path) -> Path:
    """Save :func:`four_panel_figure` as a PNG: the viewer's export and the CLI's output."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    four_panel_figure(panels).savefig(path, dpi=100)
    return path


def sweep_strip(sweep: list[Explanation], height: int = 150) -> np.ndarray:
    """Erased features (top) and branch B's map (bottom) at each erase threshold, in a row:
    a low δ erases much of the object and pushes B further out; a high δ erases only the peak."""
    columns = []
    for explanation in sweep:
        size = scaled_size(explanation.display.shape[1::-1], height / explanation.display.shape[0])
        small = np.asarray(Image.fromarray(explanation.display).resize(size, Image.Resampling.BILINEAR))
        mask = explanation.output.erase_masks[1][0]
        erased = overlay_mask(small, mask)
        branch_b = overlay_map(small, upsampled(explanation.output.localization_maps[1][0], small))
        title = f"δ={explanation.erase_threshold:.1f}: {float(mask.float().mean()):.0%} erased"
        columns.append(titled(np.concatenate([erased, np.full((4, size[0], 3), 255, np.uint8), branch_b]), title))
    return side_by_side(columns + [colorbar(columns[0].shape[0])])


def compare_picture(baseline: Explanation, explanation: Explanation, baseline_threshold: float,
                    box_threshold: float) -> np.ndarray:
    """The CAM baseline's map and the ACoL fused map of the same image and class, each with the
    box cut at its own threshold (each model's validated one, in the viewer)."""
    pictures = []
    for shown, label, threshold in ((baseline, "CAM", baseline_threshold), (explanation, "ACoL fused", box_threshold)):
        picture, _, iou = map_with_box(shown, threshold)
        score = "" if iou is None else f": IoU {iou:.2f}"
        pictures.append(titled(picture, f"{label}, box at {threshold:.2f}{score}"))
    return side_by_side(pictures + [colorbar(pictures[0].shape[0])])
