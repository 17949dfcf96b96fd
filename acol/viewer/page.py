"""The viewer's page without Gradio: what each event computes, and what the page then shows.

    app.py: layout, wiring ----> Page.open_upload / open_example / choose_model / choose_class /
            (a View becomes        toggle_cell / open_tab / export       -> View: what changes
             Gradio updates)     (acol.viewer.scripts: the endpoints scripts call, pictures each)
                                   |
                                   +-- route: an upload goes to the everyday model unless the user
                                   |   picked a model; a model shown a picture it was not made for
                                   |   says so (Explainer.note)  (page_models.PageModels)
                                   +-- answers (page_answers.PageAnswers, acol.viewer.answers): one
                                   |   explanation and payload per request, computed once on the
                                   |   model's device and shared
                                   +-- the open tab's picture, the export (page_tabs.PageTabs)

A ``Session`` is one browser tab's memory (Gradio keeps it in a ``gr.State``): the explanation
shown, with the features a class change or a hand-made mask reuses, and the CAM baseline's.
Every page event returns a ``View`` (``acol.viewer.view``): only the fields it sets change on the
page (``KEEP`` elsewhere). The page precomputes, on the CPU at start-up, the first view and every
bundled example; an answer's payload holds every δ and box threshold and each event sends it
opening at the page's sliders (``acol.viewer.payload.with_view``), so clicking an example at any
slider position costs the server a cache lookup. Then the models move to their device.
"""

from __future__ import annotations

import tempfile
from dataclasses import replace
from pathlib import Path

from ..core.checkpoint import CheckpointError
from ..core.device import resolve_device
from ..data.images import ImageLoadError
from ..evaluation.explain import check_cell
from .answers import AnswerCache, ModelRunner
from .page_answers import PageAnswers
from .page_models import PageModels, own_or
from .page_tabs import PageTabs
from .payload import with_view
from .serving import RequestTimeout
from .shelf import CheckpointShelf, ExampleImages, content_digest
from .view import KEEP, FirstView, Session, Update, View

STATIC = Path(__file__).resolve().parent / "static"
CACHE_BYTES = 256 << 20       # the shared answers' memory bound (ACOL_CACHE_MB in app.py)
REQUEST_TIMEOUT_S = 20.0      # decoding and explaining one upload (ACOL_REQUEST_TIMEOUT in app.py)


def page_text(name: str) -> str:
    """One of the page's texts, CSS or templates, kept beside viewer.js in ``acol/viewer/static``."""
    return (STATIC / name).read_text()


class Page(PageModels, PageAnswers, PageTabs):
    """The page's logic over a shelf of checkpoints and example folders: its events here, what it
    offers for each model, its shared answers and its tabs in the classes it is made of."""

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
