"""The ACoL mechanism: erasing, fusion, branches, the inference path and the fast re-run."""

import copy

import pytest
import torch

from acol import ACoL, create_backbone, erase_features, fuse_maps, normalize_maps


def tiny_acol(num_classes=3, num_branches=2, erase_threshold=0.6):
    return ACoL(create_backbone("tiny"), num_classes, erase_threshold=erase_threshold,
                num_branches=num_branches, head_width=16).eval()


def ramp_map():
    """A 4x4 map whose normalized values are 0, 1/15, ..., 1 in reading order."""
    return torch.arange(16.0).view(1, 4, 4) / 15


def test_erasing_zeroes_exactly_the_positions_at_or_above_the_threshold():
    features = torch.randn(1, 8, 4, 4) + 5
    erased, mask = erase_features(features, ramp_map(), 0.6)
    expected_mask = ramp_map() >= 0.6
    assert torch.equal(mask, expected_mask)
    assert (erased[:, :, expected_mask[0]] == 0).all()
    assert torch.equal(erased[:, :, ~expected_mask[0]], features[:, :, ~expected_mask[0]])


def test_threshold_one_erases_only_the_peak_and_above_one_erases_nothing():
    features = torch.randn(1, 8, 4, 4) + 5
    _, mask = erase_features(features, ramp_map(), 1.0)
    assert mask.sum() == 1 and mask[0, 3, 3]
    erased, mask = erase_features(features, ramp_map(), 1.01)
    assert not mask.any() and torch.equal(erased, features)


def test_branch_b_sees_features_erased_where_branch_a_map_is_high():
    model = tiny_acol()
    features = torch.rand(1, 64, 4, 4) + 1
    class_map_a = torch.zeros(1, 3, 4, 4)
    class_map_a[0, 1] = torch.arange(16.0).view(4, 4) * 2 - 7  # any affine ramp normalizes the same
    seen = {}
    model.heads[1].register_forward_pre_hook(lambda module, args: seen.setdefault("input", args[0]))
    output = model.forward_features(features, target_class=torch.tensor([1]), erase_threshold=0.6,
                                    first_class_map=class_map_a)
    erased_positions = ramp_map()[0] >= 0.6
    assert torch.equal(output.erase_masks[1][0], erased_positions)
    assert not output.erase_masks[0].any(), "branch A always sees the whole feature map"
    assert (seen["input"][0][:, erased_positions] == 0).all()
    assert torch.equal(seen["input"][0][:, ~erased_positions], features[0][:, ~erased_positions])


def test_the_erased_class_is_the_label_in_training_and_a_top1_at_inference():
    model = tiny_acol()
    images = torch.randn(2, 3, 64, 64)
    inferred = model(images)
    assert torch.equal(inferred.target_class, inferred.logits[0].argmax(1))
    chosen = model(images, target_class=torch.tensor([2, 0]))
    assert chosen.target_class.tolist() == [2, 0]
    assert torch.allclose(chosen.localization_maps[0][0],
                          normalize_maps(chosen.class_maps[0][0, 2]))


def test_normalizing_a_constant_map_gives_zeros_not_nan():
    normalized = normalize_maps(torch.full((2, 5, 5), 3.0))
    assert torch.equal(normalized, torch.zeros(2, 5, 5))
    ramp = normalize_maps(torch.tensor([[[2.0, 4.0], [6.0, 10.0]]]))
    assert torch.allclose(ramp, torch.tensor([[[0.0, 0.25], [0.5, 1.0]]]))


def test_fused_map_is_the_elementwise_max_of_the_branch_maps():
    a, b = torch.rand(2, 6, 6), torch.rand(2, 6, 6)
    assert torch.equal(fuse_maps([a, b]), torch.maximum(a, b))
    output = tiny_acol()(torch.randn(2, 3, 64, 64))
    assert torch.equal(output.fused_map, torch.maximum(*output.localization_maps))


def test_logits_are_the_global_average_of_the_class_maps():
    output = tiny_acol()(torch.randn(2, 3, 64, 64))
    for logits, class_map in zip(output.logits, output.class_maps):
        assert torch.allclose(logits, class_map.mean((2, 3)))


def test_one_branch_is_the_cam_baseline_and_three_branches_chain_the_erasing():
    cam = tiny_acol(num_branches=1)
    output = cam(torch.randn(2, 3, 64, 64))
    assert len(output.logits) == 1 and torch.equal(output.fused_map, output.localization_maps[0])
    chained = tiny_acol(num_branches=3, erase_threshold=0.5)(torch.randn(2, 3, 64, 64))
    first, second = (m.detach() >= 0.5 for m in chained.localization_maps[:2])
    assert torch.equal(chained.erase_masks[1], first)
    assert torch.equal(chained.erase_masks[2], first | second)


def test_loss_is_the_sum_of_the_branch_cross_entropies():
    model = tiny_acol().train()
    images, labels = torch.randn(4, 3, 64, 64), torch.tensor([0, 1, 2, 1])
    output = model(images, target_class=labels)
    expected = sum(torch.nn.functional.cross_entropy(l, labels) for l in output.logits)
    assert torch.allclose(model.loss(output, labels), expected)
    model.loss(output, labels).backward()
    assert all(p.grad is not None for p in model.heads[1].parameters()), "branch B is trained too"


def test_a_linear_head_maps_each_class_as_a_weighted_sum_of_the_rectified_features():
    model = ACoL(create_backbone("tiny"), 3, num_branches=2, head="linear").eval()
    images = torch.randn(2, 3, 64, 64)
    output = model(images)
    features = model.backbone(images)
    class_layer = model.heads[0].class_layer
    expected = torch.einsum("kc,bchw->bkhw", class_layer.weight[:, :, 0, 0], features.clamp(min=0))
    expected = expected + class_layer.bias.view(1, -1, 1, 1)
    assert torch.allclose(output.logits[0], expected.mean((2, 3)), atol=1e-5), "the maps' means, from pooled features"
    assert output.class_maps[0] is None, "only the target class's map is made"
    target = expected[torch.arange(2), output.target_class]
    assert torch.allclose(output.localization_maps[0], normalize_maps(target), atol=1e-5)
    assert torch.equal(output.features, features), "the head must not rectify the cached features in place"
    with pytest.raises(ValueError, match="unknown head kind 'wide'"):
        ACoL(create_backbone("tiny"), 3, head="wide")


@pytest.mark.parametrize("head", ["paper", "linear"])
def test_nonnegative_class_weights_are_clipped_at_creation_and_on_request(head):
    model = ACoL(create_backbone("tiny"), 3, head=head, head_width=8, nonnegative_class_weights=True)
    class_layers = [branch.class_layer for branch in model.heads]
    assert all(layer.weight.min() >= 0 and layer.weight.max() > 0 for layer in class_layers)
    with torch.no_grad():
        class_layers[1].weight.sub_(1)
    model.keep_class_weights_nonnegative()
    assert class_layers[1].weight.min() == 0
    hidden = model.heads[0][0].weight if head == "paper" else None
    assert hidden is None or hidden.min() < 0, "only the class layer is constrained"
    free = ACoL(create_backbone("tiny"), 3, head=head, head_width=8)
    free.keep_class_weights_nonnegative()
    assert all(branch.class_layer.weight.min() < 0 for branch in free.heads)


def test_reexplain_matches_a_full_forward_and_skips_the_backbone():
    model = tiny_acol()
    images = torch.randn(2, 3, 64, 64)
    first = model(images, erase_threshold=0.7)
    calls = []
    model.backbone.register_forward_hook(lambda *args: calls.append(1))
    again = model.reexplain(first, target_class=torch.tensor([1, 2]), erase_threshold=0.3)
    assert not calls, "the fast path must reuse the cached backbone features"
    full = model(images, target_class=torch.tensor([1, 2]), erase_threshold=0.3)
    assert torch.allclose(again.fused_map, full.fused_map, atol=1e-6)
    assert torch.equal(again.erase_masks[1], full.erase_masks[1])
    assert again.erase_threshold == 0.3


def test_a_hand_made_erase_mask_replaces_branch_as_thresholded_map_for_branch_b():
    model = tiny_acol().eval()
    images = torch.randn(1, 3, 64, 64)
    first = model(images)
    mask = torch.zeros(1, 8, 8, dtype=torch.bool)
    mask[0, 2, 3] = mask[0, 5, 5] = True
    hand = model.reexplain(first, erase_mask=mask)
    assert torch.equal(hand.erase_masks[1], mask)
    assert torch.equal(hand.class_maps[0], first.class_maps[0]), "branch A is untouched"
    erased = first.features * (~mask).unsqueeze(1)
    assert torch.allclose(hand.class_maps[1], model.heads[1](erased), atol=1e-6)
    assert torch.equal(model.reexplain(hand).erase_masks[1], first.erase_masks[1]), "no mask: δ again"


@pytest.mark.parametrize("name, channels, stride", [
    ("tiny", 64, 8), ("vgg16", 512, 8), ("resnet50", 2048, 16), ("efficientnet_lite0", 320, 16),
    ("efficientnet_lite0_cut", 112, 16), ("efficientnet_lite0_stacked", 432, 16),
    ("efficientnet_lite0_s8", 40, 8)])
def test_backbones_report_their_channels_and_stride(name, channels, stride):
    backbone = create_backbone(name).eval()
    with torch.no_grad():
        features = backbone(torch.randn(1, 3, 224, 224))
    assert (backbone.out_channels, backbone.stride) == (channels, stride)
    assert features.shape == (1, channels, 224 // stride, 224 // stride)


@pytest.mark.parametrize("name", ["tiny", "resnet50", "efficientnet_lite0_head", "efficientnet_lite0_stacked"])
def test_a_backbone_with_its_batchnorms_folded_gives_the_same_features_without_any(name):
    backbone = create_backbone(name).eval()
    with torch.no_grad():
        for norm in (m for m in backbone.modules() if isinstance(m, torch.nn.BatchNorm2d)):  # statistics to fold
            norm.running_mean.uniform_(-1, 1), norm.running_var.uniform_(0.5, 2), norm.bias.uniform_(-0.5, 0.5)
        images = torch.randn(2, 3, 96, 96)
        features = backbone(images)
        folded = copy.deepcopy(backbone).fold_batchnorm()
        assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in folded.modules())
        assert torch.allclose(folded(images), features, rtol=1e-4, atol=1e-4 * features.abs().max().item())


def test_unknown_backbone_names_the_choices():
    with pytest.raises(ValueError, match="efficientnet_lite0"):
        create_backbone("alexnet")


def test_efficientnet_lite0_imagenet_weights_load_offline_and_recognise_the_classifier_keys():
    import timm
    from acol.core.efficientnet import efficientnet_lite0_imagenet_state_dict
    full = timm.create_model("tf_efficientnet_lite0", pretrained=False)
    full.load_state_dict(efficientnet_lite0_imagenet_state_dict(), strict=True)
    backbone = create_backbone("efficientnet_lite0", weights="imagenet")
    stem = backbone.body.net.conv_stem.weight
    assert torch.equal(stem, full.conv_stem.weight)


def test_the_stacked_backbone_is_the_cut_and_the_full_features_side_by_side():
    torch.manual_seed(0)
    images = torch.randn(1, 3, 96, 96)
    stacked, cut, full = (create_backbone(name, weights="imagenet").eval() for name in
                          ("efficientnet_lite0_stacked", "efficientnet_lite0_cut", "efficientnet_lite0"))
    with torch.no_grad():
        assert torch.allclose(stacked(images), torch.cat([cut(images), full(images)], 1), atol=1e-5)


def test_the_stride_8_cut_keeps_only_the_stages_it_returns_and_matches_the_full_extractor():
    import timm
    from acol.core.efficientnet import efficientnet_lite0_imagenet_state_dict
    cut = create_backbone("efficientnet_lite0_s8", weights="imagenet").eval()
    assert len(cut.body.net.blocks) == 3  # nothing past the stride-8 stage is kept or run
    full = timm.create_model("tf_efficientnet_lite0", pretrained=False, features_only=True, out_indices=(2,))
    state = efficientnet_lite0_imagenet_state_dict()
    full.load_state_dict({k: state[k] for k in full.state_dict()})
    images = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        assert torch.allclose(cut(images), full.eval()(images)[0], atol=1e-5)


@pytest.mark.parametrize("head", ["linear", "paper"])
def test_the_erased_branch_is_the_head_on_each_erased_copy_of_the_features(head):
    model = ACoL(create_backbone("tiny"), 5, head=head, head_width=16).eval()
    with torch.no_grad():  # a linear head's bias must matter: erased cells take it
        model.heads[1].class_layer.bias.copy_(torch.linspace(-2, 2, 5))
    features = torch.rand(1, 64, 6, 6) - 0.3  # some negative: the ReLU must see them
    masks = torch.rand(4, 6, 6) > 0.5
    with torch.no_grad():
        maps, logits = model.erased_branch(features, masks, target_class=3)
        one_by_one = torch.cat([model.heads[1](features * ~mask) for mask in masks])
    torch.testing.assert_close(maps, one_by_one[:, 3])
    torch.testing.assert_close(logits, one_by_one.mean((2, 3)))
