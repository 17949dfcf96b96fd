"""Training and evaluation CLIs on tiny synthetic runs: outputs, resume, divergence, DDP."""

import csv
import json
import os
import subprocess
import sys

import pytest
import torch

from acol.checkpoint import load_checkpoint
from acol.evaluate import main as evaluate_main
from acol.synthetic import write_examples
from acol.train import TrainingDiverged
from acol.train import main as train_main

from conftest import REPO

TINY_RUN = ["--data", "synthetic", "--backbone", "tiny", "--weights", "none", "--input-size", "32",
            "--synthetic-images", "48", "--batch-size", "8", "--head-width", "16", "--workers", "0",
            "--lr", "0.01", "--half-checkpoint", "false"]


def run_dir_rows(run):
    with open(run / "log.csv") as file:
        return list(csv.DictReader(file))


def test_one_epoch_run_writes_config_log_and_loadable_checkpoints(tmp_path):
    run = tmp_path / "run"
    assert train_main(TINY_RUN + ["--epochs", "1", "--out", str(run)]) == 0
    config = json.loads((run / "config.json").read_text())
    assert config["backbone"] == "tiny" and config["epochs"] == 1 and config["weights"] is None
    (row,) = run_dir_rows(run)
    assert float(row["train_loss"]) > 0 and row["val_fused_max_box_acc_v2"] != ""
    model, saved = load_checkpoint(run / "model.safetensors")
    assert len(model.heads) == 2 and saved["recipe"]["lr"] == 0.01
    assert (run / "resume.safetensors").is_file()


def test_config_file_is_read_and_flags_override_it(tmp_path):
    config_file = tmp_path / "run.yaml"
    config_file.write_text("epochs: 1\nnum_branches: 1\nhead_width: 8\n")
    run = tmp_path / "run"
    train_main(TINY_RUN + ["--config", str(config_file), "--head-width", "12", "--out", str(run)])
    config = json.loads((run / "config.json").read_text())
    assert config["num_branches"] == 1 and config["head_width"] == 12


def test_resume_after_a_stop_is_bit_exact_on_cpu(tmp_path):
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    train_main(TINY_RUN + ["--epochs", "2", "--out", str(straight)])
    # Stop after epoch 1 by asking for one epoch, then resume the same run up to two.
    train_main(TINY_RUN + ["--epochs", "1", "--out", str(resumed)])
    config = json.loads((resumed / "config.json").read_text())
    config["epochs"] = 2
    (resumed / "config.json").write_text(json.dumps(config))
    train_main(["--resume", str(resumed)])
    a, _ = load_checkpoint(straight / "model.safetensors")
    b, _ = load_checkpoint(resumed / "model.safetensors")
    for name, tensor in a.state_dict().items():
        assert torch.equal(tensor, b.state_dict()[name]), name
    assert [row["epoch"] for row in run_dir_rows(resumed)] == ["1", "2"]


def test_a_diverging_run_stops_clearly_and_keeps_the_last_good_checkpoint(tmp_path):
    run = tmp_path / "run"
    train_main(TINY_RUN + ["--epochs", "1", "--out", str(run)])
    good = (run / "model.safetensors").read_bytes()
    with pytest.raises(TrainingDiverged, match="last good checkpoint"):
        train_main(["--resume", str(run), "--epochs", "2", "--lr", "1e30", "--warmup-epochs", "0"])
    assert (run / "model.safetensors").read_bytes() == good
    load_checkpoint(run / "model.safetensors")


def test_evaluate_cli_writes_json_table_curve_and_a_checkpoint_with_the_chosen_thresholds(tmp_path):
    run = tmp_path / "run"
    train_main(TINY_RUN + ["--epochs", "1", "--out", str(run)])
    csv_path = write_examples(tmp_path / "data", 6, seed=5, num_classes=4, image_size=48)
    out = tmp_path / "eval"
    assert evaluate_main([str(run / "model.safetensors"), str(csv_path), "--out", str(out),
                          "--workers", "0", "--batch-size", "4", "--erase-threshold", "0.5",
                          "--ship", str(tmp_path / "shipped.safetensors")]) == 0
    results = json.loads((out / "metrics.json").read_text())
    assert set(results["maps"]) == {"A", "B", "fused"} and results["num_images"] == 6
    assert 0 <= results["maps"]["fused"]["max_box_acc_v2"] <= 100
    assert "| fused |" in (out / "results.md").read_text()
    assert (out / "box_accuracy.png").stat().st_size > 1000
    shipped, config = load_checkpoint(tmp_path / "shipped.safetensors")
    assert shipped.erase_threshold == 0.5
    assert config["metrics"]["cam_thresholds"] == {
        name: numbers["cam_threshold"] for name, numbers in results["maps"].items()}
    assert config["metrics"]["validation"]["maps"]["fused"]["max_box_acc_v2"] == pytest.approx(
        results["maps"]["fused"]["max_box_acc_v2"], abs=0.01)


@pytest.mark.slow
def test_distributed_training_with_two_gloo_processes(tmp_path):
    run = tmp_path / "ddp"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    result = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29517",
         "-m", "acol", "train", *TINY_RUN, "--epochs", "1", "--out", str(run)],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    (row,) = run_dir_rows(run)
    assert float(row["train_loss"]) > 0
    load_checkpoint(run / "model.safetensors")
