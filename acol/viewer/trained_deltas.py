"""What the training δ does: the page's picture through the same model trained at other δ.

The δ slider erases at *explanation* time, in a model whose B learned at one δ. The paper's
central hyperparameter is the δ B *trains* with (its ablation): erase little and B learns what A
learned; erase much and B has little left to learn from. Beside a model ``X.safetensors`` the
folder ``X.deltas/`` holds the same recipe trained at other δ (final weights only)::

    X.safetensors        (δ = 0.4, the page's model)     each explains the picture at its own δ:
    X.deltas/*.safetensors (δ = 0.2, 0.6, 0.8, ...)  ->  A's map, the erased cells, B's map, the
                                                         fused map and its box, B's verdict, the story
    -> payload["trained_deltas"], drawn in the browser (acol/viewer/static/deltas.js): choosing one asks
       the server nothing.
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch

from ..core.checkpoint import CheckpointError
from ..evaluation.explain import Explainer
from ..evaluation.explanation import Explanation
from ..evaluation.words import branch_b_verdict
from .payload import cell_bytes, one_state, told_story

SUFFIX = ".deltas"  # X.deltas/ beside X.safetensors


class TrainedDeltas:
    """Each model's siblings trained at other δ (``X.deltas/*.safetensors``, the same classes and
    input size), loaded once on the CPU; a sibling that does not match is left out (logged)."""

    def __init__(self, shelf):
        self.shelf = shelf
        self._loaded: dict[str, list[Explainer]] = {}

    def __getitem__(self, name: str) -> list[Explainer]:
        if name not in self._loaded:
            self._loaded[name] = self._load(name)
        return self._loaded[name]

    def _load(self, name: str) -> list[Explainer]:
        folder = self.shelf.folder / f"{name}{SUFFIX}"
        if not folder.is_dir():
            return []
        model = self.shelf[name]
        siblings = []
        for path in sorted(folder.glob("*.safetensors")):
            try:
                sibling = Explainer.from_checkpoint(path)
            except CheckpointError as error:
                logging.getLogger(__name__).warning("left out %s: %s", path, error)
                continue
            if sibling.class_names != model.class_names or sibling.config["input_size"] != model.config["input_size"] \
                    or not sibling.is_acol:
                logging.getLogger(__name__).warning("left out %s: not %s's classes, input size or kind", path, name)
                continue
            siblings.append(sibling)
        return sorted(siblings, key=lambda sibling: sibling.model.erase_threshold)


def trained_view(explainer: Explainer, explanation: Explanation, box_threshold: float) -> dict:
    """One model's view of the picture at the δ it trained with: what the section draws of it."""
    view = one_state(explanation, explainer.model, box_threshold)
    return {"delta": round(float(explainer.model.erase_threshold), 2), "model": explainer.name,
            "a": cell_bytes(explanation.output.localization_maps[0][0]), **view,
            "verdict": branch_b_verdict(explanation), "story": told_story(explanation, explainer.model, box_threshold)}


def trained_deltas_payload(explainer: Explainer, explanation: Explanation, siblings: list[Explainer],
                           box_threshold: float) -> list[dict]:
    """The picture of ``explanation`` (its class) through ``explainer``'s model and each sibling
    trained at another δ, each erasing at its own training δ, ordered by δ. Each sibling boxes at
    ``box_threshold``, the page model's: one threshold, so the boxes differ by the maps alone."""
    own = explainer.reexplain(explanation, erase_threshold=explainer.model.erase_threshold) \
        if explanation.erased_by_hand or explanation.erase_threshold != explainer.model.erase_threshold else explanation
    views = [dict(trained_view(explainer, own, box_threshold), shipped=True)]
    target = torch.tensor([explanation.target_class])
    for sibling in siblings:
        with torch.inference_mode():
            batch = sibling.input_batch(explanation.image)
            output = sibling.model(batch, target.to(sibling.device)).to("cpu")
        theirs = Explanation(sibling.name, explanation.class_names, explanation.image, explanation.true_boxes,
                             explanation.display, output, output.logits[0][0].softmax(-1), batch.shape[-1],
                             true_class=explanation.true_class, parts=explanation.parts)
        views.append(dict(trained_view(sibling, theirs, box_threshold), shipped=False))
    return sorted(views, key=lambda view: view["delta"])


def sibling_paths(checkpoint: str | Path) -> list[Path]:
    """The sibling checkpoints of ``checkpoint`` trained at other δ (for a shipping script)."""
    folder = Path(checkpoint).with_suffix(SUFFIX)
    return sorted(folder.glob("*.safetensors")) if folder.is_dir() else []
