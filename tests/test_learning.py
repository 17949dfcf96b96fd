"""ACoL learns on the synthetic head/body set: the loss falls and branch B looks elsewhere.

Every synthetic object is a small, strongly class-specific head on a larger body with weaker
evidence. Branch A can win on the head alone; once A's region is erased from B's input, B can
only succeed by using what is left, so its map should put more of its mass outside the erased
region than A's map does, while still classifying well above chance.
"""

import pytest
import torch
from torch.utils.data import DataLoader

from acol import ACoL, create_backbone
from acol.data import collate_batch, eval_transform, train_transform
from acol.synthetic import SyntheticParts

SIZE, CLASSES, STEPS, BATCH = 64, 4, 400, 16


@pytest.fixture(scope="module")
def trained():
    torch.manual_seed(0)
    backbone = create_backbone("tiny")
    model = ACoL(backbone, CLASSES, erase_threshold=0.6, head_width=32)
    data = SyntheticParts(STEPS * BATCH, CLASSES, image_size=72, seed=0,
                          transform=train_transform(SIZE, backbone.mean, backbone.std, resize_size=72))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.02, momentum=0.9, weight_decay=1e-4)
    losses = []
    model.train()
    for images, labels, _ in DataLoader(data, batch_size=BATCH, shuffle=True, collate_fn=collate_batch):
        loss = model.loss(model(images, target_class=labels), labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    held_out = SyntheticParts(128, CLASSES, image_size=SIZE, seed=99,
                              transform=eval_transform(SIZE, backbone.mean, backbone.std))
    images, labels, _ = collate_batch([held_out[i] for i in range(len(held_out))])
    with torch.no_grad():
        output = model.eval()(images, target_class=labels)
    return losses, output, labels


def test_a_few_hundred_steps_lower_the_loss(trained):
    losses, _, _ = trained
    assert len(losses) == STEPS
    first, last = sum(losses[:30]) / 30, sum(losses[-30:]) / 30
    assert last < 0.7 * first, f"loss went from {first:.3f} to {last:.3f}"


def test_both_branches_classify_well_above_chance(trained):
    _, output, labels = trained
    for name, logits in zip("AB", output.logits):
        accuracy = (logits.argmax(1) == labels).float().mean().item()
        assert accuracy > 2 / CLASSES, f"branch {name}: {accuracy:.2f}"


def test_branch_b_puts_more_of_its_mass_outside_the_region_erased_for_it(trained):
    _, output, _ = trained
    erased = output.erase_masks[1].float()

    def mass_outside(maps):
        return ((maps * (1 - erased)).flatten(1).sum(1) / maps.flatten(1).sum(1).clamp_min(1e-6)).mean()

    map_a, map_b = output.localization_maps
    assert erased.mean() > 0.02, "A's map should erase something"
    assert mass_outside(map_b) > mass_outside(map_a) + 0.1
