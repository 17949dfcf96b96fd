"""The viewer and the everyday model: uploads go to it unless the user picked a model, its photos
are its examples, its CAM baseline is its own branch A, and a model shown a picture it was not
made for says so whatever its confidence."""

import shutil

import numpy as np
import pytest
import torch
from PIL import Image

from acol.viewer.page import Page
from acol.viewer.view import Session
from acol.viewer.scripts import Scripts
from acol.viewer.shelf import BRANCH_A, CheckpointShelf, ExampleImages
from conftest import REPO, example_class_names

EVERYDAY = REPO / "assets" / "everyday"
TEACHING, EVERYDAY_MODEL = "tiny_synthetic_acol", "tiny_everyday_acol"


@pytest.fixture(scope="module")
def everyday_checkpoints(tiny_checkpoints, tmp_path_factory):
    """The teaching model and a tiny stand-in for the everyday model (its recipe names the
    everyday pool; its classes include the labels of assets/everyday)."""
    from acol import ACoL, create_backbone
    from acol.core.checkpoint import save_checkpoint
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
def page(everyday_checkpoints):
    return Page(CheckpointShelf(everyday_checkpoints), ExampleImages([REPO / "assets" / "examples", EVERYDAY]))


@pytest.fixture
def upload(tmp_path):
    """A photo that is no example: a crop of the portrait."""
    path = tmp_path / "portrait.jpg"
    Image.open(EVERYDAY / "grace_hopper.jpg").crop((50, 50, 400, 450)).save(path)
    return str(path)


def test_the_page_opens_on_the_teaching_model_and_an_upload_goes_to_the_everyday_model(page, upload):
    assert page.models()[0] == TEACHING and page.shelf.everyday() == EVERYDAY_MODEL
    view = page.open_upload(Session(), upload, TEACHING, 0.5, 0.2)
    assert view.model == EVERYDAY_MODEL and view.delta.value == 0.6
    assert EVERYDAY_MODEL in view.about and "1,000" not in view.about  # the stand-in knows its own few classes
    assert view.examples_shown == [False, True] and view.no_examples.visible is False
    assert view.box == pytest.approx(0.4)  # the everyday model's validated box threshold
    assert view.session.explanation.model_name == EVERYDAY_MODEL
    assert view.payload["model"] == EVERYDAY_MODEL and view.payload["view"]["box_threshold"] == pytest.approx(0.4)
    assert "Not made for this picture" not in view.payload["note"]
    reply = Scripts(page).explain(Session(), upload, EVERYDAY_MODEL, 0.6, 0.4)
    assert all(isinstance(reply.outputs[name], np.ndarray) for name in Scripts.NAMES)


def test_a_model_the_user_picked_keeps_an_upload_and_says_it_was_not_made_for_it(page, upload):
    view = page.open_upload(Session(model_picked=True), upload, TEACHING, 0.5, 0.2)
    assert view.model == TEACHING and view.session.explanation.model_name == TEACHING
    assert view.payload["note"].startswith("**Not made for this picture:**")  # what the page's status line shows
    reply = Scripts(page).explain(Session(model_picked=True), upload, TEACHING, 0.5, 0.2)
    assert all(isinstance(reply.outputs[name], np.ndarray) for name in Scripts.NAMES)
    status = reply.outputs["status"]
    assert (f"**Not made for this picture:** this model knows only {len(example_class_names())} synthetic bird "
            "classes") in status and "try the everyday model" in status


def test_the_everyday_models_examples_are_its_photos_with_their_true_class(page):
    groups = page.examples_for(EVERYDAY_MODEL)
    assert [page.examples.groups[g].folder for g in groups] == [EVERYDAY]
    assert page.examples_for(TEACHING) == [0]
    view = page.open_example(Session(), groups[0], 0, EVERYDAY_MODEL, 0.6, 0.4)
    assert view.image == page.example_files[groups[0]][0]
    assert view.session.explanation.model_name == EVERYDAY_MODEL and "true class: tabby" in view.payload["caption"]
    assert "Not made for this picture" not in view.payload["note"]


def test_an_example_click_is_answered_from_what_the_page_computed_at_start_up(page):
    hits = page.answers.hits
    first = page.open_example(Session(), 1, 2, EVERYDAY_MODEL, 0.6, 0.4)
    again = page.open_example(Session(), 1, 2, EVERYDAY_MODEL, 0.6, 0.4)
    assert page.answers.hits == hits + 2, "both clicks found the example precomputed"
    assert first.answer is again.answer and first.session.explanation is again.session.explanation


def test_every_shipped_everyday_photo_has_a_licence_line():
    readme = (REPO / "assets" / "README.md").read_text()
    for photo in sorted(EVERYDAY.glob("*.jpg")):
        assert f"`{photo.name}`" in readme, photo.name
        entry = readme.split(f"`{photo.name}`", 1)[1].split("\n  - ", 1)[0]  # up to the next photo's line
        assert "public domain" in entry or "CC0" in entry, photo.name


def test_the_everyday_models_cam_baseline_is_its_own_branch_a(page):
    baseline = f"{EVERYDAY_MODEL}{BRANCH_A}"
    assert page.baseline_choices(EVERYDAY_MODEL).choices == [baseline]
    view = page.open_example(Session(), 1, 1, EVERYDAY_MODEL, 0.6, 0.4)
    session, picture = page.comparison(view.session, view.session.explanation, baseline)
    assert isinstance(picture, np.ndarray)
    cam, acol = session.baseline.output, session.explanation.output
    assert cam.logits[0].shape == acol.logits[0].shape and len(cam.logits) == 1
    assert torch.allclose(cam.localization_maps[0], acol.localization_maps[0])  # the same branch A, shared
    assert page.shelf[baseline].model.heads[0] is page.shelf[EVERYDAY_MODEL].model.heads[0]
