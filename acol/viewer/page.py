"""The viewer's page without Gradio: what each event computes, and what the page then shows.

    app.py: layout, wiring ----> Page.open_upload / open_example / choose_model / choose_class /
            (a View becomes        toggle_cell / open_tab / export       -> View: what changes
             Gradio updates)     (acol.viewer.scripts: the endpoints scripts call, pictures each)
                                   |
                                   +-- route: an upload goes to the everyday model unless the user
                                   |   picked a model; a model shown a picture it was not made for
                                   |   says so (Explainer.note)   
                                   +-- answers (acol.viewer.answers): one explanation and payload per
                                       request, computed once on the model's device and shared

A ``Session`` is one browser tab's memory (Gradio keeps it in a ``gr.State``): the explanation
shown, with the features a class change or a hand-made mask reuses, and the CAM baseline's.
Every page event returns a ``View``: only the fields it sets change on the page (``KEEP``
elsewhere). The page precomputes, on the CPU at start-up, the first view and every bundled
example; an answer's payload holds every δ and box threshold and each event sends it opening at
the page's sliders (``acol.viewer.payload.with_view``), so clicking an example at any slider position
costs the server a cache lookup. Then the models move to their device.
"""

from __future__ import annotations

import re
import tempfile
from dataclasses import dataclass, replace
from pathlib import Path

from .answers import Answer, AnswerCache, ModelRunner, request_key
from ..core.checkpoint import CheckpointError
from ..data.images import ImageLoadError, load_rgb_image
from .drawing import compare_picture, placeholder, sweep_strip, write_figure_png, render_panels
from ..evaluation.explain import Explanation, check_cell
from ..evaluation.words import top_classes
from ..core.device import resolve_device
from .payload import snapped, with_view
from .serving import RequestTimeout, call_with_timeout
from .shelf import CheckpointShelf, ExampleImages, content_digest, page_models, route_picture

STATIC = Path(__file__).resolve().parent / "static"
CACHE_BYTES = 256 << 20       # the shared answers' memory bound (ACOL_CACHE_MB in app.py)
REQUEST_TIMEOUT_S = 20.0      # decoding and explaining one upload (ACOL_REQUEST_TIMEOUT in app.py)


def page_text(name: str) -> str:
    """One of the page's texts, CSS or templates, kept beside viewer.js in ``acol/viewer/static``."""
    return (STATIC / name).read_text()


def own_or(own: tuple, current: tuple) -> tuple:
    """A model's own settings where it has them (not None), else the page's current ones."""
    return tuple(current_value if own_value is None else own_value for own_value, current_value in zip(own, current))


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


class Page:
    """The page's logic over a shelf of checkpoints and example folders."""

    def __init__(self, shelf: CheckpointShelf, examples: ExampleImages, device="cpu", cache_bytes: int = CACHE_BYTES,
                 warn=lambda message: None, request_timeout_s: float = REQUEST_TIMEOUT_S, keep_cpu_models=False):
        """The page over ``shelf``'s models, moved to ``device`` once its examples are computed on
        the CPU; ``keep_cpu_models``: copies of them stay on the CPU (``cpu_runner``), to answer
        when the device is refused (a ZeroGPU Space that lends no GPU: acol.viewer.zerogpu)."""
        self.shelf, self.examples, self.warn = shelf, examples, warn
        self.request_timeout_s = request_timeout_s
        self.runner = ModelRunner(shelf.to("cpu").load_all())
        self.answers = AnswerCache(cache_bytes)
        self.exports = tempfile.TemporaryDirectory(prefix="acol-exports-")  # removed when the server exits
        # Each example group's files as the page holds them (Gradio's copies, set by the layout):
        # a callback may hand the page only those, not the folders' own paths.
        self.example_files: list[list[str]] = [list(group.paths) for group in examples.groups]
        self.first = self.first_view()
        self.precompute_examples()
        on_cpu = resolve_device(device).type == "cpu"
        self.cpu_runner = self.runner if on_cpu else self.runner.on_cpu() if keep_cpu_models else None
        shelf.to(device)

    # ------------------------------------------------------------------------------------------
    # What the page offers

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

    # ------------------------------------------------------------------------------------------
    # Answers: computed once, shared

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

    # ------------------------------------------------------------------------------------------
    # The page's events

    def first_view(self) -> FirstView:
        """The first model (the teaching one) on the first of its examples that tells ACoL's story
        (``acol.evaluation.story``: A on the head, B on the body and right, the fused box on the bird, checked
        with the example's parts; the first example when none does), at its own δ and box."""
        model = self.models()[0]
        delta, box = self.defaults(model)
        groups = self.examples_for(model)
        paths = self.example_files[groups[0]] if groups and delta is not None else []
        answered = []
        for path in paths:
            try:
                answered.append((path, self.answer_file(path, content_digest(path), model)))
            except (ImageLoadError, RequestTimeout):
                pass
        if not answered:
            return FirstView(model, None, Session(), {"message": self.no_examples(model)}, Update(choices=[], value=None),
                             self.about(model), delta or 0.5, box or 0.2)
        path, answer = next((pair for pair in answered if pair[1].payload["story"]["holds"]), answered[0])
        return FirstView(model, path, Session(answer.explanation), with_view(answer.payload, delta, box),
                         self.class_choices(answer.explanation), self.about(model), delta, box)

    def open_upload(self, session: Session, path, model_name, delta, box) -> View:
        """A picture the user uploaded or pasted (None: the image box was cleared)."""
        digest = None if path is None else content_digest(path)
        routed = self.route(digest, model_name, session.model_picked)
        view = View(session, model=routed, box=box)
        if routed != model_name:
            view = self.with_model(view, routed)
            delta, box = self.defaults(routed)
        return self.explained(view, path, digest, routed, delta, box)

    def open_example(self, session: Session, group: int, index, model_name, delta, box) -> View:
        """A click on one of a group's examples: it becomes the image, explained by the model shown."""
        if index is None:
            return View(session)
        path = self.example_files[group][int(index)]
        return self.explained(View(session, image=path), path, content_digest(path), model_name, delta, box)

    def choose_model(self, session: Session, path, model_name) -> View:
        """The user chose a model: its page at its own δ and box threshold, and the image explained
        by it, unless the image is an example made for another model (or there is none): then the
        model's first example (or, with none, a note asking for a photo). The image box is always
        set (to the same picture, or another)."""
        view = self.with_model(View(replace(session, model_picked=True), image=path), model_name)
        delta, box = own_or(self.defaults(model_name), (0.5, 0.2))
        groups = self.examples_for(model_name)
        digest = None if path is None else content_digest(path)
        example = self.examples.find(digest)
        if (example is not None and example.group not in groups) or path is None:
            path = self.example_files[groups[0]][0] if groups else None
            digest = None if path is None else content_digest(path)
            view.image = path
        return self.explained(view, path, digest, model_name, delta, box)

    def explained(self, view: View, path, digest, model_name, delta, box) -> View:
        """``view`` with the picture at ``path`` explained by ``model_name``: its payload, classes,
        baselines and δ slider, and the open tab's picture."""
        if path is None:
            message = (self.no_examples(model_name) if view.image is None and view.model is not KEEP
                       else "Upload or paste an image, or click an example.")
            return replace(view, session=replace(view.session, explanation=None, baseline=None),
                           payload={"message": message}, classes=Update(choices=[], value=None))
        try:
            answer = self.answer_file(path, digest, model_name)
        except (ImageLoadError, CheckpointError, RequestTimeout) as error:
            problem = str(error).replace(str(path), Path(path).name)  # never the server's paths
            self.warn(problem)
            return replace(view, session=replace(view.session, explanation=None, baseline=None),
                           payload={"message": f"**Cannot explain this:** {problem}"},
                           classes=Update(choices=[], value=None))
        explanation = answer.explanation
        delta_slider = view.delta if isinstance(view.delta, Update) else Update()
        delta_slider.interactive = explanation.num_branches > 1
        baselines = self.baseline_choices(model_name)
        view = replace(view, session=replace(view.session, explanation=explanation, baseline=None,
                                             baseline_name=baselines.value), answer=answer,
                       payload=with_view(answer.payload, delta, box), classes=self.class_choices(explanation),
                       baselines=baselines, delta=delta_slider)
        return self.with_open_tab(view, delta, by_hand=False)

    def choose_class(self, session: Session, class_index, delta, box) -> View:
        """The same picture explained for another class, erased by δ."""
        if session.explanation is None or class_index is None:
            return View(session)
        answer = self.answer_again(session.explanation, int(class_index))
        view = View(replace(session, explanation=answer.explanation), payload=with_view(answer.payload, delta, box))
        return self.with_open_tab(view, delta, by_hand=False)

    def toggle_cell(self, session: Session, row, col, delta, box, by_hand=False) -> View:
        """Erase feature cell (row, col) for branch B by hand, or restore it, starting from the
        mask the page shows; the hand-made mask lives in this session only."""
        shown = self.shown(session, delta, by_hand)
        if shown is None or row is None or col is None:
            return View(session)
        try:
            check_cell(shown, int(row), int(col))
        except ValueError as error:
            self.warn(str(error))
            return View(session)
        answer = self.runner.run("toggle_cell", shown.model_name, shown, int(row), int(col), payload=True)
        view = View(replace(session, explanation=answer.explanation), payload=with_view(answer.payload, delta, box))
        return self.with_open_tab(view, delta, by_hand=True)

    def open_tab(self, session: Session, tab: str, baseline, delta, by_hand) -> View:
        """A tab under the views was opened (or its baseline changed): draw its picture, and keep
        it following the page."""
        session = replace(session, open_tab=tab, baseline_name=session.baseline_name if baseline is None else baseline)
        return self.with_open_tab(View(session), delta, by_hand)

    def with_open_tab(self, view: View, delta, by_hand) -> View:
        """``view`` with the open tab's picture drawn (each costs about as much as the panels, so
        a closed tab's is not)."""
        session = view.session
        if session.open_tab == "sweep":
            return replace(view, sweep=self.sweep(session.explanation))
        if session.open_tab == "compare":
            session, picture = self.comparison(session, self.shown(session, delta, by_hand), session.baseline_name)
            return replace(view, session=session, comparison=picture)
        return view

    def sweep(self, explanation: Explanation | None):
        """The "Delta sweep" tab's picture."""
        if explanation is None:
            return None
        if explanation.num_branches == 1:
            return placeholder("A one-branch CAM model erases nothing: no sweep.", (640, 120))
        return sweep_strip(self.runner.run("sweep", explanation.model_name, explanation))

    def comparison(self, session: Session, explanation: Explanation | None, baseline_name) -> tuple[Session, object]:
        """(session, picture): the CAM baseline's map beside ``explanation``'s fused map (the
        baseline's computed once per image and class), each boxed at its own checkpoint's
        validated box threshold."""
        if explanation is None:
            return session, None
        if explanation.num_branches == 1:
            return session, placeholder("This is a CAM model: pick an ACoL model\nto compare with it.", (640, 120))
        if not baseline_name:
            return session, placeholder(f"No CAM checkpoint with the same classes\nin {self.shelf.folder}.", (640, 120))
        try:
            baseline = self.shelf[baseline_name]
        except CheckpointError as error:
            self.warn(str(error))
            return session, None
        known = session.baseline
        if known is None or known.model_name != baseline_name or known.target_class != explanation.target_class \
                or known.image_digest != explanation.image_digest or known.image is not explanation.image:
            known = self.runner.run("explain", baseline_name, explanation.image, true_boxes=explanation.true_boxes,
                                    true_class=explanation.true_class, digest=explanation.image_digest,
                                    target_class=explanation.target_class).explanation
        picture = compare_picture(known, explanation, baseline.default_box_threshold,
                                  self.shelf[explanation.model_name].default_box_threshold)
        return replace(session, baseline=known), picture

    def export(self, session: Session, delta, box, by_hand) -> str | None:
        """The four-panel figure of what the page shows, as a PNG file to download."""
        return self.figure_file(self.shown(session, delta, by_hand), box)

    def figure_file(self, explanation: Explanation | None, box) -> str | None:
        """The four-panel figure of ``explanation`` as a PNG file to download."""
        if explanation is None:
            self.warn("Explain an image first.")
            return None
        name = re.sub(r"\W+", "_", explanation.class_names[explanation.target_class]).strip("_")
        folder = tempfile.mkdtemp(dir=self.exports.name)  # one per export, so sessions never clash
        panels = render_panels(explanation, box, self.shelf[explanation.model_name].note(explanation))
        return str(write_figure_png(panels, Path(folder) / f"acol_{name or 'class'}.png"))

    @staticmethod
    def class_choices(explanation: Explanation) -> Update:
        """The class dropdown: branch A's top-5, the explained class chosen."""
        return Update(choices=[(f"{name} ({probability:.0%})", index)
                               for index, name, probability in top_classes(explanation)],
                      value=explanation.target_class)
