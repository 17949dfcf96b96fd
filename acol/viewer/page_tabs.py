"""The tabs under the views and the export: the "Delta sweep" and "Compare with CAM" pictures,
drawn only while their tab is open (each costs about as much as the panels) and then following
the page, and the four-panel figure as a PNG file. A part of ``acol.viewer.page.Page`` (it reads
the page's ``shelf``, ``runner``, ``warn`` and ``exports`` and calls its ``shown``)."""

from __future__ import annotations

import re
import tempfile
from dataclasses import replace
from pathlib import Path

from ..core.checkpoint import CheckpointError
from ..evaluation.explanation import Explanation
from .drawing import compare_picture, placeholder, render_panels, sweep_strip, write_figure_png
from .view import Session, View


class PageTabs:
    """The tabs' pictures and the export (a part of ``Page``)."""

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
