"""The viewer's computing side: explaining, the fast re-explain path, drawing, the CLI."""

from dataclasses import replace

import numpy as np
import pytest
import torch
from PIL import Image

from acol.viewer.drawing import (DISPLAY_SIDE, compare_picture, feature_cell, four_panel_figure,
                          overlay_mask, page_pictures, render_panels, sweep_strip)
from acol.evaluation.explain import MAX_IMAGE_SIDE, Explainer
from acol.evaluation.words import branch_b_verdict, resolve_class, top_classes
from acol.viewer.explain_command import main
from acol.viewer.shelf import ExampleImages, content_digest
from acol.viewer.style import ERASED_COLOR, ERASED_OPACITY


@pytest.fixture(scope="module")
def acol_explainer(tiny_checkpoints):
    return Explainer.from_checkpoint(tiny_checkpoints / "tiny_acol.safetensors")


@pytest.fixture(scope="module")
def cam_explainer(tiny_checkpoints):
    return Explainer.from_checkpoint(tiny_checkpoints / "tiny_cam.safetensors")


def noise_image(width=120, height=80, seed=0):
    pixels = np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)
    return Image.fromarray(pixels)


def test_explain_draws_four_views_the_size_of_the_display_picture(acol_explainer):
    explanation = acol_explainer.explain(noise_image(120, 80), true_boxes=[[10, 10, 60, 50]])
    assert explanation.display.shape == (DISPLAY_SIDE * 80 // 120, DISPLAY_SIDE, 3)
    assert explanation.output.features.shape[-2:] == (8, 8)  # 64 px at stride 8
    panels = render_panels(explanation, box_threshold=0.2)
    for picture in (panels.branch_a, panels.erased, panels.branch_b, panels.fused):
        assert picture.shape == explanation.display.shape and picture.dtype == np.uint8
    assert 0 <= panels.iou <= 1 and "IoU" in panels.caption
    on_page = page_pictures(panels)
    assert len(on_page) == 4
    assert all(p.shape[0] == explanation.display.shape[0] and p.shape[1] > DISPLAY_SIDE for p in on_page)


def test_huge_images_are_shrunk_first_and_their_true_boxes_follow(acol_explainer):
    explanation = acol_explainer.explain(noise_image(3000, 1500), true_boxes=[[300, 150, 1500, 750]])
    assert explanation.image.size == (MAX_IMAGE_SIDE, MAX_IMAGE_SIDE // 2)
    assert np.allclose(explanation.true_boxes, [[102.4, 51.2, 512, 256]], atol=0.5)
    assert np.allclose(explanation.display_boxes(), [[38.4, 19.2, 192, 96]], atol=0.5)


def test_a_one_pixel_image_is_explained(acol_explainer):
    panels = render_panels(acol_explainer.explain(Image.new("RGB", (1, 1), "red")), 0.2)
    assert panels.fused.shape == (DISPLAY_SIDE, DISPLAY_SIDE, 3)


def test_the_erased_mask_is_drawn_blocky_at_feature_resolution():
    picture = np.full((40, 80, 3), 128, np.uint8)
    mask = torch.zeros(4, 8, dtype=torch.bool)
    mask[1, 2] = True  # the cell covering rows 10..19 and columns 20..29
    drawn = overlay_mask(picture, mask).astype(int)
    cell = drawn[11:20, 21:30]
    assert (cell == cell[0, 0]).all(), "an erased cell is painted as one flat block"
    assert np.abs(cell[0, 0] - (128 * (1 - ERASED_OPACITY) + ERASED_COLOR * ERASED_OPACITY)).max() <= 1, \
        "washed out in the erased colour"
    assert (drawn[1:10, 1:10] == 128).all(), "kept cells keep the picture"
    assert (drawn[10, :] != 128).all() and (drawn[:, 10] != 128).all(), "the feature grid is drawn"
    everywhere_else = np.ones((40, 80), bool)
    everywhere_else[10:20, 20:30] = False
    assert not (np.abs(drawn - (128 * (1 - ERASED_OPACITY) + ERASED_COLOR * ERASED_OPACITY)).sum(-1) < 2)[
        everywhere_else].any()


def test_the_erased_panel_matches_the_models_mask(acol_explainer):
    explanation = acol_explainer.explain(noise_image(), erase_threshold=0.5)
    mask = explanation.output.erase_masks[1][0]
    assert torch.equal(mask, explanation.output.localization_maps[0][0] >= 0.5)
    erased, display = render_panels(explanation, 0.2).erased, explanation.display
    height, width = erased.shape[:2]
    for row in range(8):
        for col in range(8):
            center = (2 * row + 1) * height // 16, (2 * col + 1) * width // 16
            assert (erased[center] != display[center]).any() == bool(mask[row, col])


def test_slider_and_class_changes_reuse_the_cached_features(acol_explainer):
    calls = {"backbone": 0, "head_a": 0}

    def counter(name):
        return lambda *_: calls.__setitem__(name, calls[name] + 1)
    hooks = [acol_explainer.model.backbone.register_forward_hook(counter("backbone")),
             acol_explainer.model.heads[0].register_forward_hook(counter("head_a"))]
    try:
        explanation = acol_explainer.explain(noise_image())
        assert calls == {"backbone": 1, "head_a": 1}
        moved = acol_explainer.reexplain(explanation, erase_threshold=0.3)
        other = acol_explainer.reexplain(moved, target_class=(explanation.target_class + 1) % 3)
        acol_explainer.sweep(other)
        assert calls == {"backbone": 1, "head_a": 1}, "re-explaining must not re-run the backbone or branch A"
    finally:
        for hook in hooks:
            hook.remove()
    assert moved.erase_threshold == 0.3 and moved.target_class == explanation.target_class
    assert other.erase_threshold == 0.3 and other.target_class == (explanation.target_class + 1) % 3
    assert other.output.features is explanation.output.features


def test_reexplaining_gives_what_a_full_run_gives(acol_explainer):
    explanation = acol_explainer.explain(noise_image(), erase_threshold=0.6)
    fast = acol_explainer.reexplain(explanation, target_class=2, erase_threshold=0.4)
    full = acol_explainer.explain(noise_image(), target_class=2, erase_threshold=0.4)
    for fast_map, full_map in zip(fast.output.localization_maps, full.output.localization_maps):
        assert torch.allclose(fast_map, full_map, atol=1e-5)
    assert torch.equal(fast.output.erase_masks[1], full.output.erase_masks[1])


def test_top_classes_are_branch_a_probabilities_in_order(acol_explainer):
    explanation = acol_explainer.explain(noise_image())
    top = top_classes(explanation, k=5)
    assert len(top) == 3  # only 3 classes
    probabilities = [p for _, _, p in top]
    assert probabilities == sorted(probabilities, reverse=True)
    assert sum(probabilities) == pytest.approx(1, abs=1e-5)
    assert top[0][0] == explanation.target_class
    expected = explanation.output.logits[0][0].softmax(-1)
    assert top[0][2] == pytest.approx(float(expected.max()))
    moved = acol_explainer.reexplain(explanation, erase_threshold=0.3)
    assert top_classes(moved) == top, "the probabilities do not move with the erase threshold"


def test_a_cam_model_has_no_erasing_and_still_draws(cam_explainer):
    explanation = cam_explainer.explain(noise_image(), true_boxes=[[0, 0, 60, 40]])
    assert not cam_explainer.is_acol and explanation.num_branches == 1
    panels = render_panels(explanation, 0.2)
    assert panels.erased is None and panels.branch_b is None and panels.iou is not None
    on_page = page_pictures(panels)
    assert all(picture is not None and picture.ndim == 3 for picture in on_page)
    other = cam_explainer.reexplain(explanation, target_class=1)
    assert other.target_class == 1
    assert len(four_panel_figure(panels).axes) >= 4


def test_sweep_strip_and_cam_comparison(acol_explainer, cam_explainer):
    explanation = acol_explainer.explain(noise_image(), true_boxes=[[10, 10, 60, 50]])
    strip = sweep_strip(acol_explainer.sweep(explanation, deltas=(0.3, 0.6, 0.9)))
    assert strip.ndim == 3 and strip.shape[1] > 3 * strip.shape[0] // 2
    baseline = cam_explainer.explain(explanation.image, explanation.true_boxes, explanation.target_class)
    assert baseline.target_class == explanation.target_class
    picture = compare_picture(baseline, explanation, 0.39, 0.66)
    assert picture.ndim == 3 and picture.shape[1] > 2 * explanation.display.shape[1]


def test_a_click_on_the_erased_panel_finds_the_cell_drawn_there(acol_explainer):
    explanation = acol_explainer.explain(noise_image(120, 80))  # shown at 384 x 256, an 8x8 grid
    assert feature_cell(explanation, 0, 0) == (0, 0)
    assert feature_cell(explanation, 383, 255) == (7, 7)
    assert feature_cell(explanation, 5 * 48 + 24, 2 * 32 + 16) == (2, 5)  # the middle of row 2, column 5
    assert feature_cell(explanation, 384 + 10, 100) is None, "the colour key right of the picture is no cell"
    mask = torch.zeros(8, 8, dtype=torch.bool)
    mask[2, 5] = True
    drawn = overlay_mask(explanation.display, mask)
    changed = np.argwhere((drawn != overlay_mask(explanation.display, mask & False)).any(-1))
    assert {feature_cell(explanation, x, y) for y, x in changed} == {(2, 5)}, "the cell painted is the cell found"


def test_erasing_cells_by_hand_reruns_only_branch_b_and_a_threshold_goes_back_to_delta(acol_explainer):
    explanation = acol_explainer.explain(noise_image())
    mask = explanation.output.erase_masks[1][0]
    row, col = map(int, np.argwhere(~mask.numpy())[0])
    calls = []
    hook = acol_explainer.model.backbone.register_forward_hook(lambda *args: calls.append(1))
    try:
        toggled = acol_explainer.toggle_cell(explanation, row, col)
    finally:
        hook.remove()
    assert not calls and toggled.erased_by_hand
    expected = mask.clone()
    expected[row, col] = True
    assert torch.equal(toggled.output.erase_masks[1][0], expected)
    assert torch.equal(toggled.output.class_maps[0], explanation.output.class_maps[0])
    assert "by hand" in render_panels(toggled, 0.2).caption and "by hand" in branch_b_verdict(toggled)
    back = acol_explainer.toggle_cell(toggled, row, col)
    assert torch.equal(back.output.erase_masks[1][0], mask) and back.erased_by_hand
    reset = acol_explainer.reexplain(toggled)
    assert torch.equal(reset.output.erase_masks[1][0], mask) and not reset.erased_by_hand
    assert not acol_explainer.reexplain(toggled, erase_threshold=0.3).erased_by_hand
    assert not torch.equal(explanation.output.erase_masks[1][0], expected), "the old explanation is unchanged"
    with pytest.raises(ValueError, match="outside the 8x8"):
        acol_explainer.toggle_cell(explanation, 8, 0)


def test_branch_b_verdict_is_its_top_three_on_the_erased_features(acol_explainer, cam_explainer):
    explanation = acol_explainer.explain(noise_image())
    b = top_classes(explanation, 3, branch=1)
    expected = explanation.output.logits[1][0].softmax(-1)
    assert [i for i, _, _ in b] == expected.argsort(descending=True)[:3].tolist()
    assert sum(p for _, _, p in top_classes(explanation, 9, branch=1)) == pytest.approx(1)
    verdict = branch_b_verdict(explanation)
    assert b[0][1] in verdict and f"{b[0][2]:.0%}" in verdict and "δ = 0.60" in verdict
    assert ("still says" in verdict) == (b[0][0] == explanation.target_class)
    assert "no branch B" in branch_b_verdict(cam_explainer.explain(noise_image()))


def test_a_model_describes_itself_from_its_checkpoint_or_its_validation_figures(acol_explainer):
    config = dict(acol_explainer.config, description="Trained on 4 synthetic classes; A finds heads.")
    assert Explainer(acol_explainer.model, config).description == "Trained on 4 synthetic classes; A finds heads."
    maps = {"A": {"top1_cls": 91.0, "max_box_acc_v2": 40.0}, "fused": {"max_box_acc_v2": 45.5}}
    config = dict(acol_explainer.config, description="", recipe={"data": "../shared/data/cub50"},
                  metrics={"validation": {"split": "test", "maps": maps}})
    summarized = Explainer(acol_explainer.model, config)
    assert summarized.known_classes == "3 bird species"
    assert "91.0%" in summarized.description and "45.5%" in summarized.description
    assert "No validation figures" in Explainer(acol_explainer.model, dict(config, metrics={})).description


def test_an_unlikely_top_class_gets_a_note_on_what_the_model_knows(acol_explainer):
    explanation = acol_explainer.explain(noise_image())
    sure = replace(explanation, probabilities=torch.tensor([0.9, 0.05, 0.05]))
    unsure = replace(explanation, probabilities=torch.tensor([0.19, 0.01, 0.0]))  # 3 classes: as if more
    assert acol_explainer.doubt(sure) == ""
    note = acol_explainer.doubt(unsure)
    assert "only 19%" in note and "knows only its 3 bird species" in note and "where it looks" in note


def test_resolve_class_by_index_name_or_unique_part():
    names = ["Black footed Albatross", "Laysan Albatross", "Least Auklet"]
    assert resolve_class("1", names) == 1
    assert resolve_class("least auklet", names) == 2
    assert resolve_class("Laysan", names) == 1
    with pytest.raises(ValueError, match="ambiguous"):
        resolve_class("Albatross", names)
    with pytest.raises(ValueError, match="out of range"):
        resolve_class("7", names)


def test_examples_know_their_true_boxes_by_content(tmp_path):
    folder = tmp_path / "examples"
    folder.mkdir()
    noise_image().save(folder / "a.png")
    noise_image(seed=1).save(folder / "b.png")
    (folder / "labels.csv").write_text("path,label,x0,y0,x1,y1\na.png,red,1,2,30,40\nb.png,blue,,,,\n")
    examples = ExampleImages([folder])
    assert len(examples.paths) == 2
    copy = tmp_path / "uploaded_copy.png"
    copy.write_bytes((folder / "a.png").read_bytes())
    example = examples.find(content_digest(copy))
    assert np.array_equal(example.true_boxes, [[1, 2, 30, 40]]) and example.label == "red"
    unboxed = examples.find(content_digest(folder / "b.png"))
    assert unboxed.label == "blue" and unboxed.true_boxes.shape == (0, 4)
    assert examples.find(content_digest(tmp_path / "uploaded_copy.png")).group == 0
    noise_image(seed=2).save(tmp_path / "mine.png")
    assert examples.find(content_digest(tmp_path / "mine.png")) is None, "an upload is no example"


def test_examples_from_a_cub_layout_root(tmp_path):
    (tmp_path / "images" / "001.Red_Bird").mkdir(parents=True)
    noise_image().save(tmp_path / "images" / "001.Red_Bird" / "r.jpg")
    for name, text in {"images.txt": "1 001.Red_Bird/r.jpg", "image_class_labels.txt": "1 1",
                       "train_test_split.txt": "1 0", "classes.txt": "1 001.Red_Bird",
                       "bounding_boxes.txt": "1 5 6 20 30"}.items():
        (tmp_path / name).write_text(text + "\n")
    examples = ExampleImages([tmp_path])
    assert examples.paths == [str(tmp_path / "images" / "001.Red_Bird" / "r.jpg")]
    example = examples.find(content_digest(examples.paths[0]))
    assert np.array_equal(example.true_boxes, [[5, 6, 25, 36]]) and example.label == "Red Bird"
    assert examples.groups[0].belongs_to(["Blue Bird", "Red Bird"]) and not examples.groups[0].belongs_to(["Blue Bird"])


def test_cli_writes_the_four_panel_png(tiny_checkpoints, tmp_path, capsys):
    noise_image().save(tmp_path / "in.png")
    out = tmp_path / "figure" / "out.png"
    code = main([str(tmp_path / "in.png"), "-o", str(out),
                 "--checkpoint", str(tiny_checkpoints / "tiny_acol.safetensors"), "--class", "blue",
                 "--erase-threshold", "0.4", "--box-threshold", "0.3", "--true-box", "10", "10", "60", "50"])
    assert code == 0
    with Image.open(out) as figure:
        assert figure.format == "PNG" and figure.width > 3 * figure.height
    printed = capsys.readouterr().out
    assert "blue crest" in printed and "δ = 0.40" in printed and "IoU" in printed


def test_cli_reports_a_bad_image_without_a_traceback(tiny_checkpoints, tmp_path, capsys):
    (tmp_path / "bad.png").write_bytes(b"not an image")
    code = main([str(tmp_path / "bad.png"), "-o", str(tmp_path / "out.png"),
                 "--checkpoint", str(tiny_checkpoints / "tiny_acol.safetensors")])
    assert code == 1 and "bad.png" in capsys.readouterr().err
    assert not (tmp_path / "out.png").exists()


def test_cli_reports_an_unwritable_output_without_a_traceback(tiny_checkpoints, tmp_path, capsys):
    noise_image().save(tmp_path / "in.png")
    (tmp_path / "a_file").write_text("not a folder")
    code = main([str(tmp_path / "in.png"), "-o", str(tmp_path / "a_file" / "out.png"),
                 "--checkpoint", str(tiny_checkpoints / "tiny_acol.safetensors")])
    assert code == 1 and capsys.readouterr().err.startswith(f"error: cannot write {tmp_path / 'a_file'}")


def test_cli_without_a_checkpoint_picks_the_model_the_page_would_and_says_when_a_model_is_out_of_its_depth(
        tmp_path, capsys):
    """A photo goes to the everyday model; a bundled synthetic example to the teaching model; and a
    model given a picture it was not made for says so, as the page does, on the figure too."""
    from conftest import REPO
    photo = tmp_path / "portrait.jpg"
    Image.open(REPO / "assets" / "everyday" / "grace_hopper.jpg").crop((40, 40, 420, 460)).save(photo)
    assert main([str(photo), "-o", str(tmp_path / "photo.png")]) == 0
    printed = capsys.readouterr().out
    assert printed.startswith("model: everyday_acol_efficientnet_lite0") and "Not made for" not in printed
    example = REPO / "assets" / "examples" / "synthetic_2_0005.png"
    assert main([str(example), "-o", str(tmp_path / "example.png")]) == 0
    printed = capsys.readouterr().out
    assert printed.startswith("model: synthetic_acol") and "true class: blue-crest" in printed
    teaching = next((REPO / "checkpoints").glob("synthetic_acol_*[0-9].safetensors"))
    assert main([str(photo), "-o", str(tmp_path / "out.png"), "--checkpoint", str(teaching)]) == 0
    printed = capsys.readouterr().out
    assert "Not made for this picture: this model knows only 5 synthetic bird classes" in printed  # 4 crests, no-crest
    from acol.viewer.drawing import render_panels
    from acol.evaluation.explain import Explainer
    explainer = Explainer.from_checkpoint(teaching)
    explanation = explainer.explain(Image.open(photo).convert("RGB"))
    panels = render_panels(explanation, 0.3, explainer.note(explanation))
    title = four_panel_figure(panels)._suptitle.get_text()
    assert "Not made for this picture" in title, "the figure says it too"


def test_the_erased_colour_is_no_colour_a_teaching_class_is_named_after():
    from matplotlib.colors import to_rgb

    from conftest import example_class_names
    for name in example_class_names():
        named = np.array(to_rgb(name.split("-")[0])) * 255
        assert np.abs(named - ERASED_COLOR).max() > 150, name
