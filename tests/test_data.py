"""Specification of acol.data: dataset readers, image loading, transforms, batching."""

import os
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision import tv_tensors

from acol.data.images import ImageLoadError, load_rgb_image
from acol.data.readers import CSVBoxDataset, CUBDataset, WSOLEvalDataset
from acol.data.transforms import denormalize, eval_transform, make_loader, split_train_val, train_transform
from acol.data.datasets import build_dataset

REAL_CUB50 = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "cub50"
MEAN, STD = (0.5, 0.4, 0.3), (0.2, 0.25, 0.3)


# ----------------------------------------------------------------------------------------------
# Fixture builders


def save_image(path: Path, width: int = 40, height: int = 30, color=(200, 100, 50), **save_options) -> Path:
    """Write a solid-colour image (format from the suffix) and return its path."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (width, height), color).save(path, **save_options)
    return path


def write_lines(path: Path, lines) -> None:
    """Write a metadata text file, one entry per line."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(f"{line}\n" for line in lines))


def make_cub(root: Path) -> Path:
    """A 4-image CUB folder. Image ids are not contiguous and class 2 has no images, like cub50."""
    images = {2: "001.Black_footed_Albatross/a.jpg", 5: "001.Black_footed_Albatross/b.jpg",
              7: "003.Sooty_Albatross/c.jpg", 9: "003.Sooty_Albatross/d.jpg"}
    for relative in images.values():
        save_image(root / "images" / relative, 60, 50)
    write_lines(root / "images.txt", [f"{i} {p}" for i, p in images.items()])
    write_lines(root / "classes.txt",
                ["1 001.Black_footed_Albatross", "2 002.Laysan_Albatross", "3 003.Sooty_Albatross"])
    write_lines(root / "image_class_labels.txt", ["2 1", "5 1", "7 3", "9 3"])
    write_lines(root / "train_test_split.txt", ["2 1", "5 0", "7 1", "9 0"])
    write_lines(root / "bounding_boxes.txt", ["2 10.0 5.0 20.0 30.0", "5 1 2 3 4", "7 0 0 60 50", "9 5.5 6.5 10 10"])
    return root


def make_wsol(root: Path) -> Path:
    """wsolevaluation layout: images under root, metadata under root/metadata/test."""
    metadata = root / "metadata" / "test"
    paths = ["val/cat/1.png", "val/dog/2.png", "val/dog/3.png"]
    for path in paths:
        save_image(root / path, 50, 40)
    write_lines(metadata / "image_ids.txt", paths)
    write_lines(metadata / "class_labels.txt", [f"{paths[0]},0", f"{paths[1]},1", f"{paths[2]},1"])
    write_lines(metadata / "image_sizes.txt", [f"{p},50,40" for p in paths])
    write_lines(metadata / "localization.txt", [f"{paths[0]},1,2,30,20", f"{paths[1]},0,0,10,10",
                                                f"{paths[1]},20,5,49,39", f"{paths[2]},3,4,5,6"])
    return root


def make_csv(root: Path, rows) -> Path:
    """An images/ folder with every image named in rows, plus boxes.csv holding rows."""
    for row in rows:
        image = root / row.split(",")[0]
        if not image.exists():
            save_image(image, 50, 40)
    write_lines(root / "boxes.csv", ["path,label,x0,y0,x1,y1", *rows])
    return root / "boxes.csv"


def boxes_of(target) -> list:
    """The target's boxes as a plain nested list."""
    return target["boxes"].tolist()


# ----------------------------------------------------------------------------------------------
# CUB


def test_cub_reads_splits_labels_names_and_converts_xywh_boxes(tmp_path):
    root = make_cub(tmp_path / "CUB_200_2011")
    train, test, every = (CUBDataset(root, split) for split in ("train", "test", "all"))

    assert (len(train), len(test), len(every)) == (2, 2, 4)
    # Only classes 1 and 3 have images; they become labels 0 and 1 in id order.
    assert every.num_classes == 2
    assert every.class_names == ["Black footed Albatross", "Sooty Albatross"]
    assert every.class_folders == ["001.Black_footed_Albatross", "003.Sooty_Albatross"]
    assert train.labels == [0, 1] and test.labels == [0, 1] and every.labels == [0, 0, 1, 1]

    image, target = train[0]
    assert isinstance(image, tv_tensors.Image) and image.dtype == torch.uint8 and image.shape == (3, 50, 60)
    assert target["label"] == 0 and target["image_id"] == "2"
    assert target["path"].endswith("images/001.Black_footed_Albatross/a.jpg")
    assert target["boxes"].format == tv_tensors.BoundingBoxFormat.XYXY
    assert target["boxes"].canvas_size == (50, 60)
    assert boxes_of(target) == [[10.0, 5.0, 30.0, 35.0]]  # x, y, w, h -> x0, y0, x0 + w, y0 + h
    assert boxes_of(test[1][1]) == [[5.5, 6.5, 15.5, 16.5]]


def test_cub_rejects_unknown_split(tmp_path):
    with pytest.raises(ValueError, match="split"):
        CUBDataset(make_cub(tmp_path), "val")


def test_real_cub50_has_official_split_and_boxes():
    if not REAL_CUB50.is_dir():
        pytest.skip(f"real CUB-50 data not found at {REAL_CUB50} (shared data folder absent)")
    train, test = CUBDataset(REAL_CUB50, "train"), CUBDataset(REAL_CUB50, "test")

    assert (len(train), len(test)) == (1500, 500)
    assert train.num_classes == test.num_classes == 50
    assert train.class_names[0] == "Black footed Albatross"
    assert sorted(set(train.labels)) == list(range(50)) and sorted(set(test.labels)) == list(range(50))

    # bounding_boxes.txt: "2 105.9 22.9 116.6 201.1"; image 2 is the first training image.
    image, target = train[0]
    assert target["image_id"] == "2" and target["label"] == 0
    assert boxes_of(target)[0] == pytest.approx([105.9, 22.9, 105.9 + 116.6, 22.9 + 201.1], abs=1e-4)
    height, width = image.shape[-2:]
    assert min(height, width) == 256  # the README: shorter side resized to 256 px
    assert target["boxes"][0, 2] <= width and target["boxes"][0, 3] <= height


# ----------------------------------------------------------------------------------------------
# wsolevaluation and CSV


def test_wsol_reads_labels_and_several_boxes_per_image(tmp_path):
    root = make_wsol(tmp_path)
    dataset = WSOLEvalDataset(root, root / "metadata" / "test")

    assert len(dataset) == 3 and dataset.labels == [0, 1, 1]
    assert dataset.class_names == ["class_0", "class_1"]
    _, target = dataset[1]
    assert target["image_id"] == "val/dog/2.png" and target["path"] == str(root / "val/dog/2.png")
    assert boxes_of(target) == [[0, 0, 10, 10], [20, 5, 49, 39]]
    assert boxes_of(dataset[0][1]) == [[1, 2, 30, 20]]


def test_wsol_takes_class_names_from_optional_file(tmp_path):
    root = make_wsol(tmp_path)
    write_lines(root / "metadata" / "test" / "class_names.txt", ["cat", "dog"])
    assert WSOLEvalDataset(root, root / "metadata" / "test").class_names == ["cat", "dog"]


def test_csv_maps_sorted_class_names_and_allows_images_without_box(tmp_path):
    csv_path = make_csv(tmp_path, ["images/a.png,sparrow,1,2,11,12", "images/b.png,albatross,,,,",
                                   "images/a.png,sparrow,20,20,30,35"])
    dataset = CSVBoxDataset(tmp_path, csv_path)

    assert dataset.class_names == ["albatross", "sparrow"]
    assert dataset.labels == [1, 0]  # images in first-appearance order
    assert boxes_of(dataset[0][1]) == [[1, 2, 11, 12], [20, 20, 30, 35]]
    assert dataset[1][1]["boxes"].shape == (0, 4)


def test_csv_accepts_integer_labels(tmp_path):
    csv_path = make_csv(tmp_path, ["a.png,2,1,1,5,5", "b.png,0,1,1,5,5"])
    dataset = CSVBoxDataset(tmp_path, csv_path)
    assert dataset.labels == [2, 0] and dataset.class_names == ["class_0", "class_1", "class_2"]


# ----------------------------------------------------------------------------------------------
# Errors name the culprit


@pytest.mark.parametrize("bad_line, pattern", [
    ("9 5.5 6.5 ten 10", "expected a number"),
    ("9 5.5 6.5", "expected 5 fields"),
])
def test_malformed_cub_line_names_file_and_line(tmp_path, bad_line, pattern):
    root = make_cub(tmp_path)
    write_lines(root / "bounding_boxes.txt", ["2 10 5 20 30", "5 1 2 3 4", bad_line])
    with pytest.raises(ValueError, match=rf"bounding_boxes\.txt:3: {pattern}"):
        CUBDataset(root, "all")


def test_malformed_wsol_line_names_file_and_line(tmp_path):
    root = make_wsol(tmp_path)
    write_lines(root / "metadata" / "test" / "class_labels.txt", ["val/cat/1.png,0", "val/dog/2.png"])
    with pytest.raises(ValueError, match=r"class_labels\.txt:2:"):
        WSOLEvalDataset(root, root / "metadata" / "test")


@pytest.mark.parametrize("bad_row, pattern", [
    ("b.png,dog,1,2,x,4", "expected a number"),
    ("b.png,dog,1,2,,", "all filled or all empty"),
    ("b.png,dog,9,2,3,4", "x1 < x0"),
    ("a.png,dog,1,1,2,2", "has label 'dog' but earlier 'cat'"),
])
def test_malformed_csv_row_names_file_and_line(tmp_path, bad_row, pattern):
    csv_path = make_csv(tmp_path, ["a.png,cat,1,1,5,5", bad_row])
    with pytest.raises(ValueError, match=rf"boxes\.csv:3: .*{pattern}"):
        CSVBoxDataset(tmp_path, csv_path)


def test_missing_image_raises_with_its_path(tmp_path):
    csv_path = make_csv(tmp_path, ["a.png,cat,1,1,5,5"])
    (tmp_path / "a.png").unlink()
    with pytest.raises(ImageLoadError, match="not found") as error:
        CSVBoxDataset(tmp_path, csv_path)[0]
    assert str(tmp_path / "a.png") in str(error.value)


def test_truncated_jpeg_raises_with_its_path(tmp_path):
    noise = np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    path = tmp_path / "cut.jpg"
    Image.fromarray(noise).save(path)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(ImageLoadError) as error:
        load_rgb_image(path)
    assert str(path) in str(error.value)
    assert isinstance(error.value, ValueError)


def test_decompression_bomb_is_refused_with_its_path(tmp_path, monkeypatch):
    path = save_image(tmp_path / "big.png", 64, 64)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)  # 64*64 > 2*100: Pillow refuses
    with pytest.raises(ImageLoadError, match="too large") as error:
        load_rgb_image(path)
    assert str(path) in str(error.value)


def test_images_above_the_pixel_cap_are_refused_before_decoding_and_jpegs_shrink_instead(tmp_path):
    png, jpeg = save_image(tmp_path / "big.png", 300, 200), save_image(tmp_path / "big.jpg", 300, 200)
    with pytest.raises(ImageLoadError, match=r"big.png is 300 x 200 pixels, more than the 0.05-megapixel limit"):
        load_rgb_image(png, max_pixels=50_000)
    assert load_rgb_image(jpeg, max_pixels=50_000).size == (150, 100)  # the JPEG decoder's 1/2 scale
    assert load_rgb_image(png).size == (300, 200)


def test_only_photo_formats_are_opened_so_an_upload_never_starts_a_program(tmp_path):
    """Pillow opens EPS files by running Ghostscript; acol refuses them before that."""
    eps = tmp_path / "drawing.eps"
    eps.write_bytes(b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\nshowpage\n%%EOF\n")
    with Image.open(eps) as image:
        assert image.format == "EPS"
    with pytest.raises(ImageLoadError, match="drawing.eps.*not a JPEG, PNG"):
        load_rgb_image(eps)


# ----------------------------------------------------------------------------------------------
# load_rgb_image normalises odd files


def test_load_rgb_image_converts_every_mode_to_8bit_rgb(tmp_path):
    gray16 = Image.fromarray(np.full((4, 5), 32896, dtype=np.uint16))  # 16-bit mid grey
    rgba = Image.new("RGBA", (5, 4), (255, 0, 0, 0))  # fully transparent red
    palette = Image.new("RGB", (5, 4), (10, 200, 30)).convert("P", palette=Image.Palette.ADAPTIVE)
    cases = {
        "gray.png": (Image.new("L", (5, 4), 77), (77, 77, 77)),
        "palette.png": (palette, (10, 200, 30)),
        "cmyk.jpg": (Image.new("CMYK", (5, 4), (0, 0, 0, 0)), (255, 255, 255)),
        "gray16.png": (gray16, (128, 128, 128)),
        "rgba.png": (rgba, (255, 255, 255)),  # composited on white, not shown as red
    }
    for name, (image, expected) in cases.items():
        image.save(tmp_path / name)
        loaded = load_rgb_image(tmp_path / name)
        assert loaded.mode == "RGB" and loaded.size == (5, 4), name
        np.testing.assert_allclose(np.asarray(loaded)[1, 1], expected, atol=3, err_msg=name)


def test_load_rgb_image_applies_exif_orientation_and_accepts_file_objects(tmp_path):
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to display"
    path = save_image(tmp_path / "phone.jpg", 40, 20, exif=exif)
    with open(path, "rb") as file:
        assert load_rgb_image(file).size == (20, 40)


# ----------------------------------------------------------------------------------------------
# Transforms


def white_rectangle_dataset(tmp_path, box, width=100, height=80, transform=None) -> CSVBoxDataset:
    """A black image with a white rectangle exactly at `box` (integer XYXY), via the CSV reader."""
    pixels = np.zeros((height, width, 3), dtype=np.uint8)
    x0, y0, x1, y1 = box
    pixels[y0:y1, x0:x1] = 255
    Image.fromarray(pixels).save(tmp_path / "rect.png")
    write_lines(tmp_path / "rect.csv", ["path,label,x0,y0,x1,y1", f"rect.png,thing,{x0},{y0},{x1},{y1}"])
    return CSVBoxDataset(tmp_path, tmp_path / "rect.csv", transform)


def white_pixel_box(image: torch.Tensor) -> list[float]:
    """Tight XYXY box around the bright pixels of a normalized image."""
    bright = denormalize(image, MEAN, STD).mean(axis=2) > 127
    rows, cols = np.flatnonzero(bright.any(axis=1)), np.flatnonzero(bright.any(axis=0))
    return [cols[0], rows[0], cols[-1] + 1, rows[-1] + 1]


def test_train_transform_moves_boxes_with_crop_and_flip(tmp_path):
    transform = train_transform(56, MEAN, STD, resize_size=64)
    dataset = white_rectangle_dataset(tmp_path, (30, 20, 70, 60), transform=transform)
    seen_boxes = set()
    for seed in range(25):
        torch.manual_seed(seed)
        image, target = dataset[0]
        assert image.shape == (3, 56, 56) and image.dtype == torch.float32
        (box,) = boxes_of(target)
        assert box == pytest.approx(white_pixel_box(image), abs=1.5)
        seen_boxes.add(tuple(round(v) for v in box))
    assert len(seen_boxes) > 5  # the augmentation really moved the object around


def test_train_transform_clamps_boxes_and_drops_ones_cropped_away(tmp_path):
    dataset = white_rectangle_dataset(tmp_path, (0, 0, 10, 10), 64, 64, train_transform(32, MEAN, STD, resize_size=64))
    counts = []
    for seed in range(30):
        torch.manual_seed(seed)
        boxes = dataset[0][1]["boxes"]
        counts.append(len(boxes))
        assert (boxes >= 0).all() and (boxes <= 32).all()
        assert ((boxes[:, 2:] - boxes[:, :2]) >= 1).all()
    assert 0 in counts and 1 in counts


def test_eval_transform_resizes_whole_image_and_scales_boxes(tmp_path):
    dataset = white_rectangle_dataset(tmp_path, (10, 20, 50, 60), transform=eval_transform(50, MEAN, STD))
    image, target = dataset[0]
    assert image.shape == (3, 50, 50)
    assert boxes_of(target) == [[5.0, 12.5, 25.0, 37.5]]  # x * 50/100, y * 50/80


def test_denormalize_inverts_eval_transform(tmp_path):
    pixels = np.random.default_rng(1).integers(0, 256, (8, 8, 3), dtype=np.uint8)
    image = tv_tensors.Image(torch.from_numpy(pixels).permute(2, 0, 1))
    restored = denormalize(eval_transform(8, MEAN, STD)(image), MEAN, STD)
    assert restored.dtype == np.uint8 and restored.shape == (8, 8, 3)
    np.testing.assert_allclose(restored, pixels, atol=1)


def test_loader_batches_stack_images_and_keep_variable_boxes(tmp_path):
    csv_path = make_csv(tmp_path, ["a.png,cat,1,1,5,5", "a.png,cat,2,2,9,9", "b.png,dog,,,,", "c.png,dog,0,0,3,3"])
    dataset = CSVBoxDataset(tmp_path, csv_path, eval_transform(32, MEAN, STD))
    images, labels, targets = next(iter(make_loader(dataset, batch_size=3, workers=0)))
    assert type(images) is torch.Tensor and images.shape == (3, 3, 32, 32)
    assert labels.dtype == torch.long and labels.tolist() == [0, 1, 1]
    assert [len(t["boxes"]) for t in targets] == [2, 0, 1]
    assert [len(batch[2]) for batch in make_loader(dataset, batch_size=2, workers=0)] == [2, 1]


class ParentRecordingDataset(CSVBoxDataset):
    """Each target also says which process started the worker that loaded it."""

    def __getitem__(self, index):
        image, target = super().__getitem__(index)
        return image, {**target, "worker_parent": os.getppid()}


def test_loader_workers_are_not_forked_from_the_training_process(tmp_path):
    # A fork makes the trainer copy every page it writes afterwards: each epoch's first step
    # took 3-4x as long as the others.
    csv_path = make_csv(tmp_path, ["a.png,cat,1,1,5,5", "b.png,dog,0,0,3,3"])
    dataset = ParentRecordingDataset(tmp_path, csv_path, eval_transform(32, MEAN, STD))
    images, labels, targets = next(iter(make_loader(dataset, batch_size=2, workers=1)))
    assert images.shape == (2, 3, 32, 32) and labels.tolist() == [0, 1]
    assert all(target["worker_parent"] != os.getpid() for target in targets)


# ----------------------------------------------------------------------------------------------
# Convenience


def test_build_dataset_detects_each_layout(tmp_path):
    cub = build_dataset(make_cub(tmp_path / "cub"), "test")
    wsol = build_dataset(make_wsol(tmp_path / "wsol"), "test")
    csv = build_dataset(make_csv(tmp_path / "csv", ["a.png,cat,1,1,5,5"]), "train")
    synthetic = build_dataset("synthetic", "test")
    assert (type(cub), len(cub)) == (CUBDataset, 2)
    assert (type(wsol), len(wsol)) == (WSOLEvalDataset, 3)
    assert (type(csv), len(csv)) == (CSVBoxDataset, 1)
    assert type(synthetic).__name__ == "SyntheticParts" and len(synthetic) > 0
    with pytest.raises(ValueError, match="cannot tell"):
        build_dataset(tmp_path / "csv" / "images", "train")


class LabelsOnly:
    """Just enough of a dataset for split_train_val."""

    def __init__(self, labels):
        self.labels = labels

    def __len__(self):
        return len(self.labels)


def test_split_train_val_is_stratified_disjoint_and_deterministic():
    dataset = LabelsOnly([0] * 20 + [1] * 10 + [2] * 3)
    train, val = split_train_val(dataset, 0.2, seed=3)

    assert sorted(train.indices + val.indices) == list(range(33))
    val_labels = [dataset.labels[i] for i in val.indices]
    assert [val_labels.count(k) for k in range(3)] == [4, 2, 1]
    again_train, again_val = split_train_val(dataset, 0.2, seed=3)
    assert (again_train.indices, again_val.indices) == (train.indices, val.indices)
    assert split_train_val(dataset, 0.2, seed=4)[1].indices != val.indices
