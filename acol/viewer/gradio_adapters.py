"""Between the page's logic and Gradio: the components the page's events read or change
(``Layout``), a ``View`` turned into Gradio's updates, the image input and output picture the page
uses, and a fix that keeps a session's copies of components from piling up.

The only module of acol besides ``acol.viewer.script_endpoints`` that imports Gradio: ``app.py``
imports it once it has set Gradio's environment (analytics off, offline).
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass

import gradio as gr

from .view import KEEP, Session, Update, View


def image_input(**options) -> gr.Image:
    """An image input whose callbacks get the uploaded file undecoded, so ``load_rgb_image``
    (not Pillow inside Gradio) judges bad files and the page can say what is wrong."""
    image = gr.Image(type="filepath", **options)
    # Set on the instance: a gr.Image subclass would do, but Gradio writes a .pyi stub beside
    # every module that defines a component.
    decode = image.preprocess
    image.preprocess = lambda payload: payload.path if payload is not None and payload.path else decode(payload)
    return image


def payload_text(payload):
    """The viewer's payload (``acol.viewer.payload``) as Gradio sends it: JSON text, which
    viewer.js parses. As a dict, Gradio walked every list and number in it twice per event,
    looking for files to serve (a quarter of the server's time for 30 example clicks at once,
    bench/app_load.py); text is one value. ``KEEP`` stays ``KEEP``."""
    return json.dumps(payload, separators=(",", ":")) if isinstance(payload, dict) else payload


def tab_memory(first: Session) -> gr.State:
    """The State that holds a tab's Session, ``first`` when the tab opens. Given as a function, not
    as the Session: Gradio builds a State's config from its value, a dataclass as a deep copy of
    every tensor in it (``dataclasses.asdict``), only to delete it, for every tab that opens and
    every event that stores its session (about a tenth of the server's time for 30 example clicks
    at once, bench/app_load.py). A function's config costs nothing; Gradio calls it when a tab
    opens, and new tabs share that Session (``Session.__deepcopy__``)."""
    return gr.State(lambda: first, time_to_live=3600)  # an idle tab's image and features go after an hour


def picture(**options) -> gr.Image:
    """An output picture, sent as JPEG: Gradio's PNG encoding costs ~20 ms a panel, JPEG ~1 ms."""
    return gr.Image(show_label=False, type="numpy", format="jpeg", interactive=False, **options)


def gradio_value(value):
    """What ``acol.viewer.page`` says of an output, as Gradio takes it."""
    if value is KEEP:
        return gr.skip()
    return gr.update(**value.changes()) if isinstance(value, Update) else value


def as_output(value, component, given: dict):
    """``gradio_value``, but plain for a component the event was ``given`` as an input ({its id:
    its value}): the update's value, else the one it had (Layout.outputs says why)."""
    if id(component) in given:
        value = value.value if isinstance(value, Update) else value
        value = given[id(component)] if value is KEEP else value
    return gradio_value(value)


def session_copies_keep_their_ids() -> None:
    """Have Gradio's per-session copy of a component keep the component's id.

    Gradio (6.x) answers an update of a component (even a skip) by building a new one, with a
    new id, and keeping it in the session in the component's place; each later event that reads
    or sets that component then stores the copy once more, under the copy's own id
    (``Blocks.preprocess_data`` and ``postprocess_data``: ``if block._id not in state:
    state[block._id] = block``). So a session grew by one component for every such pair of
    events: the class chosen after each upload (an upload updates its choices), a tab opened
    after each picture (the picture the tab shows was skipped), an event after a model change
    (it updates whether the δ slider moves). Kept in a component's place, the copy takes the
    component's id, so it replaces and never adds. Idempotent."""
    from gradio.blocks import Block
    from gradio.state_holder import SessionState
    store = SessionState.__setitem__
    if getattr(store, "keeps_ids", False):
        return

    def store_keeping_id(self, key, value):
        if isinstance(value, Block) and value._id != key:
            value._id = key
        store(self, key, value)
    store_keeping_id.keeps_ids = True
    SessionState.__setitem__ = store_keeping_id


def sessions_keep_no_page_config() -> None:
    """Have Gradio keep no copy of the page's config in a session.

    Gradio (6.x) builds, for every new session, the config of every component on the page (52
    here, each through ``inspect.signature``), and again for each component an event changes,
    and keeps them only to rebuild the page for a deep link (``gr.DeepLinkButton``,
    ``/gradio_api/deep_link``) or to send what a ``gr.render`` drew; this page has neither. That
    was most of the server's time when a class clicked its first example at once
    (bench/app_load.py). A session here starts with no copy and its configs are empty; what the
    session holds (its state, its copies of components) is kept as before. Idempotent."""
    from gradio.state_holder import SessionState
    start = SessionState.__init__
    if getattr(start, "keeps_no_page_config", False):
        return

    class PageWithoutComponents:
        """What ``SessionState.__init__`` reads of a Blocks: its config, and the components it copies (none)."""

        def __init__(self, blocks):
            self.default_config, self.blocks = blocks.default_config, {}

    def start_without_page_config(self, blocks):
        start(self, PageWithoutComponents(blocks))
        self.blocks_config.config_for_block = lambda *args, **kwargs: {}  # this session's copy only
    start_without_page_config.keeps_no_page_config = True
    SessionState.__init__ = start_without_page_config


def api_schemas_computed_once() -> None:
    """Have Gradio compute a component class's API schema once, not once per component object.

    Gradio (6.x) builds a new component for every update of an output, even a skip (the tab
    pictures skipped by every picture event), and each new one makes its API schema again with
    pydantic (``Component.api_info``: ~4 ms for an image), which depends on the component's data
    model alone. Here a data model's schema is made once and each component gets its own copy.
    Idempotent."""
    from gradio.components.base import Component
    make = Component.api_info
    if getattr(make, "once", False):
        return
    schemas = {}

    def api_info_once(self):
        if self.data_model is None:
            return make(self)
        if self.data_model not in schemas:
            schemas[self.data_model] = make(self)
        return copy.deepcopy(schemas[self.data_model])
    api_info_once.once = True
    Component.api_info = api_info_once


def shown_per_group(shown, groups: int) -> list:
    """``View.examples_shown`` as one update per example group's box."""
    return [gr.skip()] * groups if shown is KEEP else [gr.update(visible=visible) for visible in shown]


@dataclass
class Layout:
    """The page's components that events read or change."""

    session: gr.State                                   # one tab's acol.viewer.view.Session
    image: gr.Image
    model: gr.Dropdown
    class_choice: gr.Dropdown
    delta: gr.Slider
    box: gr.Slider
    about: gr.Markdown
    example_sets: list[gr.Dataset]
    example_boxes: list[gr.Column]                      # one around each set: what a model change shows or hides
    no_examples: gr.Markdown
    viewer: gr.HTML                                     # the views, drawn by acol/viewer/static/*.js
    by_hand: gr.Checkbox                                # hidden: events get it from the page (with_shown_mask)
    row: gr.Number
    col: gr.Number
    toggle: gr.Button
    tabs: dict                                          # "read", "sweep", "compare": each tab
    baseline: gr.Dropdown
    redraw: gr.Button
    sweep: gr.Image
    compared: gr.Image
    export: gr.Button
    exported: gr.File

    def fields(self) -> dict:
        """The components each of a View's fields changes (``examples_shown``: one box per group)."""
        return {"image": [self.image], "model": [self.model], "about": [self.about], "examples_shown": self.example_boxes,
                "no_examples": [self.no_examples], "box": [self.box], "delta": [self.delta], "payload": [self.viewer],
                "classes": [self.class_choice], "baselines": [self.baseline], "sweep": [self.sweep],
                "comparison": [self.compared]}

    def outputs(self, names) -> list:
        """An event's outputs: the session and the components of the View fields it may change.
        Only those: Gradio builds a new component for every update, even a skip, and keeps it in
        the session (``session_copies_keep_their_ids`` says what that cost before)."""
        return [self.session] + [component for name in names for component in self.fields()[name]]

    def values(self, view: View, names, given: dict | None = None) -> list:
        """The View's fields ``names`` as Gradio takes them, after the session. A component the
        event was ``given`` as an input ({component's id: its value}) gets a plain value: the
        update's, else the one it had."""
        groups, fields = len(self.example_boxes), self.fields()

        def field(name):
            """A View field as Gradio takes it: the payload as JSON text (``payload_text``)."""
            return payload_text(view.payload) if name == "payload" else getattr(view, name)
        return [view.session] + [value for name in names for value in (
            shown_per_group(view.examples_shown, groups) if name == "examples_shown"
            else [as_output(field(name), fields[name][0], given or {})])]
