"""Answers: what the viewer computes for a picture, made once on the model's device and shared.

    a request: (image content, model, class, δ the explanation is erased at, with the payload?)
        |
        +-- AnswerCache: asked before, by any session? -> the same Answer, at once
        |     (asked right now by another session? -> wait for that one computation)
        |
        +-- ModelRunner.run(task, model, ...): the one function that runs a model for a request,
              on the model's device (the GPU a ZeroGPU Space lends each call, when app.py
              decorates it; acol.viewer.zerogpu), returning CPU data only
              -> Answer(explanation on the CPU, the page's payload when asked for)

The page's answer to a picture is its payload, which holds every δ step and every box threshold:
the sliders only choose the view the browser opens on (``acol.viewer.payload.with_view``), so it is
keyed without them, and its explanation is erased at the model's own δ. A click on an example at
any slider position is answered from the answers made at start-up. An explanation erased at
another δ (what a script draws, or what a session exports and compares at the δ its page shows)
is an answer of its own, without a payload. A class of thirty clicking the same bundled example
computes it not even once; thirty uploads of the same photo, once. A hand-made mask is one
session's own and never cached. The scripts' pictures of an answer are cached beside it
(``ScriptPictures``), counted in the same memory bound.
"""

from __future__ import annotations

import json
import threading
from collections import OrderedDict
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image

from ..core.checkpoint import CheckpointError
from ..evaluation.explain import Explainer
from ..evaluation.explanation import Explanation
from ..evaluation.words import branch_b_verdict
from .drawing import page_pictures, render_panels
from .learning import Histories, learning_payload
from .payload import page_payload
from .shelf import CheckpointShelf
from .trained_deltas import TrainedDeltas, trained_deltas_payload


@dataclass
class Answer:
    """One picture explained by one model at one class: the explanation (its tensors on the CPU),
    erased at one δ or by hand, what the page draws (``payload``: every δ and box threshold;
    None when only the explanation was asked for), the status line's ``note``, and the request
    ``key`` it is cached under (None: not cached, a hand-made mask)."""

    explanation: Explanation
    payload: dict | None
    note: str = ""
    key: tuple | None = None

    def size_bytes(self) -> int:
        """About how much memory the answer holds: its tensors, picture and payload."""
        explanation, output = self.explanation, self.explanation.output
        tensors = [output.features, output.fused_map, explanation.probabilities, *output.logits,
                   *(maps for maps in output.class_maps if maps is not None), *output.localization_maps,
                   *output.erase_masks]
        return (sum(t.numel() * t.element_size() for t in tensors) + explanation.display.nbytes
                + 3 * explanation.image.width * explanation.image.height
                + (len(json.dumps(self.payload)) if self.payload else 0))


@dataclass
class ScriptPictures:
    """What the scripts' endpoints return for an answer at one box threshold: the four pictures,
    the status line and B's verdict."""

    pictures: list[np.ndarray]
    status: str
    verdict: str

    @classmethod
    def drawn(cls, answer: Answer, box_threshold: float) -> "ScriptPictures":
        panels = render_panels(answer.explanation, box_threshold)
        status = panels.caption + (f"  \n{answer.note}" if answer.note else "")
        return cls(page_pictures(panels), status, branch_b_verdict(answer.explanation))

    def size_bytes(self) -> int:
        return sum(picture.nbytes for picture in self.pictures) + len(self.status) + len(self.verdict)


class AnswerCache:
    """Answers (and the scripts' pictures of them) by request, least recently used out first,
    within ``budget_bytes`` of memory (each value's ``size_bytes()``); one computation per
    request however many sessions ask at once."""

    def __init__(self, budget_bytes: int):
        self.budget_bytes = budget_bytes
        self._answers: OrderedDict[tuple, tuple[object, int]] = OrderedDict()
        self._computing: dict[tuple, threading.Event] = {}
        self._lock = threading.Lock()
        self.held_bytes = 0
        self.hits = self.misses = 0

    def get(self, key: tuple, compute):
        """The answer to ``key``: cached, or ``compute()``d here once (other askers wait for it;
        if it fails they try again themselves)."""
        while True:
            with self._lock:
                if key in self._answers:
                    self._answers.move_to_end(key)
                    self.hits += 1
                    return self._answers[key][0]
                waiting = self._computing.get(key)
                if waiting is None:
                    self._computing[key] = threading.Event()
                    self.misses += 1
                    break
            waiting.wait()
        try:
            answer = compute()
            self.put(key, answer)
            return answer
        finally:
            with self._lock:
                self._computing.pop(key).set()

    def put(self, key: tuple, answer) -> None:
        size = answer.size_bytes()
        with self._lock:
            if key in self._answers:
                self.held_bytes -= self._answers.pop(key)[1]
            if size > self.budget_bytes:
                return  # larger than the whole budget: served, never kept
            self._answers[key] = (answer, size)
            self.held_bytes += size
            while self.held_bytes > self.budget_bytes:
                self.held_bytes -= self._answers.popitem(last=False)[1][1]

    def size_of(self, key: tuple) -> int | None:
        """The bytes the cache counts for ``key`` (None: not held)."""
        with self._lock:
            held = self._answers.get(key)
        return None if held is None else held[1]

    def __len__(self) -> int:
        return len(self._answers)


class ModelRunner:
    """Runs the shelf's models for the page's requests: ``run(task, model_name, ...)`` with task
    one of explain, reexplain, toggle_cell, sweep. Everything a model computes for a request goes
    through ``run``, so on a ZeroGPU Space app.py decorates just this one function (acol.viewer.zerogpu);
    it takes and returns CPU data only, as ZeroGPU's worker process pickles both ways."""

    TASKS = ("explain", "reexplain", "toggle_cell", "sweep")

    def __init__(self, shelf: CheckpointShelf, histories: Histories | None = None):
        self.shelf = shelf
        self.histories = histories or (Histories(shelf) if isinstance(shelf, CheckpointShelf) else None)
        self.trained_deltas = TrainedDeltas(shelf) if isinstance(shelf, CheckpointShelf) else None
        self.run = self.run_here

    def on_cpu(self) -> "ModelRunner":
        """A runner over copies of this one's models on the CPU (its histories shared): what a
        ZeroGPU Space answers on when it lends no GPU, as its own models then live packed away
        for the GPU worker."""
        if self.histories is not None:  # loaded now, while this runner's models are still at hand to check them by
            for name in self.shelf.names():
                try:
                    self.histories[name]
                except CheckpointError:
                    pass  # a file that cannot load says so when chosen
        return ModelRunner(self.shelf.copy_on_cpu(), self.histories)

    @torch.inference_mode()
    def run_here(self, task: str, model_name: str, *args, **kwargs):
        """``task`` run in this process, on the device its model is on."""
        if task not in self.TASKS:
            raise ValueError(f"unknown task {task!r}")
        return getattr(self, f"_{task}")(self.shelf[model_name], *args, **kwargs)

    def _explain(self, explainer: Explainer, image: Image.Image, *, true_boxes=None, true_class=None, digest=None,
                 target_class=None, delta=None, payload=False, parts=None) -> Answer:
        """``image`` explained, erased at ``delta`` (None: the model's own), with the page's
        payload when asked for."""
        explanation = explainer.explain(image, true_boxes, target_class, delta if explainer.is_acol else None,
                                        true_class, digest, parts)
        return self._answer(explainer, explanation, payload)

    def _reexplain(self, explainer: Explainer, explanation: Explanation, *, target_class=None, delta=None,
                   payload=False) -> Answer:
        """The same image at another class or δ (the backbone's features reused)."""
        moved = explanation.to(explainer.device)
        explanation = explainer.reexplain(moved, target_class, delta if explainer.is_acol else None)
        return self._answer(explainer, explanation, payload)

    def _toggle_cell(self, explainer: Explainer, explanation: Explanation, row: int, col: int, *,
                     payload=False) -> Answer:
        """One cell erased or restored by hand, from the mask ``explanation`` shows."""
        explanation = explainer.toggle_cell(explanation.to(explainer.device), row, col)
        return self._answer(explainer, explanation, payload, learning=False)

    def _sweep(self, explainer: Explainer, explanation: Explanation) -> list[Explanation]:
        return [swept.to("cpu") for swept in explainer.sweep(explanation.to(explainer.device))]

    def _answer(self, explainer: Explainer, explanation: Explanation, payload: bool, learning=True) -> Answer:
        """The answer, with the page's payload when asked for (opening on the model's own δ and
        box threshold), "How it learned" in it when the model has a history and "Trained with δ"
        when it has siblings trained at other δ (a hand-made mask leaves both as they were:
        "unchanged")."""
        note = explainer.note(explanation)
        drawn = None if not payload else page_payload(
            explanation, explainer.model, explainer.model.erase_threshold, explainer.default_box_threshold, note,
            explainer.config.get("recipe", {}).get("erase_threshold"))
        history = None if drawn is None or self.histories is None else self.histories[explainer.name]
        if history is not None:
            cam = self.histories.baseline_of(explainer.name)
            drawn["learning"] = "unchanged" if not learning else learning_payload(
                explainer, explanation, history, None if cam is None else (self.shelf[cam], self.histories[cam]))
        siblings = [] if drawn is None or self.trained_deltas is None else self.trained_deltas[explainer.name]
        if siblings:
            drawn["trained_deltas"] = "unchanged" if not learning else trained_deltas_payload(
                explainer, explanation, siblings, explainer.default_box_threshold)
        return Answer(explanation.to("cpu"), drawn, note)


def request_key(digest: str, model_name: str, target_class: int | None, delta: float | None, payload: bool) -> tuple:
    """What an answer depends on: the image's content, the model, the class (None: A's top-1), the
    δ its explanation is erased at (None for a CAM model, which erases nothing) and whether it
    holds the page's payload (which holds every δ and box threshold: the sliders are no part of
    the key)."""
    return digest, model_name, target_class, None if delta is None else round(float(delta), 2), payload


def pictures_key(answer_key: tuple, box_threshold: float) -> tuple:
    """Where the scripts' pictures of a cached answer at one box threshold are cached."""
    return *answer_key, "pictures", round(float(box_threshold), 2)
