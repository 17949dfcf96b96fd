"""How it learned: one picture's maps after every epoch of a model's training, for the page.

    X.safetensors + X.history.safetensors (acol.core.history, checked against the model)
        replay(model, history, the picture, its class, the δ it trained with)
            -> every epoch's A map, erased cells, B map, and what each branch said
        the CAM baseline's history, when it has one -> every epoch's CAM map, same class
        both histories' figures -> each branch's training loss and accuracy per epoch
    -> learning_payload: cells as bytes (0-255, as ``acol.viewer.payload`` sends them), each map's
       range once resized to the picture, one line of words per epoch, the figures

The page draws it in the browser (``acol/viewer/static/learning.js``): moving the Epoch slider asks the
server nothing. The erasing shown is at the δ the model trained with, what B saw while learning.
"""

from __future__ import annotations

import logging

import torch

from ..core.history import HistoryError, TrainingHistory, history_path, load_history
from ..core.maps import upsample_maps
from ..core.replay import replay
from ..evaluation.explain import Explainer
from ..evaluation.explanation import Explanation
from ..evaluation.story import peak_cell
from .payload import cell_bytes

FIGURES = {"loss_A": "train_loss_A", "loss_B": "train_loss_B", "top1_A": "train_top1_A", "top1_B": "train_top1_B"}


class Histories:
    """Each model's training history, loaded and checked once; None for a model without one, or
    with a file that fails its checks (then the page simply has no history view for that model,
    and the server's log says why)."""

    def __init__(self, shelf):
        self.shelf = shelf
        self._loaded: dict[str, TrainingHistory | None] = {}

    def __getitem__(self, name: str) -> TrainingHistory | None:
        if name not in self._loaded:
            self._loaded[name] = None
            path = history_path(self.shelf.folder / f"{name}.safetensors")
            if path.is_file():
                explainer = self.shelf[name]
                try:
                    self._loaded[name] = load_history(path, explainer.model, explainer.config)
                except HistoryError as error:
                    logging.getLogger(__name__).warning("no history view for %s: %s", name, error)
        return self._loaded[name]

    def baseline_of(self, name: str) -> str | None:
        """The CAM baseline shown beside a model's history: the first of its baselines that has one."""
        return next((cam for cam in self.shelf.baselines_for(name) if self[cam] is not None), None)


def _cells(maps: torch.Tensor) -> list[str]:
    return [cell_bytes(one.float()) for one in maps.cpu()]


def _ranges(maps: torch.Tensor, size) -> list[list[float]]:
    resized = upsample_maps(maps.float(), size)
    return torch.stack([resized.amin((-2, -1)), resized.amax((-2, -1))], -1).cpu().tolist()


def _figures(history: TrainingHistory, prefix: str = "") -> dict:
    return {prefix + name: history.series(key) for name, key in FIGURES.items() if any(history.series(key))}


def epoch_words(epoch: int, probabilities: torch.Tensor, target_class: int, class_names: list[str]) -> str:
    """One line on what each branch said after ``epoch``: its top class and its probability, and
    its probability of the class the maps are of when that is not its top class."""
    when = "before training (epoch 0)" if epoch == 0 else f"after epoch {epoch}"
    said = []
    for branch, scores in zip("AB", probabilities):
        best = int(scores.argmax())
        part = f"{branch} says {class_names[best]} ({float(scores[best]):.0%})"
        if best != target_class:
            part += f", {class_names[target_class]} {float(scores[target_class]):.0%}"
        said.append(part)
    return f"{when}: " + " · ".join(said)


def learning_payload(explainer: Explainer, explanation: Explanation, history: TrainingHistory,
                     baseline: tuple[Explainer, TrainingHistory] | None = None) -> dict:
    """What the "How it learned" view draws of ``explanation``'s picture and class, every epoch
    of ``history`` batched in one replay (the backbone's frozen front run once)."""
    size = explanation.display.shape[:2]
    target, delta = explanation.target_class, explainer.model.erase_threshold
    batch = explainer.input_batch(explanation.image)
    maps = replay(explainer.model, history, batch, target, delta)
    payload = {"epochs": maps.epochs, "delta": delta, "a": _cells(maps.a_map), "a_range": _ranges(maps.a_map, size),
               "mask": None if maps.erased is None else _cells(maps.erased),
               "b": None if maps.b_map is None else _cells(maps.b_map),
               "b_range": None if maps.b_map is None else _ranges(maps.b_map, size),
               "a_peak": [peak_cell(one) for one in maps.a_map],
               "b_peak": None if maps.b_map is None else [peak_cell(one) for one in maps.b_map],
               "words": [epoch_words(epoch, scores, target, explanation.class_names)
                         for epoch, scores in zip(maps.epochs, maps.probabilities.cpu())],
               "figures": _figures(history), "cam": None, "cam_model": None}
    if baseline is not None:
        cam, cam_history = baseline
        cam_maps = replay(cam.model, cam_history, cam.input_batch(explanation.image), target)
        cam_a = cam_maps.a_map[[cam_maps.epochs.index(epoch) for epoch in maps.epochs if epoch in cam_maps.epochs]]
        if len(cam_a) == len(maps.epochs):  # drawn beside A only when it has every epoch A has
            payload.update(cam=_cells(cam_a), cam_range=_ranges(cam_a, size), cam_model=cam.name,
                           cam_peak=[peak_cell(one) for one in cam_a])
            payload["figures"].update(_figures(cam_history, "cam_"))
    return payload
