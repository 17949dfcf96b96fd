"""The viewer and the everyday model: uploads go to it unless the user picked a model, its photos
are its examples, its CAM baseline is its own branch A, and a model shown a picture it was not
made for says so whatever its confidence."""

import shutil

import numpy as np
import pytest
import torch
from PIL import Image

import app
from acol.serving import BRANCH_A, CheckpointShelf, ExampleImages
from conftest import REPO, example_class_names

EVERYDAY = REPO / "assets" / "everyday"
TEACHING, EVERYDAY_MODEL = "tiny_synthetic_acol", "tiny_everyday_acol"


@pytest.fixture(scope="module")
def everyday_checkpoints(tiny_checkpoints, tmp_path_factory):
    """The teaching model and a tiny stand-in for the everyday model (its recipe names the
    everyday pool; its classes include the labels of assets/everyday)."""
    from acol import ACoL, create_backbone
    from acol.checkpoint import save_checkpoint
    folder = tmp_path_factory.mktemp("everyday_checkpoints")
    shutil.copy(tiny_checkpoints / f"{TEACHING}.safetensors", folder)
    labels = sorted({line.split(",")[1] for line in (EVERYDAY / "labels.csv").read_text().splitlines()[1:]})
    names = labels + ["goldfish", "tench"]
    torch.manual_seed(0)
    save_checkpoint(folder / f"{EVERYDAY_MODEL}.safetensors", ACoL(create_backbone("tiny"), len(names), head="linear",
                                                                  num_branches=2).eval(),
                    backbone="tiny", class_names=names, input_size=64, recipe={"pool": "everyday_pool"},
                    metrics={"cam_thresholds": {"A": 0.3, "B": 0.3, "fused": 0.4}})
    return folder


@pytest.fixture(scope="module")
def viewer(everyday_checkpoints):
    return app.Viewer(CheckpointShelf(everyday_checkpoints), ExampleImages([REPO / "assets" / "examples", EVERYDAY]))


@pytest.fixture
def upload(tmp_path):
    """A photo that is no example: a crop of the portrait."""
    path = tmp_path / "portrait.jpg"
    Image.open(EVERYDAY / "grace_hopper.jpg").crop((50, 50, 400, 450)).save(path)
    return str(path)


STATUS = 8  # /explain's outputs: the cache, four panels, classes, baseline, δ, status, ...


def explain_new_image(viewer, path, model_picked, model=TEACHING):
    """What the page does with a new image: route it, then explain it with the routed model
    (at its δ and box threshold when routed). Returns (route_upload's outputs, explain_image's)."""
    routed = viewer.route_upload(path, model, model_picked)
    if isinstance(routed[0], str):
        model, box, delta = routed[0], routed[-2], routed[-1]
    else:
        box, delta = 0.2, 0.5
    return routed, app.ScriptEvents(viewer, app.PageEvents(viewer)).explain(path, model, delta, box, "read")


def test_the_page_opens_on_the_teaching_model_and_an_upload_goes_to_the_everyday_model(viewer, upload):
    assert viewer.models()[0] == TEACHING and viewer.shelf.everyday() == EVERYDAY_MODEL
    routed, outputs = explain_new_image(viewer, upload, model_picked=False)
    assert all(isinstance(panel, np.ndarray) and panel.ndim == 3 for panel in outputs[1:5])
    assert "Not made for this picture" not in outputs[STATUS]
    model, about, teaching_examples, everyday_examples, no_examples, box, delta = routed
    assert model == EVERYDAY_MODEL and delta == 0.6
    assert EVERYDAY_MODEL in about and "1,000" not in about  # the stand-in knows its own few classes
    assert everyday_examples["visible"] and not teaching_examples["visible"] and not no_examples["visible"]
    assert box == pytest.approx(0.4)  # the everyday model's validated box threshold
    assert outputs[0].explanation.model_name == EVERYDAY_MODEL


def test_a_model_the_user_picked_keeps_an_upload_and_says_it_was_not_made_for_it(viewer, upload):
    routed, outputs = explain_new_image(viewer, upload, model_picked=True)
    assert not any(isinstance(update, str) for update in routed)  # no model change
    assert outputs[0].explanation.model_name == TEACHING
    assert all(isinstance(panel, np.ndarray) for panel in outputs[1:5])
    status = outputs[STATUS]
    assert (f"**Not made for this picture:** this model knows only {len(example_class_names())} synthetic bird "
            "classes") in status and "try the everyday model" in status
    _, payload, *_ = app.PageEvents(viewer).explain_image(upload, TEACHING, 0.5, 0.2)
    assert payload["note"].startswith("**Not made for this picture:**")  # what the page's status line shows


def test_the_everyday_models_examples_are_its_photos_with_their_true_class(viewer):
    groups = viewer.examples.for_model(viewer.shelf.class_names(EVERYDAY_MODEL))
    assert [viewer.examples.groups[g].folder for g in groups] == [EVERYDAY]
    assert viewer.examples.for_model(viewer.shelf.class_names(TEACHING)) == [0]
    cat = viewer.example_files[groups[0]][0]
    _, outputs = explain_new_image(viewer, cat, model_picked=False, model=EVERYDAY_MODEL)
    assert outputs[0].explanation.model_name == EVERYDAY_MODEL and "true class: tabby" in outputs[STATUS]
    assert "Not made for this picture" not in outputs[STATUS]
    assert all(isinstance(panel, np.ndarray) for panel in outputs[1:5])


def test_every_shipped_everyday_photo_has_a_licence_line():
    readme = (REPO / "assets" / "README.md").read_text()
    for photo in sorted(EVERYDAY.glob("*.jpg")):
        assert f"`{photo.name}`" in readme, photo.name
        entry = readme.split(f"`{photo.name}`", 1)[1].split("\n  - ", 1)[0]  # up to the next photo's line
        assert "public domain" in entry or "CC0" in entry, photo.name


def test_the_everyday_models_cam_baseline_is_its_own_branch_a(viewer):
    baseline = f"{EVERYDAY_MODEL}{BRANCH_A}"
    assert viewer.baseline_choices(EVERYDAY_MODEL)["choices"] == [baseline]
    _, outputs = explain_new_image(viewer, viewer.example_files[1][1], model_picked=False, model=EVERYDAY_MODEL)
    cache, picture = viewer.comparison(outputs[0], outputs[0].explanation, baseline)
    assert isinstance(picture, np.ndarray)
    cam, acol = cache.baseline.output, cache.explanation.output
    assert cam.logits[0].shape == acol.logits[0].shape and len(cam.logits) == 1
    assert torch.allclose(cam.localization_maps[0], acol.localization_maps[0])  # the same branch A, shared
    assert viewer.shelf[baseline].model.heads[0] is viewer.shelf[EVERYDAY_MODEL].model.heads[0]
