"""A run folder, written so that a kill (even SIGKILL) leaves the last complete epoch: every file
is replaced atomically, and a write that fails (a full disk, a read-only folder) stops the run with
a message that says how to go on.

    config.json          the resolved config
    log.csv              one row per epoch (and TensorBoard events when tensorboard is installed)
    model.safetensors    the latest model (``load_checkpoint``)
    resume.safetensors   model, optimizer, epoch and log: everything ``--resume`` continues from
    history.safetensors  with ``--history true`` (``acol.training.recording``)
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import asdict
from pathlib import Path

import torch
from safetensors.torch import load_file

from ..core.checkpoint import atomic_path, write_safetensors
from ..core.model import ACoL


class RunFolderError(RuntimeError):
    """The run folder cannot be written (full disk, read-only, permissions)."""


def save_training_state(path: Path, model: ACoL, optimizer, epoch: int, history: list[dict]) -> None:
    """Model + optimizer + progress in one safetensors file, written atomically."""
    optimizer_state = optimizer.state_dict()
    tensors = {f"model.{k}": v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    for index, state in optimizer_state["state"].items():
        for key, value in state.items():
            tensors[f"optimizer.{index}.{key}"] = torch.as_tensor(value).cpu().contiguous()
    metadata = {"format": "acol-train-state/1", "epoch": str(epoch), "history": json.dumps(history),
                "param_groups": json.dumps(optimizer_state["param_groups"])}
    write_safetensors(path, tensors, metadata)


def load_training_state(path: Path, model: ACoL, optimizer) -> tuple[int, list[dict]]:
    """Restore what ``save_training_state`` wrote; returns (epochs done, history)."""
    from safetensors import safe_open
    with safe_open(str(path), "pt") as file:
        metadata = file.metadata()
    tensors = load_file(str(path))
    model.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model.")})
    state: dict[int, dict] = {}
    for key, value in tensors.items():
        if key.startswith("optimizer."):
            _, index, name = key.split(".", 2)
            state.setdefault(int(index), {})[name] = value
    optimizer.load_state_dict({"state": state, "param_groups": json.loads(metadata["param_groups"])})
    return int(metadata["epoch"]), json.loads(metadata["history"])


def save_run_file(out: Path, epoch: int, save) -> None:
    """Call ``save()``, turning a failed write into a ``RunFolderError`` that says how to go on."""
    try:
        save()
    except OSError as error:
        raise RunFolderError(f"{error}. Stopped after epoch {epoch}: {out} keeps the last "
                             f"checkpoint written in full. Fix the folder (space, permissions), "
                             f"then continue with --resume {out}.") from error


def write_text(path: Path, text: str) -> None:
    """Replace a small text file atomically (a kill leaves the old or the new one, never half)."""
    with atomic_path(path) as temporary:
        temporary.write_text(text)


class RunLogger:
    """log.csv, rewritten from the run's whole history each epoch (so a resumed run's log holds
    each epoch once), and TensorBoard scalars when tensorboard is installed."""

    def __init__(self, out: Path, columns: list[str]):
        self.path, self.columns = out / "log.csv", columns
        try:
            from torch.utils.tensorboard import SummaryWriter
            self.tensorboard = SummaryWriter(str(out / "tensorboard"))
        except ImportError:
            self.tensorboard = None

    def log(self, history: list[dict]) -> None:
        table = io.StringIO()
        writer = csv.DictWriter(table, fieldnames=self.columns, restval="")
        writer.writeheader()
        writer.writerows(history)
        write_text(self.path, table.getvalue())
        if self.tensorboard is not None:
            row = history[-1]
            for key, value in row.items():
                if key != "epoch":
                    self.tensorboard.add_scalar(key, value, row["epoch"])

    def close(self) -> None:
        if self.tensorboard is not None:
            self.tensorboard.close()


def prepare_run_folder(out: Path, config) -> None:
    """Make the run folder (or take it up again): remove what a run killed while saving left
    half-written, and write the resolved config."""
    try:
        out.mkdir(parents=True, exist_ok=True)
        for stale in out.glob(".*.tmp-*"):  # half-written by a run killed while saving
            stale.unlink()
        write_text(out / "config.json", json.dumps(asdict(config), indent=2))
    except OSError as error:
        raise RunFolderError(f"cannot write to the run folder {out}: {error}") from error
