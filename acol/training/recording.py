"""What a run records into its training history each epoch (``--history true``): the tensors
training changes, as float16 copies, and the history a run starts or, resumed, continues. The
file itself (its format, loading and checks) is ``acol.core.history``."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from ..core.checkpoint import model_config
from ..core.history import HistoryError, TrainingHistory, check_model, fingerprint, load_history
from ..core.model import ACoL
from .config import TrainConfig


def recorded_names(model: ACoL) -> list[str]:
    """The state-dict names of what training changes: every parameter that requires a gradient,
    and the floating-point buffers (BatchNorm statistics) of modules whose parameters train; a
    frozen stage runs in eval mode and keeps its statistics. (``num_batches_tracked`` is left
    out: an integer count that evaluation never reads.)"""
    trained = {id(p) for p in model.parameters() if p.requires_grad}
    for module in model.modules():
        if any(p.requires_grad for p in module.parameters(recurse=False)):
            trained.update(id(b) for b in module.buffers(recurse=False) if b.is_floating_point())
    return [name for name, tensor in model.state_dict(keep_vars=True).items() if id(tensor) in trained]


def snapshot(model: nn.Module, names: list[str]) -> dict[str, torch.Tensor]:
    """Float16 CPU copies of the model's tensors ``names``: one epoch of a history."""
    state = model.state_dict()
    return {name: state[name].detach().to("cpu", torch.float16).contiguous() for name in names}


def begin_or_continue(path: Path, model: ACoL, config: dict, epoch: int, figures: dict,
                      resume: bool) -> TrainingHistory:
    """The history a run records into, with the model as it is now as epoch ``epoch`` (0 for a
    new run). A resumed run continues the file at ``path``: its epochs up to ``epoch`` are kept
    (a kill after the history was written but before the training state was may have left one
    more), and if it holds epoch ``epoch`` it must be these very weights."""
    names = recorded_names(model)
    now = snapshot(model, names)
    history = TrainingHistory(fingerprint(config, {name: tuple(now[name].shape) for name in names}))
    if resume and path.exists():
        earlier = load_history(path, config=config)
        if earlier.fingerprint["tensors"] != history.fingerprint["tensors"]:
            raise HistoryError(f"{path}: records other tensors than this run trains (was "
                               "--trainable-stages or --freeze-backbone changed?); move it away to start anew")
        history = earlier.up_to(epoch)
        if history.epochs and history.epochs[-1] == epoch:
            check_model(history, model, path)
            return history
    history.append(epoch, now, figures)
    return history


def history_config(model: ACoL, config: TrainConfig, class_names: list[str]) -> dict:
    """The run's model as its checkpoint's config describes it: what its history's fingerprint
    is read from (``acol.core.history.fingerprint``)."""
    return {"model": model_config(model, config.backbone), "class_names": list(class_names),
            "input_size": config.input_size}
