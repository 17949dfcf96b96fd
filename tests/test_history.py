"""Training histories: what a run records each epoch, resuming it, refusing bad files, replaying maps."""

import copy

import pytest
import torch

from acol.core.checkpoint import load_checkpoint, save_checkpoint
from acol.evaluation.evaluate import main as evaluate_main
from acol.core.history import HistoryError, TrainingHistory, history_path, load_history, save_history
from acol.core.replay import replay, trained_stage_count
from acol.data.synthetic import write_examples
from acol.training.train import main as train_main

from conftest import REPO
from test_train import TINY_RUN, run_dir_rows

# The tiny backbone's stages are body[0:3], [3:6], [6:9], [9:12]: conv, BatchNorm, ReLU each.
LAST_STAGE = ("backbone.body.9.", "backbone.body.10.")


def train_with_history(run, *extra, epochs=2):
    assert train_main(TINY_RUN + ["--epochs", str(epochs), "--history", "true", "--out", str(run), *extra]) == 0
    return run


@pytest.fixture(scope="module")
def last_stage_run(tmp_path_factory):
    """Two epochs training the heads and the backbone's last stage, with a history."""
    return train_with_history(tmp_path_factory.mktemp("history") / "run", "--trainable-stages", "1")


@pytest.fixture(scope="module")
def cam_run(tmp_path_factory):
    return train_with_history(tmp_path_factory.mktemp("history") / "cam", "--num-branches", "1")


def loaded(run):
    model, config = load_checkpoint(run / "model.safetensors")
    return model, config, load_history(run / "history.safetensors", model, config)


def an_image(seed=0, size=32):
    return torch.randn(1, 3, size, size, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("training, backbone_recorded", [
    (["--trainable-stages", "1"], LAST_STAGE),
    (["--freeze-backbone", "true"], ()),
    ([], ("backbone.",)),
])
def test_a_run_records_epochs_0_to_n_of_exactly_what_trains_in_float16(tmp_path, training, backbone_recorded):
    run = train_with_history(tmp_path / "run", *training)
    model, config, history = loaded(run)
    state = model.state_dict()
    expected = {name for name in state if name.startswith("heads.") or (
        name.startswith(backbone_recorded) and backbone_recorded and not name.endswith("num_batches_tracked"))}
    assert set(history.names) == set(history.tensors) == expected
    assert history.epochs == [0, 1, 2]
    for name, stacked in history.tensors.items():
        assert stacked.dtype == torch.float16 and stacked.shape == (3, *state[name].shape), name
    assert not torch.equal(history.tensors["heads.1.0.weight"][0], history.tensors["heads.1.0.weight"][2])
    if backbone_recorded == LAST_STAGE:  # its BatchNorm statistics moved with its weights
        assert not torch.equal(history.tensors["backbone.body.10.running_mean"][0],
                               history.tensors["backbone.body.10.running_mean"][2])
    # The figures: none at epoch 0, then each epoch's log row, both branches' columns included.
    rows = run_dir_rows(run)
    assert history.figures[0] == {"epoch": 0}
    for row, figures in zip(rows, history.figures[1:]):
        assert {key: str(value) for key, value in figures.items()} == {k: v for k, v in row.items() if v != ""}
    assert history.series("train_loss_B")[0] is None and all(v > 0 for v in history.series("train_loss_B")[1:])
    assert history.series("val_fused_max_box_acc_v2")[1:] == [float(row["val_fused_max_box_acc_v2"]) for row in rows]
    for row in rows:  # the total loss is the sum of the branches'
        branch_sum = float(row["train_loss_A"]) + float(row["train_loss_B"])
        assert float(row["train_loss"]) == pytest.approx(branch_sum, abs=2e-3)
        assert row["train_top1"] == row["train_top1_A"] and row["train_top1_B"] != ""
    fingerprint = history.fingerprint
    assert (fingerprint["backbone"], fingerprint["num_branches"], fingerprint["input_size"]) == ("tiny", 2, 32)
    assert fingerprint["class_names"] == config["class_names"]


def test_epoch_0_is_the_model_before_its_first_step(tmp_path):
    run = train_with_history(tmp_path / "run", epochs=1)
    _, _, history = loaded(run)
    untrained = train_with_history(tmp_path / "untrained", "--max-steps-per-epoch", "1", "--lr", "0", epochs=1)
    _, _, reference = loaded(untrained)  # lr 0: the heads' weights never move
    assert torch.equal(history.tensors["heads.0.0.weight"][0], reference.tensors["heads.0.0.weight"][1])


def test_the_last_epoch_replays_the_final_checkpoints_maps(last_stage_run, tmp_path):
    model, _, history = loaded(last_stage_run)  # a float32 checkpoint (TINY_RUN)
    image = an_image()
    maps = replay(model, history, image, target_class=2, erase_threshold=0.5)
    output = model(image, target_class=torch.tensor([2]), erase_threshold=0.5)
    assert torch.allclose(maps.a_map[-1], output.localization_maps[0][0], atol=2e-2)
    assert torch.allclose(maps.b_map[-1], output.localization_maps[1][0], atol=2e-2)
    assert torch.allclose(maps.logits[-1], torch.cat(output.logits), atol=1e-2, rtol=1e-2)
    # A float16 checkpoint (as shipped) holds the very weights of the history's last epoch: the
    # same maps, up to the order of floating-point operations.
    half, config = load_checkpoint(save_checkpoint(tmp_path / "half.safetensors", model, backbone="tiny",
                                                   class_names=history.fingerprint["class_names"],
                                                   input_size=32, half=True))
    history = load_history(last_stage_run / "history.safetensors", half, config)
    maps = replay(half, history, image, target_class=2, erase_threshold=0.5)
    output = half(image, target_class=torch.tensor([2]), erase_threshold=0.5)
    assert torch.allclose(maps.a_map[-1], output.localization_maps[0][0], atol=1e-6)
    assert torch.equal(maps.erased[-1], output.erase_masks[1][0])
    assert torch.allclose(maps.b_map[-1], output.localization_maps[1][0], atol=1e-6)
    assert torch.allclose(maps.logits[-1], torch.cat(output.logits), atol=1e-6)


def test_replay_gives_every_epochs_maps_and_leaves_the_model_as_it_was(last_stage_run):
    model, _, history = loaded(last_stage_run)
    model.train()
    before = {name: tensor.clone() for name, tensor in model.state_dict().items()}
    maps = replay(model, history, an_image(), target_class=1, erase_threshold=0.4)
    assert model.training
    for name, tensor in model.state_dict().items():
        assert torch.equal(tensor, before[name]), name
    h, w = 4, 4  # 32 px at stride 8
    assert maps.epochs == [0, 1, 2] and maps.target_class == 1 and maps.erase_threshold == 0.4
    assert maps.a_map.shape == maps.b_map.shape == maps.erased.shape == (3, h, w)
    assert maps.erased.dtype == torch.bool and torch.equal(maps.erased, maps.a_map >= 0.4)
    assert maps.logits.shape == maps.probabilities.shape == (3, 2, 4)
    assert torch.allclose(maps.probabilities.sum(-1), torch.ones(3, 2))
    assert 0 <= maps.a_map.min() and maps.a_map.amax((1, 2)).eq(1).all()
    assert not torch.allclose(maps.a_map[0], maps.a_map[-1]) and not torch.allclose(maps.logits[0], maps.logits[-1])
    assert replay(model, history, an_image(), 1).erase_threshold == model.erase_threshold
    with pytest.raises(ValueError, match="one image"):
        replay(model, history, torch.randn(2, 3, 32, 32), 1)


def test_a_cam_model_replays_its_one_map(cam_run):
    model, _, history = loaded(cam_run)
    maps = replay(model, history, an_image(), target_class=0)
    assert maps.a_map.shape == (3, 4, 4) and maps.logits.shape == (3, 1, 4)
    assert maps.erased is None and maps.b_map is None


def per_epoch_models(model, history):
    """The plain way: a copy of the model with each epoch's weights loaded, run whole."""
    for index in range(len(history.epochs)):
        epoch_model = copy.deepcopy(model)
        epoch_model.load_state_dict({name: tensor.float() for name, tensor in history.weights(index).items()},
                                    strict=False)
        yield epoch_model.eval()


def test_the_frozen_front_runs_once_and_gives_the_maps_of_the_whole_model_run_per_epoch(last_stage_run):
    model, _, history = loaded(last_stage_run)
    assert trained_stage_count(model, history.names) == 1
    calls = {"front": 0, "last stage": 0}
    hooks = [model.backbone.stages[0].register_forward_hook(lambda *_: calls.__setitem__("front", calls["front"] + 1)),
             model.backbone.stages[-1].register_forward_hook(
                 lambda *_: calls.__setitem__("last stage", calls["last stage"] + 1))]
    image = an_image(seed=3)
    maps = replay(model, history, image, target_class=3, erase_threshold=0.5)
    for hook in hooks:
        hook.remove()
    assert calls == {"front": 1, "last stage": 3}
    for index, epoch_model in enumerate(per_epoch_models(model, history)):
        output = epoch_model(image, target_class=torch.tensor([3]), erase_threshold=0.5)
        assert torch.allclose(maps.a_map[index], output.localization_maps[0][0], atol=1e-6)
        assert torch.equal(maps.erased[index], output.erase_masks[1][0])
        assert torch.allclose(maps.b_map[index], output.localization_maps[1][0], atol=1e-6)
        assert torch.allclose(maps.logits[index], torch.cat(output.logits), atol=1e-5)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_replay_runs_on_the_models_device(last_stage_run):
    model, _, history = loaded(last_stage_run)
    on_cpu = replay(model, history, an_image(), 2)
    on_gpu = replay(model.cuda(), history, an_image(), 2)
    assert on_gpu.a_map.device.type == on_gpu.logits.device.type == "cuda"
    assert torch.allclose(on_gpu.a_map.cpu(), on_cpu.a_map, atol=1e-4)
    assert torch.allclose(on_gpu.logits.cpu(), on_cpu.logits, atol=1e-3)


def test_a_resumed_run_continues_the_same_history(tmp_path):
    straight = train_with_history(tmp_path / "straight")
    resumed = train_with_history(tmp_path / "resumed", epochs=1)
    assert train_main(["--resume", str(resumed), "--epochs", "2"]) == 0
    a, b = (load_history(run / "history.safetensors") for run in (straight, resumed))
    assert a.epochs == b.epochs == [0, 1, 2]
    for name in a.names:
        assert torch.equal(a.tensors[name], b.tensors[name]), name
    assert [row["train_loss_B"] for row in a.figures[1:]] == [row["train_loss_B"] for row in b.figures[1:]]

    # Killed after the history was written but before the training state was: the history holds
    # one epoch more than the run; resuming drops it and trains it again.
    again = train_with_history(tmp_path / "again", epochs=1)
    (again / "history.safetensors").write_bytes((straight / "history.safetensors").read_bytes())
    assert train_main(["--resume", str(again), "--epochs", "2"]) == 0
    c = load_history(again / "history.safetensors")
    assert c.epochs == [0, 1, 2] and all(torch.equal(a.tensors[n], c.tensors[n]) for n in a.names)


def test_a_resumed_run_refuses_a_history_that_is_not_its_own(tmp_path, capsys):
    other = train_with_history(tmp_path / "other", "--seed", "1", epochs=1)
    run = train_with_history(tmp_path / "run", epochs=1)
    (run / "history.safetensors").write_bytes((other / "history.safetensors").read_bytes())
    assert train_main(["--resume", str(run), "--epochs", "2"]) == 1
    assert "is not this model's weights" in capsys.readouterr().err


@pytest.fixture
def files(last_stage_run, cam_run):
    return last_stage_run / "history.safetensors", cam_run / "history.safetensors"


def test_a_missing_truncated_or_damaged_file_is_refused_by_name(files, tmp_path):
    path, _ = files
    data = path.read_bytes()
    with pytest.raises(HistoryError, match="no such history file"):
        load_history(tmp_path / "nowhere.history.safetensors")
    for name, damaged, message in [
        ("half", data[:len(data) // 2], "truncated or damaged"),
        ("header", data[:40], "truncated or not a safetensors file"),
        ("flipped", data[:-100] + bytes([data[-100] ^ 0xFF]) + data[-99:], "checksum"),
        ("pickle", b"\x80\x04" + b"\x00" * 64, "pickle"),
    ]:
        target = tmp_path / f"{name}.history.safetensors"
        target.write_bytes(damaged)
        with pytest.raises(HistoryError, match=message) as error:
            load_history(target)
        assert str(target) in str(error.value)


def test_a_checkpoint_is_not_a_history(last_stage_run):
    with pytest.raises(HistoryError, match="not an acol training history"):
        load_history(last_stage_run / "model.safetensors")


def test_a_history_is_refused_for_another_model(files, last_stage_run, cam_run, tmp_path):
    acol_history, cam_history = files
    acol, acol_config = load_checkpoint(last_stage_run / "model.safetensors")
    cam, cam_config = load_checkpoint(cam_run / "model.safetensors")
    with pytest.raises(HistoryError, match="another model: num_branches is 1 in the history, 2"):
        load_history(cam_history, acol, acol_config)
    with pytest.raises(HistoryError, match="another model: 6 of its tensors"):
        load_history(acol_history, cam)  # its heads.1.* (3 layers, weight and bias) are not the CAM model's
    renamed = dict(acol_config, class_names=["w", "x", "y", "z"])
    with pytest.raises(HistoryError, match="class_names"):
        load_history(acol_history, config=renamed)
    with pytest.raises(HistoryError, match="input_size is 32 in the history, 64"):
        load_history(acol_history, config=dict(acol_config, input_size=64))
    with torch.no_grad():  # the same architecture, other weights: not the model the history ends at
        acol.heads[0][0].weight.add_(0.1)
    with pytest.raises(HistoryError, match=r"last epoch \(2\) is not this model's weights"):
        load_history(acol_history, acol, acol_config)


def test_a_file_whose_tensors_do_not_fit_its_fingerprint_is_refused(files, tmp_path):
    path, _ = files
    history = load_history(path)
    history.tensors["heads.0.0.weight"] = history.tensors["heads.0.0.weight"][:2]  # an epoch short
    save_history(tmp_path / "short.history.safetensors", history)
    with pytest.raises(HistoryError, match="do not fit its own fingerprint"):
        load_history(tmp_path / "short.history.safetensors")


def test_history_files_sit_beside_their_checkpoints():
    assert history_path("runs/a/model.safetensors").as_posix() == "runs/a/history.safetensors"
    assert history_path("checkpoints/x_s8.safetensors").as_posix() == "checkpoints/x_s8.history.safetensors"


def test_a_history_grows_only_forward():
    history = TrainingHistory({"tensors": {"w": [2]}})
    history.append(0, {"w": torch.zeros(2, dtype=torch.float16)}, {"epoch": 0})
    with pytest.raises(ValueError, match="does not follow"):
        history.append(0, {"w": torch.zeros(2, dtype=torch.float16)}, {"epoch": 0})
    history.append(3, {"w": torch.ones(2, dtype=torch.float16)}, {"epoch": 3})
    assert history.up_to(2).epochs == [0] and history.up_to(5).tensors["w"].shape == (2, 2)


def test_evaluate_ships_the_history_beside_the_checkpoint(last_stage_run, cam_run, tmp_path, capsys):
    images = write_examples(tmp_path / "data", 6, seed=5, num_classes=4, image_size=48)
    shipped = tmp_path / "shipped.safetensors"
    evaluate = [str(last_stage_run / "model.safetensors"), str(images), "--workers", "0",
                "--out", str(tmp_path / "eval"), "--ship", str(shipped)]
    assert evaluate_main(evaluate) == 0
    shipped_history = tmp_path / "shipped.history.safetensors"
    assert shipped_history.read_bytes() == (last_stage_run / "history.safetensors").read_bytes()
    load_history(shipped_history, *load_checkpoint(shipped))  # the pair, as shipped, belongs together

    # A history beside the checkpoint that is not its own: nothing is shipped.
    run = tmp_path / "foreign"
    run.mkdir()
    for name in ("model.safetensors", "config.json"):
        (run / name).write_bytes((last_stage_run / name).read_bytes())
    (run / "history.safetensors").write_bytes((cam_run / "history.safetensors").read_bytes())
    before = shipped.read_bytes()
    capsys.readouterr()
    assert evaluate_main([str(run / "model.safetensors")] + evaluate[1:] + ["--force"]) == 1
    assert "history.safetensors" in capsys.readouterr().err and shipped.read_bytes() == before

    # A model without a history replaces the shipped one: the old history goes with it.
    (run / "history.safetensors").unlink()
    assert evaluate_main([str(run / "model.safetensors")] + evaluate[1:] + ["--force"]) == 0
    assert not shipped_history.exists() and "removed" in capsys.readouterr().out


TEACHING_PAIR = [REPO / "checkpoints" / f"synthetic_{kind}_efficientnet_lite0_s8.safetensors" for kind in ("acol", "cam")]


def test_the_teaching_pair_ships_with_its_histories_within_20_mb():
    histories = [history_path(path) for path in TEACHING_PAIR]
    assert sum(path.stat().st_size for path in histories) <= 20e6
    for checkpoint, path in zip(TEACHING_PAIR, histories):
        model, config = load_checkpoint(checkpoint)
        history = load_history(path, model, config)  # its architecture, and it ends at these weights
        assert history.epochs == list(range(config["recipe"]["epochs"] + 1))
        assert all(history.series(f"train_loss_{branch}")[-1] for branch in "AB"[:len(model.heads)])
