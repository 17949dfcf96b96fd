"""A job of the fine-tuning session (a training run or an evaluation, as a child process), the
session's clock and log, and what a run folder's log says."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))
T0 = float(os.environ.get("GPU_FINETUNE_T0") or time.time())
CONFIG = REPO / "configs" / "cub50_e2e_gpu.yaml"
DATA = REPO / "gpu_data" / "cub50"


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')} +{time.time() - T0:6.1f}s] {message}", flush=True)


class Abort(RuntimeError):
    """Something that will not get better by waiting: stop everything, report what finished."""


@dataclass
class Job:
    name: str
    kind: str                       # "train" or "eval"
    command: list[str]
    folder: Path                    # the run folder (train) or the evaluation folder (eval)
    seed: int
    delta: float | None             # None: the CAM baseline
    role: str = "main"              # "candidate": a seed-0 run at a candidate delta
    process: subprocess.Popen | None = None
    output: Path | None = None
    started: float | None = None
    ended: float | None = None
    status: str = "waiting"         # waiting, running, done, diverged, failed, killed, skipped
    epochs_logged: int = 0

    @property
    def seconds(self) -> float | None:
        return None if self.started is None or self.ended is None else round(self.ended - self.started, 1)


def run_name(delta: float | None, seed: int) -> str:
    return f"cam_s{seed}" if delta is None else f"acol_d{delta:g}_s{seed}"


def last_log_row(run_folder: Path) -> dict | None:
    try:
        with open(run_folder / "log.csv") as file:
            rows = list(csv.DictReader(file))
    except (OSError, csv.Error):
        return None
    return rows[-1] if rows else None


def count_log_rows(run_folder: Path) -> int:
    try:
        with open(run_folder / "log.csv") as file:
            return max(sum(1 for line in file if line.strip()) - 1, 0)
    except OSError:
        return 0


def tail(path: Path | None, lines: int = 25) -> str:
    """The last non-blank lines of a child's output (progress bars' carriage returns as line ends)."""
    if path is None or not path.is_file():
        return ""
    text = path.read_text(errors="replace").replace("\r", "\n")
    return "\n".join([line for line in text.splitlines() if line.strip()][-lines:])
