"""Explain one image: run a checkpoint on it and keep what the pictures of it are drawn from.

This is the computing side of the viewer (``app.py``) and of ``python -m acol explain``
(``acol.viewer.explain_command``). In code::

    explainer = Explainer.from_checkpoint("checkpoints/cub50_acol_efficientnet_lite0.safetensors")
    explanation = explainer.explain(load_rgb_image("bird.jpg"))           # backbone + every branch
    explanation = explainer.reexplain(explanation, erase_threshold=0.4)    # erasing + branch B only
    explanation = explainer.toggle_cell(explanation, row=3, col=5)         # erase one cell by hand
    write_figure_png(render_panels(explanation, box_threshold=0.2), "bird_acol.png")

An :class:`Explanation` keeps its image's backbone features, so a new erase threshold or class
re-runs only the erasing and the later branches (``ACoL.reexplain``): that is what keeps the
viewer's slider live on a CPU. What it says in words (its top classes, B's verdict, the caption)
is ``acol.evaluation.words``. How an explanation becomes pictures and the exported figure
(``render_panels``, ``write_figure_png``) is ``acol.viewer.drawing``, a layer above this one; what
the page draws in the browser is ``acol.viewer.payload``; what only a serving viewer needs (its
shared answers, request time limit, memory tuning, checkpoint shelf, examples) is the rest of
``acol.viewer``.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torchvision.transforms.v2.functional import pil_to_tensor

from ..core.checkpoint import load_checkpoint
from ..core.device import resolve_device
from ..core.model import ACoL
from ..data.synthetic import Parts
from ..data.transforms import eval_transform
from .explanation import Explanation
from .words import top_classes

REPO = Path(__file__).resolve().parents[2]
DEFAULT_CHECKPOINT = REPO / "checkpoints" / "cub50_acol_efficientnet_lite0.safetensors"
MAX_IMAGE_SIDE = 1024    # larger uploads are shrunk first: the model only sees input_size pixels
DISPLAY_SIDE = 384       # longest side of the picture the maps are drawn on (``Explanation.display``)
SWEEP_DELTAS = (0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)
DEFAULT_BOX_THRESHOLD = 0.2
UNLIKELY = 0.2           # a top class below this probability gets a note: the model knows only its classes


# ----------------------------------------------------------------------------------------------
# Running the model


def is_everyday(config: dict) -> bool:
    """Whether a checkpoint's config is the everyday model's (the ImageNet classes, B trained on
    the everyday photo pool: ``acol.training.everyday``): its A is the pretrained network's CAM."""
    return bool(config.get("recipe", {}).get("pool"))


class Explainer:
    """A loaded checkpoint, ready to explain images; ``name`` is what the viewer calls it."""

    def __init__(self, model: ACoL, config: dict, name: str = "model", device: str | torch.device = "cpu"):
        self.device = resolve_device(device)
        # NHWC: EfficientNet's depthwise convolutions run about 20% faster so on the CPU.
        self.model = model.to(self.device, memory_format=torch.channels_last).eval()
        self.config = config
        self.name = name
        self.class_names = list(config["class_names"])
        self.transform = eval_transform(config["input_size"], config["mean"], config["std"])

    @classmethod
    def from_checkpoint(cls, path: str | Path, device: str | torch.device = "cpu") -> "Explainer":
        """Load a ``.safetensors`` checkpoint (raises ``CheckpointError`` on a bad file) onto ``device``."""
        model, config = load_checkpoint(path)
        return cls(model, config, Path(path).stem, device)

    def to(self, device: str | torch.device) -> "Explainer":
        """Move the model to ``device``; explanations made from now on are made there."""
        self.device = resolve_device(device)
        self.model.to(self.device, memory_format=torch.channels_last)
        return self

    @property
    def is_acol(self) -> bool:
        """False for a one-branch CAM model, which has no erasing and no branch B."""
        return len(self.model.heads) > 1

    @property
    def made_for_everyday_photos(self) -> bool:
        """Whether this is the everyday model, the one that can say something true about any photo."""
        return is_everyday(self.config)

    @property
    def known_classes(self) -> str:
        """What the model can recognise, in a few words: "50 bird species", "4 synthetic classes"."""
        data = str(self.config.get("recipe", {}).get("data", "")).lower()
        kind = ("ImageNet classes" if self.made_for_everyday_photos else "synthetic bird classes"
                if data == "synthetic" else "bird species" if "cub" in data else "classes")
        return f"{len(self.class_names):,} {kind}"

    @property
    def description(self) -> str:
        """What the checkpoint says about itself (``config["description"]``: what it was trained
        on, its validation figures, what its maps tend to do) or, when it says nothing, a summary
        of its recorded validation figures."""
        if str(self.config.get("description") or "").strip():
            return str(self.config["description"]).strip()
        text = f"Input: {self.config['input_size']} x {self.config['input_size']} pixels."
        validation = self.config.get("metrics", {}).get("validation", {})
        maps = validation.get("maps", {})
        boxed = [f"{name} {maps[key]['max_box_acc_v2']:.1f}%" for key, name in
                 (("A", "A" if self.is_acol else "the map"), ("B", "B"), ("fused", "fused"))
                 if "max_box_acc_v2" in maps.get(key, {})]
        classified = maps.get("A", {}).get("top1_cls")
        if classified is not None or boxed:
            figures = [] if classified is None else [
                f"{'branch A' if self.is_acol else 'it'} classifies {classified:.1f}% right (top-1)"]
            if boxed:
                figures.append(f"MaxBoxAccV2 (boxes found, mean over IoU 0.3/0.5/0.7) {', '.join(boxed)}")
            text += f" On its validation images ({validation.get('split', 'held out')} split): {'; '.join(figures)}."
        else:
            text += " No validation figures are recorded in the checkpoint."
        return text

    def doubt(self, explanation: Explanation) -> str:
        """A note when the top class is unlikely (under UNLIKELY), else "": the model can only
        choose among its own classes, so its maps show where it looks for that class's evidence."""
        _, name, probability = top_classes(explanation, 1)[0]
        if probability >= UNLIKELY:
            return ""
        return (f"Its best guess, {name}, has only {probability:.0%}: this model knows only its "
                f"{self.known_classes}, so the maps show where it looks for evidence of them, "
                "whether or not the picture holds any.")

    def out_of_scope(self, explanation: Explanation) -> str:
        """A note, whatever the model's confidence, when the picture is not one this model was made
        for: any picture but its own labelled examples, unless it is the everyday model. A model
        of a few classes names one of them for anything, and sounds sure of it."""
        if self.made_for_everyday_photos or explanation.true_class in self.class_names:
            return ""
        made_of = " (drawn shapes, not photos)" if "synthetic" in self.known_classes else ""
        return (f"this model knows only {self.known_classes}{made_of}: whatever the picture shows, it "
                f"names one of them, however sure it sounds. For your own photos, try the everyday model.")

    def note(self, explanation: Explanation) -> str:
        """What the viewer's status line (and ``explain``'s output) adds to an explanation: that the
        picture is not one the model was made for (whatever its confidence), else that its top
        class is unlikely, else nothing."""
        out_of_scope, doubt = self.out_of_scope(explanation), self.doubt(explanation)
        return (f"**Not made for this picture:** {out_of_scope}" if out_of_scope
                else f"**Unlikely:** {doubt}" if doubt else "")

    @property
    def default_box_threshold(self) -> float:
        """The box threshold chosen on validation data when the checkpoint records one."""
        chosen = self.config.get("metrics", {}).get("cam_thresholds", {})
        return float(chosen.get("fused", chosen.get("A", DEFAULT_BOX_THRESHOLD)))

    @torch.inference_mode()
    def explain(self, image: Image.Image, true_boxes=None, target_class: int | None = None,
                erase_threshold: float | None = None, true_class: str | None = None,
                image_digest: str | None = None, parts: Parts | None = None) -> Explanation:
        """Run the whole model once on an RGB ``image`` of any size.

        ``true_boxes`` ([N, 4] xyxy in ``image`` pixels) are drawn and scored when given, and
        ``true_class`` (the image's label) is named beside the prediction; ``image_digest`` (its
        file's SHA-256) is kept for the viewer's shared cache; ``parts`` (``acol.evaluation.story.Parts``,
        at the image's size) say where its head and body are, when known.
        ``target_class=None`` explains branch A's top-1 class; ``erase_threshold=None`` uses the
        model's own. The image is resized to the model's square input, as in evaluation.
        """
        true_boxes = np.asarray([] if true_boxes is None else true_boxes, dtype=np.float32).reshape(-1, 4)
        if max(image.size) > MAX_IMAGE_SIDE:
            scale = MAX_IMAGE_SIDE / max(image.size)
            resized = image.resize(scaled_size(image.size, scale), Image.Resampling.BILINEAR, reducing_gap=2.0)
            true_boxes = true_boxes * np.array([resized.width / image.width, resized.height / image.height] * 2)
            parts = None if parts is None else parts.resized(resized.size)
            image = resized
        batch = self.input_batch(image)
        target = None if target_class is None else torch.tensor([target_class], device=self.device)
        output = self.model(batch, target, erase_threshold)
        display_size = scaled_size(image.size, DISPLAY_SIDE / max(image.size))
        display = np.asarray(image.resize(display_size, Image.Resampling.BILINEAR))
        return Explanation(self.name, self.class_names, image, true_boxes, display, output,
                           output.logits[0][0].softmax(-1), batch.shape[-1], true_class=true_class,
                           image_digest=image_digest, parts=parts)

    def input_batch(self, image: Image.Image) -> torch.Tensor:
        """``image`` (at most MAX_IMAGE_SIDE, as ``Explanation.image`` keeps it) as the model sees
        it: ``[1, 3, S, S]``, resized to the model's square input and normalized, on its device."""
        return self.transform(pil_to_tensor(image)).unsqueeze(0).to(self.device, memory_format=torch.channels_last)

    @torch.inference_mode()
    def reexplain(self, explanation: Explanation, target_class: int | None = None,
                  erase_threshold: float | None = None, erase_mask: torch.Tensor | None = None) -> Explanation:
        """The same image with a new class or erase threshold (None keeps the current one), or
        with a hand-made ``erase_mask [h, w]`` (True = erased) as what branch B sees erased.

        Reuses the cached backbone features and branch A's maps; only the erasing and the later
        branches run again. Without ``erase_mask`` the erasing is by δ again, so a hand-made mask
        lasts until the next threshold or class change. A CAM model has nothing to erase, so
        only its class can change.
        """
        target = explanation.target_class if target_class is None else target_class
        threshold = explanation.erase_threshold if erase_threshold is None else erase_threshold
        features = explanation.output.features
        mask = None if erase_mask is None else erase_mask.to(features.device).reshape(1, *features.shape[-2:])
        output = self.model.reexplain(explanation.output, torch.tensor([target], device=features.device), threshold, mask)
        return replace(explanation, output=output, erased_by_hand=erase_mask is not None)

    def toggle_cell(self, explanation: Explanation, row: int, col: int) -> Explanation:
        """Erase feature cell ``(row, col)`` for branch B if it is kept, restore it if erased,
        starting from the mask B sees now; branch B and the fused map run again on the result."""
        check_cell(explanation, row, col)
        mask = explanation.output.erase_masks[1][0].clone()
        mask[row, col] = not mask[row, col]
        return self.reexplain(explanation, erase_mask=mask)

    def sweep(self, explanation: Explanation, deltas=SWEEP_DELTAS) -> list[Explanation]:
        """The explanation at each erase threshold in ``deltas`` (cheap: re-explains only)."""
        return [self.reexplain(explanation, erase_threshold=delta) for delta in deltas]


def check_cell(explanation: Explanation, row: int, col: int) -> None:
    """A ValueError saying why feature cell ``(row, col)`` cannot be erased by hand, if it cannot."""
    if explanation.num_branches == 1:
        raise ValueError("a one-branch CAM model erases nothing: there is no branch B")
    rows, cols = explanation.output.features.shape[-2:]
    if not (0 <= row < rows and 0 <= col < cols):
        raise ValueError(f"cell ({row}, {col}) is outside the {rows}x{cols} feature grid")


def scaled_size(size: tuple[int, int], scale: float, minimum: int = 16) -> tuple[int, int]:
    """``size * scale``, keeping each side at least ``minimum`` so a 1x1 image stays visible."""
    return tuple(max(minimum, round(side * scale)) for side in size)

