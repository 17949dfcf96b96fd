import csv
import os
import shutil
import struct
import zlib
from pathlib import Path

import pytest
import torch

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")

REPO = Path(__file__).resolve().parents[1]
CUB50 = REPO.parent / "shared" / "data" / "cub50"
ARTIFACTS = REPO / "test-artifacts"


def bundled_examples() -> list[Path]:
    """The bundled synthetic examples in the order the page shows them: assets/examples/labels.csv's
    (chosen by their stories, the first one where the story holds), not the files' names'."""
    folder = REPO / "assets" / "examples"
    with open(folder / "labels.csv", newline="") as file:
        return [folder / row["path"] for row in csv.DictReader(file)]


@pytest.fixture(autouse=True)
def _seeded():
    torch.manual_seed(0)


@pytest.fixture
def cub50():
    if not (CUB50 / "images.txt").is_file():
        pytest.skip(f"real CUB-50 data not found at {CUB50} (it lives in ../shared/data beside the repo)")
    return CUB50


def png_header_only(width, height) -> bytes:
    """A tiny PNG file that claims to be width x height pixels (a decompression bomb)."""
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    pixels = zlib.compress(b"\0" * 64)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", pixels) + chunk(b"IEND", b"")


# ---------------------------------------------------------------------------------------------
# The viewer: tiny random-init checkpoints and one server shared by the app and browser tests


def example_class_names() -> list[str]:
    """The class names the bundled examples (assets/examples/labels.csv) were made for."""
    import csv
    with open(REPO / "assets" / "examples" / "labels.csv", newline="") as file:
        return sorted({row["label"] for row in csv.DictReader(file)})


def describe_checkpoint(path: Path, description: str) -> None:
    """Give a checkpoint a ``config["description"]``, as the trainer's newer files carry."""
    import json

    from safetensors.torch import load_file

    from acol.core.checkpoint import read_metadata, write_safetensors
    metadata = read_metadata(path)
    config = json.loads(metadata["config"])
    config["description"] = description
    write_safetensors(path, load_file(str(path)), dict(metadata, config=json.dumps(config)))


TINY_CLASSES = ["red crest", "blue crest", "green crest"]
TEACHING_DESCRIPTION = "A tiny random-init test model of the synthetic examples' classes."


@pytest.fixture(scope="session")
def tiny_checkpoints(tmp_path_factory):
    """A folder of tiny checkpoints (64-pixel input, so 8x8 feature maps): ``tiny_acol`` and its
    one-branch CAM baseline ``tiny_cam`` (random init; 3 bird-like classes, the classes of
    ``tiny_cub_root``; validated box thresholds, and validation figures but no description for
    ``tiny_acol``), and ``tiny_synthetic_acol``, the teaching model: the classes of the bundled
    examples (assets/examples), a description and δ = 0.5, trained for 3 short epochs with its
    training history beside it, as is its CAM baseline ``tiny_synthetic_cam``."""
    from acol import ACoL, create_backbone
    from acol.core.checkpoint import save_checkpoint
    from acol.training.train import main as train_main
    folder = tmp_path_factory.mktemp("checkpoints")
    torch.manual_seed(0)
    validated = {"tiny_acol": {"cam_thresholds": {"A": 0.3, "B": 0.3, "fused": 0.45},
                               "validation": {"split": "test", "maps": {"A": {"top1_cls": 35.0, "max_box_acc_v2": 20.0},
                                                                        "fused": {"max_box_acc_v2": 22.5}}}},
                 "tiny_cam": {"cam_thresholds": {"A": 0.35}}}
    for name, branches, classes in (("tiny_acol", 2, TINY_CLASSES), ("tiny_cam", 1, TINY_CLASSES)):
        model = ACoL(create_backbone("tiny"), len(classes), num_branches=branches, head_width=16)
        save_checkpoint(folder / f"{name}.safetensors", model.eval(), backbone="tiny",
                        class_names=classes, input_size=64, metrics=validated.get(name),
                        recipe={"data": "tiny-cub-root"})
    runs = tmp_path_factory.mktemp("teaching_runs")
    for name, branches in (("tiny_synthetic_acol", 2), ("tiny_synthetic_cam", 1)):
        assert train_main(["--data", "synthetic", "--synthetic-classes", str(len(example_class_names())),
                           "--synthetic-images", "32", "--backbone", "tiny", "--weights", "none", "--input-size", "64",
                           "--head-width", "16", "--erase-threshold", "0.5", "--num-branches", str(branches),
                           "--epochs", "3", "--max-steps-per-epoch", "2", "--batch-size", "8", "--workers", "0",
                           "--half-checkpoint", "false", "--history", "true", "--out", str(runs / name)]) == 0
        shutil.copy(runs / name / "model.safetensors", folder / f"{name}.safetensors")
        shutil.copy(runs / name / "history.safetensors", folder / f"{name}.history.safetensors")
    describe_checkpoint(folder / "tiny_synthetic_acol.safetensors", TEACHING_DESCRIPTION)
    siblings = folder / "tiny_synthetic_acol.deltas"  # "trained" at other δ: the same weights, relabelled
    siblings.mkdir()
    for delta in (0.3, 0.8):
        relabel_erase_threshold(folder / "tiny_synthetic_acol.safetensors", siblings / f"delta_{delta}.safetensors", delta)
    return folder


def relabel_erase_threshold(path: Path, out: Path, delta: float) -> None:
    """A copy of a checkpoint whose model erases at ``delta``."""
    import json

    from safetensors.torch import load_file

    from acol.core.checkpoint import read_metadata, write_safetensors
    metadata = read_metadata(path)
    config = json.loads(metadata["config"])
    config["model"]["erase_threshold"] = delta
    write_safetensors(out, load_file(str(path)), dict(metadata, config=json.dumps(config)))


@pytest.fixture(scope="session")
def tiny_cub_root(tmp_path_factory):
    """A CUB-layout root of three test images (with boxes), one per class of ``tiny_acol``."""
    import numpy as np
    from PIL import Image
    root = tmp_path_factory.mktemp("cub")
    lines = {name: [] for name in ("images.txt", "image_class_labels.txt", "train_test_split.txt",
                                   "classes.txt", "bounding_boxes.txt")}
    for number, name in enumerate(TINY_CLASSES, start=1):
        folder = f"{number:03d}.{name.replace(' ', '_')}"
        (root / "images" / folder).mkdir(parents=True)
        pixels = np.random.default_rng(number).integers(0, 256, (60, 90, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(root / "images" / folder / "bird.jpg")
        for file, line in (("images.txt", f"{folder}/bird.jpg"), ("image_class_labels.txt", number),
                           ("train_test_split.txt", 0), ("classes.txt", folder),
                           ("bounding_boxes.txt", "10 10 40 30")):
            lines[file].append(f"{number} {line}")
    for file, rows in lines.items():
        (root / file).write_text("\n".join(rows) + "\n")
    return root


@pytest.fixture(scope="session")
def viewer_demo(tiny_checkpoints, tiny_cub_root):
    """The viewer (app.py) over the tiny checkpoints, assets/examples and the tiny CUB root, on
    the CPU, served on a free port (``demo.url``); ``demo.acol_page`` is its logic."""
    import socket

    import app
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    demo = app.build_demo(tiny_checkpoints, [REPO / "assets" / "examples", tiny_cub_root], device="cpu")
    app.launch(demo, server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True)
    demo.url = f"http://127.0.0.1:{port}/"
    yield demo
    demo.close()


@pytest.fixture(scope="session")
def viewer_url(viewer_demo):
    return viewer_demo.url


def pytest_configure(config):
    # Gradio's queue uses pandas options that pandas 3 deprecates; not ours to fix.
    config.addinivalue_line("filterwarnings", "ignore::Warning:gradio.queueing")
