"""Does a picture tell ACoL's story? Checked against the parts the picture is known to have.

The page teaches one story, in four facts about one picture::

    A's map peaks on the head          (the most telling part: A needs nothing else)
    B's map peaks on the body          (with A's cells erased, B had to find *other* evidence)
    B still names the picture's class  (that other evidence is evidence of the same class)
    the fused box finds the bird       (IoU >= 0.5 with the true box: the two maps together)

A synthetic picture's generator knows where its head and body are (``acol.data.synthetic``), so each
fact is checked on the model *as the page runs it* (``Explainer.explain``: the whole picture
resized to the model's input, erasing by A's own top-1 at the model's δ, the box cut from the
fused map at the model's box threshold). ``story_figures`` counts the facts over many pictures:
the teaching model's card, and the rule that picks the example the page opens on. A picture whose
parts nobody knows (an upload) gets what can be said without them: whether B's peak lies off
the erased cells and whether B still names A's class (``story_words`` words both).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image
from tqdm import tqdm

from ..core.maps import upsample_maps
from ..data.synthetic import Parts

FOUND_IOU = 0.5  # a box "finds" the object at IoU >= 0.5, as GT-known localization counts it
PART_WORDS = {"head": "the head", "body": "the body", "outside": "outside the bird"}


@dataclass(frozen=True)
class Story:
    """The facts of one picture, explained as the page explains it. The part facts are None
    when nobody knows the picture's parts; ``b_*`` are None for a CAM model (no branch B)."""

    a_part: str | None          # where A's map peaks: "head", "body" or "outside"
    b_part: str | None          # where B's map peaks
    b_class: int | None         # B's top-1 class on the erased features
    target_class: int           # the class A's map (and the erasing) is of: A's top-1
    true_class: int | None      # the picture's label, when known
    body_class: int | None      # the class whose pattern the body shows, when known
    b_on_erased: bool | None    # B's peak cell is one of the erased cells
    fused_iou: float | None     # IoU of the page's box with the true box, when known

    @property
    def b_right(self) -> bool:
        """B names the picture's class (A's, when the label is unknown)."""
        wanted = self.target_class if self.true_class is None else self.true_class
        return self.b_class is not None and self.b_class == wanted

    @property
    def honest_body(self) -> bool:
        """The body shows its own class's pattern (the generator borrows another's in some)."""
        return self.body_class is not None and self.body_class == self.true_class

    @property
    def found(self) -> bool:
        return self.fused_iou is not None and self.fused_iou >= FOUND_IOU

    @property
    def holds(self) -> bool | None:
        """Every fact of the story is true of this picture (None: a CAM model has no story)."""
        if self.b_class is None:
            return None
        parts_right = self.a_part == "head" and self.b_part == "body" if self.a_part else not self.b_on_erased
        return parts_right and self.b_right and (self.found or self.fused_iou is None)


def peak_pixel(localization_map: torch.Tensor, size: tuple[int, int]) -> tuple[float, float]:
    """``(x, y)`` of a map's peak once resized (bicubic) to ``size = (H, W)``: where the page's
    picture of the map is brightest."""
    resized = upsample_maps(localization_map.detach().float().cpu(), size)
    row, col = divmod(int(resized.flatten().argmax()), size[1])
    return col + 0.5, row + 0.5


def peak_cell(localization_map: torch.Tensor) -> tuple[int, int]:
    """``(row, col)`` of a map's highest cell (the first of equals)."""
    return divmod(int(localization_map.flatten().argmax()), localization_map.shape[-1])


def story_of(explanation, box_threshold: float) -> Story:
    """The story's facts for one explained picture (an ``acol.evaluation.explanation.Explanation``; its
    ``parts``, when known, at the resolution of ``explanation.image``)."""
    output, parts = explanation.output, explanation.parts
    has_b = explanation.num_branches > 1

    def part_at_peak(branch: int) -> str | None:
        if parts is None:
            return None
        return parts.at(*peak_pixel(output.localization_maps[branch][0], parts.head.shape))

    index_of = lambda name: explanation.class_names.index(name) if name in explanation.class_names else None
    fused_iou = None
    if len(explanation.true_boxes):
        fused_iou = float(explanation.scored_boxes(output.fused_map, [box_threshold])[1][0, 0])
    return Story(part_at_peak(0), part_at_peak(1) if has_b else None,
                 int(output.logits[1][0].argmax()) if has_b else None, explanation.target_class,
                 index_of(explanation.true_class), None if parts is None else index_of(parts.body_class),
                 bool(output.erase_masks[1][0][peak_cell(output.localization_maps[1][0])]) if has_b else None,
                 fused_iou)


def story_words(story: Story, class_names: list[str]) -> str:
    """Whether the story holds on this picture, in plain words; where it does not, which fact
    fails and what that shows."""
    if story.holds is None:
        return "This model has one branch: nothing is erased, so there is no branch B to find other evidence."
    name = lambda index: class_names[index]
    target, said = name(story.target_class), name(story.b_class)
    problems = []
    if story.a_part is not None and story.a_part != "head":
        problems.append(f"A's map peaks on {PART_WORDS[story.a_part]}, not on the head: A learned the body's "
                        "pattern for this picture, so the erasing hides the body")
    if story.b_part == "head":
        problems.append("B found the head too: A's erasing left part of the head, and B used it")
    elif story.b_part == "outside":
        problems.append("B's map peaks outside the bird: it found its evidence in the background")
    elif story.a_part is None and story.b_on_erased:
        problems.append("B's map peaks on an erased cell: B sees zeros there, so what lights it is evidence in "
                        "the cells around it, right next to what A found")
    if not story.b_right:
        if story.body_class is not None and story.body_class != story.true_class:
            problems.append(f"this body shows the stripes of {name(story.body_class)}, not of "
                            f"{name(story.true_class)}, so B, which sees only the body, says {said}")
        elif story.true_class is not None and story.true_class != story.target_class:
            problems.append(f"A itself names {target}, not {name(story.true_class)}, and B says {said}")
        else:
            problems.append(f"B says {said}, not {target}: without A's cells it found no evidence of {target}")
    if story.fused_iou is not None and not story.found:
        problems.append(f"the fused box overlaps the true box by IoU {story.fused_iou:.2f}, under {FOUND_IOU}")
    if not problems:
        where = ("A looks at the head, B at the body" if story.a_part
                 else "B's map peaks off the cells A's map made erased")
        found = f", and the fused box finds the bird (IoU {story.fused_iou:.2f})" if story.fused_iou is not None else ""
        return f"Here the story holds: {where}, B still says {said}{found}."
    return "Here the story does not hold: " + "; ".join(problems) + "."


def story_payload(story: Story, class_names: list[str]) -> dict:
    """A story as the page's payload carries it: the facts (class names, not indices) and the words."""
    name = lambda index: None if index is None else class_names[index]
    return {"holds": story.holds, "parts_known": story.a_part is not None, "a_part": story.a_part,
            "b_part": story.b_part, "b_class": name(story.b_class), "b_right": story.b_right if story.b_class is not None
            else None, "body_class": name(story.body_class), "b_on_erased": story.b_on_erased,
            "iou": None if story.fused_iou is None else round(story.fused_iou, 2), "found": story.found
            if story.fused_iou is not None else None, "words": story_words(story, class_names)}


def stories_of(explainer, dataset, box_threshold: float | None = None, progress: bool = True) -> list[Story]:
    """The story of every picture of a synthetic ``dataset`` (an untransformed ``SyntheticParts``)
    explained by ``explainer`` (an ``acol.evaluation.explain.Explainer``) as the page explains it,
    boxed at ``box_threshold`` (default: the model's own)."""
    threshold = explainer.default_box_threshold if box_threshold is None else box_threshold
    stories = []
    for index in tqdm(range(len(dataset)), desc="story", disable=not progress):
        sample = dataset.render(index)
        explanation = explainer.explain(Image.fromarray(sample.image), [sample.box],
                                        true_class=explainer.class_names[sample.label],
                                        parts=Parts(sample.head_mask, sample.body_mask,
                                                    explainer.class_names[sample.body_class]))
        stories.append(story_of(explanation, threshold))
    return stories


def story_figures(explainer, dataset, box_threshold: float | None = None, progress: bool = True) -> dict:
    """Percentages over a synthetic ``dataset``'s stories (``stories_of``): where A's and B's
    peaks lie, how often B names the true class (on every picture, and on those whose body shows
    its own class), and how often the page's box finds the bird (IoU >= 0.5)."""
    return summarize(stories_of(explainer, dataset, box_threshold, progress))


def choose_examples(stories: list[Story], count: int) -> list[int]:
    """Which pictures a page should bundle, chosen by what they show (never by how sure the
    model is): for each class in turn, the first picture whose story holds, then pictures where
    it fails for a reason a student should see (a body that shows another class's stripes; B
    finding the head too), up to ``count``. The first one is where the page opens."""
    holds = [index for index, story in enumerate(stories) if story.holds]
    chosen = [next(index for index in holds if stories[index].true_class == label)
              for label in sorted({stories[index].true_class for index in holds})]
    failing = [lambda story: not story.honest_body and story.b_class == story.body_class,
               lambda story: story.b_part == "head"]
    for reason in failing:
        chosen += [index for index, story in enumerate(stories) if not story.holds and reason(story)][:1]
    chosen += [index for index in holds if index not in chosen]
    return chosen[:count]


def summarize(stories: list[Story]) -> dict:
    """The figures of ``story_figures`` from its stories (percent; ``None`` where no picture counts)."""
    def percent(flags) -> float | None:
        flags = list(flags)
        return round(100 * float(np.mean(flags)), 1) if flags else None

    figures = {"pictures": len(stories), "a_peak_on_head": percent(s.a_part == "head" for s in stories),
               "found": percent(s.found for s in stories)}
    if stories and stories[0].b_class is not None:
        honest = [s for s in stories if s.honest_body]
        figures.update(b_peak_on_body=percent(s.b_part == "body" for s in stories),
                       b_right=percent(s.b_right for s in stories),
                       b_right_on_honest_bodies=percent(s.b_right for s in honest), honest_bodies=len(honest),
                       story_holds=percent(s.holds for s in stories))
    return figures
