"""The ACoL viewer: a Gradio page, its layout, wiring and launch only. What each event computes
is ``acol.viewer.page``; how its answers become Gradio's updates, ``acol.viewer.gradio_adapters``;
the endpoints scripts call, ``acol.viewer.script_endpoints``. The page's texts, CSS and HTML sit
beside ``acol/viewer/static/viewer.js``, which draws the four views in the browser.

    python app.py [--checkpoints DIR] [--examples DIR] [--device auto|cpu|cuda[:N]] [--share]

Binds 127.0.0.1:7860 unless GRADIO_SERVER_NAME / GRADIO_SERVER_PORT say otherwise (as on
Hugging Face Spaces). Every event has an ``api_name``, so ``gradio_client`` can script the page.
On a ZeroGPU Space the one function that runs a model for a request is lent a GPU per call, and
answers on the CPU when ZeroGPU lends none (acol.viewer.zerogpu).
"""

from __future__ import annotations

import os

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
# Gradio keeps a record of every event for its monitoring page (10,000 by default) and, after
# each event, summarizes them all with pandas: work and memory that grow with traffic. Keep
# 1,000 and summarize every 1,000 events (bench/app_load.py measures the difference).
os.environ.setdefault("GRADIO_ANALYTICS_MAX_EVENTS", "1000")
os.environ.setdefault("GRADIO_ANALYTICS_CACHE_FREQUENCY", "1000")

# Before anything touches CUDA, as ZeroGPU asks; elsewhere spaces.GPU does nothing.
import spaces  # noqa: E402

import argparse  # noqa: E402
from pathlib import Path  # noqa: E402

import gradio as gr  # noqa: E402  (after the settings above)

from acol.core.device import DEVICE_HELP  # noqa: E402
from acol.viewer.page import Page, page_text  # noqa: E402
from acol.viewer.gradio_adapters import (Layout, api_schemas_computed_once, image_input, payload_text,  # noqa: E402
                                         picture, session_copies_keep_their_ids,
                                         sessions_keep_no_page_config, tab_memory)
from acol.viewer.payload import SLIDER_STEP  # noqa: E402
from acol.viewer.script_endpoints import wire_script_events  # noqa: E402
from acol.viewer.scripts import Scripts  # noqa: E402
from acol.viewer.serving import keep_trimming_freed_memory, share_cores_between, share_few_heaps  # noqa: E402
from acol.viewer.shelf import BUNDLED_EXAMPLES, CHECKPOINTS, CheckpointShelf, ExampleImages  # noqa: E402
from acol.viewer.zerogpu import GPU_SECONDS, GpuOrCpu, zerogpu_mode  # noqa: E402

# System fonts: the default theme would fetch its fonts from Google, and the page must run offline.
THEME = gr.themes.Soft(font=["ui-sans-serif", "system-ui", "sans-serif"],
                       font_mono=["ui-monospace", "monospace"])
# Resource bounds (README, "Limits"). Uploads above 25 megapixels are refused or, for JPEGs,
# decoded at a reduced scale (acol.data.images.MAX_IMAGE_PIXELS).
MAX_UPLOAD = os.environ.get("ACOL_MAX_UPLOAD", "20mb")
REQUEST_TIMEOUT_S = float(os.environ.get("ACOL_REQUEST_TIMEOUT", "20"))  # decoding + explaining one upload
QUEUE_LIMIT = int(os.environ.get("ACOL_QUEUE_LIMIT", "64"))  # waiting events; more are turned away
CACHE_MB = int(os.environ.get("ACOL_CACHE_MB", "256"))  # the answers shared by every session
# The page's sliders are drawn in the browser; a script's slider move (/set_erase_threshold) re-runs
# only the later branches and draws three pictures: two at once keep both cores of a small host busy.
SLIDER_CONCURRENCY = 2
# Two uploads are explained at once: while one runs the backbone the other's payload (numpy, one
# core) can run. 30 uploads at once on 2 cores, p95: 5.1 s one at a time, 3.3-3.5 s two at a time,
# 3.5 s three (bench/app_load.py --users 30). Measured again with one torch thread per upload
# (acol.viewer.serving.share_cores_between): two 4.4-4.8 s, three 4.6-5.3 s.
UPLOAD_CONCURRENCY = 2


# ----------------------------------------------------------------------------------------------
# Layout: the page from top to bottom


# The browser's part, in one scope (acol/viewer/static): the four views and how they are drawn,
# "How it learned", "Trained with δ", the lesson.
VIEWER_SCRIPTS = ("viewer.js", "panels.js", "learning.js", "deltas.js", "lesson.js")


def build_layout(page: Page) -> Layout:
    """The image, the model and its knobs, its examples, then the four views under them (on a
    phone, CSS puts the views right after the image), the tabs and the export."""
    first = page.first
    session = tab_memory(first.session)
    with gr.Row(elem_id="top"):
        with gr.Column(scale=2, min_width=260, elem_id="image-column"):
            image = image_input(label="Image (upload or paste)", sources=["upload", "clipboard"], height=280,
                                value=first.image)
        with gr.Column(scale=2, min_width=260, elem_id="controls-column"):
            model, class_choice, delta, box = controls(page)
        with gr.Column(scale=3, min_width=260, elem_id="examples-column"):
            about, example_sets, example_boxes, no_examples = examples_column(page)
        with gr.Column(min_width=240, elem_id="views-column"):
            viewer, by_hand, row, col, toggle = views(page)
    tabs, baseline, redraw, sweep, compared = tabs_under_views(page)
    with gr.Row(equal_height=True):
        export = gr.Button("Export the four-panel figure (PNG)")
        exported = gr.File(label="Four-panel figure", interactive=False, elem_id="figure-file")
    return Layout(session, image, model, class_choice, delta, box, about, example_sets, example_boxes, no_examples,
                  viewer, by_hand, row, col, toggle, tabs, baseline, redraw, sweep, compared, export, exported)


def controls(page: Page) -> tuple:
    """The Model and class dropdowns, the δ and box-threshold sliders."""
    first = page.first
    model = gr.Dropdown(page.models(), value=first.model, label="Model")
    class_choice = gr.Dropdown(first.classes.choices, value=first.classes.value,
                               label="Class that drives the erasing (top-5 of branch A)")
    delta = gr.Slider(0.0, 1.0, value=first.delta, step=SLIDER_STEP, interactive=page.shelf[first.model].is_acol,
                      label="Erase threshold δ, now, while explaining: erase where A's map >= δ", elem_id="erase-threshold")
    box = gr.Slider(0.0, 1.0, value=first.box, step=SLIDER_STEP,
                    label="Box threshold (on the fused map, normalized to [0, 1])", elem_id="box-threshold")
    return model, class_choice, delta, box


def examples_column(page: Page) -> tuple:
    """The model's description, an example set per folder (the model's shown), or the note that
    it has none."""
    about = gr.Markdown(page.first.about, elem_id="model-about")
    groups = page.examples_for(page.first.model)
    example_sets, example_boxes = [], []
    for index, group in enumerate(page.examples.groups):
        # Shown and hidden through a Column: updating a Dataset itself would rebuild it
        # from the folder's paths, which a running server may not read (not in its cwd).
        with gr.Column(visible=index in groups, elem_id=f"examples-{index}") as box_of_set:
            example_sets.append(gr.Dataset(components=["image"], samples=[[path] for path in group.paths],
                                           type="index", label="Examples made for this model (click one)",
                                           samples_per_page=12))
        example_boxes.append(box_of_set)
        # The copies Gradio serves (in its cache): what a click may hand back to the page.
        page.example_files[index] = [sample[0]["path"] for sample in example_sets[-1].samples]
    no_examples = gr.Markdown(page.no_examples(page.first.model), visible=not groups, elem_id="no-examples")
    return about, example_sets, example_boxes, no_examples


def views(page: Page) -> tuple:
    """The four views (drawn in the browser), and erasing a cell by hand by its row and column."""
    viewer = gr.HTML(payload_text(page.first.payload), html_template=page_text("viewer.html"),
                     css_template=page_text("viewer.css"), elem_id="viewer", padding=False,
                     js_on_load="\n".join(page_text(name) for name in VIEWER_SCRIPTS))
    by_hand = gr.Checkbox(False, visible=False)
    gr.Markdown(page_text("by_hand.md"), elem_id="by-hand")
    with gr.Row(equal_height=True):
        row = gr.Number(label="Row", precision=0, minimum=0, value=None, min_width=80)
        col = gr.Number(label="Column", precision=0, minimum=0, value=None, min_width=80)
        toggle = gr.Button("Erase / restore this cell", min_width=120)
    return viewer, by_hand, row, col, toggle


def tabs_under_views(page: Page) -> tuple:
    """The reading guide, the δ sweep and the comparison with CAM: the first tab is words, so the
    others' pictures are drawn only once opened."""
    with gr.Tabs():
        with gr.Tab("How to read the views") as read_tab:
            gr.Markdown(page_text("how_to_read.md"))
        with gr.Tab("Delta sweep") as sweep_tab:
            gr.Markdown("Erased features (top) and branch B's map (bottom) at each δ.")
            sweep = picture()
        with gr.Tab("Compare with CAM") as compare_tab:
            baselines = page.baseline_choices(page.first.model)
            baseline = gr.Dropdown(baselines.choices, value=baselines.value, label="CAM baseline")
            gr.Markdown(page_text("compare_note.md"))
            redraw = gr.Button("Redraw at the δ shown above", size="sm")
            compared = picture(elem_id="comparison")
    return {"read": read_tab, "sweep": sweep_tab, "compare": compare_tab}, baseline, redraw, sweep, compared


# ----------------------------------------------------------------------------------------------
# Events


def with_shown_mask(inputs: list) -> str:
    """The js that runs before an event whose last input is ``by_hand``: whether the page shows
    a hand-made mask, which only the browser knows (viewer.js keeps it in ``data-by-hand``)."""
    return (f"(...values) => [...values.slice(0, {len(inputs) - 1}), "
            "document.querySelector('[data-by-hand]')?.dataset.byHand === 'true']")


# What each page event may change (acol.viewer.view.View's fields); never a component that is also one of
# its inputs, unless as a plain value (Layout.outputs says why).
EXPLAINED = ["payload", "classes", "baselines", "sweep", "comparison"]
REDRAWN = ["payload", "sweep", "comparison"]


def wire_page_events(page: Page, ui: Layout) -> None:
    """Each event answers with one View (a payload the browser draws at any δ and box threshold,
    and the open tab's picture). The sliders and hovering have no event: viewer.js draws them."""
    def on(listener, method, inputs, names, **options):
        listener(lambda *values: ui.values(method(*values), names, dict(zip(map(id, inputs), values))), inputs,
                 ui.outputs(names), **options)
    session, model, delta, box = ui.session, ui.model, ui.delta, ui.box
    # An upload or a paste (.input: the user's own, never an example set by an event), routed to
    # the everyday model unless the user picked one. While it waits, the page shows its place.
    on(ui.image.input, page.open_upload, [session, ui.image, model, delta, box],
       ["model", "about", "examples_shown", "no_examples", "box", "delta", *EXPLAINED], api_name="page_explain",
       api_visibility="undocumented", show_progress="full", concurrency_limit=UPLOAD_CONCURRENCY,
       show_progress_on=[ui.image, ui.viewer])
    for index, example_set in enumerate(ui.example_sets):  # one event: image, payload, tabs
        on(example_set.click, lambda session_, clicked, *rest, group=index: page.open_example(session_, group, clicked,
                                                                                              *rest),
           [session, example_set, model, delta, box], ["image", *EXPLAINED], api_name=f"page_example_{index}",
           api_visibility="undocumented", show_progress="minimal")
    on(model.input, page.choose_model, [session, ui.image, model],
       ["image", "about", "examples_shown", "no_examples", "box", "delta", *EXPLAINED], api_name="page_choose_model",
       api_visibility="private", show_progress_on=[ui.viewer])
    on(ui.class_choice.input, page.choose_class, [session, ui.class_choice, delta, box], REDRAWN,
       api_name="page_set_class", api_visibility="private")

    def click_cell(session_, delta_, box_, event: gr.SelectData):
        """A click on a cell of the erased panel: viewer.js sends its [row, col] and whether the page
        shows a hand-made mask; the cell's row and column also go to the boxes that toggle by number."""
        (row, col), by_hand = event.index, bool(event.value)
        return [*ui.values(page.toggle_cell(session_, row, col, delta_, box_, by_hand), REDRAWN), row, col]
    ui.viewer.select(click_cell, [session, delta, box], [*ui.outputs(REDRAWN), ui.row, ui.col], api_name="click_cell",
                     show_progress="hidden", trigger_mode="multiple")
    toggle_inputs = [session, ui.row, ui.col, delta, box, ui.by_hand]
    on(ui.toggle.click, page.toggle_cell, toggle_inputs, REDRAWN, js=with_shown_mask(toggle_inputs),
       show_progress="hidden", api_name="page_toggle_cell", api_visibility="private")
    tab_inputs = [session, ui.baseline, delta, ui.by_hand]
    for name, tab in ui.tabs.items():
        triggers = [tab.select] + ([ui.baseline.input, ui.redraw.click] if name == "compare" else [])
        on(lambda fn, *args, **options: gr.on(triggers, fn, *args, **options),
           lambda session_, baseline_, delta_, by_hand, tab_name=name: page.open_tab(session_, tab_name, baseline_,
                                                                                     delta_, by_hand),
           tab_inputs, ["sweep", "comparison"], js=with_shown_mask(tab_inputs), show_progress="hidden",
           api_name=f"page_open_{name}", api_visibility="private")
    export_inputs = [session, delta, box, ui.by_hand]
    ui.export.click(page.export, export_inputs, [ui.exported], js=with_shown_mask(export_inputs),
                    api_name="page_export", api_visibility="private")


# ----------------------------------------------------------------------------------------------
# The page


def no_checkpoint_page(checkpoint_dir) -> gr.Blocks:
    """What the page says when there is nothing to explain with."""
    with gr.Blocks(title="ACoL viewer", analytics_enabled=False) as demo:
        gr.Markdown(f"# ACoL viewer\n**No checkpoint found in `{checkpoint_dir}`.** Train one "
                    "(`python -m acol train ...`) or start with `python app.py --checkpoints DIR`.")
    return demo


def build_demo(checkpoint_dir: str | Path = CHECKPOINTS, examples_dirs=(), device: str = "auto") -> gr.Blocks:
    """The viewer's page over the checkpoints in ``checkpoint_dir`` and the example folders,
    its models on ``device`` (after its examples were precomputed on the CPU)."""
    shelf = CheckpointShelf(checkpoint_dir)
    if not shelf.names():
        return no_checkpoint_page(checkpoint_dir)
    examples = ExampleImages([folder for folder in examples_dirs if Path(folder).is_dir()])
    # On a ZeroGPU Space the models moved to its GPU are packed away for the worker that a lent GPU
    # runs in, so copies stay on the CPU to answer when ZeroGPU lends none (acol.viewer.zerogpu);
    # ACOL_ZEROGPU=cpu keeps every request on the CPU.
    on_zerogpu = spaces.config.Config.zero_gpu
    where = zerogpu_mode() if on_zerogpu else "gpu"
    page = Page(shelf, examples, "cpu" if where == "cpu" else device, cache_bytes=CACHE_MB << 20, warn=gr.Warning,
                request_timeout_s=REQUEST_TIMEOUT_S, keep_cpu_models=on_zerogpu)
    on_gpu = spaces.GPU(duration=GPU_SECONDS)(page.runner.run_here)  # elsewhere spaces.GPU changes nothing
    page.runner.run = GpuOrCpu(on_gpu, page.cpu_runner.run_here, where) if on_zerogpu else on_gpu
    session_copies_keep_their_ids()
    sessions_keep_no_page_config()
    api_schemas_computed_once()
    # delete_cache: Gradio keeps a copy of every upload and picture; drop those older than an hour
    # (not the pictures the page is built with, nor the examples: Gradio keeps those).
    with gr.Blocks(title="ACoL viewer", analytics_enabled=False, delete_cache=(3600, 3600)) as demo:
        gr.Markdown(page_text("intro.md"))
        gr.HTML(page_text("lesson_bar.html"), padding=False)  # viewer's lesson.js wires its button
        ui = build_layout(page)
        wire_page_events(page, ui)
        wire_script_events(Scripts(page), ui, SLIDER_CONCURRENCY)
    demo.acol_page = page  # for tests and benchmarks: the page's logic behind this demo
    # Each callback has its own queue slot(s), so a cell click need not wait behind an upload;
    # one at a time unless said otherwise. Beyond QUEUE_LIMIT waiting events, users are told the
    # queue is full.
    return demo.queue(max_size=QUEUE_LIMIT, default_concurrency_limit=1)


def launch(demo: gr.Blocks, **options):
    """``demo.launch`` with the page's look, an upload limit and memory that stays flat under load
    (two glibc heaps for all threads, trimmed every 10 s); ``options`` go to Gradio
    (server_name, ...). Server-side rendering follows ``GRADIO_SSR_MODE`` (off unless it says
    true, as Hugging Face Spaces does; it needs Node 24+, README "Limits")."""
    share_few_heaps()
    keep_trimming_freed_memory()

    return demo.launch(theme=THEME, css=page_text("page.css"), max_file_size=MAX_UPLOAD, **options)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="The ACoL viewer (Gradio).")
    parser.add_argument("--checkpoints", default=str(CHECKPOINTS), help="folder of .safetensors checkpoints")
    parser.add_argument("--examples", action="append", default=[],
                        help="a folder of example images, or a CUB-layout root (true boxes shown); repeatable")
    parser.add_argument("--device", default=os.environ.get("ACOL_DEVICE", "auto"), help=DEVICE_HELP)
    parser.add_argument("--share", action="store_true", help="also open a public gradio.live link")
    args = parser.parse_args(argv)
    demo = build_demo(args.checkpoints, [*BUNDLED_EXAMPLES, *args.examples], args.device)
    share_cores_between(UPLOAD_CONCURRENCY)  # after the start-up answers, which run one at a time
    launch(demo, server_name=os.environ.get("GRADIO_SERVER_NAME", "127.0.0.1"),
           server_port=int(os.environ.get("GRADIO_SERVER_PORT", "7860")), share=args.share)


if __name__ == "__main__":
    main()
