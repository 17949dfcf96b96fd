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
from acol.drawing import (compare_picture, page_pictures, placeholder, render_panels,  # noqa: E402
                          sweep_strip, write_figure_png)
from acol.explain import top_classes  # noqa: E402
from acol.serving import (CheckpointShelf, ExampleImages, RequestTimeout, ViewerCache,  # noqa: E402
                          call_with_timeout, keep_trimming_freed_memory, map_large_blocks_separately)

REPO = Path(__file__).resolve().parent
CHECKPOINTS = REPO / "checkpoints"
EXAMPLES = REPO / "assets" / "examples"
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
average is the class score. So it lights up the evidence that classified the image: often only
the most discriminative part (a bird's head).

**Erased features.** ACoL zeroes the backbone *feature* cells where A's map is >= δ (blue).
Each grid cell is one position of the feature map (a 16x16-pixel patch of the model's input for
EfficientNet-Lite0, 8x8 for the tiny CNN): whole cells are erased, not pixels. A lower δ erases more.

**Branch B's map.** A second classifier gets the features with those cells zeroed. It was
trained to predict the same label from them, so it learned to use evidence that A did not:
other parts of the object.

**Fused map + box.** The element-wise max of A's and B's maps covers more of the object. The
cyan box surrounds the largest region >= the box threshold (a fraction of the map's peak); when
the true box (green) is known, the line above the views gives their IoU.

**Class.** The top-5 classes by branch A's softmax. The chosen class's maps are shown and its
map drives the erasing (in training, the true label does). Changing δ or the class reuses the
image's cached backbone features: only the erasing and branch B run again.

**Delta sweep**: the erased cells and B's map at several δ.
**Compare with CAM**: a one-branch model (CAM, no erasing) beside ACoL's fused map.
"""


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


def views(explanation, box_threshold):
    """The four panels as the page shows them, and the status line under the controls."""
    panels = render_panels(explanation, box_threshold)
    return *page_pictures(panels), panels.caption


# ----------------------------------------------------------------------------------------------
# Callbacks: each takes the tab's ViewerCache and returns it, with what changed on the page


class Viewer:
    """The page's callbacks over a folder of checkpoints and the example images."""

    def __init__(self, shelf: CheckpointShelf, examples: ExampleImages):
        self.shelf = shelf
        self.examples = examples
        self.exports = tempfile.TemporaryDirectory(prefix="acol-exports-")  # removed when the server exits

    def baseline_choices(self, model_name) -> dict:
        """The "CAM baseline" dropdown's choices for a model, the first one chosen."""
        baselines = self.shelf.baselines_for(model_name)
        return {"choices": baselines, "value": next(iter(baselines), None)}

    def comparison(self, cache, compare_open, baseline_name, box_threshold):
        """(cache, picture) for the "Compare with CAM" tab; while it is closed, nothing is computed
        or sent: a slider move stays one event and three pictures (bench/app_load.py)."""
        return self.compare_with_cam(cache, baseline_name, box_threshold) if compare_open else (cache, gr.skip())

    def explain_image(self, path, model_name, erase_threshold, box_threshold, compare_open):
        empty = (ViewerCache(), None, None, None, None, gr.update(choices=[], value=None),
                 gr.update(), gr.update())
        if path is None:
            return *empty, "Upload or paste an image, or click an example.", None

        def explain_upload():  # timed: decoding costs what the upload makes it cost
            explainer = self.shelf[model_name]
            return explainer, explainer.explain(load_rgb_image(path), self.examples.true_boxes(path),
                                                erase_threshold=erase_threshold if explainer.is_acol else None)
        try:
            explainer, explanation = call_with_timeout(REQUEST_TIMEOUT_S, explain_upload)
        except (ImageLoadError, CheckpointError, RequestTimeout) as error:
            message = str(error).replace(str(path), Path(path).name)  # not the server's temp path
            gr.Warning(message)
            return *empty, f"**Cannot explain this:** {message}", None
        classes = [(f"{name} ({probability:.0%})", index) for index, name, probability in top_classes(explanation)]
        *pictures, status = views(explanation, box_threshold)
        baselines = self.baseline_choices(model_name)
        cache, compared = self.comparison(ViewerCache(explanation), compare_open, baselines["value"], box_threshold)
        return (cache, *pictures,
                gr.update(choices=classes, value=explanation.target_class), gr.update(**baselines),
                gr.update(interactive=explainer.is_acol), status, compared)

    def set_erase_threshold(self, cache, erase_threshold, box_threshold, compare_open, baseline_name):
        if cache.explanation is None or cache.explanation.num_branches == 1:
            return cache, *[gr.skip()] * 5
        explainer = self.shelf[cache.explanation.model_name]
        explanation = explainer.reexplain(cache.explanation, erase_threshold=erase_threshold)
        _, erased, branch_b, fused, status = views(explanation, box_threshold)
        cache, compared = self.comparison(replace(cache, explanation=explanation), compare_open, baseline_name,
                                          box_threshold)
        return cache, erased, branch_b, fused, status, compared

    def set_class(self, cache, class_index, box_threshold, compare_open, baseline_name):
        if cache.explanation is None or class_index is None:
            return cache, *[gr.skip()] * 6
        explainer = self.shelf[cache.explanation.model_name]
        explanation = explainer.reexplain(cache.explanation, target_class=int(class_index))
        cache, compared = self.comparison(replace(cache, explanation=explanation), compare_open, baseline_name,
                                          box_threshold)
        return cache, *views(explanation, box_threshold), compared

    def set_box_threshold(self, cache, box_threshold, compare_open, baseline_name):
        if cache.explanation is None:
            return cache, gr.skip(), gr.skip(), gr.skip()
        *_, fused, status = views(cache.explanation, box_threshold)
        cache, compared = self.comparison(cache, compare_open, baseline_name, box_threshold)
        return cache, fused, status, compared

    def delta_sweep(self, cache):
        if cache.explanation is None:
            return None
        if cache.explanation.num_branches == 1:
            return placeholder("A one-branch CAM model erases nothing: no sweep.", (640, 120))
        return sweep_strip(self.shelf[cache.explanation.model_name].sweep(cache.explanation))

    def compare_with_cam(self, cache, baseline_name, box_threshold):
        """The CAM baseline's map beside ACoL's fused map (the baseline's is computed once per image)."""
        if cache.explanation is None:
            return cache, None
        if cache.explanation.num_branches == 1:
            return cache, placeholder("This is a CAM model: pick an ACoL model\nto compare with it.", (640, 120))
        if not baseline_name:
            return cache, placeholder(f"No CAM checkpoint with the same classes\nin {self.shelf.folder}.", (640, 120))
        try:
            cache = cache.with_baseline(self.shelf[baseline_name])
        except CheckpointError as error:
            gr.Warning(str(error))
            return cache, None
        return cache, compare_picture(cache.baseline, cache.explanation, box_threshold)

    def open_comparison(self, cache, baseline_name, box_threshold):
        """The Compare tab was opened or its baseline changed: draw it, and keep it drawn."""
        return *self.compare_with_cam(cache, baseline_name, box_threshold), True

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
class Controls:
    """The inputs the events read, and the export button with its file."""

    image: gr.Image
    model: gr.Dropdown
    class_choice: gr.Dropdown
    delta: gr.Slider
    box: gr.Slider
    export: gr.Button
    exported: gr.File


def build_controls(shelf: CheckpointShelf, examples: ExampleImages) -> Controls:
    """The row above the views: the image, the model and its three knobs, examples and export."""
    first = shelf[shelf.names()[0]]
    with gr.Row():
        with gr.Column(scale=2, min_width=260):
            image = image_input(label="Image (upload or paste)", sources=["upload", "clipboard"], height=280)
        with gr.Column(scale=2, min_width=260):
            model = gr.Dropdown(shelf.names(), value=first.name, label="Model")
            class_choice = gr.Dropdown([], label="Class that drives the erasing (top-5 of branch A)")
            delta = gr.Slider(0.0, 1.0, value=first.model.erase_threshold, step=0.05,
                              label="Erase threshold δ: erase where A's map >= δ", elem_id="erase-threshold")
            box = gr.Slider(0.0, 1.0, value=first.default_box_threshold, step=0.05,
                            label="Box threshold (fraction of the fused map's peak)")
        with gr.Column(scale=3, min_width=260):
            if examples.paths:
                gr.Examples(examples.paths, inputs=image, label="Examples", examples_per_page=12)
            export = gr.Button("Export the four-panel figure (PNG)")
            exported = gr.File(label="Four-panel figure", interactive=False, elem_id="figure-file")
    return Controls(image, model, class_choice, delta, box, export, exported)


PANEL_TITLES = {"branch-a": "Branch A's map", "erased": "Erased features (feature cells)",
                "branch-b": "Branch B's map (on erased features)", "fused": "Fused map + box"}


def build_panels() -> list[gr.Image]:
    """The four views in a row, in PANEL_TITLES' order (each picture's elem_id is its key)."""
    panels = []
    with gr.Row(equal_height=True):
        for key, title in PANEL_TITLES.items():
            with gr.Column(min_width=200):
                gr.Markdown(f"**{title}**")
                panels.append(picture(elem_id=key, buttons=["fullscreen"]))
    return panels


@dataclass
class Tabs:
    """The two tabs under the views, and what each holds."""

    sweep_tab: gr.Tab
    sweep: gr.Image
    compare_tab: gr.Tab
    baseline: gr.Dropdown
    compared: gr.Image


def build_tabs(baselines: dict) -> Tabs:
    """The "Delta sweep" and "Compare with CAM" tabs under the views; ``baselines`` are the
    first model's CAM baseline choices."""
    with gr.Tabs():
        with gr.Tab("Delta sweep") as sweep_tab:
            gr.Markdown("Erased features (top) and branch B's map (bottom) at each δ.")
            sweep = picture()
        with gr.Tab("Compare with CAM") as compare_tab:
            baseline = gr.Dropdown(**baselines, label="CAM baseline")
            compared = picture(elem_id="comparison")
    return Tabs(sweep_tab, sweep, compare_tab, baseline, compared)


# ----------------------------------------------------------------------------------------------
# Events


def wire_events(viewer: Viewer, cache: gr.State, compare_open: gr.State, status: gr.Markdown,
                controls: Controls, panels: list[gr.Image], tabs: Tabs) -> None:
    """Each control is one event that also refreshes the comparison when its tab is open. The
    sweep does not depend on δ, so only a new image or class refreshes it, as a follow-up."""
    image, model, class_choice, delta, box = (controls.image, controls.model, controls.class_choice,
                                              controls.delta, controls.box)
    compared = tabs.compared
    refresh_sweep = dict(fn=viewer.delta_sweep, inputs=[cache], outputs=[tabs.sweep], show_progress="hidden")
    extras = [compare_open, tabs.baseline]
    gr.on([image.change, model.change], viewer.explain_image, inputs=[image, model, delta, box, compare_open],
          outputs=[cache, *panels, class_choice, tabs.baseline, delta, status, compared], api_name="explain",
          ).then(**refresh_sweep, api_name="sweep")
    delta.change(viewer.set_erase_threshold, [cache, delta, box, *extras], [cache, *panels[1:], status, compared],
                 api_name="set_erase_threshold", show_progress="hidden", trigger_mode="always_last",
                 concurrency_limit=SLIDER_CONCURRENCY)
    class_choice.input(viewer.set_class, [cache, class_choice, box, *extras], [cache, *panels, status, compared],
                       api_name="set_class").then(**refresh_sweep, api_visibility="undocumented")
    box.change(viewer.set_box_threshold, [cache, box, *extras], [cache, panels[3], status, compared],
               api_name="set_box_threshold", show_progress="hidden", trigger_mode="always_last",
               concurrency_limit=SLIDER_CONCURRENCY)
    gr.on([tabs.compare_tab.select, tabs.baseline.input], viewer.open_comparison, [cache, tabs.baseline, box],
          [cache, compared, compare_open], api_name="compare", show_progress="hidden")
    tabs.sweep_tab.select(lambda: False, None, compare_open, api_visibility="private")
    controls.export.click(viewer.export_png, [cache, box], [controls.exported], api_name="export")


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
    # delete_cache: Gradio keeps a copy of every upload and picture; drop those older than an hour.
    with gr.Blocks(title="ACoL viewer", analytics_enabled=False, delete_cache=(3600, 3600)) as demo:
        cache = gr.State(ViewerCache(), time_to_live=3600)  # an idle tab's image and features go after an hour
        compare_open = gr.State(False)  # is the "Compare with CAM" tab showing?
        gr.Markdown("# ACoL: where does the classifier look?\nAdversarial Complementary Learning "
                    "(Zhang et al., CVPR 2018) localizes objects from image labels only: erase what "
                    "branch A found, and branch B must find the rest.")
        controls = build_controls(shelf, examples)
        status = gr.Markdown("Upload or paste an image, or click an example.", elem_id="status")
        panels = build_panels()
        tabs = build_tabs(viewer.baseline_choices(shelf.names()[0]))
        gr.Markdown(HOW_TO_READ)
        wire_events(viewer, cache, compare_open, status, controls, panels, tabs)
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
    launch(build_demo(args.checkpoints, [EXAMPLES, *args.examples]),
           server_name=os.environ.get("GRADIO_SERVER_NAME", "127.0.0.1"),
           server_port=int(os.environ.get("GRADIO_SERVER_PORT", "7860")), share=args.share)


if __name__ == "__main__":
    main()
