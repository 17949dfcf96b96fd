"""What the training δ does (acol.trained_deltas): the page's picture through siblings trained at other δ."""

import base64
import shutil
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from acol.evaluation.explain import Explainer
from acol.viewer.shelf import CheckpointShelf
from acol.viewer.trained_deltas import TrainedDeltas, trained_deltas_payload

REPO = Path(__file__).resolve().parents[1]
TEACHING = "tiny_synthetic_acol"
PICTURE = REPO / "assets" / "examples" / "synthetic_2_0000.png"


def test_each_model_trained_at_another_delta_erases_at_its_own(tiny_checkpoints):
    shelf = CheckpointShelf(tiny_checkpoints)
    siblings = TrainedDeltas(shelf)[TEACHING]
    assert [sibling.model.erase_threshold for sibling in siblings] == [0.3, 0.8]
    assert TrainedDeltas(shelf)["tiny_acol"] == [], "a model without a .deltas folder has no siblings"
    explainer = shelf[TEACHING]
    explanation = explainer.explain(Image.open(PICTURE).convert("RGB"), [[10, 10, 90, 60]], true_class="red-crest")
    views = trained_deltas_payload(explainer, explanation, siblings, box_threshold=0.3)
    assert [view["delta"] for view in views] == [0.3, 0.5, 0.8] and [view["shipped"] for view in views] == [False, True, False]
    for view in views:  # each sibling erases where its own A's map >= the δ it trained with
        sibling = explainer if view["shipped"] else next(s for s in siblings if s.model.erase_threshold == view["delta"])
        output = sibling.model(sibling.input_batch(explanation.image), torch.tensor([explanation.target_class]))
        expected = (output.localization_maps[0][0] >= view["delta"]).flatten().numpy()
        assert (np.frombuffer(base64.b64decode(view["mask"]), np.uint8) == 255 * expected).all()
        assert view["iou"] is not None and len(view["box"]) == 4 and view["story"]["holds"] in (True, False)
        assert view["verdict"].startswith(f"{int(expected.sum())} of {expected.size} cells erased (δ = {view['delta']:.2f})")


def test_a_sibling_of_other_classes_is_left_out(tiny_checkpoints, tmp_path):
    folder = tmp_path / "checkpoints"
    shutil.copytree(tiny_checkpoints, folder)
    shutil.copy(folder / "tiny_acol.safetensors", folder / f"{TEACHING}.deltas" / "delta_other_classes.safetensors")
    assert [s.model.erase_threshold for s in TrainedDeltas(CheckpointShelf(folder))[TEACHING]] == [0.3, 0.8]


def test_the_teaching_model_s_payload_carries_its_siblings_and_a_hand_mask_leaves_them(tiny_checkpoints):
    from acol.viewer.answers import ModelRunner
    runner = ModelRunner(CheckpointShelf(tiny_checkpoints).load_all())
    answer = runner.run("explain", TEACHING, Image.open(PICTURE).convert("RGB"), payload=True)
    assert [view["delta"] for view in answer.payload["trained_deltas"]] == [0.3, 0.5, 0.8]
    by_hand = runner.run("toggle_cell", TEACHING, answer.explanation, 0, 0, payload=True)
    assert by_hand.payload["trained_deltas"] == "unchanged"
    assert "trained_deltas" not in runner.run("explain", "tiny_acol", Image.open(PICTURE).convert("RGB"),
                                              payload=True).payload
