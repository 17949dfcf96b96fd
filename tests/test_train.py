"""Training and evaluation CLIs on tiny synthetic runs: outputs, resume, divergence, DDP."""

import csv
import errno
import json
import os
import random
import signal
import subprocess
import sys
import time

import pytest
import torch

from acol.core.checkpoint import load_checkpoint, save_checkpoint
from acol.evaluation.evaluate import main as evaluate_main
from acol.core.model import ACoL
from acol.data.synthetic import write_examples
from acol.training.train import main as train_main

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


def test_a_frozen_backbone_keeps_its_weights_and_statistics_and_class_weights_stay_nonnegative(tmp_path):
    run = tmp_path / "run"
    train_main(TINY_RUN + ["--epochs", "1", "--out", str(run), "--head", "linear",
                           "--nonnegative-class-weights", "true", "--freeze-backbone", "true",
                           "--weights", str(tiny_weights(tmp_path))])
    model, _ = load_checkpoint(run / "model.safetensors")
    start = torch.load(tmp_path / "tiny.pt", weights_only=True)
    for name, tensor in model.backbone.body.state_dict().items():
        assert torch.equal(tensor, start[name]), f"backbone {name} changed"  # BatchNorm statistics too
    for branch in model.heads:
        assert branch.class_layer.weight.min() >= 0 and branch.class_layer.weight.max() > 0


def tiny_weights(folder):
    """A saved random init of the tiny backbone, with non-default BatchNorm statistics."""
    from acol.core.backbones import create_backbone
    body = create_backbone("tiny").body
    with torch.no_grad():
        body[1].running_mean.uniform_()
    torch.save(body.state_dict(), folder / "tiny.pt")
    return folder / "tiny.pt"


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


def test_a_diverging_run_stops_clearly_and_keeps_the_last_good_checkpoint(tmp_path, capsys):
    run = tmp_path / "run"
    train_main(TINY_RUN + ["--epochs", "1", "--out", str(run)])
    good = (run / "model.safetensors").read_bytes()
    assert train_main(["--resume", str(run), "--epochs", "2", "--lr", "1e30", "--warmup-epochs", "0"]) == 1
    assert "last good checkpoint" in capsys.readouterr().err
    assert (run / "model.safetensors").read_bytes() == good
    load_checkpoint(run / "model.safetensors")


def test_a_run_whose_loss_explodes_without_nan_stops_and_keeps_the_last_good_checkpoint(
        tmp_path, capsys, monkeypatch):
    run = tmp_path / "run"
    train_main(TINY_RUN + ["--epochs", "1", "--out", str(run)])
    good = (run / "model.safetensors").read_bytes()
    real_loss = ACoL.loss
    monkeypatch.setattr(ACoL, "loss", staticmethod(lambda output, labels: 10 * real_loss(output, labels)))
    assert train_main(["--resume", str(run), "--epochs", "2"]) == 1
    assert "over 3x chance level" in capsys.readouterr().err
    assert (run / "model.safetensors").read_bytes() == good
    assert [row["epoch"] for row in run_dir_rows(run)] == ["1"]


def train_process(*arguments):
    return subprocess.Popen([sys.executable, "-m", "acol", "train", *arguments], cwd=REPO,
                            env={**os.environ, "PYTHONPATH": str(REPO)},
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def final_weights(run) -> dict:
    from safetensors.torch import load_file
    return load_file(str(run / "resume.safetensors"))  # float32 model and optimizer state


def wait_until_training_starts(process, run, since) -> float:
    """Seconds until the run (re)wrote config.json, its last step before the first batch."""
    config = run / "config.json"
    while process.poll() is None and not (config.exists() and config.stat().st_mtime >= since):
        time.sleep(0.02)
    return time.time() - since


def test_sigkill_at_random_points_then_resume_reaches_the_same_weights_bit_exactly(tmp_path):
    arguments = TINY_RUN + ["--epochs", "5", "--synthetic-images", "96", "--val-every", "1"]
    straight, killed = tmp_path / "straight", tmp_path / "killed"
    started = time.time()
    process = train_process(*arguments, "--out", str(straight))
    startup = wait_until_training_starts(process, straight, started)
    assert process.wait(timeout=300) == 0
    training = time.time() - started - startup
    # Kill at random moments of the training itself (not of Python's start-up): mid-batch,
    # mid-validation or mid-save, wherever they fall. ACOL_KILL_SEED picks other moments.
    rng = random.Random(int(os.environ.get("ACOL_KILL_SEED", 0)))
    kills = 0
    for attempt in range(4):
        since = time.time()
        process = (train_process(*arguments, "--out", str(killed)) if attempt == 0
                   else train_process("--resume", str(killed)))
        wait_until_training_starts(process, killed, since)
        try:
            process.wait(timeout=rng.uniform(0.05, 0.3) * training)
        except subprocess.TimeoutExpired:
            process.send_signal(signal.SIGKILL)
            process.wait()
            kills += 1
    assert kills >= 3
    process = train_process("--resume", str(killed))
    assert process.wait(timeout=300) == 0, process.stderr.read().decode()[-2000:]
    a, b = final_weights(straight), final_weights(killed)
    assert a.keys() == b.keys()
    for name in a:
        assert torch.equal(a[name], b[name]), name
    assert [row["epoch"] for row in run_dir_rows(killed)] == ["1", "2", "3", "4", "5"]
    assert not list(killed.glob(".*.tmp-*"))


@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EROFS])
def test_a_full_disk_or_read_only_run_folder_stops_clearly_and_keeps_the_last_checkpoint(
        tmp_path, monkeypatch, capsys, code):
    import acol.core.checkpoint
    run = tmp_path / "run"
    assert train_main(TINY_RUN + ["--epochs", "1", "--out", str(run)]) == 0
    before = {name: (run / name).read_bytes() for name in ("model.safetensors", "resume.safetensors", "log.csv")}

    def failing_save(tensors, filename, metadata=None):
        with open(filename, "wb") as file:
            file.write(b"\x00" * 100)  # the disk filled up part way through the file
        raise OSError(code, os.strerror(code))
    monkeypatch.setattr(acol.core.checkpoint, "save_file", failing_save)
    assert train_main(["--resume", str(run), "--epochs", "2"]) == 1
    message = capsys.readouterr().err
    assert os.strerror(code) in message and "model.safetensors" in message
    assert f"Stopped after epoch 2: {run} keeps the last checkpoint" in message
    for name, data in before.items():
        assert (run / name).read_bytes() == data, name
    assert not list(run.glob(".*.tmp-*"))
    monkeypatch.undo()
    assert train_main(["--resume", str(run), "--epochs", "2"]) == 0  # once there is room again
    assert len(run_dir_rows(run)) == 2


def test_a_run_folder_that_cannot_be_created_is_reported_before_training(tmp_path, capsys):
    (tmp_path / "a_file").write_text("not a folder")
    assert train_main(TINY_RUN + ["--epochs", "1", "--out", str(tmp_path / "a_file" / "run")]) == 1
    assert "cannot write to the run folder" in capsys.readouterr().err


@pytest.mark.parametrize("workers", ["0", "1"])
@pytest.mark.parametrize("damage", ["missing", "corrupt"])
def test_a_missing_or_corrupt_training_image_is_named(tmp_path, capsys, damage, workers):
    csv_path = write_examples(tmp_path / "data", 16, seed=3, num_classes=4, image_size=48)
    victim = sorted((tmp_path / "data").glob("*.png"))[5]
    if damage == "missing":
        victim.unlink()
    else:
        victim.write_bytes(victim.read_bytes()[:60])
    arguments = list(TINY_RUN)
    arguments[arguments.index("--data") + 1] = str(csv_path)
    arguments[arguments.index("--workers") + 1] = workers
    assert train_main(arguments + ["--epochs", "1", "--out", str(tmp_path / "run")]) == 1
    message = capsys.readouterr().err.strip().splitlines()[-1]  # after the progress bar
    assert message.startswith("error: ") and str(victim) in message
    assert ("not found" if damage == "missing" else "cannot decode") in message


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


def test_evaluate_will_not_ship_over_a_checkpoint_that_scored_better(tmp_path, capsys):
    run = tmp_path / "run"
    train_main(TINY_RUN + ["--epochs", "1", "--out", str(run)])
    csv_path = write_examples(tmp_path / "data", 6, seed=5, num_classes=4, image_size=48)
    shipped = tmp_path / "shipped.safetensors"
    evaluate = [str(run / "model.safetensors"), str(csv_path), "--workers", "0", "--out", str(tmp_path / "eval"),
                "--ship", str(shipped)]
    assert evaluate_main(evaluate) == 0
    model, config = load_checkpoint(shipped)
    fused_v2 = config["metrics"]["validation"]["maps"]["fused"]["max_box_acc_v2"]
    # Pretend the shipped model had done better than this one will.
    config["metrics"]["validation"]["maps"]["fused"]["max_box_acc_v2"] = fused_v2 + 1
    save_checkpoint(shipped, model, backbone="tiny", class_names=config["class_names"],
                    input_size=config["input_size"], metrics=config["metrics"])
    better = shipped.read_bytes()
    capsys.readouterr()
    assert evaluate_main(evaluate) == 1
    assert "not shipping over" in capsys.readouterr().err and shipped.read_bytes() == better
    assert evaluate_main(evaluate + ["--force"]) == 0
    assert shipped.read_bytes() != better


def test_evaluate_compares_with_an_earlier_evaluation_of_the_same_images(tmp_path, capsys):
    run = tmp_path / "run"
    train_main(TINY_RUN + ["--epochs", "1", "--out", str(run)])
    model = str(run / "model.safetensors")
    images = write_examples(tmp_path / "data", 6, seed=5, num_classes=4, image_size=48)
    other_images = write_examples(tmp_path / "other", 7, seed=6, num_classes=4, image_size=48)
    evaluate = [model, str(images), "--workers", "0"]
    assert evaluate_main(evaluate + ["--out", str(tmp_path / "first")]) == 0
    assert evaluate_main(evaluate + ["--out", str(tmp_path / "again"), "--compare", str(tmp_path / "first")]) == 0
    comparison = json.loads((tmp_path / "again" / "metrics.json").read_text())["comparison"]
    assert comparison["map"] == comparison["other_map"] == "fused"
    assert comparison["margin"] == 0 and comparison["interval_95"] == [0, 0]  # the same model, image by image
    assert "MaxBoxAccV2 margin over" in (tmp_path / "again" / "results.md").read_text()

    capsys.readouterr()
    elsewhere = [model, str(other_images), "--workers", "0", "--out", str(tmp_path / "elsewhere")]
    assert evaluate_main(elsewhere + ["--compare", str(tmp_path / "first")]) == 1
    assert "evaluated other images" in capsys.readouterr().err
    assert (tmp_path / "elsewhere" / "metrics.json").is_file()  # the evaluation itself is kept
    assert evaluate_main(elsewhere + ["--compare", str(tmp_path / "nowhere")]) == 1
    assert "not found" in capsys.readouterr().err


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


def test_every_flag_has_its_one_line_help_and_a_boolean_flag_refuses_a_typo(capsys):
    from dataclasses import fields

    from acol.training.config import TrainConfig, field_comments
    comments = field_comments(TrainConfig)
    assert set(comments) == {field.name for field in fields(TrainConfig)}  # none without its comment
    with pytest.raises(SystemExit):
        train_main(["--help"])
    help_text = " ".join(capsys.readouterr().out.split())
    assert "--trainable-stages INT only the backbone's last N stages train" in help_text
    assert "--freeze-backbone BOOL train the heads only" in help_text
    with pytest.raises(SystemExit):
        train_main(TINY_RUN + ["--freeze-backbone", "ture"])
    assert "expected true or false, got 'ture'" in capsys.readouterr().err


def test_a_frozen_backbone_with_trainable_stages_is_refused_before_training(tmp_path, capsys):
    with pytest.raises(SystemExit):
        train_main(TINY_RUN + ["--freeze-backbone", "true", "--trainable-stages", "1", "--out", str(tmp_path / "run")])
    assert "disagree" in capsys.readouterr().err and not (tmp_path / "run").exists()
