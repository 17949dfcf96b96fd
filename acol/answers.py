"""Answers: what the viewer computes for a picture, made once on the model's device and shared.

    a request: (image content, model, class, δ, box threshold)
        |
        +-- AnswerCache: asked before, by any session? -> the same Answer, at once
        |     (asked right now by another session? -> wait for that one computation)
        |
        +-- ModelRunner.run(task, model, ...): the one function that runs a model for a request,
              on the model's device (the GPU a ZeroGPU Space lends each call, when app.py
              decorates it), returning CPU data only
              -> Answer(explanation on the CPU, the page's payload, the scripts' pictures once drawn)

A class of thirty clicking the same bundled example computes it once (the page precomputes its
examples at start-up: then not even once); thirty uploads of the same photo, once. A hand-made
mask is one session's own and never cached: only answers erased by δ are.
"""

from __future__ import annotations

import json
import threading
from collections import OrderedDict
from dataclasses import dataclass

import torch
from PIL import Image

from .drawing import page_pictures, render_panels
from .explain import Explainer, Explanation, branch_b_verdict
from .learning import Histories, learning_payload
from .payload import page_payload
from .shelf import CheckpointShelf
from .trained_deltas import TrainedDeltas, trained_deltas_payload


@dataclass
class Answer:
    """One picture explained by one model at one class, δ and box threshold: the explanation (its
    tensors on the CPU), what the page draws (``payload``, None when only the explanation was
    asked for), the status line's ``note`` and, once a script asked, its pictures."""

    explanation: Explanation
    payload: dict | None
    note: str = ""
    script_views: tuple | None = None  # (four pictures, status line, B's verdict), drawn on first request

    def size_bytes(self) -> int:
        """About how much memory the answer holds: its tensors, pictures and payload."""
        explanation, output = self.explanation, self.explanation.output
        tensors = [output.features, output.fused_map, explanation.probabilities, *output.logits,
                   *output.class_maps, *output.localization_maps, *output.erase_masks]
        pictures = [explanation.display, *(self.script_views[0] if self.script_views else [])]
        return (sum(t.numel() * t.element_size() for t in tensors) + sum(p.nbytes for p in pictures)
                + 3 * explanation.image.width * explanation.image.height
                + (len(json.dumps(self.payload)) if self.payload else 0))


class AnswerCache:
    """Answers by request, least recently used out first, within ``budget_bytes`` of memory; one
    computation per request however many sessions ask at once."""

    def __init__(self, budget_bytes: int):
        self.budget_bytes = budget_bytes
        self._answers: OrderedDict[tuple, tuple[Answer, int]] = OrderedDict()
        self._computing: dict[tuple, threading.Event] = {}
        self._lock = threading.Lock()
        self.held_bytes = 0
        self.hits = self.misses = 0

    def get(self, key: tuple, compute) -> Answer:
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

    def put(self, key: tuple, answer: Answer) -> None:
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

    def __len__(self) -> int:
        return len(self._answers)


class ModelRunner:
    """Runs the shelf's models for the page's requests: ``run(task, model_name, ...)`` with task
    one of explain, reexplain, toggle_cell, sweep. Everything a model computes for a request goes
    through ``run``, so on a ZeroGPU Space app.py decorates just this one function
    (``on_gpu(spaces.GPU(...))``); it takes and returns CPU data only, as ZeroGPU's worker
    process pickles both ways."""

    TASKS = ("explain", "reexplain", "toggle_cell", "sweep")

    def __init__(self, shelf: CheckpointShelf):
        self.shelf = shelf
        self.histories = Histories(shelf) if isinstance(shelf, CheckpointShelf) else None
        self.trained_deltas = TrainedDeltas(shelf) if isinstance(shelf, CheckpointShelf) else None
        self.run = self._run

    def on_gpu(self, decorate) -> None:
        """Run every request through ``decorate(run)`` (``spaces.GPU(duration=...)``)."""
        self.run = decorate(self._run)

    @torch.inference_mode()
    def _run(self, task: str, model_name: str, *args, **kwargs):
        if task not in self.TASKS:
            raise ValueError(f"unknown task {task!r}")
        return getattr(self, f"_{task}")(self.shelf[model_name], *args, **kwargs)

    def _explain(self, explainer: Explainer, image: Image.Image, *, true_boxes=None, true_class=None, digest=None,
                 target_class=None, delta=None, box_threshold=None, parts=None) -> Answer:
        """``image`` explained (and, with a ``box_threshold``, its page payload)."""
        explanation = explainer.explain(image, true_boxes, target_class, delta if explainer.is_acol else None,
                                        true_class, digest, parts)
        return self._answer(explainer, explanation, delta, box_threshold)

    def _reexplain(self, explainer: Explainer, explanation: Explanation, *, target_class=None, delta=None,
                   box_threshold=None) -> Answer:
        """The same image at another class or δ (the backbone's features reused)."""
        moved = explanation.to(explainer.device)
        explanation = explainer.reexplain(moved, target_class, delta if explainer.is_acol else None)
        return self._answer(explainer, explanation, delta, box_threshold)

    def _toggle_cell(self, explainer: Explainer, explanation: Explanation, row: int, col: int, *,
                     delta=None, box_threshold=None) -> Answer:
        """One cell erased or restored by hand, from the mask ``explanation`` shows."""
        explanation = explainer.toggle_cell(explanation.to(explainer.device), row, col)
        return self._answer(explainer, explanation, delta, box_threshold, learning=False)

    def _sweep(self, explainer: Explainer, explanation: Explanation) -> list[Explanation]:
        return [swept.to("cpu") for swept in explainer.sweep(explanation.to(explainer.device))]

    def _answer(self, explainer: Explainer, explanation: Explanation, delta, box_threshold, learning=True) -> Answer:
        """The answer, its payload when a box threshold is given, with "How it learned" when the
        model has a history and "Trained with δ" when it has siblings trained at other δ (a
        hand-made mask leaves both as they were: "unchanged")."""
        note = explainer.note(explanation)
        payload = None if box_threshold is None else page_payload(
            explanation, explainer.model, explanation.erase_threshold if delta is None else delta, box_threshold, note)
        history = None if payload is None or self.histories is None else self.histories[explainer.name]
        if history is not None:
            cam = self.histories.baseline_of(explainer.name)
            payload["learning"] = "unchanged" if not learning else learning_payload(
                explainer, explanation, history, None if cam is None else (self.shelf[cam], self.histories[cam]))
        siblings = [] if payload is None or self.trained_deltas is None else self.trained_deltas[explainer.name]
        if siblings:
            payload["trained_deltas"] = "unchanged" if not learning else trained_deltas_payload(
                explainer, explanation, siblings, box_threshold)
        return Answer(explanation.to("cpu"), payload, note)


def request_key(digest: str, model_name: str, target_class: int | None, delta: float | None,
                box_threshold: float | None) -> tuple:
    """What determines an answer: the image's content, the model, the class (None: A's top-1),
    δ (None for a CAM model) and the box threshold (None: no payload), to two decimals as the
    page's sliders set them."""
    return (digest, model_name, target_class, None if delta is None else round(float(delta), 2),
            None if box_threshold is None else round(float(box_threshold), 2))


def script_views(answer: Answer, box_threshold: float) -> tuple:
    """(four pictures, status line, B's verdict) of an answer, as the scripts' endpoints return
    them; drawn once per answer at its own box threshold."""
    def drawn():
        panels = render_panels(answer.explanation, box_threshold)
        status = panels.caption + (f"  \n{answer.note}" if answer.note else "")
        return page_pictures(panels), status, branch_b_verdict(answer.explanation)
    keep = answer.payload is not None and answer.payload["view"]["box_threshold"] == round(float(box_threshold), 2)
    if not keep:
        return drawn()
    if answer.script_views is None:
        answer.script_views = drawn()
    return answer.script_views

