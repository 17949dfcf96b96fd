"""Partial fine-tuning and the feature cache: the cached path trains exactly what the uncached
path would, on the same views, and only the trainable stages learn."""

import pytest
import torch

from acol.core.backbones import BACKBONES, create_backbone
from acol.data.transforms import train_transform
from acol.data.feature_cache import (FixedViews, compute_feature_cache, load_feature_cache,
                                save_feature_cache)
from acol.core.model import ACoL
from acol.data.synthetic import SyntheticParts
from acol.training.config import TrainConfig
from acol.training.recipe import build_model, make_optimizer, set_training_mode
from acol.training.train import train

LIGHT_BACKBONES = ["tiny", "efficientnet_lite0", "efficientnet_lite0_stacked", "efficientnet_lite0_cut"]


@pytest.mark.parametrize("name", sorted(BACKBONES))
def test_every_backbone_split_at_every_stage_gives_the_same_features(name):
    if name not in LIGHT_BACKBONES:
        pytest.importorskip("torchvision")
    backbone = create_backbone(name).eval()
    images = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        whole = backbone(images)
        for trainable_stages in range(len(backbone.stages) + 1):
            frozen, trainable = backbone.split(trainable_stages)
            assert torch.allclose(trainable(frozen(images)), whole, atol=1e-5), trainable_stages


def test_a_split_beyond_the_backbone_is_refused_clearly():
    with pytest.raises(ValueError, match="between 0 and 4"):
        create_backbone("tiny").split(5)


def tiny_setup(trainable_stages=1):
    config = TrainConfig(backbone="tiny", weights=None, trainable_stages=trainable_stages, head_width=8,
                         lr=0.1, head_lr_multiplier=1)
    torch.manual_seed(0)
    model = build_model(create_backbone("tiny"), 3, config)
    dataset = SyntheticParts(6, 3, image_size=40, transform=train_transform(32, (0.5,) * 3, (0.25,) * 3))
    return config, model, dataset


def loss_and_gradients(model, output, labels):
    model.zero_grad()
    loss = ACoL.loss(output, labels)
    loss.backward()
    return loss.detach(), {name: p.grad.clone() for name, p in model.named_parameters() if p.grad is not None}


@pytest.mark.parametrize("dtype, tolerance", [(torch.float32, 1e-5), (torch.float16, 2e-2)])
def test_the_cached_path_gives_the_uncached_loss_and_gradients_on_the_same_views(dtype, tolerance):
    config, model, dataset = tiny_setup()
    frozen, trainable = model.backbone.split(1)
    cache = compute_feature_cache(frozen, dataset, num_views=2, view_seed=7, key={}, batch_size=4,
                                  workers=0, dtype=dtype)
    views = FixedViews(dataset, 2, view_seed=7)
    chosen = [(0, 1), (3, 0), (5, 1), (2, 0)]  # (image, view)
    images = torch.stack([views[i * 2 + v][0] for i, v in chosen])
    labels = torch.tensor([dataset[i][1]["label"] for i, _ in chosen])
    assert torch.equal(labels, cache.labels[[i for i, _ in chosen]])

    set_training_mode(model, config)
    uncached = loss_and_gradients(model, model(images, target_class=labels), labels)
    cached_inputs = torch.stack([cache.views[i, v] for i, v in chosen]).float()
    cached = loss_and_gradients(model, model.forward_features(trainable(cached_inputs), labels), labels)
    assert cached[0] == pytest.approx(float(uncached[0]), rel=tolerance)
    assert uncached[1].keys() == cached[1].keys()
    for name, gradient in uncached[1].items():  # float16 rounds each cached value: compare as a whole
        assert (cached[1][name] - gradient).norm() <= tolerance * gradient.norm() + 1e-12, name


def test_views_are_fixed_by_the_view_seed_alone():
    _, _, dataset = tiny_setup()
    first, again, other = FixedViews(dataset, 3, 1), FixedViews(dataset, 3, 1), FixedViews(dataset, 3, 2)
    torch.manual_seed(123)  # whatever the global RNG was doing
    assert torch.equal(first[4][0], again[4][0])
    assert not all(torch.equal(first[i][0], other[i][0]) for i in range(6))


def test_only_the_trainable_stages_learn_and_both_branches_reach_them():
    config, model, dataset = tiny_setup(trainable_stages=1)
    frozen_stages, last = model.backbone.stages[:-1], model.backbone.stages[-1]
    assert all(not p.requires_grad for stage in frozen_stages for p in stage.parameters())
    set_training_mode(model, config)
    assert all(not m.training for stage in frozen_stages for m in stage.modules())
    assert last.training
    images = torch.stack([dataset[i][0] for i in range(4)])
    labels = torch.tensor([dataset[i][1]["label"] for i in range(4)])
    output = model(images, target_class=labels)
    # branch B's loss alone moves the last stage: it shapes the shared features
    torch.nn.functional.cross_entropy(output.logits[1], labels).backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in last.parameters() if p.ndim > 1)
    optimizer_params = {id(p) for group in make_optimizer(model, config).param_groups for p in group["params"]}
    assert optimizer_params == {id(p) for p in [*last.parameters(), *model.heads.parameters()]}


def test_a_cache_is_reused_only_for_the_same_key(tmp_path):
    _, model, dataset = tiny_setup()
    frozen, _ = model.backbone.split(1)
    cache = compute_feature_cache(frozen, dataset, 2, 0, {"views": 2}, batch_size=4, workers=0)
    path = save_feature_cache(tmp_path / "cache.safetensors", cache)
    assert torch.equal(load_feature_cache(path, {"views": 2}).views, cache.views)
    assert load_feature_cache(path, {"views": 3}) is None
    path.write_bytes(b"not a cache")
    assert load_feature_cache(path, {"views": 2}) is None


def test_a_cached_run_trains_the_last_stage_and_keeps_the_frozen_ones(tmp_path):
    from acol.core.checkpoint import load_checkpoint
    config = TrainConfig(data="synthetic", backbone="tiny", weights=None, input_size=32, synthetic_images=32,
                         batch_size=8, head_width=8, workers=0, epochs=2, trainable_stages=1, cache_views=2,
                         out=str(tmp_path / "run"), half_checkpoint=False)
    torch.manual_seed(0)
    before = create_backbone("tiny").state_dict()
    run = train(config)
    assert (run / "feature_cache.safetensors").is_file()
    model, saved = load_checkpoint(run / "model.safetensors")
    after = model.backbone.state_dict()
    assert saved["recipe"]["trainable_stages"] == 1 and saved["recipe"]["cache_views"] == 2
    last_stage = ("body.9.", "body.10.")  # its conv and BatchNorm (the ReLU has no weights)
    assert all(torch.equal(before[k], after[k]) for k in before if not k.startswith(last_stage))
    assert not torch.equal(before["body.9.weight"], after["body.9.weight"])
    assert not torch.equal(before["body.10.running_mean"], after["body.10.running_mean"])
