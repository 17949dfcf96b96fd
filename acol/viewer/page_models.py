"""What the page offers for each model: its place in the Model dropdown, its description, its
examples (or the note that it has none), its own δ and box threshold, its CAM baselines, and
which model a new picture goes to. A part of ``acol.viewer.page.Page`` (it reads the page's
``shelf``, ``examples`` and ``example_files``)."""

from __future__ import annotations

from dataclasses import replace

from ..core.checkpoint import CheckpointError
from ..evaluation.explanation import Explanation
from ..evaluation.words import top_classes
from .shelf import page_models, route_picture
from .view import KEEP, Update, View


def own_or(own: tuple, current: tuple) -> tuple:
    """A model's own settings where it has them (not None), else the page's current ones."""
    return tuple(current_value if own_value is None else own_value for own_value, current_value in zip(own, current))


class PageModels:
    """What the page offers for each model (a part of ``Page``)."""

    def models(self) -> list[str]:
        """The Model dropdown's choices (``acol.viewer.shelf.page_models``)."""
        return page_models(self.shelf, self.examples)

    def examples_for(self, model_name) -> list[int]:
        """The example groups made for a model."""
        return self.examples.for_model(self.shelf.class_names(model_name))

    def no_examples(self, model_name) -> str:
        """The note shown instead of examples when none was made for the model."""
        try:
            known = self.shelf[model_name].known_classes
        except CheckpointError:
            known = "classes"
        return f"No examples for this model here: **upload a photo** of one of its {known} (or paste one)."

    def about(self, model_name) -> str:
        """The chosen model's own description, from its checkpoint."""
        try:
            explainer = self.shelf[model_name]
        except CheckpointError as error:
            return f"**{model_name}** cannot be loaded: {error}"
        kind = "ACoL, two branches" if explainer.is_acol else "CAM, one branch"
        return f"**This model: {model_name}** ({kind}, {explainer.known_classes}). {explainer.description}"

    def baseline_choices(self, model_name) -> Update:
        """The CAM baseline dropdown's choices for a model, the first one chosen."""
        baselines = self.shelf.baselines_for(model_name)
        return Update(choices=baselines, value=next(iter(baselines), None))

    def defaults(self, model_name) -> tuple[float | None, float | None]:
        """A model's own δ and validated box threshold (None, None for a file that cannot load)."""
        try:
            explainer = self.shelf[model_name]
        except CheckpointError:
            return None, None
        return explainer.model.erase_threshold, explainer.default_box_threshold

    def route(self, digest: str | None, model_name: str, model_picked: bool) -> str:
        """The model that explains a new picture (``acol.viewer.shelf.route_picture``)."""
        return route_picture(self.shelf, self.examples, digest, model_name, model_picked)

    def with_model(self, view: View, model_name: str) -> View:
        """``view`` showing a model's page: its description, its examples (or the note that it has
        none), its δ and box threshold."""
        groups = self.examples_for(model_name)
        delta, box = self.defaults(model_name)
        return replace(view, model=model_name, about=self.about(model_name),
                       examples_shown=[index in groups for index in range(len(self.example_files))],
                       no_examples=Update(value=self.no_examples(model_name), visible=not groups),
                       box=KEEP if box is None else box, delta=KEEP if delta is None else Update(value=delta))

    @staticmethod
    def class_choices(explanation: Explanation) -> Update:
        """The class dropdown: branch A's top-5, the explained class chosen."""
        return Update(choices=[(f"{name} ({probability:.0%})", index)
                               for index, name, probability in top_classes(explanation)],
                      value=explanation.target_class)
