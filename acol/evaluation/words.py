"""An explanation in words: its top classes, B's verdict on the erased features, the caption, and
a class named by the user (an index, a name or part of one). What the page, the figure and
``python -m acol explain`` say of an ``Explanation``."""

from __future__ import annotations

import torch

from .explanation import Explanation


def top_classes(explanation: Explanation, k: int = 5, branch: int = 0) -> list[tuple[int, str, float]]:
    """``(class index, name, probability)`` of the ``k`` most probable classes of a branch.

    Branch A's (``branch=0``) are the softmax of its logits: branch A sees the whole image, so
    they do not change while the erase threshold or the driving class moves. Branch B's
    (``branch=1``) are on the erased features, so they follow every erasing.
    """
    scores = explanation.probabilities if branch == 0 else explanation.output.logits[branch][0].softmax(-1)
    probabilities, indices = scores.topk(min(k, len(scores)))
    return [(int(i), explanation.class_names[int(i)], float(p)) for p, i in zip(probabilities, indices)]


def branch_b_verdict(explanation: Explanation, k: int = 3) -> str:
    """What branch B concludes from the erased features, in one line of Markdown: how much
    was erased, B's top-``k`` classes, and whether B still says the class A's map erased for."""
    if explanation.num_branches == 1:
        return "A one-branch CAM model has no branch B."
    how = "by hand" if explanation.erased_by_hand else f"δ = {explanation.erase_threshold:.2f}"
    probabilities = explanation.output.logits[1][0].softmax(-1)
    top = probabilities.topk(min(k, len(probabilities)))
    mask = explanation.output.erase_masks[1][0]
    return verdict_line(top.values, top.indices, int(mask.sum()), mask.numel(), how, explanation.target_class,
                        explanation.class_names)


def caption_head(explanation: Explanation) -> str:
    """The caption's start: model, class and its probability, and the true class when known."""
    name = explanation.class_names[explanation.target_class]
    probability = float(explanation.probabilities[explanation.target_class])
    caption = f"{explanation.model_name}: {name} ({probability:.0%})"
    return caption if explanation.true_class is None else caption + f" · true class: {explanation.true_class}"


def erasing_phrase(how: str, erased: int, cells: int) -> str:
    """How B's input was erased (``how``: "δ = 0.40" or "by hand") and how much of it."""
    return f"{how}: erased {erased} of {cells} feature cells"


def verdict_line(top_probabilities: torch.Tensor, top_classes: torch.Tensor, erased: int, cells: int, how: str,
                 target_class: int, class_names: list[str]) -> str:
    """B's verdict (``branch_b_verdict``) from its most probable classes (``top_classes``, with
    their ``top_probabilities``, most probable first) on features with ``erased`` of ``cells``
    cells erased: a viewer says it for every step of its δ slider at once."""
    (best, probability), *others = [(int(i), float(p)) for p, i in zip(top_probabilities, top_classes)]
    target = class_names[target_class]
    verdict = "still says" if best == target_class else f"says (not {target})"
    rest = "".join(f" · {class_names[other]} {p:.0%}" for other, p in others)
    return (f"{erased} of {cells} cells erased ({how}): "
            f"B {verdict} **{class_names[best]}, {probability:.0%}**{rest}")


def resolve_class(name_or_index: str | int, class_names: list[str]) -> int:
    """A class index from an index, an exact name (any case) or a unique part of a name."""
    text = str(name_or_index).strip()
    if text.isdigit():
        if int(text) < len(class_names):
            return int(text)
        raise ValueError(f"class index {text} out of range: the model has {len(class_names)} classes")
    lowered = [name.lower() for name in class_names]
    if text.lower() in lowered:
        return lowered.index(text.lower())
    matches = [i for i, name in enumerate(lowered) if text.lower() in name]
    if len(matches) == 1:
        return matches[0]
    candidates = [class_names[i] for i in matches] or class_names
    raise ValueError(f"class {text!r} is {'ambiguous' if matches else 'unknown'}; "
                     f"choose one of: {', '.join(candidates[:20])}{' ...' if len(candidates) > 20 else ''}")
