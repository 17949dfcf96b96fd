"""The ACoL viewer: a Gradio page, layout and callbacks only. Explaining is ``acol.explain``,
the pictures ``acol.drawing``, what keeps the server small ``acol.serving``.

    python app.py [--checkpoints DIR] [--examples DIR] [--share]

Binds 127.0.0.1:7860 unless GRADIO_SERVER_NAME / GRADIO_SERVER_PORT say otherwise (as on
Hugging Face Spaces). Every event has an ``api_name``, so ``gradio_client`` can script the page.
"""

from __future__ import annotations

import argparse
import os
import re
import tempfile
from dataclasses import dataclass, replace
from pathlib import Path

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
# Gradio keeps a record of every event for its monitoring page (10,000 by default) and, after
# each event, summarizes them all with pandas: work and memory that grow with traffic. Keep
# 1,000 and summarize every 1,000 events (bench/app_load.py measures the difference).
os.environ.setdefault("GRADIO_ANALYTICS_MAX_EVENTS", "1000")
os.environ.setdefault("GRADIO_ANALYTICS_CACHE_FREQUENCY", "1000")

import gradio as gr  # noqa: E402  (after the offline settings above)

from acol.checkpoint import CheckpointError  # noqa: E402
from acol.data import ImageLoadError, load_rgb_image  # noqa: E402
from acol.drawing import (compare_picture, page_pictures, placeholder, render_panels, sweep_strip,  # noqa: E402
                          write_figure_png)
from acol.explain import Explanation, branch_b_verdict, lesson_strength, top_classes  # noqa: E402
from acol.payload import SLIDER_STEP, page_payload, snapped  # noqa: E402
from acol.serving import (CheckpointShelf, ExampleImages, RequestTimeout, ViewerCache,  # noqa: E402
                          call_with_timeout, keep_trimming_freed_memory, map_large_blocks_separately)

REPO = Path(__file__).resolve().parent
CHECKPOINTS = REPO / "checkpoints"
EXAMPLES = REPO / "assets" / "examples"
EVERYDAY_EXAMPLES = REPO / "assets" / "everyday"  # redistributable photos for the everyday model
# System fonts: the default theme would fetch its fonts from Google, and the page must run offline.
THEME = gr.themes.Soft(font=["ui-sans-serif", "system-ui", "sans-serif"],
                       font_mono=["ui-monospace", "monospace"])
# Resource bounds (README, "Limits"). Uploads above 25 megapixels are refused or, for JPEGs,
# decoded at a reduced scale (acol.data.MAX_IMAGE_PIXELS).
MAX_UPLOAD = os.environ.get("ACOL_MAX_UPLOAD", "20mb")
REQUEST_TIMEOUT_S = float(os.environ.get("ACOL_REQUEST_TIMEOUT", "20"))  # decoding + explaining one upload
QUEUE_LIMIT = int(os.environ.get("ACOL_QUEUE_LIMIT", "64"))  # waiting events; more are turned away
# The page's sliders are drawn in the browser; a script's slider move (/set_erase_threshold) re-runs
# only the later branches and draws three pictures (~30 ms of CPU): two at once keep both cores of
# a small host busy. Uploads, which run the backbone, go one at a time.
SLIDER_CONCURRENCY = 2
CSS = """
#figure-file .empty { min-height: 4rem; height: 4rem; }  /* not a tall drop zone: it is output only */
#views-column { flex: 1 1 100% !important; order: 4; }  /* a row of its own under the image and controls */
@media (max-width: 640px) {  /* a phone: the picture, then its maps, then the controls */
  #image-column { order: 1; } #views-column { order: 2; } #controls-column { order: 3; } #examples-column { order: 4; }
}
"""

HOW_TO_READ = """
### How to read the views
**Branch A's map.** ACoL's first classifier ends in a 1x1 convolution with one channel per class;
the chosen class's channel, min-max normalized to [0, 1], is its localization map, and its
average is the class score. So it lights up the evidence that classified the image.

Hover any panel to read one feature cell's values in all four: A's map, erased or kept, B's map
and the fused map there. Moving δ or the box threshold redraws the views in your browser at once.

**Erased features.** ACoL zeroes the backbone *feature* cells where A's map is >= δ (blue).
Each grid cell is one position of the feature map, a square patch of the model's input (the
line above the views counts them): whole cells are erased, not pixels. A lower δ erases more.
**Click a cell** to erase or restore it by hand and see what B makes of your mask; moving δ or
"Back to the δ mask" erases by A's map again.

**Branch B's map.** A second classifier gets the features with those cells zeroed. It was
trained to predict the same label from them, so it learned to use evidence A's peak does not
hold. The line under it is B's verdict: its top-3 classes on the erased features.

**Fused map + box.** The element-wise max of A's and B's maps: wherever either found evidence.
The cyan box surrounds the largest region above the box threshold, cut as clovaai/wsolevaluation
cuts it: the map resized to the picture, min-max normalized to [0, 1] (so the fused map's lowest
value becomes 0), then kept where > the threshold. When the true box (green) is known, the line
above the views gives their IoU.

**Class.** The top-5 classes by branch A's softmax. The chosen class's maps are shown and its
map drives the erasing (in training, the true label does). Changing δ or the class reuses the
image's cached backbone features: only the erasing and branch B run again.

**Delta sweep**: the erased cells and B's map at several δ.
**Compare with CAM**: a one-branch model (CAM, no erasing) beside ACoL's fused map.

What each model's maps tend to do, and how well they box objects, is in its description above
the views: it differs from model to model.
"""
COMPARE_NOTE = ("Each model's box is cut at its own box threshold, the one its checkpoint records as "
                "best on its validation images (`metrics.cam_thresholds`), as the titles say; the "
                "box slider above moves only the main view's box. ACoL's fused map is drawn at the δ "
                "(or hand-made mask) shown when the tab opened or the image, class or mask changed.")


def image_input(**options) -> gr.Image:
    """An image input whose callbacks get the uploaded file undecoded, so ``load_rgb_image``
    (not Pillow inside Gradio) judges bad files and the page can say what is wrong."""
    image = gr.Image(type="filepath", **options)
    # Set on the instance: a gr.Image subclass would do, but Gradio writes a .pyi stub beside
    # every module that defines a component.
    decode = image.preprocess
    image.preprocess = lambda payload: payload.path if payload is not None and payload.path else decode(payload)
    return image


def picture(**options) -> gr.Image:
    """An output picture, sent as JPEG: Gradio's PNG encoding costs ~20 ms a panel, JPEG ~1 ms."""
    return gr.Image(show_label=False, type="numpy", format="jpeg", interactive=False, **options)


# ----------------------------------------------------------------------------------------------
# What the page offers, and the image on it


class Viewer:
    """What the page offers (the models, their examples, descriptions and baselines) and how an
    image on it is explained and drawn; the page's callbacks (``PageEvents``) and the scripts'
    (``ScriptEvents``) share it."""

    def __init__(self, shelf: CheckpointShelf, examples: ExampleImages):
        self.shelf = shelf
        self.examples = examples
        self.exports = tempfile.TemporaryDirectory(prefix="acol-exports-")  # removed when the server exits
        # Each example group's files as the page holds them (copies in Gradio's cache, set by
        # the layout): a callback may hand the page only those, not the folders' own paths.
        self.example_files: list[list[str]] = [group.paths for group in examples.groups]

    def models(self) -> list[str]:
        """The Model dropdown's choices: ACoL models first, the teaching one (the model made for
        the first example folder, the bundled synthetic pictures) first of all."""
        return self.shelf.names(self.examples.groups[0].class_names if self.examples.groups else None)

    def note(self, explanation) -> str:
        """The status line's note on an explanation: that the picture is not one the model was made
        for (whatever its confidence), else that its top class is unlikely, else nothing."""
        explainer = self.shelf[explanation.model_name]
        out_of_scope, doubt = explainer.out_of_scope(explanation), explainer.doubt(explanation)
        return (f"**Not made for this picture:** {out_of_scope}" if out_of_scope
                else f"**Unlikely:** {doubt}" if doubt else "")

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

    def baseline_choices(self, model_name) -> dict:
        """The "CAM baseline" dropdown's choices for a model, the first one chosen."""
        baselines = self.shelf.baselines_for(model_name)
        return {"choices": baselines, "value": next(iter(baselines), None)}

    def route(self, path, model_name, model_picked) -> str:
        """The model that explains ``path``: the chosen one if the user picked it or ``path`` is one of
        its examples; otherwise (an upload, say, while the page's first model is chosen) the
        everyday model, made for any photo."""
        everyday = self.shelf.everyday()
        if model_picked or everyday is None or path is None:
            return model_name
        return model_name if self.examples.group_of(path) in self.examples_for(model_name) else everyday

    def model_page(self, model_name):
        """What a model brings to the page: its description, its examples shown (or the note
        that it has none) and its box threshold."""
        groups = self.examples_for(model_name)
        shown = [gr.update(visible=index in groups) for index in range(len(self.example_files))]
        try:
            box_threshold = self.shelf[model_name].default_box_threshold
        except CheckpointError:
            box_threshold = gr.skip()  # explaining says what is wrong with the file
        return (self.about(model_name), *shown, gr.update(visible=not groups, value=self.no_examples(model_name)),
                box_threshold)

    def route_upload(self, path, model_name, model_picked):
        """Before a new image is explained: when ``route`` sends it to another model than the
        chosen one (an upload to the everyday model), that model, its page and its δ; else skips."""
        routed = self.route(path, model_name, model_picked)
        if routed == model_name:
            return (gr.skip(),) * (len(self.example_files) + 5)
        return routed, *self.model_page(routed), self.shelf[routed].model.erase_threshold

    def explain_file(self, path, model_name, erase_threshold) -> tuple[Explanation | None, str]:
        """``(explanation, "")`` of the image file at ``path``, decoded and explained within the
        request time limit, or ``(None, what is wrong)`` (never naming the server's paths)."""
        def explain_upload():  # timed: decoding costs what the upload makes it cost
            explainer = self.shelf[model_name]
            return explainer.explain(load_rgb_image(path), self.examples.true_boxes(path),
                                     erase_threshold=erase_threshold if explainer.is_acol else None,
                                     true_class=self.examples.true_class(path))
        try:
            return call_with_timeout(REQUEST_TIMEOUT_S, explain_upload), ""
        except (ImageLoadError, CheckpointError, RequestTimeout) as error:
            return None, str(error).replace(str(path), Path(path).name)

    def class_choices(self, explanation) -> dict:
        """The class dropdown: branch A's top-5, the explained class chosen."""
        return {"choices": [(f"{name} ({probability:.0%})", index)
                            for index, name, probability in top_classes(explanation)],
                "value": explanation.target_class}

    def payload(self, explanation, erase_threshold, box_threshold) -> dict:
        """What the page draws of ``explanation`` at every slider position (``acol.payload``)."""
        explainer = self.shelf[explanation.model_name]
        return page_payload(explanation, explainer.model, erase_threshold, box_threshold, self.note(explanation))

    def shown(self, cache, erase_threshold, by_hand: bool):
        """The explanation the page shows: the cached one when it holds the hand-made mask the
        page shows, else the cached image erased at the page's δ (which moved in the browser)."""
        explanation = cache.explanation
        if explanation is None or explanation.num_branches == 1 or by_hand and explanation.erased_by_hand:
            return explanation
        delta = snapped(erase_threshold)
        if explanation.erased_by_hand or explanation.erase_threshold != delta:
            return self.shelf[explanation.model_name].reexplain(explanation, erase_threshold=delta)
        return explanation

    def sweep(self, explanation):
        """The "Delta sweep" tab's picture."""
        if explanation is None:
            return None
        if explanation.num_branches == 1:
            return placeholder("A one-branch CAM model erases nothing: no sweep.", (640, 120))
        return sweep_strip(self.shelf[explanation.model_name].sweep(explanation))

    def comparison(self, cache, explanation, baseline_name):
        """(cache, picture): the CAM baseline's map beside ``explanation``'s fused map (the
        baseline's is computed once per image), each boxed at its own checkpoint's validated box
        threshold."""
        if explanation is None:
            return cache, None
        if explanation.num_branches == 1:
            return cache, placeholder("This is a CAM model: pick an ACoL model\nto compare with it.", (640, 120))
        if not baseline_name:
            return cache, placeholder(f"No CAM checkpoint with the same classes\nin {self.shelf.folder}.", (640, 120))
        try:
            baseline = self.shelf[baseline_name]
            cache = cache.with_baseline(baseline)
        except CheckpointError as error:
            gr.Warning(str(error))
            return cache, None
        return cache, compare_picture(cache.baseline, explanation, baseline.default_box_threshold,
                                      self.shelf[explanation.model_name].default_box_threshold)

    def export(self, explanation, box_threshold):
        """The four-panel figure of ``explanation`` as a PNG file, for download."""
        if explanation is None:
            gr.Warning("Explain an image first.")
            return None
        name = re.sub(r"\W+", "_", explanation.class_names[explanation.target_class]).strip("_")
        folder = tempfile.mkdtemp(dir=self.exports.name)  # one per export, so sessions never clash
        path = Path(folder) / f"acol_{name or 'class'}.png"
        return str(write_figure_png(render_panels(explanation, box_threshold), path))

    def choose_model(self, path, model_name, erase_threshold, box_threshold):
        """What a new model changes: ``(image, page updates, δ, box threshold, explain_here)``.
        The page updates are its description, its examples and its box threshold; δ and the box
        threshold are its own. The current image is to be explained by it (``explain_here``),
        unless the image is an example made for another model (or there is none): then the new
        model's first example replaces it, and explaining follows from the image's change (or
        the views clear, with a note, when the model has no examples)."""
        groups = self.examples_for(model_name)
        try:
            explainer = self.shelf[model_name]
            erase_threshold, box_threshold = explainer.model.erase_threshold, explainer.default_box_threshold
        except CheckpointError:
            pass  # explaining says what is wrong with the file
        updates = self.model_page(model_name)
        current = self.examples.group_of(path)
        if current is not None and current not in groups or path is None and groups:
            return self.example_files[groups[0]][0] if groups else None, updates, erase_threshold, box_threshold, False
        return gr.skip(), updates, erase_threshold, box_threshold, True

    def examples_for(self, model_name) -> list[int]:
        """The example groups made for a model."""
        return self.examples.for_model(self.shelf.class_names(model_name))

    def first_view(self) -> "FirstView":
        """What the page shows before anyone clicks: the first model (the teaching one) on the one
        of its examples that tells ACoL's story best (``lesson_strength``; the first example when
        none does), explained at its own δ and box threshold."""
        model = self.models()[0]
        explainer = self.shelf[model]
        delta, box = explainer.model.erase_threshold, explainer.default_box_threshold
        groups = self.examples_for(model)
        paths = self.examples.groups[groups[0]].paths if groups else []
        explained = [(path, self.explain_file(path, model, delta)[0]) for path in paths]
        explained = [(path, explanation) for path, explanation in explained if explanation is not None]
        if not explained:
            return FirstView(model, None, ViewerCache(), {"message": self.no_examples(model)},
                             {"choices": [], "value": None}, self.about(model))
        # max() keeps the first of equals: with no example telling the story, the first example.
        path, explanation = max(explained, key=lambda pair: lesson_strength(pair[1]))
        return FirstView(model, path, ViewerCache(explanation), self.payload(explanation, delta, box),
                         self.class_choices(explanation), self.about(model))


# ----------------------------------------------------------------------------------------------
# The page's callbacks: one payload per explaining; the sliders and hovering ask nothing


class PageEvents:
    """The page's callbacks. Each sends the page one payload (``acol.payload``) from which the
    browser draws the four panels at any δ and box threshold; events that depend on what the page
    shows get its δ and whether it shows a hand-made mask (``by_hand``, read from the page)."""

    def __init__(self, viewer: Viewer):
        self.viewer = viewer

    def explain_image(self, path, model_name, erase_threshold, box_threshold):
        """(cache, payload, class choices, baselines, δ slider) of the image at ``path``."""
        nothing = (ViewerCache(), None, gr.update(choices=[], value=None), gr.update(), gr.update())
        if path is None:
            return nothing[0], {"message": "Upload or paste an image, or click an example."}, *nothing[2:]
        explanation, problem = self.viewer.explain_file(path, model_name, erase_threshold)
        if explanation is None:
            gr.Warning(problem)
            return nothing[0], {"message": f"**Cannot explain this:** {problem}"}, *nothing[2:]
        return (ViewerCache(explanation), self.viewer.payload(explanation, erase_threshold, box_threshold),
                gr.update(**self.viewer.class_choices(explanation)),
                gr.update(**self.viewer.baseline_choices(model_name)),
                gr.update(interactive=explanation.num_branches > 1))

    def choose_model(self, path, model_name, erase_threshold, box_threshold):
        """(image, the page's updates, then what explaining sends) of a new model (Viewer.choose_model)."""
        image, updates, delta, box, explain_here = self.viewer.choose_model(path, model_name, erase_threshold,
                                                                            box_threshold)
        explained = list(self.explain_image(path, model_name, delta, box)) if explain_here else [gr.skip()] * 5
        explained[-1] = {**explained[-1], "value": delta}  # the δ slider: the model's own
        return image, *updates, *explained

    def pick_example(self, group: int):
        """The callback of group ``group``'s examples: the clicked picture becomes the image."""
        return lambda index: self.viewer.example_files[group][index] if index is not None else gr.skip()

    def set_class(self, cache, class_index, erase_threshold, box_threshold):
        """(cache, payload) of the same image explained for another class, erased by δ."""
        if cache.explanation is None or class_index is None:
            return cache, gr.skip()
        explanation = self.viewer.shelf[cache.explanation.model_name].reexplain(
            cache.explanation, target_class=int(class_index), erase_threshold=snapped(erase_threshold))
        return replace(cache, explanation=explanation), self.viewer.payload(explanation, erase_threshold, box_threshold)

    def toggle_cell(self, cache, row, col, erase_threshold, box_threshold, by_hand):
        """Erase feature cell (row, col) for branch B by hand, or restore it, starting from the
        mask the page shows; this session's hand-made mask lives in its cache, so no other
        session sees it. Returns (cache, payload)."""
        shown = self.viewer.shown(cache, erase_threshold, by_hand)
        if shown is None or row is None or col is None:
            return cache, gr.skip()
        try:
            explanation = self.viewer.shelf[shown.model_name].toggle_cell(shown, int(row), int(col))
        except ValueError as error:
            gr.Warning(str(error))
            return cache, gr.skip()
        return replace(cache, explanation=explanation), self.viewer.payload(explanation, erase_threshold, box_threshold)

    def click_cell(self, cache, erase_threshold, box_threshold, event: gr.SelectData):
        """A click on a cell of the erased panel (the page sends its ``[row, col]`` and whether
        it shows a hand-made mask): toggle it, and show its row and column in the boxes that
        toggle cells by number."""
        (row, col), by_hand = event.index, bool(event.value)
        return *self.toggle_cell(cache, row, col, erase_threshold, box_threshold, by_hand), row, col

    def refresh_tabs(self, cache, open_tab, baseline_name, erase_threshold, by_hand):
        """(cache, sweep, comparison) after the image, class or mask changed: only the open tab's
        picture is drawn (each costs about as much as the panels); the other is left as it is."""
        if open_tab == "sweep":
            return cache, self.viewer.sweep(cache.explanation), gr.skip()
        if open_tab == "compare":
            return *self.viewer.comparison(cache, self.viewer.shown(cache, erase_threshold, by_hand), baseline_name), \
                gr.skip()
        return cache, gr.skip(), gr.skip()

    def open_sweep(self, cache):
        """The "Delta sweep" tab was opened: draw it, and keep it drawn."""
        return self.viewer.sweep(cache.explanation), "sweep"

    def open_comparison(self, cache, baseline_name, erase_threshold, by_hand):
        """The "Compare with CAM" tab was opened, its baseline changed or a redraw asked: draw it
        at the δ (or the hand-made mask) the page shows, and keep it drawn."""
        shown = self.viewer.shown(cache, erase_threshold, by_hand)
        return *self.viewer.comparison(cache, shown, baseline_name), "compare"

    def export(self, cache, erase_threshold, box_threshold, by_hand):
        return self.viewer.export(self.viewer.shown(cache, erase_threshold, by_hand), box_threshold)


# ----------------------------------------------------------------------------------------------
# The scripts' callbacks: /explain and friends, four pictures each, as gradio_client had them


class ScriptEvents:
    """The endpoints scripts call (``gradio_client``): each returns pictures, as before the page
    drew its own. The session's cache is the one truth here: a δ is a request."""

    def __init__(self, viewer: Viewer, page: PageEvents):
        self.viewer, self.page = viewer, page

    def views(self, explanation, box_threshold):
        """The four pictures, the status line (with a note when the top class is unlikely) and
        B's verdict."""
        panels = render_panels(explanation, box_threshold)
        note = self.viewer.note(explanation)
        status = panels.caption + (f"  \n{note}" if note else "")
        return *page_pictures(panels), status, branch_b_verdict(explanation)

    def comparison(self, cache, explanation, open_tab, baseline_name):
        """(cache, comparison): drawn only while the script opened the comparison (/compare)."""
        if open_tab != "compare":
            return cache, gr.skip()
        return self.viewer.comparison(cache, explanation, baseline_name)

    def explain(self, path, model_name, erase_threshold, box_threshold, open_tab):
        """(cache, 4 pictures, classes, baselines, δ slider, status, comparison, B's verdict)."""
        cache, payload, classes, baselines, delta = self.page.explain_image(path, model_name, erase_threshold,
                                                                            box_threshold)
        if cache.explanation is None:
            return cache, None, None, None, None, classes, baselines, delta, payload["message"], None, ""
        *pictures, status, verdict = self.views(cache.explanation, box_threshold)
        cache, compared = self.comparison(cache, cache.explanation, open_tab, baselines["value"])
        return cache, *pictures, classes, baselines, delta, status, compared, verdict

    def choose_model(self, path, model_name, erase_threshold, box_threshold, open_tab):
        """/choose_model: the page's model change, with pictures."""
        image, updates, delta, box, explain_here = self.viewer.choose_model(path, model_name, erase_threshold,
                                                                            box_threshold)
        explained = list(self.explain(path, model_name, delta, box, open_tab)) if explain_here else [gr.skip()] * 11
        explained[7] = {**explained[7], "value": delta}  # the δ slider: the model's own
        return image, *updates, *explained

    def redrawn(self, cache, explanation, box_threshold, open_tab, baseline_name):
        """(cache, erased, B's map, fused, status, comparison, B's verdict) of a new erasing."""
        _, erased, branch_b, fused, status, verdict = self.views(explanation, box_threshold)
        cache, compared = self.comparison(replace(cache, explanation=explanation), explanation, open_tab, baseline_name)
        return cache, erased, branch_b, fused, status, compared, verdict

    def set_erase_threshold(self, cache, erase_threshold, box_threshold, open_tab, baseline_name):
        if cache.explanation is None or cache.explanation.num_branches == 1:
            return cache, *[gr.skip()] * 6
        explanation = self.viewer.shelf[cache.explanation.model_name].reexplain(
            cache.explanation, erase_threshold=erase_threshold)
        return self.redrawn(cache, explanation, box_threshold, open_tab, baseline_name)

    def toggle_cell(self, cache, row, col, box_threshold, open_tab, baseline_name):
        """Erase or restore feature cell (row, col), starting from the mask the cache holds."""
        if cache.explanation is None or row is None or col is None:
            return cache, *[gr.skip()] * 6
        try:
            explanation = self.viewer.shelf[cache.explanation.model_name].toggle_cell(cache.explanation, int(row),
                                                                                       int(col))
        except ValueError as error:
            gr.Warning(str(error))
            return cache, *[gr.skip()] * 6
        return self.redrawn(cache, explanation, box_threshold, open_tab, baseline_name)

    def reset_mask(self, cache, box_threshold, open_tab, baseline_name):
        """Back to erasing where A's map >= δ."""
        if cache.explanation is None or cache.explanation.num_branches == 1:
            return cache, *[gr.skip()] * 6
        explanation = self.viewer.shelf[cache.explanation.model_name].reexplain(cache.explanation)
        return self.redrawn(cache, explanation, box_threshold, open_tab, baseline_name)

    def set_class(self, cache, class_index, box_threshold, open_tab, baseline_name):
        if cache.explanation is None or class_index is None:
            return cache, *[gr.skip()] * 8
        explanation = self.viewer.shelf[cache.explanation.model_name].reexplain(cache.explanation,
                                                                               target_class=int(class_index))
        *pictures, status, verdict = self.views(explanation, box_threshold)
        cache, compared = self.comparison(replace(cache, explanation=explanation), explanation, open_tab, baseline_name)
        return cache, *pictures, status, compared, verdict

    def set_box_threshold(self, cache, box_threshold):
        if cache.explanation is None:
            return cache, gr.skip(), gr.skip()
        *_, fused, status, _ = self.views(cache.explanation, box_threshold)
        return cache, fused, status

    def sweep(self, cache):
        return self.viewer.sweep(cache.explanation)

    def compare(self, cache, baseline_name):
        """The comparison, and from now on it follows this session's requests."""
        return *self.viewer.comparison(cache, cache.explanation, baseline_name), "compare"

    def export(self, cache, box_threshold):
        return self.viewer.export(cache.explanation, box_threshold)


# ----------------------------------------------------------------------------------------------
# Layout: the page from top to bottom


@dataclass
class FirstView:
    """The values the page is built with, so it shows a worked example before any click."""

    model: str
    image: str | None
    cache: ViewerCache
    payload: dict            # what the viewer draws (or a message when there is nothing to show)
    classes: dict            # the class dropdown's choices and value
    about: str


@dataclass
class Controls:
    """The inputs the events read and the examples (one set per example folder)."""

    image: gr.Image
    model: gr.Dropdown
    class_choice: gr.Dropdown
    delta: gr.Slider
    box: gr.Slider
    about: gr.Markdown
    example_sets: list[gr.Dataset]
    example_boxes: list[gr.Column]  # one around each set: what a model change shows or hides
    no_examples: gr.Markdown


@dataclass
class Views:
    """The four panels (one gr.HTML drawn by acol/static/viewer.js) and erasing by number."""

    viewer: gr.HTML
    by_hand: gr.Checkbox  # hidden: events that need it get it from the page (with_shown_mask)
    row: gr.Number
    col: gr.Number
    toggle: gr.Button


def build_top(viewer: Viewer, first: FirstView) -> tuple[Controls, Views]:
    """The image, the four views, the model and its knobs, and the model's examples. On a wide
    screen the views take the row under the others; on a phone (CSS) they follow the image,
    and the controls come after them."""
    explainer = viewer.shelf[first.model]
    with gr.Row(elem_id="top"):
        with gr.Column(scale=2, min_width=260, elem_id="image-column"):
            image = image_input(label="Image (upload or paste)", sources=["upload", "clipboard"], height=280,
                                value=first.image)
        with gr.Column(scale=2, min_width=260, elem_id="controls-column"):
            model = gr.Dropdown(viewer.models(), value=first.model, label="Model")
            class_choice = gr.Dropdown(first.classes["choices"], value=first.classes["value"],
                                       label="Class that drives the erasing (top-5 of branch A)")
            delta = gr.Slider(0.0, 1.0, value=explainer.model.erase_threshold, step=SLIDER_STEP,
                              interactive=explainer.is_acol,
                              label="Erase threshold δ: erase where A's map >= δ", elem_id="erase-threshold")
            box = gr.Slider(0.0, 1.0, value=explainer.default_box_threshold, step=SLIDER_STEP,
                            label="Box threshold (on the fused map, normalized to [0, 1])", elem_id="box-threshold")
            about = gr.Markdown(first.about, elem_id="model-about")
        with gr.Column(scale=3, min_width=260, elem_id="examples-column"):
            groups = viewer.examples_for(first.model)
            example_sets, example_boxes = [], []
            for index, group in enumerate(viewer.examples.groups):
                # Shown and hidden through a Column: updating a Dataset itself would rebuild it
                # from the folder's paths, which a running server may not read (not in its cwd).
                with gr.Column(visible=index in groups, elem_id=f"examples-{index}") as box_of_set:
                    example_sets.append(gr.Dataset(components=["image"], samples=[[path] for path in group.paths],
                                                   type="index", label="Examples made for this model (click one)",
                                                   samples_per_page=12))
                example_boxes.append(box_of_set)
                # The copies Gradio serves (in its cache): what a click may hand back to the page.
                viewer.example_files[index] = [sample[0]["path"] for sample in example_sets[-1].samples]
            no_examples = gr.Markdown(viewer.no_examples(first.model), visible=not groups, elem_id="no-examples")
        with gr.Column(min_width=240, elem_id="views-column"):
            views = build_views(first)
    return Controls(image, model, class_choice, delta, box, about, example_sets, example_boxes, no_examples), views


PANEL_TITLES = {"branch-a": "Branch A's map", "erased": "Erased features (click a cell)",
                "branch-b": "Branch B's map (on erased features)", "fused": "Fused map + box"}
VIEWER_JS = (Path(__file__).resolve().parent / "acol" / "static" / "viewer.js").read_text()


def viewer_template() -> str:
    """The viewer's HTML: the status line, the four canvases under their titles (B's verdict under
    its map), the colour key and the hovered cell's values; viewer.js draws into it."""
    figures = "".join(
        f'<figure><figcaption>{title}</figcaption><canvas data-panel="{key}" id="{key}"></canvas>'
        + ('<p data-text="verdict" id="verdict-b"></p>' if key == "branch-b" else "")
        + ('<button data-reset id="reset-mask" type="button">Back to the δ mask</button>' if key == "erased" else "")
        + "</figure>" for key, title in PANEL_TITLES.items())
    return (f'<p data-text="status" id="status"></p><div class="acol-panels">{figures}</div>'
            '<div class="acol-key">0 <canvas data-key width="256" height="12"></canvas> 1 (normalized activation)'
            ' · <span class="erased-swatch"></span> erased <span class="kept-swatch"></span> kept</div>'
            '<p data-text="cell" id="cell-values"></p>')


VIEWER_CSS = """
.acol-panels { display: grid; grid-template-columns: repeat(auto-fit, minmax(180px, 1fr)); gap: 10px; }
figure { margin: 0; } figcaption { font-weight: 600; margin-bottom: 4px; }
canvas[data-panel] { width: 100%; height: auto; display: block; cursor: crosshair; }
canvas[data-key] { display: inline-block; width: 160px; height: 12px; vertical-align: middle; }
.erased-swatch, .kept-swatch { display: inline-block; width: 12px; height: 12px; border: 1px solid #000;
  vertical-align: middle; }
.erased-swatch { background: rgb(40, 110, 255); } .kept-swatch { background: #fff; }
p { margin: 4px 0; } #reset-mask { margin-top: 4px; }
"""


def build_views(first: FirstView) -> Views:
    """The four views (drawn in the browser), and under them the controls that erase cells by
    number."""
    viewer = gr.HTML(first.payload, html_template=viewer_template(), css_template=VIEWER_CSS, js_on_load=VIEWER_JS,
                     elem_id="viewer", padding=False)
    by_hand = gr.Checkbox(False, visible=False)
    gr.Markdown("**Erase by hand:** click a cell of the erased features to erase or restore it, or "
                "give its row and column (from 0, top left); B and the fused map follow. Hover any "
                "panel to read a cell's values.", elem_id="by-hand")
    with gr.Row(equal_height=True):
        row = gr.Number(label="Row", precision=0, minimum=0, value=None, min_width=80)
        col = gr.Number(label="Column", precision=0, minimum=0, value=None, min_width=80)
        toggle = gr.Button("Erase / restore this cell", min_width=120)
    return Views(viewer, by_hand, row, col, toggle)


@dataclass
class Tabs:
    """The tabs under the views, what each holds, and the export button with its file."""

    read_tab: gr.Tab
    sweep_tab: gr.Tab
    sweep: gr.Image
    compare_tab: gr.Tab
    baseline: gr.Dropdown
    redraw: gr.Button
    compared: gr.Image
    export: gr.Button
    exported: gr.File


def build_tabs(baselines: dict) -> Tabs:
    """"How to read", "Delta sweep" and "Compare with CAM" under the views, then the export;
    ``baselines`` are the first model's CAM baseline choices. The first tab is words, so the
    pictures of the others are drawn only once their tab is opened."""
    with gr.Tabs():
        with gr.Tab("How to read the views") as read_tab:
            gr.Markdown(HOW_TO_READ)
        with gr.Tab("Delta sweep") as sweep_tab:
            gr.Markdown("Erased features (top) and branch B's map (bottom) at each δ.")
            sweep = picture()
        with gr.Tab("Compare with CAM") as compare_tab:
            baseline = gr.Dropdown(**baselines, label="CAM baseline")
            gr.Markdown(COMPARE_NOTE)
            redraw = gr.Button("Redraw at the δ shown above", size="sm")
            compared = picture(elem_id="comparison")
    with gr.Row(equal_height=True):
        export = gr.Button("Export the four-panel figure (PNG)")
        exported = gr.File(label="Four-panel figure", interactive=False, elem_id="figure-file")
    return Tabs(read_tab, sweep_tab, sweep, compare_tab, baseline, redraw, compared, export, exported)


@dataclass
class ScriptOutputs:
    """Hidden outputs of the scripts' endpoints (the page draws its own) and their trigger."""

    trigger: gr.Button       # never shown, never pressed: the endpoints' trigger
    panels: list[gr.Image]
    status: gr.Markdown
    verdict: gr.Markdown


def build_script_outputs() -> ScriptOutputs:
    with gr.Column(visible=False):
        trigger = gr.Button()
        panels = [picture() for _ in PANEL_TITLES]
        status, verdict = gr.Markdown(), gr.Markdown()
    return ScriptOutputs(trigger, panels, status, verdict)


# ----------------------------------------------------------------------------------------------
# Events


def with_shown_mask(inputs: list) -> str:
    """The js that runs before an event whose last input is ``by_hand``: whether the page shows
    a hand-made mask, which only the browser knows (viewer.js keeps it in ``data-by-hand``)."""
    return (f"(...values) => [...values.slice(0, {len(inputs) - 1}), "
            "document.querySelector('[data-by-hand]')?.dataset.byHand === 'true']")


def wire_page_events(page: PageEvents, cache: gr.State, open_tab: gr.State, model_picked: gr.State,
                     controls: Controls, views: Views, tabs: Tabs) -> None:
    """Each explaining sends the viewer a payload, then draws the open tab's picture, if any.
    The sliders and hovering have no event here: viewer.js answers them in the browser."""
    image, model, class_choice, delta, box = (controls.image, controls.model, controls.class_choice,
                                              controls.delta, controls.box)
    explained = [cache, views.viewer, class_choice, tabs.baseline, delta]
    explain_inputs = [image, model, delta, box]
    refresh_inputs = [cache, open_tab, tabs.baseline, delta, views.by_hand]
    refresh_tabs = dict(fn=page.refresh_tabs, inputs=refresh_inputs, outputs=[cache, tabs.sweep, tabs.compared],
                        js=with_shown_mask(refresh_inputs), show_progress="hidden", api_name="page_refresh_tabs",
                        api_visibility="undocumented")  # callable: bench/app_load.py acts as the page
    model_page = [model, controls.about, *controls.example_boxes, controls.no_examples, box, delta]
    # A new image first goes to the model that should explain it (an upload: the everyday model,
    # unless the user picked one), then is explained by the model the page now shows.
    image.change(page.viewer.route_upload, [image, model, model_picked], model_page, show_progress="hidden",
                 api_name="page_route", api_visibility="private",
                 ).then(page.explain_image, explain_inputs, explained, api_name="page_explain",
                        api_visibility="undocumented").then(**refresh_tabs)
    # .input, not .change: only the user's own pick, never an upload sent to the everyday model.
    model.input(lambda: True, None, model_picked, api_name="page_model_picked", api_visibility="private")
    model.input(page.choose_model, explain_inputs, [image, controls.about, *controls.example_boxes,
                                                     controls.no_examples, box, *explained],
                 api_name="page_choose_model", api_visibility="private").then(**refresh_tabs)
    for index, example_set in enumerate(controls.example_sets):
        example_set.click(page.pick_example(index), [example_set], [image], api_name=f"page_pick_example_{index}",
                          api_visibility="private")
    class_choice.input(page.set_class, [cache, class_choice, delta, box], [cache, views.viewer],
                       api_name="page_set_class", api_visibility="private").then(**refresh_tabs)
    views.viewer.select(page.click_cell, [cache, delta, box], [cache, views.viewer, views.row, views.col],
                        api_name="click_cell", show_progress="hidden", trigger_mode="multiple").then(**refresh_tabs)
    toggle_inputs = [cache, views.row, views.col, delta, box, views.by_hand]
    views.toggle.click(page.toggle_cell, toggle_inputs, [cache, views.viewer], js=with_shown_mask(toggle_inputs),
                       show_progress="hidden", api_name="page_toggle_cell", api_visibility="private",
                       ).then(**refresh_tabs)
    tabs.read_tab.select(lambda: "read", None, open_tab, api_name="page_open_reading", api_visibility="private")
    tabs.sweep_tab.select(page.open_sweep, [cache], [tabs.sweep, open_tab], api_name="page_open_sweep",
                          api_visibility="private")
    compare_inputs = [cache, tabs.baseline, delta, views.by_hand]
    gr.on([tabs.compare_tab.select, tabs.baseline.input, tabs.redraw.click], page.open_comparison, compare_inputs,
          [cache, tabs.compared, open_tab], js=with_shown_mask(compare_inputs), show_progress="hidden",
          api_name="page_compare", api_visibility="private")
    export_inputs = [cache, delta, box, views.by_hand]
    tabs.export.click(page.export, export_inputs, [tabs.exported], js=with_shown_mask(export_inputs),
                      api_name="page_export", api_visibility="private")


def wire_script_events(scripts: ScriptEvents, cache: gr.State, open_tab: gr.State, controls: Controls,
                       views: Views, tabs: Tabs, outputs: ScriptOutputs) -> None:
    """/explain and friends, as scripts called them: each returns the pictures."""
    image, model, class_choice, delta, box = (controls.image, controls.model, controls.class_choice,
                                              controls.delta, controls.box)
    trigger, panels = outputs.trigger, outputs.panels
    explained = [cache, *panels, class_choice, tabs.baseline, delta, outputs.status, tabs.compared, outputs.verdict]
    erased = [cache, *panels[1:], outputs.status, tabs.compared, outputs.verdict]  # what a new erasing redraws
    extras = [open_tab, tabs.baseline]
    explain_inputs = [image, model, delta, box, open_tab]
    trigger.click(scripts.explain, explain_inputs, explained, api_name="explain")
    trigger.click(scripts.choose_model, explain_inputs, [image, controls.about, *controls.example_boxes,
                                                         controls.no_examples, box, *explained],
                  api_name="choose_model")
    trigger.click(scripts.set_erase_threshold, [cache, delta, box, *extras], erased, api_name="set_erase_threshold",
                  concurrency_limit=SLIDER_CONCURRENCY)
    trigger.click(scripts.toggle_cell, [cache, views.row, views.col, box, *extras], erased, api_name="toggle_cell")
    trigger.click(scripts.reset_mask, [cache, box, *extras], erased, api_name="reset_mask")
    trigger.click(scripts.set_class, [cache, class_choice, box, *extras],
                  [cache, *panels, outputs.status, tabs.compared, outputs.verdict], api_name="set_class")
    trigger.click(scripts.set_box_threshold, [cache, box], [cache, panels[3], outputs.status],
                  api_name="set_box_threshold", concurrency_limit=SLIDER_CONCURRENCY)
    trigger.click(scripts.sweep, [cache], [tabs.sweep], api_name="sweep")
    trigger.click(scripts.compare, [cache, tabs.baseline], [cache, tabs.compared, open_tab], api_name="compare")
    trigger.click(scripts.export, [cache, box], [tabs.exported], api_name="export")


# ----------------------------------------------------------------------------------------------
# The page


def no_checkpoint_page(checkpoint_dir) -> gr.Blocks:
    """What the page says when there is nothing to explain with."""
    with gr.Blocks(title="ACoL viewer", analytics_enabled=False) as demo:
        gr.Markdown(f"# ACoL viewer\n**No checkpoint found in `{checkpoint_dir}`.** Train one "
                    "(`python -m acol train ...`) or start with `python app.py --checkpoints DIR`.")
    return demo


def build_demo(checkpoint_dir: str | Path = CHECKPOINTS, examples_dirs=()) -> gr.Blocks:
    """The viewer's page over the checkpoints in ``checkpoint_dir`` and the example folders."""
    shelf = CheckpointShelf(checkpoint_dir)
    examples = ExampleImages([folder for folder in examples_dirs if Path(folder).is_dir()])
    if not shelf.names():
        return no_checkpoint_page(checkpoint_dir)
    viewer = Viewer(shelf, examples)
    page = PageEvents(viewer)
    first = viewer.first_view()
    # delete_cache: Gradio keeps a copy of every upload and picture; drop those older than an hour
    # (not the pictures the page is built with, nor the examples: Gradio keeps those).
    with gr.Blocks(title="ACoL viewer", analytics_enabled=False, delete_cache=(3600, 3600)) as demo:
        # Each tab starts with its own copy of the first view (gr.State deep-copies its value);
        # an idle tab's image, features and hand-made mask go after an hour.
        cache = gr.State(first.cache, time_to_live=3600)
        open_tab = gr.State("read")  # which tab's picture is drawn: "read" (none), "sweep" or "compare"
        model_picked = gr.State(False)  # has the user chosen a model? If not, uploads go to the everyday model
        gr.Markdown("# ACoL: where does the classifier look?\nAdversarial Complementary Learning "
                    "(Zhang et al., CVPR 2018) localizes objects from image labels only: erase what "
                    "branch A found, and branch B must find other evidence of the same class. Below, "
                    "a worked example is already explained: move δ, hover or click a feature cell, pick "
                    "another example or model, or upload your own picture.")
        controls, views = build_top(viewer, first)
        tabs = build_tabs(viewer.baseline_choices(first.model))
        wire_page_events(page, cache, open_tab, model_picked, controls, views, tabs)
        wire_script_events(ScriptEvents(viewer, page), cache, open_tab, controls, views, tabs, build_script_outputs())
    # Each callback has its own queue slot(s), so a slider move need not wait behind an upload;
    # one at a time unless said otherwise. Beyond QUEUE_LIMIT waiting events, users are told the
    # queue is full.
    return demo.queue(max_size=QUEUE_LIMIT, default_concurrency_limit=1)


def launch(demo: gr.Blocks, **options):
    """``demo.launch`` with the page's look, an upload limit and memory that stays flat under load
    (large blocks returned when freed, the rest trimmed every 10 s); ``options`` go to Gradio
    (server_name, ...). Server-side rendering follows ``GRADIO_SSR_MODE`` (off unless it says
    true, as Hugging Face Spaces does; it needs Node 24+, README "Limits")."""
    map_large_blocks_separately()
    keep_trimming_freed_memory()
    return demo.launch(theme=THEME, css=CSS, max_file_size=MAX_UPLOAD, **options)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="The ACoL viewer (Gradio).")
    parser.add_argument("--checkpoints", default=str(CHECKPOINTS), help="folder of .safetensors checkpoints")
    parser.add_argument("--examples", action="append", default=[],
                        help="a folder of example images, or a CUB-layout root (true boxes shown); repeatable")
    parser.add_argument("--share", action="store_true", help="also open a public gradio.live link")
    args = parser.parse_args(argv)
    launch(build_demo(args.checkpoints, [EXAMPLES, EVERYDAY_EXAMPLES, *args.examples]),
           server_name=os.environ.get("GRADIO_SERVER_NAME", "127.0.0.1"),
           server_port=int(os.environ.get("GRADIO_SERVER_PORT", "7860")), share=args.share)


if __name__ == "__main__":
    main()
