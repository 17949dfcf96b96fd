"""What an event of the page answers with: a ``View`` of what changes on the page (``KEEP``
elsewhere, ``Update`` for a control's new properties), and the tab's ``Session`` it carries.
Plain data, without Gradio: ``acol.viewer.gradio_adapters`` turns it into Gradio's updates."""

from __future__ import annotations

from dataclasses import dataclass

from ..evaluation.explanation import Explanation
from .answers import Answer


class Keep:
    """An output a View leaves as it is (Gradio: ``gr.skip()``)."""

    def __repr__(self) -> str:
        return "KEEP"


KEEP = Keep()


@dataclass
class Update:
    """New properties of a control; None leaves one as it is (Gradio: ``gr.update(...)``)."""

    value: object = KEEP
    choices: list | None = None
    visible: bool | None = None
    interactive: bool | None = None

    def changes(self) -> dict:
        fields_ = {"value": self.value, "choices": self.choices, "visible": self.visible,
                   "interactive": self.interactive}
        return {key: value for key, value in fields_.items() if value is not None and value is not KEEP}


@dataclass
class Session:
    """One browser tab's memory between events."""

    explanation: Explanation | None = None  # what the page shows (δ-erased, or by hand)
    baseline: Explanation | None = None     # the CAM baseline's explanation of the same image and class
    baseline_name: str | None = None        # the CAM baseline chosen for the comparison
    open_tab: str = "read"                  # whose picture follows the page: "read" (none), "sweep", "compare"
    model_picked: bool = False              # did the user choose a model? if not, uploads go to the everyday model

    def __deepcopy__(self, memo) -> "Session":
        """The same session: one is never changed in place (each event makes a new one with
        ``dataclasses.replace``), and Gradio deep-copies a State's first value for every new tab:
        every tensor of the first picture's explanation, for nothing (``tab_memory``)."""
        return self


@dataclass
class View:
    """What an event changes on the page: every field left at KEEP stays as it is."""

    session: Session
    image: object = KEEP         # the picture in the image box (an example's file), or None
    model: object = KEEP         # the Model dropdown's value (an upload routed to the everyday model)
    about: object = KEEP         # the model's description
    examples_shown: object = KEEP  # per example group, whether it is shown (list of bools)
    no_examples: object = KEEP   # Update of the note shown instead of examples
    box: object = KEEP           # the box threshold slider
    delta: object = KEEP         # Update of the δ slider
    payload: object = KEEP       # what the viewer draws (acol.viewer.payload), or {"message": ...}
    classes: object = KEEP       # Update of the class dropdown
    baselines: object = KEEP     # Update of the CAM baseline dropdown
    sweep: object = KEEP         # the "Delta sweep" tab's picture
    comparison: object = KEEP    # the "Compare with CAM" tab's picture
    answer: Answer | None = None  # not shown: the answer the payload came from (the scripts draw it)


@dataclass
class FirstView:
    """What the page is built with, so it shows a worked example before any click."""

    model: str
    image: str | None
    session: Session
    payload: dict
    classes: Update
    about: str
    delta: float
    box: float
