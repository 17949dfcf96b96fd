"""Where the model runs: one device choice for the whole package, ``--device auto|cpu|cuda[:N]``.

``auto`` is the first CUDA device when there is one, else the CPU; ``train``, ``evaluate``,
``explain`` and the viewer (``app.py``) all take the flag and mean the same by it. Models,
features, erase masks and maps are made on that device and move to the CPU only where pictures
and JSON are made (``acol.viewer.drawing``, ``acol.viewer.payload``).
"""

from __future__ import annotations

import argparse

import torch

DEVICE_HELP = "where the model runs: auto (CUDA when there is one, else the CPU), cpu, cuda or cuda:N"


def resolve_device(spec: str | torch.device = "auto") -> torch.device:
    """The device ``spec`` names; a clear ValueError for one that is not here (``cuda`` without a
    GPU, ``cuda:3`` on a machine with two, ``tpu``)."""
    if isinstance(spec, torch.device):
        return spec
    text = str(spec).strip().lower()
    if text == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(text)
    except RuntimeError:
        device = None
    if device is None or device.type not in ("cpu", "cuda"):
        raise ValueError(f"unknown device {spec!r}: use auto, cpu, cuda or cuda:N")
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"device {spec!r}: this machine has no CUDA device; use --device cpu (or auto)")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise ValueError(f"device {spec!r}: this machine has {torch.cuda.device_count()} CUDA device(s), "
                             f"numbered from 0")
    return device


def add_device_flag(parser: argparse.ArgumentParser, default: str = "auto") -> None:
    """The ``--device`` flag, the same for every command."""
    parser.add_argument("--device", default=default, help=DEVICE_HELP)


def available_devices() -> list[str]:
    """The devices this machine can run on: the CPU, and CUDA when there is one (tests run on each)."""
    return ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
