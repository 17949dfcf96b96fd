"""How it learned: a picture's maps at every epoch, in the page's payload, from a model's history."""

import base64
import shutil

import numpy as np
import torch
from PIL import Image

from acol.viewer.answers import ModelRunner
from acol.viewer.shelf import CheckpointShelf
from conftest import REPO

EXAMPLE = REPO / "assets" / "examples" / "synthetic_2_0005.png"
TEACHING, CAM = "tiny_synthetic_acol", "tiny_synthetic_cam"


def explained(folder, model=TEACHING):
    runner = ModelRunner(CheckpointShelf(folder))
    return runner.run("explain", model, Image.open(EXAMPLE).convert("RGB"), delta=0.5, payload=True)


def test_a_model_with_a_history_brings_every_epochs_maps_and_its_cam_baselines(tiny_checkpoints):
    learning = explained(tiny_checkpoints).payload["learning"]
    epochs = learning["epochs"]
    assert epochs == [0, 1, 2, 3] and learning["delta"] == 0.5 and learning["cam_model"] == CAM
    for key in ("a", "mask", "b", "cam", "words"):
        assert len(learning[key]) == len(epochs), key
    cells = [np.frombuffer(base64.b64decode(a), np.uint8) for a in learning["a"]]
    assert len(cells[0]) == 64 and not np.array_equal(cells[0], cells[-1]), "A's map moved while it trained"
    assert learning["words"][0].startswith("before training (epoch 0): A says")
    figures = learning["figures"]
    assert figures["loss_A"][0] is None and all(v is not None for v in figures["loss_B"][1:])
    assert len(figures["cam_loss_A"]) == len(epochs)


def test_a_model_without_a_history_or_with_a_broken_one_has_no_history_view(tiny_checkpoints, tmp_path):
    assert "learning" not in explained(tiny_checkpoints, "tiny_acol").payload
    folder = tmp_path / "checkpoints"
    folder.mkdir()
    shutil.copy(tiny_checkpoints / f"{TEACHING}.safetensors", folder)
    history = (tiny_checkpoints / f"{TEACHING}.history.safetensors").read_bytes()
    (folder / f"{TEACHING}.history.safetensors").write_bytes(history[: len(history) // 2])  # truncated
    answer = explained(folder)
    assert "learning" not in answer.payload and answer.payload["states"], "the model itself still explains"
    assert CheckpointShelf(folder).names() == [TEACHING], "a history file is never listed as a model"


def test_a_hand_made_mask_leaves_how_it_learned_unchanged(tiny_checkpoints):
    runner = ModelRunner(CheckpointShelf(tiny_checkpoints))
    answer = explained(tiny_checkpoints)
    toggled = runner.run("toggle_cell", TEACHING, answer.explanation, 2, 3, payload=True)
    assert toggled.payload["learning"] == "unchanged"


def test_a_model_without_a_history_runs_with_its_batchnorms_folded_one_with_a_history_keeps_them(tiny_checkpoints):
    shelf = CheckpointShelf(tiny_checkpoints)
    has_batchnorm = lambda name: any(isinstance(m, torch.nn.BatchNorm2d) for m in shelf[name].model.modules())
    assert not has_batchnorm("tiny_acol"), "folded: the same features, a fifth faster"
    assert has_batchnorm(TEACHING), "a history's weights are swapped in by their names"
