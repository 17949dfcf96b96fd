"""Specification of acol.synthetic: head+body "birds" that make ACoL's story testable."""

import time
from dataclasses import replace

import numpy as np
import pytest
import torch
from PIL import Image
from scipy import ndimage
from torchvision import tv_tensors

from acol.data.readers import CSVBoxDataset
from acol.data.transforms import train_transform
from acol.data.birds import HEAD_COLORS, MAX_CLASSES, mask_box
from acol.data.synthetic import NO_CREST, Parts, SyntheticParts, write_examples


def nearest_mean_accuracy(features: np.ndarray, labels: np.ndarray, num_train: int) -> float:
    """Fit one mean per class on the first num_train rows (standardised), score the rest."""
    mean, std = features[:num_train].mean(0), features[:num_train].std(0) + 1e-6
    features = (features - mean) / std
    train, test = features[:num_train], features[num_train:]
    class_means = np.stack([train[labels[:num_train] == k].mean(0) for k in np.unique(labels)])
    predictions = ((test[:, None] - class_means[None]) ** 2).sum(-1).argmin(1)
    return float((predictions == labels[num_train:]).mean())


def head_colour(sample) -> np.ndarray:
    """Mean RGB of the head pixels."""
    return sample.image[sample.head_mask].astype(np.float32).mean(0)


def body_features(sample) -> np.ndarray:
    """What a body alone says: its tint (mean chroma) and stripe orientation (structure tensor)."""
    pixels = sample.image.astype(np.float32)
    mean = pixels[sample.body_mask].mean(0)
    inside = ndimage.binary_erosion(sample.body_mask, iterations=2)  # no gradients from the outline
    gy, gx = np.gradient(ndimage.gaussian_filter(pixels.mean(2), 1))
    jxx, jyy, jxy = (gx * gx)[inside].sum(), (gy * gy)[inside].sum(), (gx * gy)[inside].sum()
    # Doubled-angle orientation, so stripes at 0 and 180 degrees agree.
    return np.array([*(mean - mean.mean()), (jxx - jyy) / (jxx + jyy), 2 * jxy / (jxx + jyy)])


def test_items_follow_the_common_dataset_format():
    dataset = SyntheticParts(6, num_classes=3, image_size=96, seed=1)
    image, target = dataset[4]
    assert isinstance(image, tv_tensors.Image) and image.dtype == torch.uint8 and image.shape == (3, 96, 96)
    assert target["label"] == 1 == dataset.labels[4]
    assert target["boxes"].shape == (1, 4) and target["boxes"].format == tv_tensors.BoundingBoxFormat.XYXY
    assert isinstance(target["image_id"], str) and isinstance(target["path"], str)
    assert target["head_mask"].dtype == torch.bool and target["head_mask"].shape == (96, 96)
    assert dataset.num_classes == 3 and dataset.class_names == ["red-crest", "blue-crest", "yellow-crest"]
    assert dataset.labels == [0, 1, 2, 0, 1, 2] and len(dataset) == 6


def test_rejects_more_classes_than_head_designs():
    with pytest.raises(ValueError, match="num_classes"):
        SyntheticParts(4, num_classes=MAX_CLASSES + 1)


def test_same_seed_and_index_give_identical_pixels_different_seed_does_not():
    first, again, other = SyntheticParts(10, seed=7), SyntheticParts(10, seed=7), SyntheticParts(10, seed=8)
    assert np.array_equal(first.render(9).image, again.render(9).image)  # random access, any order
    assert np.array_equal(first[3][0], again[3][0])
    assert not np.array_equal(first.render(3).image, other.render(3).image)
    assert not np.array_equal(first.render(3).image, first.render(7).image)


def test_box_tightly_encloses_head_and_body():
    dataset = SyntheticParts(40, num_classes=8, seed=2)
    for index in range(len(dataset)):
        sample = dataset.render(index)
        assert sample.head_mask.any() and sample.body_mask.any()
        assert not (sample.head_mask & sample.body_mask).any()
        assert sample.box == mask_box(sample.head_mask | sample.body_mask)
        # The head touches the body: they are one object, not two.
        assert (ndimage.binary_dilation(sample.head_mask, iterations=2) & sample.body_mask).any()


def test_head_is_a_small_part_of_the_object():
    dataset = SyntheticParts(40, num_classes=8, seed=3)
    for index in range(len(dataset)):
        sample = dataset.render(index)
        x0, y0, x1, y1 = sample.box
        head_area, body_area = sample.head_mask.sum(), sample.body_mask.sum()
        assert body_area >= 4 * head_area
        assert 0.015 <= head_area / ((x1 - x0) * (y1 - y0)) <= 0.12


def test_head_colour_and_shape_identify_the_class():
    dataset = SyntheticParts(64, num_classes=8, seed=4)
    samples = [dataset.render(i) for i in range(len(dataset))]
    labels = np.array(dataset.labels)

    colours = np.stack([head_colour(s) for s in samples])
    assert nearest_mean_accuracy(colours, labels, num_train=32) == 1.0
    for label, colour in enumerate(HEAD_COLORS.values()):
        np.testing.assert_allclose(colours[labels == label].mean(0), colour, atol=15)

    def normalised_shape(sample):  # the head mask cropped to its box and resized to 12x12
        x0, y0, x1, y1 = (int(v) for v in mask_box(sample.head_mask))
        crop = Image.fromarray(sample.head_mask[y0:y1, x0:x1].astype(np.float32))
        return np.asarray(crop.resize((12, 12), Image.BILINEAR)).ravel()

    shapes = np.stack([normalised_shape(s) for s in samples])
    assert nearest_mean_accuracy(shapes, labels, num_train=32) >= 0.95


def test_head_colours_never_appear_outside_the_head():
    dataset = SyntheticParts(24, num_classes=8, seed=5)
    head_colours = np.array(list(HEAD_COLORS.values()), dtype=np.float32)
    for index in range(len(dataset)):
        sample = dataset.render(index)
        outside = sample.image[~sample.head_mask].astype(np.float32)
        distance = np.linalg.norm(outside[:, None, :] - head_colours[None], axis=-1)
        assert distance.min() > 60, f"item {index} has a head-like pixel outside its head"


def test_body_alone_is_weaker_but_better_than_chance_evidence():
    num_classes, num_train = 4, 100
    dataset = SyntheticParts(2 * num_train, num_classes=num_classes, seed=6)
    samples = [dataset.render(i) for i in range(len(dataset))]
    labels = np.array(dataset.labels)

    body_accuracy = nearest_mean_accuracy(np.stack([body_features(s) for s in samples]), labels, num_train)
    head_accuracy = nearest_mean_accuracy(np.stack([head_colour(s) for s in samples]), labels, num_train)
    chance = 1 / num_classes
    assert body_accuracy >= chance + 0.3
    assert body_accuracy <= head_accuracy - 0.1


def test_masks_and_box_follow_a_training_transform():
    dataset = SyntheticParts(8, seed=9, transform=train_transform(112, resize_size=128))
    for index in range(len(dataset)):
        torch.manual_seed(index)
        image, target = dataset[index]
        assert image.shape == (3, 112, 112) and target["head_mask"].shape == (112, 112)
        visible = (target["head_mask"] | target["body_mask"]).numpy()
        if visible.any():
            assert target["boxes"][0].tolist() == pytest.approx(mask_box(visible), abs=1.5)


def test_a_body_shows_its_class_whichever_way_a_training_flip_turns_it():
    """Training flips pictures left-right: a body's class evidence must survive it (stripes that
    tilt to either side are one class; classes spread over 180 degrees made 1 and 3 mirrors)."""
    num_train = 120
    dataset = SyntheticParts(2 * num_train, num_classes=4, seed=6)
    samples = [dataset.render(i) for i in range(len(dataset))]
    honest = np.array([s.body_class == s.label for s in samples])
    labels = np.array([s.label for s in samples])

    def flipped(sample):
        return replace(sample, image=sample.image[:, ::-1], body_mask=sample.body_mask[:, ::-1])
    features = np.stack([body_features(s) for s in samples[:num_train]] +
                        [body_features(flipped(s)) for s in samples[num_train:]])
    keep = honest.copy()
    keep[:num_train] = True  # class means from every training body, scored on honest flipped ones
    assert nearest_mean_accuracy(features[keep], labels[keep], num_train) >= 0.85


def test_each_picture_says_which_class_its_body_shows():
    dataset = SyntheticParts(200, num_classes=4, seed=12)
    samples = [dataset.render(i) for i in range(len(dataset))]
    borrowed = np.mean([s.body_class != s.label for s in samples])
    assert 0.1 <= borrowed <= 0.35  # 30% borrow a random class's pattern, a quarter of them their own
    assert all(dataset[i][1]["body_class"] == samples[i].body_class for i in range(5))


def test_headless_birds_are_a_class_of_their_own_and_the_other_birds_stay_as_they_were():
    """A headless bird's body shows a random class's pattern: only its missing crest says its class."""
    plain = SyntheticParts(80, seed=13)
    mixed = SyntheticParts(80, seed=13, headless_fraction=0.2, no_crest=True)
    assert mixed.class_names == [*plain.class_names, NO_CREST]
    headless = [i for i in range(80) if not mixed.render(i).head_mask.any()]
    assert 6 <= len(headless) <= 28
    for index in range(80):
        sample = mixed.render(index)
        if index in headless:
            assert sample.label == mixed.labels[index] == 4 and sample.box == mask_box(sample.body_mask)
        else:
            assert np.array_equal(sample.image, plain.render(index).image) and sample.label == plain.labels[index]
    patterns = np.array([mixed.render(i).body_class for i in headless])
    assert len(set(patterns)) > 1, "the body of a headless bird is any class's"
    with pytest.raises(ValueError, match="no-crest"):
        SyntheticParts(8, headless_fraction=0.2)


def test_a_models_pictures_follow_its_class_names():
    model_classes = ["red-crest", "blue-crest", "yellow-crest", NO_CREST]
    pictures = SyntheticParts.for_classes(model_classes, 12, seed=3)
    assert pictures.class_names == model_classes and pictures.num_classes == 3
    assert all(pictures.render(i).head_mask.any() for i in range(12)), "every bird to check has its head"
    assert SyntheticParts.for_classes(model_classes[:3], 4).class_names == model_classes[:3]


def test_write_examples_writes_pngs_and_a_csv_the_csv_reader_understands(tmp_path):
    csv_path = write_examples(tmp_path / "examples", 5, seed=11)
    written = CSVBoxDataset(csv_path.parent, csv_path)
    original = SyntheticParts(5, seed=11)

    assert len(list((tmp_path / "examples").glob("*.png"))) == 5
    for index in range(5):
        image, target = written[index]
        sample = original.render(index)
        assert np.array_equal(image.permute(1, 2, 0).numpy(), sample.image)  # PNG is lossless
        assert written.class_names[target["label"]] == original.class_names[sample.label]
        assert target["boxes"][0].tolist() == list(sample.box)
        parts = Parts.load(tmp_path / "examples" / "parts" / f"synthetic_11_{index:04d}.png")
        assert (parts.head == sample.head_mask).all() and (parts.body == sample.body_mask).all()
        assert parts.body_class == original.class_names[sample.body_class]
    chosen = write_examples(tmp_path / "chosen", [3, 1], seed=11)
    assert [row.path.name for row in CSVBoxDataset(chosen.parent, chosen).records] == \
        ["synthetic_11_0003.png", "synthetic_11_0001.png"]
