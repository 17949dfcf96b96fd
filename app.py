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
from acol.drawing import (compare_picture, feature_cell, page_pictures, placeholder,  # noqa: E402
                          render_panels, sweep_strip, write_figure_png)
from acol.explain import branch_b_verdict, top_classes  # noqa: E402
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
# A slider move re-runs only the later branches and draws three pictures (~30 ms of CPU): two at
# once keep both cores of a small host busy. Uploads, which run the backbone, go one at a time.
SLIDER_CONCURRENCY = 2
CSS = "#figure-file .empty { min-height: 4rem; height: 4rem; }"  # not a tall drop zone: it is output only

HOW_TO_READ = """
### How to read the views
**Branch A's map.** ACoL's first classifier ends in a 1x1 convolution with one channel per class;
the chosen class's channel, min-max normalized to [0, 1], is its localization map, and its
average is the class score. So it lights up the evidence that classified the image.

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
                "box slider above moves only the main view's box.")


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
# Callbacks: each takes the tab's ViewerCache and returns it, with what changed on the page


class Viewer:
    """The page's callbacks over a folder of checkpoints and the example images."""

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

    def views(self, explanation, box_threshold):
        """The four panels as the page shows them, the status line under the controls (with a
        note when the top class is unlikely) and B's verdict under its map."""
        panels = render_panels(explanation, box_threshold)
        explainer = self.shelf[explanation.model_name]
        out_of_scope, doubt = explainer.out_of_scope(explanation), explainer.doubt(explanation)
        status = panels.caption + (f"  \n**Not made for this picture:** {out_of_scope}" if out_of_scope
                                   else f"  \n**Unlikely:** {doubt}" if doubt else "")
        return *page_pictures(panels), status, branch_b_verdict(explanation)

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

    def comparison(self, cache, compare_open, baseline_name):
        """(cache, picture) for the "Compare with CAM" tab; while it is closed, nothing is computed
        or sent: a slider move stays one event and three pictures (bench/app_load.py)."""
        return self.compare_with_cam(cache, baseline_name) if compare_open else (cache, gr.skip())

    def route(self, path, model_name, model_picked) -> str:
        """The model that explains ``path``: the chosen one if the user picked it or ``path`` is one of
        its examples; otherwise (an upload, say, while the page's first model is chosen) the
        everyday model, made for any photo."""
        everyday = self.shelf.everyday()
        if model_picked or everyday is None or path is None:
            return model_name
        own_examples = self.examples.for_model(self.shelf.class_names(model_name))
        return model_name if self.examples.group_of(path) in own_examples else everyday

    def model_page(self, model_name):
        """What a model brings to the page: its description, its examples shown (or the note
        that it has none) and its box threshold."""
        groups = self.examples.for_model(self.shelf.class_names(model_name))
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

    def explain_image(self, path, model_name, erase_threshold, box_threshold, compare_open):
        empty = (ViewerCache(), None, None, None, None, gr.update(choices=[], value=None),
                 gr.update(), gr.update())
        if path is None:
            return *empty, "Upload or paste an image, or click an example.", None, ""

        def explain_upload():  # timed: decoding costs what the upload makes it cost
            explainer = self.shelf[model_name]
            return explainer, explainer.explain(load_rgb_image(path), self.examples.true_boxes(path),
                                                erase_threshold=erase_threshold if explainer.is_acol else None,
                                                true_class=self.examples.true_class(path))
        try:
            explainer, explanation = call_with_timeout(REQUEST_TIMEOUT_S, explain_upload)
        except (ImageLoadError, CheckpointError, RequestTimeout) as error:
            message = str(error).replace(str(path), Path(path).name)  # not the server's temp path
            gr.Warning(message)
            return *empty, f"**Cannot explain this:** {message}", None, ""
        classes = [(f"{name} ({probability:.0%})", index) for index, name, probability in top_classes(explanation)]
        *pictures, status, verdict = self.views(explanation, box_threshold)
        baselines = self.baseline_choices(model_name)
        cache, compared = self.comparison(ViewerCache(explanation), compare_open, baselines["value"])
        return (cache, *pictures,
                gr.update(choices=classes, value=explanation.target_class), gr.update(**baselines),
                gr.update(interactive=explainer.is_acol), status, compared, verdict)

    def choose_model(self, path, model_name, erase_threshold, box_threshold, compare_open):
        """A new model: its description, its examples, its δ and box threshold; then the current
        image explained by it, unless the image is an example made for another model (or there
        is none): then the new model's first example replaces it and explaining follows from the
        image's change (or the views clear, with a note, when the model has no examples)."""
        groups = self.examples.for_model(self.shelf.class_names(model_name))
        try:
            explainer = self.shelf[model_name]
            erase_threshold, box_threshold = explainer.model.erase_threshold, explainer.default_box_threshold
        except CheckpointError:
            pass  # explaining says what is wrong with the file
        head = self.model_page(model_name)
        current = self.examples.group_of(path)
        if current is not None and current not in groups or path is None and groups:
            image, explained = self.example_files[groups[0]][0] if groups else None, [gr.skip()] * 11
        else:
            image = gr.skip()
            explained = list(self.explain_image(path, model_name, erase_threshold, box_threshold, compare_open))
        explained[7] = {**explained[7], "value": erase_threshold}  # the δ slider: the model's own
        return image, *head, *explained

    def first_view(self) -> "FirstView":
        """What the page shows before anyone clicks: the first model (the teaching one) on its
        first example, explained at its own δ and box threshold."""
        model = self.models()[0]
        explainer = self.shelf[model]
        groups = self.examples.for_model(self.shelf.class_names(model))
        path = self.examples.groups[groups[0]].paths[0] if groups else None
        cache, *pictures, classes, _, _, status, _, verdict = self.explain_image(
            path, model, explainer.model.erase_threshold, explainer.default_box_threshold, False)
        return FirstView(model, path, cache, pictures, {key: classes.get(key) for key in ("choices", "value")},
                         status if path else self.no_examples(model), verdict, self.about(model),
                         self.delta_sweep(cache))

    def pick_example(self, group: int):
        """The callback of group ``group``'s examples: the clicked picture becomes the image."""
        return lambda index: self.example_files[group][index] if index is not None else gr.skip()

    def set_erase_threshold(self, cache, erase_threshold, box_threshold, compare_open, baseline_name):
        if cache.explanation is None or cache.explanation.num_branches == 1:
            return cache, *[gr.skip()] * 6
        explainer = self.shelf[cache.explanation.model_name]
        return self.show_erased(cache, explainer.reexplain(cache.explanation, erase_threshold=erase_threshold),
                                box_threshold, compare_open, baseline_name)

    def show_erased(self, cache, explanation, box_threshold, compare_open, baseline_name):
        """(cache, erased, B's map, fused, status, comparison, B's verdict) of a new erasing."""
        _, erased, branch_b, fused, status, verdict = self.views(explanation, box_threshold)
        cache, compared = self.comparison(replace(cache, explanation=explanation), compare_open, baseline_name)
        return cache, erased, branch_b, fused, status, compared, verdict

    def toggle_cell(self, cache, row, col, box_threshold, compare_open, baseline_name):
        """Erase feature cell (row, col) for branch B by hand, or restore it; this session's
        hand-made mask lives in its cache, so no other session sees it."""
        if cache.explanation is None or row is None or col is None:
            return cache, *[gr.skip()] * 6
        try:
            explanation = self.shelf[cache.explanation.model_name].toggle_cell(cache.explanation, int(row), int(col))
        except ValueError as error:
            gr.Warning(str(error))
            return cache, *[gr.skip()] * 6
        return self.show_erased(cache, explanation, box_threshold, compare_open, baseline_name)

    def click_cell(self, cache, box_threshold, compare_open, baseline_name, event: gr.SelectData):
        """A click on the erased panel: toggle the feature cell under it (and show its row and
        column in the boxes that toggle cells by number)."""
        if cache.explanation is None or cache.explanation.num_branches == 1:
            return cache, *[gr.skip()] * 8
        cell = feature_cell(cache.explanation, *event.index[:2])
        if cell is None:  # on the colour key
            return cache, *[gr.skip()] * 8
        return *self.toggle_cell(cache, *cell, box_threshold, compare_open, baseline_name), *cell

    def reset_mask(self, cache, box_threshold, compare_open, baseline_name):
        """Back to erasing where A's map >= δ."""
        if cache.explanation is None or cache.explanation.num_branches == 1:
            return cache, *[gr.skip()] * 6
        explanation = self.shelf[cache.explanation.model_name].reexplain(cache.explanation)
        return self.show_erased(cache, explanation, box_threshold, compare_open, baseline_name)

    def set_class(self, cache, class_index, box_threshold, compare_open, baseline_name):
        if cache.explanation is None or class_index is None:
            return cache, *[gr.skip()] * 8
        explainer = self.shelf[cache.explanation.model_name]
        explanation = explainer.reexplain(cache.explanation, target_class=int(class_index))
        *pictures, status, verdict = self.views(explanation, box_threshold)
        cache, compared = self.comparison(replace(cache, explanation=explanation), compare_open, baseline_name)
        return cache, *pictures, status, compared, verdict

    def set_box_threshold(self, cache, box_threshold):
        if cache.explanation is None:
            return cache, gr.skip(), gr.skip()
        *_, fused, status, _ = self.views(cache.explanation, box_threshold)
        return cache, fused, status

    def delta_sweep(self, cache):
        if cache.explanation is None:
            return None
        if cache.explanation.num_branches == 1:
            return placeholder("A one-branch CAM model erases nothing: no sweep.", (640, 120))
        return sweep_strip(self.shelf[cache.explanation.model_name].sweep(cache.explanation))

    def compare_with_cam(self, cache, baseline_name):
        """The CAM baseline's map beside ACoL's fused map (the baseline's is computed once per
        image), each boxed at its own checkpoint's validated box threshold."""
        if cache.explanation is None:
            return cache, None
        if cache.explanation.num_branches == 1:
            return cache, placeholder("This is a CAM model: pick an ACoL model\nto compare with it.", (640, 120))
        if not baseline_name:
            return cache, placeholder(f"No CAM checkpoint with the same classes\nin {self.shelf.folder}.", (640, 120))
        try:
            baseline = self.shelf[baseline_name]
            cache = cache.with_baseline(baseline)
        except CheckpointError as error:
            gr.Warning(str(error))
            return cache, None
        acol = self.shelf[cache.explanation.model_name]
        return cache, compare_picture(cache.baseline, cache.explanation, baseline.default_box_threshold,
                                      acol.default_box_threshold)

    def open_comparison(self, cache, baseline_name):
        """The Compare tab was opened or its baseline changed: draw it, and keep it drawn."""
        return *self.compare_with_cam(cache, baseline_name), True

    def export_png(self, cache, box_threshold):
        if cache.explanation is None:
            gr.Warning("Explain an image first.")
            return None
        name = re.sub(r"\W+", "_", cache.explanation.class_names[cache.explanation.target_class]).strip("_")
        folder = tempfile.mkdtemp(dir=self.exports.name)  # one per export, so sessions never clash
        path = Path(folder) / f"acol_{name or 'class'}.png"
        return str(write_figure_png(render_panels(cache.explanation, box_threshold), path))


# ----------------------------------------------------------------------------------------------
# Layout: the page from top to bottom


@dataclass
class FirstView:
    """The values the page is built with, so it shows a worked example before any click."""

    model: str
    image: str | None
    cache: ViewerCache
    pictures: list           # the four panels (None when there is no example to show)
    classes: dict            # the class dropdown's choices and value
    status: str
    verdict: str
    about: str
    sweep: object            # the delta sweep strip, or None


@dataclass
class Controls:
    """The inputs the events read and the examples (one set per example folder)."""

    image: gr.Image
    model: gr.Dropdown
    class_choice: gr.Dropdown
    delta: gr.Slider
    box: gr.Slider
    example_sets: list[gr.Dataset]
    example_boxes: list[gr.Column]  # one around each set: what a model change shows or hides
    no_examples: gr.Markdown


def build_controls(viewer: Viewer, first: FirstView) -> Controls:
    """The row above the views: the image, the model and its three knobs, and the model's
    examples; every one showing the first view."""
    explainer = viewer.shelf[first.model]
    with gr.Row():
        with gr.Column(scale=2, min_width=260):
            image = image_input(label="Image (upload or paste)", sources=["upload", "clipboard"], height=280,
                                value=first.image)
        with gr.Column(scale=2, min_width=260):
            model = gr.Dropdown(viewer.models(), value=first.model, label="Model")
            class_choice = gr.Dropdown(first.classes["choices"], value=first.classes["value"],
                                       label="Class that drives the erasing (top-5 of branch A)")
            delta = gr.Slider(0.0, 1.0, value=explainer.model.erase_threshold, step=0.05, interactive=explainer.is_acol,
                              label="Erase threshold δ: erase where A's map >= δ", elem_id="erase-threshold")
            box = gr.Slider(0.0, 1.0, value=explainer.default_box_threshold, step=0.05,
                            label="Box threshold (on the fused map, normalized to [0, 1])", elem_id="box-threshold")
        with gr.Column(scale=3, min_width=260):
            groups = viewer.examples.for_model(viewer.shelf.class_names(first.model))
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
    return Controls(image, model, class_choice, delta, box, example_sets, example_boxes, no_examples)


PANEL_TITLES = {"branch-a": "Branch A's map", "erased": "Erased features (click a cell)",
                "branch-b": "Branch B's map (on erased features)", "fused": "Fused map + box"}


@dataclass
class Views:
    """The four pictures (in PANEL_TITLES' order), B's verdict, and erasing by hand."""

    panels: list[gr.Image]
    verdict: gr.Markdown
    row: gr.Number
    col: gr.Number
    toggle: gr.Button
    reset: gr.Button


def build_views(first: FirstView) -> Views:
    """The four views in a row (each picture's elem_id is its PANEL_TITLES key), B's verdict
    under its map, and under them the controls that erase cells by number."""
    panels = []
    with gr.Row(equal_height=False):
        for (key, title), value in zip(PANEL_TITLES.items(), first.pictures):
            with gr.Column(min_width=200):
                gr.Markdown(f"**{title}**")
                panels.append(picture(elem_id=key, buttons=["fullscreen"], value=value))
                if key == "branch-b":
                    verdict = gr.Markdown(first.verdict, elem_id="verdict-b")
    gr.Markdown("**Erase by hand:** click a cell of the erased features to erase or restore it, or "
                "give its row and column (from 0, top left); B and the fused map follow.", elem_id="by-hand")
    with gr.Row(equal_height=True):
        row = gr.Number(label="Row", precision=0, minimum=0, value=None, min_width=80)
        col = gr.Number(label="Column", precision=0, minimum=0, value=None, min_width=80)
        toggle = gr.Button("Erase / restore this cell", min_width=120)
        reset = gr.Button("Back to the δ mask", min_width=120, elem_id="reset-mask")
    return Views(panels, verdict, row, col, toggle, reset)


@dataclass
class Tabs:
    """The two tabs under the views, what each holds, and the export button with its file."""

    sweep_tab: gr.Tab
    sweep: gr.Image
    compare_tab: gr.Tab
    baseline: gr.Dropdown
    compared: gr.Image
    export: gr.Button
    exported: gr.File


def build_tabs(baselines: dict, first: FirstView) -> Tabs:
    """The "Delta sweep" and "Compare with CAM" tabs under the views, then the export;
    ``baselines`` are the first model's CAM baseline choices."""
    with gr.Tabs():
        with gr.Tab("Delta sweep") as sweep_tab:
            gr.Markdown("Erased features (top) and branch B's map (bottom) at each δ.")
            sweep = picture(value=first.sweep)
        with gr.Tab("Compare with CAM") as compare_tab:
            baseline = gr.Dropdown(**baselines, label="CAM baseline")
            gr.Markdown(COMPARE_NOTE)
            compared = picture(elem_id="comparison")
    with gr.Row(equal_height=True):
        export = gr.Button("Export the four-panel figure (PNG)")
        exported = gr.File(label="Four-panel figure", interactive=False, elem_id="figure-file")
    return Tabs(sweep_tab, sweep, compare_tab, baseline, compared, export, exported)


# ----------------------------------------------------------------------------------------------
# Events


def wire_events(viewer: Viewer, cache: gr.State, compare_open: gr.State, model_picked: gr.State,
                status: gr.Markdown, about: gr.Markdown, controls: Controls, views: Views, tabs: Tabs) -> None:
    """Each control is one event that also refreshes the comparison when its tab is open. The
    sweep does not depend on δ, so only a new image or class refreshes it, as a follow-up."""
    image, model, class_choice, delta, box = (controls.image, controls.model, controls.class_choice,
                                              controls.delta, controls.box)
    panels, compared = views.panels, tabs.compared
    refresh_sweep = dict(fn=viewer.delta_sweep, inputs=[cache], outputs=[tabs.sweep], show_progress="hidden")
    extras = [compare_open, tabs.baseline]
    explained = [cache, *panels, class_choice, tabs.baseline, delta, status, compared, views.verdict]
    erased = [cache, *panels[1:], status, compared, views.verdict]  # what a new erasing redraws
    explain_inputs = [image, model, delta, box, compare_open]
    model_page = [model, about, *controls.example_boxes, controls.no_examples, box]
    # A new image first goes to the model that should explain it (an upload: the everyday model,
    # unless the user picked one), then is explained; /explain itself explains with the model given.
    image.change(viewer.route_upload, [image, model, model_picked], [*model_page, delta], api_visibility="private",
                 show_progress="hidden",
                 ).then(viewer.explain_image, explain_inputs, explained, api_name="explain",
                        ).then(**refresh_sweep, api_name="sweep")
    # .input, not .change: only the user's own pick, never an upload sent to the everyday model.
    model.input(lambda: True, None, model_picked, api_visibility="private")
    model.input(viewer.choose_model, explain_inputs,
                 [image, about, *controls.example_boxes, controls.no_examples, box, *explained], api_name="choose_model",
                 ).then(**refresh_sweep, api_visibility="undocumented")
    for index, example_set in enumerate(controls.example_sets):
        example_set.click(viewer.pick_example(index), [example_set], [image], api_visibility="undocumented")
    delta.input(viewer.set_erase_threshold, [cache, delta, box, *extras], erased,
                 api_name="set_erase_threshold", show_progress="hidden", trigger_mode="always_last",
                 concurrency_limit=SLIDER_CONCURRENCY)
    panels[1].select(viewer.click_cell, [cache, box, *extras], [*erased, views.row, views.col],
                     api_name="click_cell", show_progress="hidden", trigger_mode="multiple")
    views.toggle.click(viewer.toggle_cell, [cache, views.row, views.col, box, *extras], erased,
                       api_name="toggle_cell", show_progress="hidden")
    views.reset.click(viewer.reset_mask, [cache, box, *extras], erased, api_name="reset_mask", show_progress="hidden")
    class_choice.input(viewer.set_class, [cache, class_choice, box, *extras], [cache, *panels, status, compared,
                                                                               views.verdict],
                       api_name="set_class").then(**refresh_sweep, api_visibility="undocumented")
    box.input(viewer.set_box_threshold, [cache, box], [cache, panels[3], status],
               api_name="set_box_threshold", show_progress="hidden", trigger_mode="always_last",
               concurrency_limit=SLIDER_CONCURRENCY)
    gr.on([tabs.compare_tab.select, tabs.baseline.input], viewer.open_comparison, [cache, tabs.baseline],
          [cache, compared, compare_open], api_name="compare", show_progress="hidden")
    tabs.sweep_tab.select(lambda: False, None, compare_open, api_visibility="private")
    tabs.export.click(viewer.export_png, [cache, box], [tabs.exported], api_name="export")


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
    first = viewer.first_view()
    # delete_cache: Gradio keeps a copy of every upload and picture; drop those older than an hour
    # (not the pictures the page is built with, nor the examples: Gradio keeps those).
    with gr.Blocks(title="ACoL viewer", analytics_enabled=False, delete_cache=(3600, 3600)) as demo:
        # Each tab starts with its own copy of the first view (gr.State deep-copies its value);
        # an idle tab's image, features and hand-made mask go after an hour.
        cache = gr.State(first.cache, time_to_live=3600)
        compare_open = gr.State(False)  # is the "Compare with CAM" tab showing?
        model_picked = gr.State(False)  # has the user chosen a model? If not, uploads go to the everyday model
        gr.Markdown("# ACoL: where does the classifier look?\nAdversarial Complementary Learning "
                    "(Zhang et al., CVPR 2018) localizes objects from image labels only: erase what "
                    "branch A found, and branch B must find other evidence of the same class. Below, "
                    "a worked example is already explained: move δ, click a feature cell, pick "
                    "another example or model, or upload your own picture.")
        controls = build_controls(viewer, first)
        status = gr.Markdown(first.status, elem_id="status")
        about = gr.Markdown(first.about, elem_id="model-about")
        views = build_views(first)
        tabs = build_tabs(viewer.baseline_choices(first.model), first)
        gr.Markdown(HOW_TO_READ)
        wire_events(viewer, cache, compare_open, model_picked, status, about, controls, views, tabs)
    # Each callback has its own queue slot(s), so a slider move need not wait behind an upload;
    # one at a time unless said otherwise. Beyond QUEUE_LIMIT waiting events, users are told the
    # queue is full.
    return demo.queue(max_size=QUEUE_LIMIT, default_concurrency_limit=1)


def launch(demo: gr.Blocks, **options):
    """``demo.launch`` with the page's look, no server-side rendering (it needs Node), an upload
    limit and memory that stays flat under load (large blocks returned when freed, the rest
    trimmed every 10 s); ``options`` go to Gradio (server_name, ...)."""
    map_large_blocks_separately()
    keep_trimming_freed_memory()
    return demo.launch(theme=THEME, css=CSS, ssr_mode=False, max_file_size=MAX_UPLOAD, **options)


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
