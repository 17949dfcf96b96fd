"""The page's payload: what the browser draws at every slider step is what the server would draw."""

import base64
import json

import numpy as np
import pytest
import torch
from PIL import Image

from acol import ACoL, box_from_map, box_iou, create_backbone
from acol.core.maps import score_map
from acol.viewer.drawing import map_with_box
from acol.evaluation.explain import Explainer
from acol.evaluation.words import branch_b_verdict
from acol.viewer.payload import SLIDER_STEPS, page_payload
from conftest import REPO, bundled_examples

EXAMPLE = bundled_examples()[0]


def explainer(head="linear", num_classes=3, input_size=64, num_branches=2) -> Explainer:
    model = ACoL(create_backbone("tiny"), num_classes, head=head, head_width=16, num_branches=num_branches).eval()
    config = {"class_names": [f"class {i}" for i in range(num_classes)], "input_size": input_size,
              "mean": [0.5] * 3, "std": [0.25] * 3}
    return Explainer(model, config, f"tiny_{head}")


def cells(base64_bytes) -> np.ndarray:
    return np.frombuffer(base64.b64decode(base64_bytes), dtype=np.uint8)


@pytest.mark.parametrize("head", ["linear", "paper"])
def test_every_delta_step_shows_what_reexplaining_at_that_delta_shows(head):
    tiny = explainer(head)
    explanation = tiny.explain(Image.open(EXAMPLE).convert("RGB"), true_boxes=[[10, 10, 60, 50]])
    payload = page_payload(explanation, tiny.model, delta=0.5, box_threshold=0.37)
    assert payload["deltas"] == list(SLIDER_STEPS) and 0.37 in payload["box_thresholds"]
    for delta, step in zip(payload["deltas"], payload["steps"]):
        expected = tiny.reexplain(explanation, erase_threshold=delta)
        state = payload["states"][step["state"]]
        assert np.array_equal(cells(state["mask"]) > 0, expected.output.erase_masks[1][0].flatten().numpy())
        b_map = expected.output.localization_maps[1][0].flatten().numpy()
        assert np.abs(cells(state["b"]) / 255 - b_map).max() <= 0.5 / 255 + 1e-4  # 0-255, rounded
        assert step["verdict"] == branch_b_verdict(expected)
        side = expected.input_size  # boxes are cut and scored as acol evaluate does: at the model's input
        score = score_map(expected.output.fused_map[0], (side, side))
        to_input = np.array([side / expected.image.width, side / expected.image.height] * 2)
        to_display = np.array([expected.display.shape[1] / side, expected.display.shape[0] / side] * 2)
        for threshold, box, iou in zip(payload["box_thresholds"], state["boxes"], state["ious"]):
            at_input = box_from_map(score, threshold)
            assert box == np.round(at_input * to_display).astype(int).tolist()
            assert iou == round(float(box_iou(at_input, expected.true_boxes * to_input).max()), 2)
            if threshold == 0.37:
                assert box == map_with_box(expected, threshold)[1].astype(int).tolist(), "what acol.drawing draws"


def test_a_hand_made_mask_comes_as_its_own_state_and_the_delta_steps_stay():
    tiny = explainer()
    explanation = tiny.toggle_cell(tiny.explain(Image.open(EXAMPLE).convert("RGB")), row=2, col=3)
    payload = page_payload(explanation, tiny.model, delta=0.6, box_threshold=0.2)
    assert payload["view"] == {"delta": 0.6, "box_threshold": 0.2, "by_hand": True}
    hand = payload["states"][payload["hand"]["state"]]
    assert np.array_equal(cells(hand["mask"]) > 0, explanation.output.erase_masks[1][0].flatten().numpy())
    assert payload["hand"]["verdict"] == branch_b_verdict(explanation) and "(by hand)" in payload["hand"]["verdict"]
    assert len(payload["steps"]) == len(SLIDER_STEPS)


def test_a_cam_model_has_one_state_and_nothing_erased():
    tiny = explainer(num_branches=1)
    payload = page_payload(tiny.explain(Image.open(EXAMPLE).convert("RGB")), tiny.model, 0.6, 0.2)
    assert not payload["acol"] and len(payload["states"]) == 1 and payload["states"][0]["mask"] is None
    assert {step["state"] for step in payload["steps"]} == {0}


def photo() -> Image.Image:
    """A photo-sized picture with a photo's detail (JPEG finds smooth noise easy, pure noise hard)."""
    rng = np.random.default_rng(0)
    smooth = np.asarray(Image.fromarray(rng.integers(0, 256, (12, 16, 3), dtype=np.uint8)).resize(
        (500, 375), Image.Resampling.BICUBIC), dtype=np.float32)
    return Image.fromarray(np.clip(smooth + rng.normal(0, 12, smooth.shape), 0, 255).astype(np.uint8))


@pytest.mark.parametrize("input_size, grid", [(112, 14), (160, 20)])
def test_one_image_is_at_most_200_kb_even_for_1000_classes(input_size, grid):
    tiny = explainer(num_classes=1000, input_size=input_size)
    explanation = tiny.explain(photo(), true_boxes=[[100, 80, 400, 300]])
    payload = page_payload(explanation, tiny.model, 0.6, 0.2)
    assert payload["grid"] == [grid, grid]
    assert len(json.dumps(payload)) <= 200_000
    assert all(step["verdict"].count("·") == 2 for step in payload["steps"][1:-1]), "B's top-3, not 1000"


def test_the_linear_shortcut_needs_only_one_pass_of_branch_b():
    tiny = explainer(num_classes=10)
    explanation = tiny.explain(Image.open(EXAMPLE).convert("RGB"))
    calls, class_layer_calls = [], []
    head_b = tiny.model.heads[1]
    head_b[0].register_forward_hook(lambda module, inputs, output: calls.append(inputs[0].shape[0]))
    head_b.class_layer.register_forward_hook(lambda *_: class_layer_calls.append(1))
    page_payload(explanation, tiny.model, 0.6, 0.2)
    assert calls == [1], "B runs once on the full features, not once per δ step"
    assert class_layer_calls == [], "and makes no map of every class: only the logits and one class's map"
    torch.manual_seed(0)
