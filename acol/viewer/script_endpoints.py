"""The endpoints scripts call (``gradio_client``): ``/explain`` and friends, wired to
``acol.viewer.scripts.Scripts``, each answering with the pictures, as scripts called them."""

from __future__ import annotations

import gradio as gr

from .gradio_adapters import Layout, as_output, picture, shown_per_group
from .scripts import Scripts
from .view import KEEP


SCRIPT_PANELS = ["branch-a", "erased", "branch-b", "fused"]


def wire_script_events(scripts: Scripts, ui: Layout, slider_concurrency: int) -> None:
    """/explain and friends, as scripts called them: each returns the pictures. Their outputs sit
    in a hidden column; the trigger is a hidden button no one presses. ``slider_concurrency``:
    how many scripted slider moves run at once."""
    with gr.Column(visible=False):
        trigger = gr.Button()
        panels = {name: picture() for name in SCRIPT_PANELS}
        status, verdict = gr.Markdown(), gr.Markdown()
    named = {**panels, "status": status, "verdict": verdict, "classes": ui.class_choice, "baselines": ui.baseline,
             "delta": ui.delta, "compared": ui.compared, "image": ui.image, "about": ui.about,
             "no_examples": ui.no_examples, "box": ui.box}
    explained = [*SCRIPT_PANELS, "classes", "baselines", "delta", "status", "compared", "verdict"]
    erased = ["erased", "branch-b", "fused", "status", "compared", "verdict"]  # what a new erasing redraws

    def endpoint(method, inputs, names, api_name, **options):
        groups = len(ui.example_boxes)

        def reply_outputs(*values):
            reply, given = method(*values), dict(zip(map(id, inputs), values))
            return [reply.session] + [value for name in names for value in (
                shown_per_group(reply.outputs.get(name, KEEP), groups) if name == "examples_shown"
                else [as_output(reply.outputs.get(name, KEEP), named[name], given)])]
        components = [ui.session] + [box for name in names
                                     for box in (ui.example_boxes if name == "examples_shown" else [named[name]])]
        trigger.click(reply_outputs, inputs, components, api_name=api_name, **options)
    session, image, model, delta, box, baseline = ui.session, ui.image, ui.model, ui.delta, ui.box, ui.baseline
    endpoint(scripts.explain, [session, image, model, delta, box], explained, "explain")
    endpoint(scripts.choose_model, [session, image, model, delta, box],
             ["image", "about", "examples_shown", "no_examples", "box", *explained], "choose_model")
    endpoint(scripts.set_erase_threshold, [session, delta, box, baseline], erased, "set_erase_threshold",
             concurrency_limit=slider_concurrency)
    endpoint(scripts.toggle_cell, [session, ui.row, ui.col, box, baseline], erased, "toggle_cell")
    endpoint(scripts.reset_mask, [session, box, baseline], erased, "reset_mask")
    endpoint(scripts.set_class, [session, ui.class_choice, box, baseline], [*SCRIPT_PANELS, "status", "compared",
                                                                            "verdict"], "set_class")
    endpoint(scripts.set_box_threshold, [session, box], ["fused", "status"], "set_box_threshold",
             concurrency_limit=slider_concurrency)
    endpoint(scripts.compare, [session, baseline], ["compared"], "compare")
    trigger.click(scripts.sweep, [session], [ui.sweep], api_name="sweep")
    trigger.click(scripts.export, [session, box], [ui.exported], api_name="export")
