"""The everyday model: branch A is EfficientNet-Lite0's own ImageNet classifier, B is trained on
pooled erased features, and the checkpoint and the viewer treat it like any other model."""

import socket

import pytest
import torch
import torch.nn.functional as F
from torchvision.transforms.v2.functional import pil_to_tensor

from acol.core.checkpoint import load_checkpoint, save_checkpoint
from acol.data.images import load_rgb_image
from acol.data.readers import WSOLEvalDataset
from acol.data.transforms import eval_transform
from acol.training.everyday import (BACKBONE, UNLABELLED, EverydayConfig, EverydayPool, PooledViews, everyday_model,
                           pool_views, train_branch_b)
from acol.core.maps import normalize_maps
from conftest import REPO

PHOTO = REPO / "assets" / "everyday" / "chelsea.jpg"


@pytest.fixture(scope="module")
def model():
    return everyday_model(erase_threshold=0.6)


@pytest.fixture(scope="module")
def photo(model):
    return eval_transform(224, model.backbone.mean, model.backbone.std)(pil_to_tensor(load_rgb_image(PHOTO)))[None]


def pretrained_network():
    """timm's EfficientNet-Lite0 with its classifier, as the ImageNet weights make it (stride 16)."""
    import timm

    from acol.core.efficientnet import efficientnet_lite0_imagenet_state_dict
    network = timm.create_model("tf_efficientnet_lite0", pretrained=False, output_stride=16)
    network.load_state_dict(efficientnet_lite0_imagenet_state_dict())
    return network.eval()


@torch.no_grad()
def test_branch_a_is_the_pretrained_classifier_and_its_map_the_pretrained_cam(model, photo):
    output = model(photo)
    expected = pretrained_network()(photo)
    assert torch.allclose(output.logits[0], expected, atol=1e-4)
    assert output.logits[0].argmax().item() in (281, 282, 285)  # the cat is a tabby, tiger cat or Egyptian cat
    assert output.localization_maps[0].shape[-2:] == (14, 14)  # stride 16 at 224 px


@torch.no_grad()
def test_branch_b_sees_exactly_the_cells_where_as_map_reaches_delta(model, photo):
    output = model(photo)
    a_map = output.localization_maps[0][0]
    erased = a_map >= model.erase_threshold
    assert torch.equal(output.erase_masks[1][0], erased) and 0 < erased.sum() < erased.numel()
    bias = model.heads[1].class_layer.bias[output.target_class[0]]
    kept_map = model.heads[1](output.features)[0, output.target_class[0]]
    # nothing left where erased but B's bias; elsewhere B sees the features whole
    b_map = torch.where(erased, bias, kept_map)
    assert torch.allclose(output.localization_maps[1][0], normalize_maps(b_map), atol=1e-5)


@torch.no_grad()
def test_b_trained_on_pooled_kept_features_gives_the_models_own_b_logits(model, photo):
    """The identity B's training rests on: B's logits on the erased features are B applied to
    the kept cells' features summed over all cells."""
    features = model.backbone(photo)
    target = model.heads[0](features).mean((2, 3)).argmax(1)
    a_map = normalize_maps(model.heads[0](features)[torch.arange(1), target])
    kept = (features * (a_map < 0.6).unsqueeze(1)).mean((2, 3))
    layer = model.heads[1].class_layer
    pooled = F.linear(kept, layer.weight.flatten(1), layer.bias)
    assert torch.allclose(pooled, model(photo).logits[1], atol=1e-4)


class _Photos(torch.utils.data.Dataset):
    def __init__(self, images, labels):
        self.images, self.labels = images, labels

    def __len__(self):
        return len(self.images)

    def __getitem__(self, index):
        return self.images[index], {"label": self.labels[index], "boxes": torch.zeros(0, 4), "image_id": str(index)}


def test_pool_views_erase_by_the_label_where_known_and_by_as_guess_elsewhere(model, photo):
    images = torch.cat([photo, photo.flip(-1)])
    pooled = pool_views(model, _Photos(list(images), [285, UNLABELLED]), views=1, view_seed=0, workers=0,
                        deltas=(0.6,))
    guess = pooled.a_logits[1, 0].float().argmax()
    assert pooled.targets().tolist() == [[285], [int(guess)]]
    with torch.no_grad():
        output = model(images[:1], target_class=torch.tensor([285]))
        expected = (output.features * ~output.erase_masks[1].unsqueeze(1)).mean((2, 3))
    assert torch.allclose(pooled.kept[0, 0, 0].float(), expected[0], atol=1e-2)


def test_training_moves_b_toward_its_targets_and_leaves_a_and_the_backbone_alone(model):
    import copy
    trained = copy.deepcopy(model)
    before = {name: tensor.clone() for name, tensor in trained.state_dict().items()}
    generator = torch.Generator().manual_seed(0)
    kept = torch.rand(64, 2, 1, 1280, generator=generator).half()
    a_logits = torch.randn(64, 2, 1000, generator=generator).half()
    labels = torch.randint(1000, (64,), generator=generator)
    pooled = PooledViews(kept, a_logits, labels, (0.6,))
    config = EverydayConfig(erase_threshold=0.6, epochs=30, batch_size=16, lr=0.5)
    history = train_branch_b(trained, pooled, config)
    assert history[-1]["loss"] < history[0]["loss"] and history[-1]["train_b_right"] > history[0]["train_b_right"]
    changed = {name for name, tensor in trained.state_dict().items() if not torch.equal(tensor, before[name])}
    assert changed == {"heads.1.1.weight", "heads.1.1.bias"}
    with pytest.raises(ValueError, match="not cached"):
        train_branch_b(trained, pooled, EverydayConfig(erase_threshold=0.5))


def test_the_checkpoint_round_trips_and_loads_without_the_network(model, photo, tmp_path, monkeypatch):
    path = save_checkpoint(tmp_path / "everyday.safetensors", model, backbone=BACKBONE,
                           class_names=[f"class {k}" for k in range(1000)], input_size=224,
                           recipe={"pool": "everyday_pool"}, half=True)
    assert path.stat().st_size < 20e6

    def no_network(*args, **kwargs):
        raise AssertionError("loading a checkpoint tried to reach the network")
    monkeypatch.setattr(socket.socket, "connect", no_network)
    loaded, config = load_checkpoint(path)
    assert config["model"]["backbone"] == BACKBONE and config["recipe"]["pool"] == "everyday_pool"
    with torch.no_grad():
        assert torch.allclose(loaded(photo).logits[0], model(photo).logits[0], atol=0.05)  # float16 weights


def test_the_pool_reads_labelled_and_unlabelled_photos(tmp_path):
    (tmp_path / "imagenet_samples.csv").write_text("path,label,x0,y0,x1,y1\na.jpg,7,,,,\n")
    (tmp_path / "voc_animals_objects.csv").write_text(
        "path,object,x0,y0,x1,y1\nb.jpg,dog,1,2,30,40\nb.jpg,cat,5,5,9,9\n")
    (tmp_path / "coco128_objects.csv").write_text("path,object,x0,y0,x1,y1\nc.jpg,cup,0,0,10,10\n")
    pool = EverydayPool(tmp_path)
    assert [(r.image_id, r.label, len(r.boxes)) for r in pool.records] == [
        ("a.jpg", 7, 0), ("b.jpg", UNLABELLED, 2), ("c.jpg", UNLABELLED, 1)]


def test_wsolevaluation_metadata_with_several_boxes_per_photo(tmp_path):
    from PIL import Image
    (tmp_path / "images").mkdir()
    Image.new("RGB", (100, 50)).save(tmp_path / "images" / "one.jpg")
    (tmp_path / "image_ids.txt").write_text("images/one.jpg\n")
    (tmp_path / "class_labels.txt").write_text("images/one.jpg,2\n")
    (tmp_path / "localization.txt").write_text("images/one.jpg,1,2,30,40\nimages/one.jpg,50,10,90,45\n")
    (tmp_path / "class_names.txt").write_text("tench\ngoldfish\ngreat white shark\n")
    dataset = WSOLEvalDataset(tmp_path, tmp_path, eval_transform(32))
    image, target = dataset[0]
    assert dataset.class_names[target["label"]] == "great white shark"
    assert target["boxes"].flatten().tolist() == pytest.approx([0.32, 1.28, 9.6, 25.6, 16.0, 6.4, 28.8, 28.8])


def test_evaluate_says_how_often_b_still_names_as_class():
    from acol import ACoL, create_backbone
    from acol.evaluation.scoring import compute_metrics, run_inference
    model = ACoL(create_backbone("tiny"), 3, erase_threshold=1.01, num_branches=2, head="linear").eval()
    model.heads[1].load_state_dict(model.heads[0].state_dict())  # B = A, and nothing reaches δ: B sees what A saw
    images = torch.rand(4, 3, 32, 32)
    batches = [(images, torch.tensor([0, 1, 2, 0]), [{"boxes": torch.tensor([[0, 0, 16, 16]]), "image_id": str(i)}
                                                      for i in range(4)])]
    assert compute_metrics(run_inference(model, batches, progress=False), progress=False)["b_names_a_class"] == 100
    with torch.no_grad():
        model.heads[1].class_layer.bias[:] = torch.tensor([0.0, 0.0, 1e6])  # B now always says class 2
    inference = run_inference(model, batches, progress=False)
    names_a = (model(images).logits[0].argmax(1) == 2).float().mean().item() * 100
    assert compute_metrics(inference, progress=False)["b_names_a_class"] == pytest.approx(names_a)
