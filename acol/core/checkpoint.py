"""Checkpoints: one ``.safetensors`` file, weights plus a JSON config in its metadata.

safetensors holds raw tensors only, so loading a file can never run code (a pickle can). The
config says how to rebuild the model without any pretrained-weights package, and a SHA-256 of
the tensors catches a file whose weights were changed after it was written.
"""

from __future__ import annotations

import hashlib
import json
import os
import struct
from contextlib import contextmanager
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from .backbones import create_backbone
from .model import ACoL

FORMAT = "acol-checkpoint/1"
_MAX_HEADER_BYTES = 100 * 1024 * 1024  # safetensors' own limit


class CheckpointError(ValueError):
    """A file that is not a valid, untampered acol checkpoint."""


def model_config(model: ACoL, backbone: str) -> dict:
    """The arguments that rebuild ``model``'s architecture."""
    return {"backbone": backbone, "num_classes": model.num_classes,
            "erase_threshold": model.erase_threshold, "num_branches": len(model.heads),
            "head_width": model.head_width, "head": model.head,
            "nonnegative_class_weights": model.nonnegative_class_weights}


def tensors_digest(tensors: dict[str, torch.Tensor]) -> str:
    """The SHA-256 of a dict of tensors (names, dtypes, shapes and bytes): what a file records to
    catch a change made after it was written."""
    sha = hashlib.sha256()
    for name in sorted(tensors):
        tensor = tensors[name].detach().cpu().contiguous()
        sha.update(f"{name}|{tensor.dtype}|{tuple(tensor.shape)}|".encode())
        sha.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())
    return sha.hexdigest()


def save_checkpoint(path: str | Path, model: ACoL, *, backbone: str, class_names: list[str],
                    input_size: int, recipe: dict | None = None, metrics: dict | None = None,
                    half: bool = False, description: str = "") -> Path:
    """Write ``model`` and its config atomically (a kill never leaves half a file).

    ``description``: a short text for people (what it was trained on, its validation figures,
    what its maps tend to do), stored as ``config["description"]``.

    ``half=True`` stores floating-point weights as float16 (half the size; loading casts back).
    """
    path = Path(path)
    if len(class_names) != model.num_classes:
        raise ValueError(f"{len(class_names)} class names for {model.num_classes} classes")
    tensors = {}
    for name, tensor in model.state_dict().items():
        tensor = tensor.detach().cpu().contiguous()
        tensors[name] = tensor.half() if half and tensor.is_floating_point() else tensor
    config = {"model": model_config(model, backbone), "class_names": list(class_names),
              "input_size": input_size, "mean": list(model.backbone.mean),
              "std": list(model.backbone.std), "recipe": recipe or {}, "metrics": metrics or {},
              "description": description}
    metadata = {"format": FORMAT, "config": json.dumps(config), "sha256": tensors_digest(tensors)}
    path.parent.mkdir(parents=True, exist_ok=True)
    write_safetensors(path, tensors, metadata)
    return path


@contextmanager
def atomic_path(path: Path):
    """Yield a temporary name beside ``path``, renamed over it once the block succeeds: a kill, a
    full disk or a read-only folder never leaves half a file (the old one stays)."""
    temporary = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        yield temporary
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)


def write_safetensors(path: Path, tensors: dict[str, torch.Tensor], metadata: dict[str, str]) -> None:
    """Write a safetensors file atomically; raises OSError naming ``path`` when the write fails."""
    try:
        with atomic_path(path) as temporary:
            save_file(tensors, str(temporary), metadata=metadata)
            temporary.chmod(0o644)  # safetensors creates files readable by their owner only
    except (OSError, SafetensorError) as error:  # safetensors reports I/O errors as its own type
        raise OSError(getattr(error, "errno", None), f"cannot write {path}: {error}") from error


def read_metadata(path: str | Path) -> dict[str, str]:
    """The metadata of a safetensors file, after checking it *is* one (never unpickles)."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint file")
    size = path.stat().st_size
    with open(path, "rb") as file:
        start = file.read(8)
        header_size = struct.unpack("<Q", start)[0] if len(start) == 8 else size
        header = file.read(header_size) if header_size <= min(_MAX_HEADER_BYTES, size - 8) else b""
    if not header.startswith(b"{"):
        # Only now guess what it is: a safetensors header length may well begin with 0x80.
        if start[:2] == b"PK" or (start[:1] == b"\x80" and start[1:2] in (b"\x02", b"\x03", b"\x04", b"\x05")):
            raise CheckpointError(f"{path}: this is a pickle/PyTorch file, not safetensors; acol "
                                  "never unpickles files, since loading a pickle can run code")
        raise CheckpointError(f"{path}: truncated or not a safetensors file ({size} bytes)")
    try:
        header = json.loads(header)
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as error:
        raise CheckpointError(f"{path}: corrupt safetensors header ({error!r})") from None
    if not isinstance(header, dict):
        raise CheckpointError(f"{path}: corrupt safetensors header (not a JSON object)")
    return header.get("__metadata__") or {}


def load_checkpoint(path: str | Path, device: str | torch.device = "cpu") -> tuple[ACoL, dict]:
    """Rebuild the model saved at ``path``; returns ``(model in eval mode, config)``."""
    path = Path(path)
    metadata = read_metadata(path)
    if metadata.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not an acol checkpoint (metadata format is "
                              f"{metadata.get('format')!r}, expected {FORMAT!r})")
    try:
        config = json.loads(metadata["config"])
        tensors = load_file(str(path))
    except (KeyError, json.JSONDecodeError, RecursionError, SafetensorError) as error:
        raise CheckpointError(f"{path}: unreadable checkpoint ({error!r})") from None
    if tensors_digest(tensors) != metadata.get("sha256"):
        raise CheckpointError(f"{path}: weights do not match the checksum written with them; "
                              "the file was changed or damaged after it was saved")
    try:
        spec = config["model"]
        arguments = dict(num_classes=spec["num_classes"], erase_threshold=spec["erase_threshold"],
                         num_branches=spec["num_branches"], head_width=spec["head_width"],
                         # files written before these options existed have the paper's heads
                         head=spec.get("head", "paper"),
                         nonnegative_class_weights=bool(spec.get("nonnegative_class_weights", False)))
        if len(config["class_names"]) != spec["num_classes"]:
            raise ValueError(f"{len(config['class_names'])} class names for {spec['num_classes']} classes")
        # Built on the meta device first: a config that declares a gigantic model costs nothing
        # until its shapes are known to match the tensors actually in the file.
        with torch.device("meta"):
            blueprint = ACoL(create_backbone(spec["backbone"]), **arguments).state_dict()
    except (KeyError, TypeError, ValueError, RuntimeError) as error:
        raise CheckpointError(f"{path}: invalid config in metadata ({error!r})") from None
    mismatched = sorted(set(blueprint) ^ set(tensors)) + [
        name for name in blueprint.keys() & tensors.keys() if blueprint[name].shape != tensors[name].shape]
    if mismatched:
        raise CheckpointError(f"{path}: weights do not fit the {spec['backbone']} model in its config "
                              f"({len(mismatched)} missing, unexpected or misshapen, e.g. {mismatched[:3]})")
    model = ACoL(create_backbone(spec["backbone"]), **arguments)
    expected = model.state_dict()
    model.load_state_dict({name: tensor.to(expected[name].dtype) for name, tensor in tensors.items()})
    return model.to(device).eval(), config
