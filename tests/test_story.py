"""Whether a picture tells ACoL's story (acol.story): its facts, its words, its figures."""

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from acol.evaluation.story import Story, choose_examples, peak_pixel, story_figures, story_of, story_words, summarize
from acol.data.synthetic import Parts

REPO = Path(__file__).resolve().parents[1]
NAMES = ["red-crest", "blue-crest", "yellow-crest", "green-crest"]
HOLDS = Story(a_part="head", b_part="body", b_class=1, target_class=1, true_class=1, body_class=1,
              b_on_erased=False, fused_iou=0.72)


def test_parts_survive_a_png_with_the_body_class_in_it(tmp_path):
    head = np.zeros((20, 30), dtype=bool)
    head[2:5, 3:7] = True
    body = np.zeros_like(head)
    body[5:15, 3:25] = True
    Parts(head, body, "blue-crest").save(tmp_path / "parts.png")
    loaded = Parts.load(tmp_path / "parts.png")
    assert (loaded.head == head).all() and (loaded.body == body).all() and loaded.body_class == "blue-crest"
    assert [loaded.at(4, 3), loaded.at(10, 10), loaded.at(28, 18)] == ["head", "body", "outside"]
    assert loaded.resized((60, 40)).at(8, 6) == "head"  # twice the size: the same part under the same spot


def test_the_story_holds_only_when_every_fact_does():
    assert HOLDS.holds and story_words(HOLDS, NAMES).startswith("Here the story holds")
    for broken in (replace(HOLDS, a_part="body"), replace(HOLDS, b_part="head"), replace(HOLDS, b_part="outside"),
                   replace(HOLDS, b_class=2), replace(HOLDS, fused_iou=0.49)):
        assert broken.holds is False
        assert story_words(broken, NAMES).startswith("Here the story does not hold")
    assert replace(HOLDS, b_class=None).holds is None, "a CAM model has no B, so no story"


def test_the_words_say_which_fact_fails_and_why():
    assert "B found the head too" in story_words(replace(HOLDS, b_part="head"), NAMES)
    assert "A's map peaks on the body, not on the head" in story_words(replace(HOLDS, a_part="body"), NAMES)
    borrowed = replace(HOLDS, body_class=3, b_class=3)
    assert "this body shows the stripes of green-crest, not of blue-crest, so B, which sees only the body, says " \
           "green-crest" in story_words(borrowed, NAMES)
    assert "IoU 0.31, under 0.5" in story_words(replace(HOLDS, fused_iou=0.31), NAMES)


def test_without_parts_the_story_is_told_from_the_cells_and_b_s_class():
    upload = replace(HOLDS, a_part=None, b_part=None, body_class=None, true_class=None, fused_iou=None)
    assert upload.holds, "B names A's class, off the erased cells"
    assert "B's map peaks off the cells A's map made erased" in story_words(upload, NAMES)
    on_erased = replace(upload, b_on_erased=True)
    assert not on_erased.holds and "B's map peaks on an erased cell" in story_words(on_erased, NAMES)
    assert not replace(upload, b_class=0).holds


def test_a_picture_s_facts_are_read_where_the_page_draws_its_maps(tiny_checkpoints):
    from acol.evaluation.explain import Explainer
    explainer = Explainer.from_checkpoint(tiny_checkpoints / "tiny_synthetic_acol.safetensors")
    picture = Image.open(REPO / "assets" / "examples" / "synthetic_2_0000.png").convert("RGB")
    explanation = explainer.explain(picture, [[0, 0, picture.width, picture.height]])
    size = (picture.height, picture.width)
    peaks = [peak_pixel(explanation.output.localization_maps[branch][0], size) for branch in (0, 1)]
    around = lambda x, y: np.hypot(*np.meshgrid(np.arange(size[1]) + 0.5 - x, np.arange(size[0]) + 0.5 - y)) < 2
    head, body = around(*peaks[0]), around(*peaks[1]) & ~around(*peaks[0])
    story = story_of(replace(explanation, parts=Parts(head, body)), box_threshold=0.2)
    assert story.a_part == "head" and story.b_part in ("body", "head")  # B's peak may coincide with A's
    swapped = story_of(replace(explanation, parts=Parts(body, head)), box_threshold=0.2)
    assert swapped.a_part == "body"
    assert story.fused_iou is not None and story.target_class == explanation.target_class


def test_the_figures_count_the_stories(tiny_checkpoints):
    from acol.evaluation.explain import Explainer
    from acol.data.synthetic import SyntheticParts
    explainer = Explainer.from_checkpoint(tiny_checkpoints / "tiny_synthetic_acol.safetensors")
    figures = story_figures(explainer, SyntheticParts(8, 4, 64, seed=5), progress=False)
    assert figures["pictures"] == 8
    for key in ("a_peak_on_head", "b_peak_on_body", "b_right", "found", "story_holds"):
        assert 0 <= figures[key] <= 100 and (figures[key] * 8 / 100) == pytest.approx(round(figures[key] * 8 / 100))
    stories = [HOLDS, replace(HOLDS, body_class=0, b_class=0), replace(HOLDS, a_part="body")]
    assert summarize(stories) == {"pictures": 3, "a_peak_on_head": 66.7, "found": 100.0, "b_peak_on_body": 100.0,
                                  "b_right": 66.7, "b_right_on_honest_bodies": 100.0, "honest_bodies": 2,
                                  "story_holds": 33.3}


def test_the_story_command_draws_pictures_at_the_side_the_models_training_drew_them_at(tiny_checkpoints, monkeypatch):
    """The model's input size * 256 / 224 (146 px for the 128-px teaching model), unless told."""
    from acol.core.checkpoint import load_checkpoint
    from acol.data.synthetic import SyntheticParts
    from acol.evaluation import story_command
    checkpoint = tiny_checkpoints / "tiny_synthetic_acol.safetensors"
    sizes, drawn = [], SyntheticParts.for_classes
    monkeypatch.setattr(story_command.SyntheticParts, "for_classes",
                        lambda names, count, size, seed: sizes.append(size) or drawn(names, count, size, seed=seed))
    assert story_command.main([str(checkpoint), "--count", "2"]) == 0
    assert story_command.main([str(checkpoint), "--count", "2", "--image-size", "64"]) == 0
    input_size = load_checkpoint(checkpoint)[1]["input_size"]
    assert sizes == [round(input_size * 256 / 224), 64]


def test_the_story_command_prints_one_row_per_checkpoint(tiny_checkpoints, tmp_path, capsys):
    import json

    from acol.evaluation.story_command import main
    out = tmp_path / "story.json"
    assert main([str(tiny_checkpoints / "tiny_synthetic_acol.safetensors"),
                 str(tiny_checkpoints / "tiny_synthetic_cam.safetensors"),
                 "--seed", "9", "--count", "4", "--image-size", "64", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "4 pictures of generator seed 9" in printed
    assert "| tiny_synthetic_acol | 0.5 |" in printed and "| tiny_synthetic_cam |" in printed
    models = json.loads(out.read_text())["models"]
    assert models["tiny_synthetic_acol"]["pictures"] == 4 and "b_peak_on_body" not in models["tiny_synthetic_cam"]
    assert main([str(tmp_path / "missing.safetensors")]) == 1


def test_examples_are_chosen_by_their_stories_a_class_each_then_failures_worth_seeing():
    def story(label, **facts):
        return replace(HOLDS, **{"true_class": label, "target_class": label, "b_class": label, "body_class": label,
                                 **facts})
    stories = [story(0, b_part="head"), story(1), story(0), story(1), story(2, body_class=3, b_class=3),
               story(2), story(0, b_part="head")]
    assert choose_examples(stories, 6) == [2, 1, 5, 4, 0, 3], \
        "classes 0, 1, 2 where it holds; a borrowed body B names; B on the head; then more that hold"
    assert choose_examples(stories, 2) == [2, 1]


def test_the_story_command_writes_the_chosen_examples(tiny_checkpoints, tmp_path):
    import csv

    from acol.evaluation.story_command import main
    assert main([str(tiny_checkpoints / "tiny_synthetic_acol.safetensors"), "--split", "examples", "--count", "12",
                 "--image-size", "64", "--write-examples", str(tmp_path), "--examples", "3"]) == 0
    with open(tmp_path / "labels.csv", newline="") as file:
        rows = list(csv.DictReader(file))
    assert 1 <= len(rows) <= 3 and all((tmp_path / "parts" / row["path"]).is_file() for row in rows)
    assert all(row["path"].startswith("synthetic_2_") for row in rows), "the examples' seed"
