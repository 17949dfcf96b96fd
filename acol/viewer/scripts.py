"""The endpoints scripts call (``gradio_client``): /explain and friends, four pictures each.

Before the page drew its own views in the browser, every event returned four pictures; scripts
still get them, through the page's own logic (``acol.viewer.page``) and its shared answers, so a script
uploading a bundled example is answered from the cache. A script's session is its one truth: a δ
is a request (an explanation erased at that δ, ``Page.erased_at``: no payload, no "How it
learned", which scripts never read), and the comparison follows its requests only once it asked
for it (/compare). The pictures of a cached answer are cached beside it, within the answers'
memory bound (``acol.viewer.answers.ScriptPictures``).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from ..evaluation.explain import check_cell
from ..evaluation.explanation import Explanation
from .answers import Answer, ScriptPictures, pictures_key
from .page import Page
from .page_models import own_or
from .shelf import content_digest
from .view import KEEP, Session, Update, View

@dataclass
class ScriptReply:
    """What a script's request gets: the session, and each output by name (KEEP: unchanged)."""

    session: Session
    outputs: dict = field(default_factory=dict)


class Scripts:
    """The endpoints scripts call (``gradio_client``), each returning pictures, as before the page
    drew its own. The session is the one truth here: a δ is a request. They share the page's
    answers: a script uploading a bundled example is answered from the cache."""

    NAMES = ("branch-a", "erased", "branch-b", "fused")

    def __init__(self, page: Page):
        self.page = page

    def pictures(self, answer: Answer, box) -> dict:
        """The four pictures of ``answer`` at box threshold ``box``, its status line and B's verdict
        (drawn once per cached answer and box threshold)."""
        draw = lambda: ScriptPictures.drawn(answer, box)
        drawn = draw() if answer.key is None else self.page.answers.get(pictures_key(answer.key, box), draw)
        return {**dict(zip(self.NAMES, drawn.pictures)), "status": drawn.status, "verdict": drawn.verdict}

    def answer_shown(self, explanation: Explanation) -> Answer:
        """The answer that holds the session's explanation (a hand-made mask's is its own)."""
        if explanation.erased_by_hand:
            return Answer(explanation, None, self.page.shelf[explanation.model_name].note(explanation))
        return self.page.erased_at(explanation, explanation.erase_threshold)

    def with_comparison(self, session: Session, explanation: Explanation, baseline, outputs: dict) -> ScriptReply:
        """The comparison is drawn only while the script opened it (/compare)."""
        if session.open_tab == "compare":
            session, outputs["compared"] = self.page.comparison(session, explanation, baseline)
        return ScriptReply(session, outputs)

    def explain(self, session: Session, path, model_name, delta, box) -> ScriptReply:
        view = self.page.explained(View(session), path, None if path is None else content_digest(path), model_name,
                                   delta, box)  # with the comparison drawn when the script opened it
        outputs = {"classes": view.classes, "baselines": view.baselines, "delta": view.delta, "compared": view.comparison}
        if view.answer is None:
            return ScriptReply(view.session, {**outputs, **dict.fromkeys(self.NAMES), "status": view.payload["message"],
                                              "compared": None, "verdict": ""})
        answer = self.page.erased_at(view.answer.explanation, delta)  # the page's answer is at the model's own δ
        return ScriptReply(replace(view.session, explanation=answer.explanation),
                           {**outputs, **self.pictures(answer, box)})

    def choose_model(self, session: Session, path, model_name, delta, box) -> ScriptReply:
        page_view = self.page.with_model(View(session), model_name)
        delta, box = own_or(self.page.defaults(model_name), (delta, box))
        groups = self.page.examples_for(model_name)
        example = None if path is None else self.page.examples.find(content_digest(path))
        outputs = {"image": KEEP, "about": page_view.about, "examples_shown": page_view.examples_shown,
                   "no_examples": page_view.no_examples, "box": page_view.box}
        if (example is not None and example.group not in groups) or (path is None and groups):
            outputs["image"] = self.page.example_files[groups[0]][0] if groups else None
            return ScriptReply(session, {**outputs, "delta": Update(value=delta)})
        reply = self.explain(session, path, model_name, delta, box)
        reply.outputs["delta"] = Update(value=delta, interactive=getattr(reply.outputs.get("delta"), "interactive", None))
        return ScriptReply(reply.session, {**outputs, **reply.outputs})

    def redrawn(self, session: Session, answer: Answer, box, baseline) -> ScriptReply:
        session = replace(session, explanation=answer.explanation)
        return self.with_comparison(session, answer.explanation, baseline, self.pictures(answer, box))

    def set_erase_threshold(self, session: Session, delta, box, baseline) -> ScriptReply:
        explanation = session.explanation
        if explanation is None or explanation.num_branches == 1:
            return ScriptReply(session)
        return self.redrawn(session, self.page.erased_at(explanation, delta), box, baseline)

    def toggle_cell(self, session: Session, row, col, box, baseline) -> ScriptReply:
        """Erase or restore feature cell (row, col), starting from the mask the session holds."""
        explanation = session.explanation
        if explanation is None or row is None or col is None:
            return ScriptReply(session)
        try:
            check_cell(explanation, int(row), int(col))
        except ValueError as error:
            self.page.warn(str(error))
            return ScriptReply(session)
        answer = self.page.runner.run("toggle_cell", explanation.model_name, explanation, int(row), int(col))
        return self.redrawn(session, answer, box, baseline)

    def reset_mask(self, session: Session, box, baseline) -> ScriptReply:
        """Back to erasing where A's map >= δ."""
        explanation = session.explanation
        if explanation is None or explanation.num_branches == 1:
            return ScriptReply(session)
        return self.redrawn(session, self.page.erased_at(explanation, explanation.erase_threshold), box, baseline)

    def set_class(self, session: Session, class_index, box, baseline) -> ScriptReply:
        explanation = session.explanation
        if explanation is None or class_index is None:
            return ScriptReply(session)
        answer = self.page.erased_at(explanation, explanation.erase_threshold, int(class_index))
        return self.redrawn(session, answer, box, baseline)

    def set_box_threshold(self, session: Session, box) -> ScriptReply:
        explanation = session.explanation
        if explanation is None:
            return ScriptReply(session)
        drawn = self.pictures(self.answer_shown(explanation), box)
        return ScriptReply(session, {"fused": drawn["fused"], "status": drawn["status"]})

    def sweep(self, session: Session):
        return self.page.sweep(session.explanation)

    def compare(self, session: Session, baseline) -> ScriptReply:
        """The comparison, and from now on it follows this session's requests."""
        session, picture = self.page.comparison(replace(session, open_tab="compare"), session.explanation, baseline)
        return ScriptReply(session, {"compared": picture})

    def export(self, session: Session, box):
        return self.page.figure_file(session.explanation, box)
