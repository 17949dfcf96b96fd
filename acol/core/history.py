"""A model's training history: what it was after every epoch, as one checked file.

ACoL's idea lives in its training: B learns to look elsewhere because A's region is erased. So a
run started with ``--history true`` keeps, beside its checkpoint, every epoch's trained weights:

    training:  epoch 0 (before the first step)  epoch 1  ...  epoch N (= the checkpoint)
                  |                               |              |
                  +------- float16 copies of what training changes: the heads, the trained
                           backbone stages and their BatchNorm statistics (nothing frozen)
                                        |
                  history.safetensors: one tensor per weight, [epochs, *shape], plus each
                  epoch's figures (both branches' loss and accuracy, validation when it ran)

Here: the file (``TrainingHistory``, ``save_history``, ``load_history``) and its checks. What a run
records into it is ``acol.training.recording``; a picture's maps replayed through it,
``acol.core.replay``.

A run folder holds ``history.safetensors`` beside ``model.safetensors``; a shipped checkpoint
``X.safetensors`` has ``X.history.safetensors`` (``history_path``). Loading a checkpoint never
needs its history. A history names the model it belongs to (its *fingerprint*: the architecture,
the classes, the input size, the recorded tensors' names and shapes), ends at that model's
weights, and is checked for both before it is used; like a checkpoint, it is safetensors only,
never unpickled, and a SHA-256 of its tensors catches a file changed after it was written.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file

from .checkpoint import CheckpointError, read_metadata, tensors_digest, write_safetensors
from .model import ACoL

FORMAT = "acol-history/1"
SUFFIX = ".history.safetensors"  # beside a shipped X.safetensors; the page skips these files
RUN_FILE = "history.safetensors"  # beside a run folder's model.safetensors
# The parts of a checkpoint's config that decide which weights a model has and what they mean.
# Not the erase threshold: evaluate may ship a model with another one, and replay takes its own.
FINGERPRINT_KEYS = ("backbone", "num_classes", "num_branches", "head", "head_width", "nonnegative_class_weights")


class HistoryError(ValueError):
    """A file that is not a valid, untampered training history of the model it is used with."""


@dataclass
class TrainingHistory:
    """Every recorded epoch of one model. ``tensors[name][i]`` is weight ``name`` (the model's
    state-dict name) after epoch ``epochs[i]``; epoch 0 is the model before its first step."""

    fingerprint: dict                                   # the model it belongs to (``fingerprint``)
    epochs: list[int] = field(default_factory=list)     # [E], increasing
    tensors: dict[str, torch.Tensor] = field(default_factory=dict)  # name -> [E, *shape] float16
    figures: list[dict] = field(default_factory=list)   # [E], the training log's row of each epoch

    @property
    def names(self) -> list[str]:
        return list(self.fingerprint["tensors"])

    def weights(self, index: int) -> dict[str, torch.Tensor]:
        """Epoch ``epochs[index]``'s recorded weights, float16 ``{name: tensor}``."""
        return {name: stacked[index] for name, stacked in self.tensors.items()}

    def series(self, key: str) -> list[float | None]:
        """One figure over the epochs (``"train_loss_A"``, ``"val_fused_max_box_acc_v2"``, ...),
        None where an epoch lacks it (epoch 0 has no training figures; validation may skip epochs)."""
        return [row.get(key) for row in self.figures]

    def append(self, epoch: int, weights: dict[str, torch.Tensor], figures: dict) -> None:
        """Add epoch ``epoch`` (after the last one) with its weights, as ``snapshot`` gives them."""
        if self.epochs and epoch <= self.epochs[-1]:
            raise ValueError(f"epoch {epoch} does not follow the history's last, {self.epochs[-1]}")
        if set(weights) != set(self.names):
            raise ValueError("the weights to record are not the history's tensors")
        self.epochs.append(epoch)
        self.figures.append(dict(figures))
        for name in self.names:
            one = weights[name].unsqueeze(0)
            self.tensors[name] = one if name not in self.tensors else torch.cat([self.tensors[name], one])

    def up_to(self, epoch: int) -> "TrainingHistory":
        """The epochs up to and including ``epoch`` (a resumed run continues from there)."""
        keep = sum(1 for e in self.epochs if e <= epoch)
        return TrainingHistory(self.fingerprint, self.epochs[:keep],
                               {name: stacked[:keep] for name, stacked in self.tensors.items()}
                               if keep else {}, self.figures[:keep])


# ---------------------------------------------------------------------------------------------
# Whose it is, and where it lies


def fingerprint(config: dict, shapes: dict[str, tuple[int, ...]]) -> dict:
    """What ties a history to its model: from a checkpoint's ``config`` (``load_checkpoint``'s, or
    the same keys while training) the architecture, class names and input size, and the
    recorded tensors' names and shapes (one epoch's)."""
    return {**{key: config["model"][key] for key in FINGERPRINT_KEYS},
            "class_names": list(config["class_names"]), "input_size": config["input_size"],
            "tensors": {name: list(shape) for name, shape in shapes.items()}}


def history_path(checkpoint: str | Path) -> Path:
    """Where a checkpoint's history lies: ``history.safetensors`` beside a run folder's
    ``model.safetensors``, ``X.history.safetensors`` beside any other ``X.safetensors``."""
    checkpoint = Path(checkpoint)
    if checkpoint.name == "model.safetensors":
        return checkpoint.with_name(RUN_FILE)
    return checkpoint.with_name(checkpoint.name.removesuffix(".safetensors") + SUFFIX)


# ---------------------------------------------------------------------------------------------
# Saving and loading


def save_history(path: str | Path, history: TrainingHistory) -> Path:
    """Write ``history`` atomically (a kill leaves the previous version whole)."""
    tensors = {name: stacked.contiguous() for name, stacked in history.tensors.items()}
    metadata = {"format": FORMAT, "fingerprint": json.dumps(history.fingerprint),
                "epochs": json.dumps(history.epochs), "figures": json.dumps(history.figures),
                "sha256": tensors_digest(tensors)}
    write_safetensors(Path(path), tensors, metadata)
    return Path(path)


def load_history(path: str | Path, model: ACoL | None = None, config: dict | None = None) -> TrainingHistory:
    """Read the history at ``path``; raises ``HistoryError`` naming the file and the problem.

    With ``config`` (a checkpoint's, as ``load_checkpoint`` returns it) the history must be of
    that architecture, classes and input size; with ``model`` its tensors must be the model's
    (names and shapes) and its last epoch the model's weights (rounded to float16, as recorded)."""
    path = Path(path)
    if not path.is_file():
        raise HistoryError(f"{path}: no such history file")
    try:
        metadata = read_metadata(path)  # checks it is safetensors before reading anything else
    except CheckpointError as error:
        raise HistoryError(str(error)) from None
    if metadata.get("format") != FORMAT:
        raise HistoryError(f"{path}: not an acol training history (metadata format is "
                           f"{metadata.get('format')!r}, expected {FORMAT!r})")
    try:
        recorded = json.loads(metadata["fingerprint"])
        epochs, figures = json.loads(metadata["epochs"]), json.loads(metadata["figures"])
        expected_shapes = {name: tuple(shape) for name, shape in recorded["tensors"].items()}
    except (KeyError, TypeError, AttributeError, json.JSONDecodeError, RecursionError) as error:
        raise HistoryError(f"{path}: unreadable history metadata ({error!r})") from None
    try:
        tensors = load_file(str(path))
    except (SafetensorError, OSError) as error:
        raise HistoryError(f"{path}: truncated or damaged history file ({error})") from None
    if tensors_digest(tensors) != metadata.get("sha256"):
        raise HistoryError(f"{path}: tensors do not match the checksum written with them; the file "
                           "was changed or damaged after it was saved")
    if (not isinstance(epochs, list) or not all(isinstance(e, int) for e in epochs)
            or epochs != sorted(set(epochs)) or not isinstance(figures, list) or len(figures) != len(epochs)):
        raise HistoryError(f"{path}: invalid epoch list in the metadata ({epochs!r:.80})")
    misfits = sorted(set(tensors) ^ set(expected_shapes)) + [
        name for name in tensors.keys() & expected_shapes.keys()
        if tensors[name].shape != (len(epochs), *expected_shapes[name]) or tensors[name].dtype != torch.float16]
    if misfits:
        raise HistoryError(f"{path}: its tensors do not fit its own fingerprint ({len(misfits)} missing, "
                           f"unexpected or misshapen, e.g. {misfits[:3]})")
    history = TrainingHistory(recorded, epochs, tensors, figures)
    if config is not None:
        check_config(history, config, path)
    if model is not None:
        check_model(history, model, path)
    return history


def check_config(history: TrainingHistory, config: dict, path: str | Path = "history") -> None:
    """Raise ``HistoryError`` unless ``history`` is of the model ``config`` describes."""
    shapes = {name: tuple(shape) for name, shape in history.fingerprint["tensors"].items()}
    try:
        expected = fingerprint(config, shapes)
    except (KeyError, TypeError) as error:
        raise HistoryError(f"{path}: the checkpoint's config lacks {error}") from None
    for key in (*FINGERPRINT_KEYS, "class_names", "input_size"):
        if history.fingerprint.get(key) != expected[key]:
            raise HistoryError(f"{path}: a history of another model: {key} is "
                               f"{history.fingerprint.get(key)!r:.80} in the history, {expected[key]!r:.80} "
                               "in the checkpoint")


def check_model(history: TrainingHistory, model: ACoL, path: str | Path = "history") -> None:
    """Raise ``HistoryError`` unless ``history``'s tensors are ``model``'s and end at its weights."""
    state = model.state_dict()
    misfits = [name for name, shape in history.fingerprint["tensors"].items()
               if name not in state or tuple(state[name].shape) != tuple(shape)]
    if misfits:
        raise HistoryError(f"{path}: a history of another model: {len(misfits)} of its tensors are not "
                           f"this model's or have other shapes, e.g. {misfits[:3]}")
    if not history.epochs:
        raise HistoryError(f"{path}: the history holds no epoch")
    last = history.weights(-1)
    changed = [name for name in history.names
               if not torch.equal(state[name].detach().to("cpu", torch.float16), last[name])]
    if changed:
        raise HistoryError(f"{path}: its last epoch ({history.epochs[-1]}) is not this model's weights "
                           f"({len(changed)} tensors differ, e.g. {changed[:3]}): a history of another "
                           "run, or of this run before it trained further")

