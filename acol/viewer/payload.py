"""What the viewer's page draws, computed once per explanation: one compact payload.

The page draws its four panels in the browser (``acol/viewer/static/viewer.js``), so moving the δ or
box-threshold slider, or hovering a feature cell, asks the server nothing. For that the server
sends, when an image is explained (or its class, model or hand-made mask changes), everything
those sliders can show, computed here in Python, where every map, mask and box is computed:

- the display picture (JPEG) and branch A's normalized map, one value per feature cell;
- for every step δ of the slider: the erased cells (A's map >= δ), branch B's normalized map and
  top-3 verdict on the features so erased, and the fused map, B run once for all steps
  (``ACoL.erased_class_maps``); steps that erase the same cells share one *state*;
- for every state and every step of the box slider: the box cut from the fused map exactly as
  ``acol.viewer.drawing`` cuts it, and its IoU with the true box;
- how ``acol.viewer.drawing`` resizes a per-cell map to the picture (its bicubic weights, and each
  picture's range), the colour map and the colours, so the browser paints what it paints.

Per-cell maps travel as base64 bytes (0-255 for 0-1). For a 20x20 map, with a 384-pixel picture,
a payload is about 60 KB; the browser keeps nothing else about the image.
"""

from __future__ import annotations

import base64
import io
from dataclasses import replace

import numpy as np
import torch
from PIL import Image

from ..core.maps import fuse_maps, normalize_maps, resize_weights, upsample_maps
from ..core.model import ACoL
from ..evaluation.explanation import Explanation
from ..evaluation.story import peak_cell, story_of, story_payload
from ..evaluation.words import caption_head, erasing_phrase, verdict_line
from .style import (COLOR_LUT, ERASED_COLOR, ERASED_OPACITY, ERASED_SWATCH, KEPT_SWATCH, MAP_OPACITY,
                    PREDICTED_BOX_COLOR, TRUE_BOX_COLOR, box_line_width)

SLIDER_STEP = 0.05
SLIDER_STEPS = tuple(round(index * SLIDER_STEP, 2) for index in range(round(1 / SLIDER_STEP) + 1))
JPEG_QUALITY = 90        # the display picture: ~30 KB for a 384x288 photo
VERDICT_CLASSES = 3      # B's top-3 at every step, whatever the number of classes


def box_thresholds(current: float) -> list[float]:
    """The box thresholds the page can show: the slider's steps and its value now (a model's
    validated box threshold, 0.37 say, is off the steps)."""
    return sorted({*SLIDER_STEPS, round(float(current), 2)})


def snapped(value: float) -> float:
    """The slider step nearest to ``value``: the δ the page shows for it."""
    return SLIDER_STEPS[min(len(SLIDER_STEPS) - 1, max(0, round(float(value) / SLIDER_STEP)))]


def cell_bytes(values: torch.Tensor | np.ndarray) -> str:
    """A [0, 1] array as base64 bytes, 0-255, rounded as ``acol.viewer.drawing`` indexes its colours."""
    values = np.asarray(values.cpu() if torch.is_tensor(values) else values, dtype=np.float32)
    return base64.b64encode(np.clip(values * 255 + 0.5, 0, 255).astype(np.uint8).tobytes()).decode()


def _floats(values: torch.Tensor | np.ndarray) -> str:
    """Float32 values as base64 bytes (little-endian, as the browser's Float32Array reads them)."""
    return base64.b64encode(np.asarray(values, dtype="<f4").tobytes()).decode()


def _ranges(resized: torch.Tensor) -> list[list[float]]:
    """Each resized map's [min, max] (``[K, H, W]``): what ``acol.viewer.drawing.upsampled`` normalizes by."""
    return torch.stack([resized.amin((-2, -1)), resized.amax((-2, -1))], -1).view(-1, 2).cpu().tolist()


def resize_taps(cells: int, pixels: int) -> dict:
    """How ``acol.viewer.drawing`` resizes a per-cell map to the picture along one side (bicubic,
    ``maps.upsample_maps``), as each pixel's first cell (``first``) and its weights on that cell
    and the next ``taps - 1`` (``weights``, float32). The resize is linear, so resizing each
    cell's unit impulse gives its weight at every pixel: the browser applies PyTorch's own."""
    weights = resize_weights(cells, pixels)  # [pixels, cells]
    taps = min(4, cells)
    first = ((weights != 0).float().argmax(1)).clamp(max=cells - taps)
    gathered = weights.gather(1, first[:, None] + torch.arange(taps))
    assert torch.allclose(gathered.sum(1), weights.sum(1)), "every weight lies within the taps"
    return {"taps": taps, "first": base64.b64encode(first.numpy().astype(np.uint8).tobytes()).decode(),
            "weights": _floats(gathered)}


def _jpeg(picture: np.ndarray) -> str:
    buffer = io.BytesIO()
    Image.fromarray(picture).save(buffer, format="JPEG", quality=JPEG_QUALITY)
    return "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode()


def _states(explanation: Explanation, model: ACoL, thresholds) -> tuple[list[dict], list[dict], dict | None]:
    """``(states, steps, hand)``: each distinct erasing with its maps, each slider step's state
    and words, and the hand-made erasing when B sees one (else None). Maps are made on the
    model's device, all states at once, and come to the CPU as bytes, boxes and words."""
    output = explanation.output
    map_a = output.localization_maps[0][0]
    if explanation.num_branches == 1:  # CAM: nothing to erase, one state for every step
        state = _boxed_states(explanation, map_a[None], None, None, thresholds)[0]
        return [state], [{"state": 0, "erasing": "", "verdict": ""}] * len(SLIDER_STEPS), None
    masks = torch.stack([map_a >= delta for delta in SLIDER_STEPS])
    hand_mask = output.erase_masks[1][0] if explanation.erased_by_hand else None
    if hand_mask is not None:
        masks = torch.cat([masks, hand_mask[None]])
    distinct, state_of = torch.unique(masks.flatten(1), dim=0, return_inverse=True)
    distinct = distinct.view(-1, *map_a.shape)
    with torch.inference_mode():
        maps_b, logits_b = model.erased_branch(output.features, distinct, explanation.target_class)
    maps_b = normalize_maps(maps_b)
    fused = fuse_maps([map_a.expand_as(maps_b), maps_b])
    states = _boxed_states(explanation, fused, distinct, maps_b, thresholds)
    top = logits_b.softmax(-1).topk(min(VERDICT_CLASSES, logits_b.shape[1]))
    top_probabilities, top_classes, erased_cells = top.values.cpu(), top.indices.cpu(), distinct.flatten(1).sum(1).cpu()

    def words(index: int, how: str) -> dict:
        state = int(state_of[index])
        return {"state": state, "erasing": erasing_phrase(how, int(erased_cells[state]), map_a.numel()),
                "verdict": verdict_line(top_probabilities[state], top_classes[state], int(erased_cells[state]),
                                        map_a.numel(), how, explanation.target_class, explanation.class_names)}
    steps = [words(index, f"δ = {delta:.2f}") for index, delta in enumerate(SLIDER_STEPS)]
    return states, steps, None if hand_mask is None else words(len(SLIDER_STEPS), "by hand")


def _boxed_states(explanation: Explanation, fused, masks, maps_b, thresholds) -> list[dict]:
    """Each erasing's state: its cells and B's map (None for a CAM model), the fused map (with
    the ranges of their pictures), and the box cut from the fused map at each box threshold, as
    ``acol evaluate`` cuts and scores it (``Explanation.scored_boxes``), with its IoU with the true box."""
    size = explanation.display.shape[:2]
    boxes, ious = explanation.scored_boxes(fused, thresholds)  # all states at once
    fused_range = _ranges(upsample_maps(fused, size))
    b_range = [None] * len(fused) if maps_b is None else _ranges(upsample_maps(maps_b, size))
    fused, masks, maps_b = (None if value is None else value.cpu() for value in (fused, masks, maps_b))
    return [{"mask": None if masks is None else cell_bytes(masks[index].float()),
             "b_peak": None if maps_b is None else peak_cell(maps_b[index]),
             "b": None if maps_b is None else cell_bytes(maps_b[index]), "b_range": b_range[index],
             "fused": cell_bytes(fused[index]), "fused_range": fused_range[index],
             "boxes": boxes[index].astype(int).tolist(),
             "ious": None if ious is None else [round(float(iou), 2) for iou in ious[index]]}
            for index in range(len(fused))]


def one_state(explanation: Explanation, model: ACoL, box_threshold: float) -> dict:
    """The picture as ``explanation`` erased it (one state, no slider): A's range, the erased
    cells, B's map, the fused map and its box at ``box_threshold`` with its IoU, both peaks."""
    output = explanation.output
    map_a, mask, map_b = output.localization_maps[0][0], output.erase_masks[1][0], output.localization_maps[1][0]
    state = _boxed_states(explanation, output.fused_map, mask[None], map_b[None], [box_threshold])[0]
    size = explanation.display.shape[:2]
    return {"a_range": _ranges(upsample_maps(map_a[None], size))[0], "a_peak": peak_cell(map_a),
            **{key: state[key] for key in ("mask", "b", "b_range", "b_peak", "fused", "fused_range")},
            "box": state["boxes"][0], "iou": None if state["ious"] is None else state["ious"][0]}


def told_story(explanation: Explanation, model: ACoL, box_threshold: float) -> dict:
    """Whether the picture tells ACoL's story (``acol.evaluation.story``) as the page opens on it: erased at
    the model's own δ, boxed at ``box_threshold``; the facts and the words that say so."""
    if explanation.num_branches > 1 and (explanation.erased_by_hand or explanation.erase_threshold != model.erase_threshold):
        with torch.inference_mode():
            output = model.reexplain(explanation.output, explanation.output.target_class, model.erase_threshold)
        explanation = replace(explanation, output=output, erased_by_hand=False)
    return story_payload(story_of(explanation, box_threshold), explanation.class_names)


def page_payload(explanation: Explanation, model: ACoL, delta: float, box_threshold: float,
                 note: str = "", trained_delta: float | None = None) -> dict:
    """Everything the page draws of ``explanation`` at any slider position, opening at ``delta``
    (or the hand-made mask B sees, when there is one) and ``box_threshold``; ``note`` is what the
    status line adds (the picture is not one the model was made for, or its top class is unlikely);
    ``trained_delta`` the δ B trained with (default: the model's own), which the δ slider names."""
    height, width = explanation.display.shape[:2]
    thresholds = box_thresholds(box_threshold)
    map_a = explanation.output.localization_maps[0][0]
    states, steps, hand = _states(explanation, model, thresholds)
    return {"model": explanation.model_name, "grid": list(explanation.output.features.shape[-2:]),
            "width": width, "height": height, "image": _jpeg(explanation.display),
            "colormap": base64.b64encode(COLOR_LUT.round().astype(np.uint8).tobytes()).decode(),
            "map_opacity": MAP_OPACITY, "erased_color": ERASED_COLOR.tolist(), "erased_opacity": ERASED_OPACITY,
            "swatches": {"erased": ERASED_SWATCH.tolist(), "kept": KEPT_SWATCH.tolist()},
            "predicted_box_color": list(PREDICTED_BOX_COLOR), "true_box_color": list(TRUE_BOX_COLOR),
            "box_line_width": box_line_width(explanation.display.shape),
            # As Pillow draws them (acol.viewer.drawing.draw_boxes): at whole pixels, truncated.
            "true_boxes": np.floor(explanation.display_boxes()).astype(int).tolist(),
            "a": cell_bytes(map_a), "a_range": _ranges(upsample_maps(map_a[None], (height, width)))[0],
            "resize": {"rows": resize_taps(map_a.shape[0], height), "cols": resize_taps(map_a.shape[1], width)},
            "caption": caption_head(explanation), "note": note,
            # For the lesson's words: the class, how sure A is, the label, and where A's map peaks.
            "class_name": explanation.class_names[explanation.target_class],
            "probability": round(float(explanation.probabilities[explanation.target_class]), 4),
            "true_class": explanation.true_class, "model_delta": round(float(model.erase_threshold), 2),
            "trained_delta": round(float(model.erase_threshold if trained_delta is None else trained_delta), 2),
            "a_peak": peak_cell(map_a), "story": told_story(explanation, model, box_threshold),
            "acol": explanation.num_branches > 1,
            "deltas": list(SLIDER_STEPS), "box_thresholds": thresholds,
            "states": states, "steps": steps, "hand": hand,
            "view": {"delta": snapped(delta), "box_threshold": round(float(box_threshold), 2),
                     "by_hand": hand is not None}}


def with_view(payload: dict, delta: float, box_threshold: float) -> dict:
    """``payload`` opening at the page's sliders: ``delta``, ``box_threshold`` and, when the payload
    holds one, the hand-made mask. A shallow copy: the payload itself, shared by every session
    that shows the picture, holds every δ and box threshold, so the sliders are no part of it."""
    return {**payload, "view": {"delta": snapped(delta), "box_threshold": round(float(box_threshold), 2),
                                "by_hand": payload["hand"] is not None}}
