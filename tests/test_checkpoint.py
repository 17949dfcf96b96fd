"""Checkpoints round-trip exactly, and anything else is refused with the file's name."""

import json
import pickle
import struct

import pytest
import torch

from acol import ACoL, create_backbone
from acol.core.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from acol.evaluation.scoring import map_names

from conftest import REPO


@pytest.fixture
def saved(tmp_path):
    model = ACoL(create_backbone("tiny"), 3, erase_threshold=0.7, num_branches=2, head_width=16)
    with torch.no_grad():  # make BatchNorm statistics non-default so they must be saved too
        model.backbone.body[1].running_mean.uniform_()
    path = save_checkpoint(tmp_path / "model.safetensors", model, backbone="tiny",
                           class_names=["a", "b", "c"], input_size=64,
                           recipe={"epochs": 1}, metrics={"top1": 0.5})
    return model, path


def test_round_trip_is_bit_exact_and_keeps_the_config(saved):
    model, path = saved
    loaded, config = load_checkpoint(path)
    for name, tensor in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[name], tensor), name
    assert config["class_names"] == ["a", "b", "c"] and config["input_size"] == 64
    assert config["model"] == {"backbone": "tiny", "num_classes": 3, "erase_threshold": 0.7,
                               "num_branches": 2, "head_width": 16, "head": "paper",
                               "nonnegative_class_weights": False}
    assert config["recipe"] == {"epochs": 1} and config["metrics"] == {"top1": 0.5}
    assert list(config["mean"]) == list(model.backbone.mean)
    images = torch.randn(1, 3, 64, 64)
    assert torch.equal(loaded(images).fused_map, model.eval()(images).fused_map)


def test_half_precision_checkpoints_are_smaller_and_load_as_float32(saved, tmp_path):
    model, path = saved
    half = save_checkpoint(tmp_path / "half.safetensors", model, backbone="tiny",
                           class_names=["a", "b", "c"], input_size=64, half=True)
    assert half.stat().st_size < 0.6 * path.stat().st_size
    loaded, _ = load_checkpoint(half)
    weight = loaded.heads[0][0].weight
    assert weight.dtype == torch.float32
    assert torch.allclose(weight, model.heads[0][0].weight, atol=1e-3)


def test_the_head_kind_and_the_weight_constraint_round_trip(tmp_path):
    model = ACoL(create_backbone("tiny"), 3, head="linear", nonnegative_class_weights=True)
    path = save_checkpoint(tmp_path / "linear.safetensors", model, backbone="tiny",
                           class_names=["a", "b", "c"], input_size=64)
    loaded, config = load_checkpoint(path)
    assert (loaded.head, loaded.nonnegative_class_weights) == ("linear", True)
    assert isinstance(loaded.heads[1][0], torch.nn.ReLU) and config["model"]["head"] == "linear"
    images = torch.randn(1, 3, 64, 64)
    assert torch.equal(loaded(images).fused_map, model.eval()(images).fused_map)


def test_a_file_written_before_head_kinds_existed_loads_with_the_paper_heads(saved, tmp_path):
    _, path = saved
    def drop_head_keys(config):
        del config["model"]["head"], config["model"]["nonnegative_class_weights"]
    old = rewrite_header(path, tmp_path / "old.safetensors", edit_config(drop_head_keys))
    loaded, _ = load_checkpoint(old)
    assert (loaded.head, loaded.nonnegative_class_weights) == ("paper", False)


def test_truncated_file_is_refused_with_its_name(saved, tmp_path):
    _, path = saved
    cut = tmp_path / "cut.safetensors"
    cut.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(CheckpointError, match="cut.safetensors"):
        load_checkpoint(cut)


def test_tampered_weights_are_refused(saved, tmp_path):
    _, path = saved
    data = bytearray(path.read_bytes())
    data[-5] ^= 0xFF
    tampered = tmp_path / "tampered.safetensors"
    tampered.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="tampered.safetensors.*checksum"):
        load_checkpoint(tampered)


def rewrite_header(source, target, edit):
    """Copy a safetensors file with ``edit(header_dict)`` applied, as an attacker could."""
    data = source.read_bytes()
    (size,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + size])
    edit(header)
    new_header = json.dumps(header).encode()
    new_header += b" " * (-len(new_header) % 8)
    target.write_bytes(struct.pack("<Q", len(new_header)) + new_header + data[8 + size:])
    return target


def edit_config(change):
    def edit(header):
        config = json.loads(header["__metadata__"]["config"])
        change(config)
        header["__metadata__"]["config"] = json.dumps(config)
    return edit


def test_tampered_header_is_refused(saved, tmp_path):
    _, path = saved
    bad = rewrite_header(path, tmp_path / "header.safetensors",
                         edit_config(lambda config: config["model"].update(num_classes=7)))
    with pytest.raises(CheckpointError, match="header.safetensors"):
        load_checkpoint(bad)


def test_a_wrong_class_count_is_refused(saved, tmp_path):
    _, path = saved
    bad = rewrite_header(path, tmp_path / "classes.safetensors",
                         edit_config(lambda config: config.update(class_names=["a", "b"])))
    with pytest.raises(CheckpointError, match="classes.safetensors.*2 class names for 3 classes"):
        load_checkpoint(bad)


def test_weights_of_the_wrong_shape_are_refused_even_with_a_valid_checksum(tmp_path):
    """An attacker can recompute the checksum; the shapes must still fit the declared model."""
    wide = ACoL(create_backbone("tiny"), 3, head_width=16)
    path = save_checkpoint(tmp_path / "wide.safetensors", wide, backbone="tiny",
                           class_names=["a", "b", "c"], input_size=64)
    bad = rewrite_header(path, tmp_path / "shapes.safetensors",
                         edit_config(lambda config: config["model"].update(head_width=8)))
    with pytest.raises(CheckpointError, match="shapes.safetensors.*do not fit.*misshapen"):
        load_checkpoint(bad)


def test_a_config_declaring_a_gigantic_model_is_refused_without_allocating_it(saved, tmp_path):
    """A head 10^7 channels wide would need about 23 GB before any shape check: the
    shapes are compared on the meta device, which allocates nothing."""
    _, path = saved
    bad = rewrite_header(path, tmp_path / "gigantic.safetensors",
                         edit_config(lambda config: config["model"].update(head_width=10**7)))
    with pytest.raises(CheckpointError, match="gigantic.safetensors.*do not fit"):
        load_checkpoint(bad)


@pytest.mark.parametrize("declared", [
    {"shape": [2**40, 2**20], "data_offsets": [0, 2**62]},   # far past the end of the file
    {"shape": [2**62], "data_offsets": [0, 8]},              # size and offsets disagree
])
def test_tensors_declaring_a_huge_size_are_refused(saved, tmp_path, declared):
    _, path = saved
    def edit(header):
        name = next(key for key in header if key != "__metadata__")
        header[name].update(declared)
    bad = rewrite_header(path, tmp_path / "huge.safetensors", edit)
    with pytest.raises(CheckpointError, match="huge.safetensors.*unreadable"):
        load_checkpoint(bad)


@pytest.mark.parametrize("header", [
    struct.pack("<Q", 2**63 + 5) + b"{}",            # a header length of exabytes
    struct.pack("<Q", 40_000) + b"[" * 40_000,      # deeply nested JSON
])
def test_headers_that_declare_absurd_sizes_or_nesting_are_refused(tmp_path, header):
    bad = tmp_path / "absurd.safetensors"
    bad.write_bytes(header)
    with pytest.raises(CheckpointError, match="absurd.safetensors"):
        load_checkpoint(bad)


class _Exploit:
    def __reduce__(self):
        return (exec, ("import pathlib; pathlib.Path('PWNED').write_text('x')",))


def test_pickle_files_are_refused_without_running_them(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    evil = tmp_path / "evil.pt"
    evil.write_bytes(pickle.dumps(_Exploit()))
    torch_zip = tmp_path / "model.pth"
    torch.save({"w": torch.zeros(2)}, torch_zip)
    for path in (evil, torch_zip):
        with pytest.raises(CheckpointError, match=f"{path.name}.*never unpickles"):
            load_checkpoint(path)
    assert not (tmp_path / "PWNED").exists()


def test_foreign_safetensors_and_missing_files_are_refused(tmp_path):
    from safetensors.torch import save_file
    foreign = tmp_path / "foreign.safetensors"
    save_file({"x": torch.zeros(3)}, str(foreign))
    with pytest.raises(CheckpointError, match="foreign.safetensors.*not an acol checkpoint"):
        load_checkpoint(foreign)
    with pytest.raises(CheckpointError, match="nothing.safetensors"):
        load_checkpoint(tmp_path / "nothing.safetensors")
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00not json at all!")
    with pytest.raises(CheckpointError, match="junk.safetensors"):
        load_checkpoint(junk)


def test_a_header_length_that_starts_like_a_pickle_still_loads(tmp_path):
    """Regression: a safetensors header of 0x..80 bytes begins with the byte pickles begin with."""
    model = ACoL(create_backbone("tiny"), 2, head_width=8)
    path = tmp_path / "m.safetensors"
    for padding in range(300):
        save_checkpoint(path, model, backbone="tiny", class_names=["a", "b"], input_size=32,
                        recipe={"note": "x" * padding})
        if path.read_bytes()[0] == 0x80:
            break
    assert path.read_bytes()[0] == 0x80
    loaded, config = load_checkpoint(path)
    assert config["class_names"] == ["a", "b"]


# Not the training histories shipped beside some of them (acol.history): no model in those.
SHIPPED = sorted(path for path in (REPO / "checkpoints").glob("*.safetensors")
                 if not path.name.endswith(".history.safetensors"))


def test_the_shipped_checkpoints_are_there():
    assert {path.name for path in SHIPPED} >= {"cub50_acol_efficientnet_lite0.safetensors",
                                               "cub50_cam_efficientnet_lite0.safetensors",
                                               "synthetic_acol_efficientnet_lite0_s8.safetensors",
                                               "synthetic_cam_efficientnet_lite0_s8.safetensors"}


@pytest.mark.parametrize("path", SHIPPED, ids=lambda path: path.stem)
def test_a_shipped_checkpoint_is_small_loads_and_its_card_shows_its_validation_numbers(path):
    assert path.stat().st_size < 20e6
    model, config = load_checkpoint(path)
    validation = config["metrics"]["validation"]
    assert set(config["metrics"]["cam_thresholds"]) == set(validation["maps"]) == set(map_names(len(model.heads)))
    card = (REPO / "checkpoints" / "README.md").read_text()
    final_map = validation["maps"][map_names(len(model.heads))[-1]]
    assert path.name in card and f"**{final_map['max_box_acc_v2']:.1f}**" in card, \
        "checkpoints/README.md does not show this file's MaxBoxAccV2 (re-shipped without updating the card?)"
