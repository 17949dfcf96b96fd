"""`python -m acol evaluate CHECKPOINT synthetic`: part-level figures, synthetic images drawn as the
model was trained, and a description that travels with a shipped checkpoint."""

import json

import pytest

import acol.data.datasets
from acol.core.checkpoint import load_checkpoint, save_checkpoint
from acol.evaluation.evaluate import main as evaluate_main
from acol.evaluation.metrics import PART_FIGURES
from acol.core.model import ACoL
from acol.core.backbones import create_backbone
from acol.training.train import main as train_main

from test_train import TINY_RUN


@pytest.fixture
def few_synthetic_images(monkeypatch):
    monkeypatch.setitem(acol.data.datasets.SYNTHETIC_SPLITS, "test", (6, 1))


def test_synthetic_evaluation_reports_parts_with_the_models_classes_and_size(tmp_path, few_synthetic_images):
    run = tmp_path / "run"
    train_main(TINY_RUN + ["--epochs", "1", "--synthetic-classes", "3", "--out", str(run)])
    out, shipped = tmp_path / "eval", tmp_path / "shipped.safetensors"
    arguments = [str(run / "model.safetensors"), "synthetic", "--workers", "0", "--out", str(out)]
    assert evaluate_main(arguments + ["--ship", str(shipped), "--description", "a tiny test model"]) == 0
    results = json.loads((out / "metrics.json").read_text())
    assert results["num_images"] == 6 and results["input_size"] == 32
    for numbers in results["maps"].values():
        assert set(PART_FIGURES) <= set(numbers)
        assert numbers["peak_on_head"] + numbers["peak_on_body"] + numbers["peak_outside"] == pytest.approx(100)
    table = (out / "results.md").read_text()
    assert "| map | top-1 cls | peak on head |" in table and "| fused |" in table
    _, config = load_checkpoint(shipped)
    assert config["description"] == "a tiny test model"
    assert config["class_names"] == ["red-crest", "blue-crest", "yellow-crest"]
    assert "peak_on_body" in config["metrics"]["validation"]["maps"]["B"]
    # Shipping again without --description keeps the checkpoint's own.
    assert evaluate_main([str(shipped), "synthetic", "--workers", "0", "--out", str(out),
                          "--ship", str(tmp_path / "again.safetensors")]) == 0
    assert load_checkpoint(tmp_path / "again.safetensors")[1]["description"] == "a tiny test model"


def test_save_checkpoint_stores_a_description(tmp_path):
    model = ACoL(create_backbone("tiny"), 2, head_width=8)
    save_checkpoint(tmp_path / "m.safetensors", model, backbone="tiny", class_names=["a", "b"], input_size=32,
                    description="trained on nothing")
    assert load_checkpoint(tmp_path / "m.safetensors")[1]["description"] == "trained on nothing"
    save_checkpoint(tmp_path / "n.safetensors", model, backbone="tiny", class_names=["a", "b"], input_size=32)
    assert load_checkpoint(tmp_path / "n.safetensors")[1]["description"] == ""


def test_the_heldout_synthetic_split_is_a_seed_training_never_draws():
    # Training draws seeds 0 (train) and 1 (validation), the viewer's examples seed 2.
    assert acol.data.datasets.SYNTHETIC_SPLITS["heldout"][1] not in (0, 1, 2)
    assert acol.data.datasets.build_dataset("synthetic", "heldout", num_classes=3, image_size=40).num_classes == 3


def test_scoring_in_processes_gives_the_same_curves_in_the_same_order():
    import numpy as np
    import torch
    from acol.evaluation.scoring import score_maps
    generator = torch.Generator().manual_seed(0)
    maps = torch.rand(7, 3, 6, 6, generator=generator)
    maps[2, 1] = 0.5  # a constant map marks nothing at any threshold
    inference = {"maps": maps, "logits": torch.randn(7, 3, 4, generator=generator),
                 "labels": torch.randint(0, 4, (7,), generator=generator), "image_size": (40, 40),
                 "boxes": [np.array([[4.0, 6.0, 30.0, 33.0]])] * 6 + [np.zeros((0, 4))], "num_branches": 2}
    one, two = score_maps(inference, progress=False), score_maps(inference, progress=False, jobs=2)
    for name in one:
        for field in ("largest_iou", "best_iou", "top1_correct", "top5_correct"):
            assert np.array_equal(np.stack(getattr(one[name], field)), np.stack(getattr(two[name], field)))
