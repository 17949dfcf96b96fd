"""What the page computes is keyed by what it depends on: content, model, class (and the δ an
explanation alone is erased at), never the sliders, which only choose the view a payload opens on."""

import numpy as np
import pytest
from PIL import Image

import acol.viewer.answers
from acol.viewer.answers import ScriptPictures, pictures_key
from acol.viewer.page import Page
from acol.viewer.view import Session
from acol.viewer.scripts import Scripts
from acol.viewer.shelf import CheckpointShelf, ExampleImages
from conftest import REPO

ACOL, CAM, TEACHING = "tiny_acol", "tiny_cam", "tiny_synthetic_acol"


@pytest.fixture(scope="module")
def page(tiny_checkpoints):
    return Page(CheckpointShelf(tiny_checkpoints), ExampleImages([REPO / "assets" / "examples"]))


def a_photo(path, seed=5):
    Image.fromarray(np.random.default_rng(seed).integers(0, 256, (60, 80, 3), dtype=np.uint8)).save(path)
    return str(path)


@pytest.mark.parametrize("delta, box", [(0.5, 0.2), (0.6, 0.2), (0.15, 0.85), (0.6, 0.37)])
def test_an_example_clicked_at_any_slider_position_is_answered_from_the_start_up_answers(page, delta, box):
    computed, found = page.answers.misses, page.answers.hits
    view = page.open_example(Session(), 0, 1, TEACHING, delta, box)
    assert page.answers.misses == computed and page.answers.hits == found + 1, "a cache hit, nothing computed"
    assert view.payload["view"] == {"delta": delta, "box_threshold": box, "by_hand": False}
    assert delta in view.payload["deltas"] and view.payload["states"], "the payload holds the δ it opens on"


def test_the_payload_opens_at_each_events_sliders_and_shares_everything_else(page, tmp_path, monkeypatch):
    at_model = page.open_example(Session(), 0, 2, TEACHING, 0.5, 0.2)
    moved = page.open_example(Session(), 0, 2, TEACHING, 0.6, 0.35)
    assert at_model.answer is moved.answer and at_model.payload["view"] != moved.payload["view"]
    assert at_model.payload["states"] is moved.payload["states"], "a shallow copy: the maps are shared"
    assert "view" in moved.answer.payload and moved.answer.payload["view"]["delta"] == 0.5, "the cached one untouched"
    thresholds = moved.payload["box_thresholds"]
    assert {round(0.05 * step, 2) for step in range(21)} <= set(thresholds), "every step of the box slider"
    monkeypatch.setitem(page.shelf[ACOL].config["metrics"]["cam_thresholds"], "fused", 0.37)  # validated: off the steps
    upload = page.open_upload(Session(model_picked=True), a_photo(tmp_path / "photo.png"), ACOL, 0.6, 0.2)
    assert 0.37 in upload.payload["box_thresholds"], "and the model's own box threshold"


def test_an_upload_at_a_moved_delta_is_the_same_answer_as_at_the_models_own(page, tmp_path):
    photo = a_photo(tmp_path / "photo.png", seed=8)
    first = page.open_upload(Session(model_picked=True), photo, ACOL, 0.2, 0.2)
    computed = page.answers.misses
    again = page.open_upload(Session(model_picked=True), photo, ACOL, 0.75, 0.5)
    assert page.answers.misses == computed and again.answer is first.answer
    assert again.session.explanation.erase_threshold == 0.6, "the session keeps the model's own erasing"
    assert again.payload["view"]["delta"] == 0.75


def test_the_page_exports_and_compares_what_it_shows_at_a_moved_delta(page, tmp_path):
    view = page.open_upload(Session(model_picked=True), a_photo(tmp_path / "photo.png", seed=9), ACOL, 0.3, 0.2)
    shown = page.shown(view.session, 0.3, by_hand=False)
    assert shown.erase_threshold == 0.3 and not shown.erased_by_hand
    assert page.shown(view.session, 0.3, by_hand=False) is shown, "computed once, then cached"
    assert page.shown(view.session, 0.6, by_hand=False) is view.session.explanation


def test_a_scripts_delta_move_computes_neither_a_payload_nor_how_it_learned(page, tmp_path, monkeypatch):
    scripts = Scripts(page)
    reply = scripts.explain(Session(), a_photo(tmp_path / "photo.png", seed=10), TEACHING, 0.5, 0.2)
    assert reply.session.explanation.erase_threshold == 0.5

    def never(*args, **kwargs):
        raise AssertionError("a script's δ move replayed the model's history")
    monkeypatch.setattr(acol.viewer.answers, "learning_payload", never)
    monkeypatch.setattr(acol.viewer.answers, "page_payload", never)
    moved = scripts.set_erase_threshold(reply.session, 0.25, 0.2, None)
    assert moved.session.explanation.erase_threshold == 0.25 and "δ = 0.25" in moved.outputs["status"]
    assert isinstance(moved.outputs["erased"], np.ndarray)


def test_the_scripts_pictures_are_cached_within_the_answers_memory_bound(page, tmp_path):
    scripts = Scripts(page)
    reply = scripts.explain(Session(), a_photo(tmp_path / "photo.png", seed=11), ACOL, 0.45, 0.3)
    answer = page.erased_at(reply.session.explanation, 0.45)
    pictures = page.answers.get(pictures_key(answer.key, 0.3), lambda: pytest.fail("not cached"))
    assert isinstance(pictures, ScriptPictures) and reply.outputs["fused"] is pictures.pictures[3]
    assert page.answers.size_of(pictures_key(answer.key, 0.3)) == pictures.size_bytes() >= sum(
        picture.nbytes for picture in pictures.pictures) > 0, "counted in the memory bound"
    held = page.answers.held_bytes
    again = scripts.set_box_threshold(reply.session, 0.3)
    assert page.answers.held_bytes == held and again.outputs["fused"] is pictures.pictures[3], "drawn once"
