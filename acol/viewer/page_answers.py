"""The page's answers: each picture explained once per model and class, with its payload at every
δ and box threshold, and shared by every session (``acol.viewer.answers.AnswerCache``); an upload
decoded and explained within the request time limit; what a script draws, the page exports,
compares and erases by hand from at the δ it shows. A part of ``acol.viewer.page.Page`` (it reads
the page's ``shelf``, ``examples``, ``example_files``, ``runner``, ``answers`` and
``request_timeout_s``)."""

from __future__ import annotations

from dataclasses import replace

from ..data.images import ImageLoadError, load_rgb_image
from ..evaluation.explanation import Explanation
from .answers import Answer, request_key
from .payload import snapped
from .serving import RequestTimeout, call_with_timeout
from .shelf import content_digest
from .view import Session


class PageAnswers:
    """The page's answers, computed once and shared (a part of ``Page``)."""

    def cached(self, key: tuple, compute) -> Answer:
        """The answer to ``key``, computed once and shared (``AnswerCache``), knowing its key."""
        return self.answers.get(key, lambda: replace(compute(), key=key))

    def own_delta(self, model_name: str) -> float | None:
        """The δ a model's page answers are erased at: its own (None for a CAM model)."""
        explainer = self.shelf[model_name]
        return snapped(explainer.model.erase_threshold) if explainer.is_acol else None

    def answer_file(self, path: str, digest: str, model_name: str) -> Answer:
        """The page's answer to the picture in the file at ``path`` (decoded and run within the
        request time limit): its payload, at every δ and box threshold; raises ImageLoadError,
        CheckpointError or RequestTimeout."""
        delta = self.own_delta(model_name)
        example = self.examples.find(digest)

        def compute():
            return call_with_timeout(self.request_timeout_s, lambda: self.runner.run(
                "explain", model_name, load_rgb_image(path), true_boxes=None if example is None else example.true_boxes,
                true_class=None if example is None else example.label, digest=digest, delta=delta, payload=True,
                parts=None if example is None else example.parts))
        return self.cached(request_key(digest, model_name, None, delta, True), compute)

    def answer_again(self, explanation: Explanation, target_class: int) -> Answer:
        """The page's answer to the explained picture at another class (cached by its content)."""
        model_name = explanation.model_name
        delta = self.own_delta(model_name)
        compute = lambda: self.runner.run("reexplain", model_name, explanation, target_class=target_class, delta=delta,
                                          payload=True)
        if not explanation.image_digest:
            return compute()
        return self.cached(request_key(explanation.image_digest, model_name, target_class, delta, True), compute)

    def erased_at(self, explanation: Explanation, delta: float, target_class: int | None = None) -> Answer:
        """``explanation``'s picture at ``target_class`` (None: its own) erased by ``delta``, without
        a payload: what a script draws, and what the page exports, compares and erases by hand
        from at the δ it shows. Cached by the picture's content, like the page's answers."""
        target = explanation.target_class if target_class is None else int(target_class)
        is_acol = explanation.num_branches > 1
        delta = round(float(delta), 2) if is_acol else None
        if not explanation.erased_by_hand and target == explanation.target_class and (
                not is_acol or explanation.erase_threshold == delta):  # it is erased so already
            compute = lambda: Answer(explanation, None, self.shelf[explanation.model_name].note(explanation))
        else:
            compute = lambda: self.runner.run("reexplain", explanation.model_name, explanation, target_class=target,
                                              delta=delta)
        if not explanation.image_digest:
            return compute()
        return self.cached(request_key(explanation.image_digest, explanation.model_name, target, delta, False), compute)

    def shown(self, session: Session, delta: float, by_hand: bool) -> Explanation | None:
        """The explanation the page shows: the session's when it holds the hand-made mask the page
        shows, else the session's image erased at the page's δ (which moved in the browser)."""
        explanation = session.explanation
        if explanation is None or explanation.num_branches == 1 or by_hand and explanation.erased_by_hand:
            return explanation
        return self.erased_at(explanation, snapped(delta)).explanation

    def precompute_examples(self) -> None:
        """The page's answer to every example of every model it belongs to."""
        for model_name in self.shelf.names():
            for group in self.examples_for(model_name) if self.defaults(model_name)[0] is not None else ():
                for path in self.example_files[group]:
                    try:
                        self.answer_file(path, content_digest(path), model_name)
                    except (ImageLoadError, RequestTimeout):
                        pass  # said when clicked
