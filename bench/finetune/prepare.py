"""Preparing the session: the environment, the packed data (and a copy with one validation image a
class), the backbone's weights, and the plan: how many epochs fit the training budget, from the
speed probe's figures."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from .jobs import DATA, REPO, Abort, log, tail

if TYPE_CHECKING:
    from .session import Session

# bench/backbone_weights.py's digest of the ImageNet tensors in the shipped frozen CAM checkpoint,
# checked against create_backbone("efficientnet_lite0", weights="imagenet") where the package is.
BACKBONE_SHA256 = "aed6d6465f61f3ebeb720feb40ebca16b134c2540168d9edac62a1ede27b00bc"


def environment(dry_run: bool) -> dict:
    import importlib
    facts = {"python": sys.version.split()[0], "cpus": os.cpu_count()}
    for module in ("torch", "torchvision", "timm", "safetensors", "scipy", "numpy", "PIL", "yaml", "tqdm",
                   "matplotlib"):
        try:
            facts[module] = getattr(importlib.import_module(module), "__version__", "?")
        except ImportError as error:
            raise Abort(f"python package {module} is missing: {error}") from error
    import torch
    facts["cuda"] = torch.cuda.is_available()
    if facts["cuda"]:
        properties = torch.cuda.get_device_properties(0)
        facts["gpu"] = properties.name
        facts["gpu_memory_gib"] = round(properties.total_memory / 2**30, 1)
    elif not dry_run:
        raise Abort("no CUDA device here: run this on the GPU machine, or with DRY_RUN=1 on the CPU")
    return facts


def check_data(data: Path) -> dict:
    """The packed folder is there, whole, and acol's CUB reader reads it."""
    if not (data / "images.txt").is_file():
        raise Abort(f"{data} is missing: run `python bench/pack_cub50.py` and carry gpu_data/cub50")
    from acol.data.images import load_rgb_image
    from acol.data.datasets import build_dataset
    train, val = build_dataset(data, "train"), build_dataset(data, "test")
    missing = [str(r.path) for r in train.records + val.records if not r.path.is_file()]
    if missing:
        raise Abort(f"{len(missing)} images listed in {data}/images.txt are missing, e.g. {missing[:2]}")
    for record in (train.records[0], train.records[-1], val.records[0], val.records[-1]):
        load_rgb_image(record.path)
    if train.num_classes != 50:
        raise Abort(f"{data}: {train.num_classes} classes, expected 50")
    return {"train_images": len(train), "val_images": len(val), "classes": train.num_classes}


def make_val_per_class(data: Path, folder: Path, per_class: int = 1) -> Path:
    """The same data with only ``per_class`` validation images a class left in its test split
    (the others get the split flag 2, which neither split reads): for the validation that every
    training run ends with, which costs ~0.7 s of one core an image at 448 px. The images folder
    is a link to the original."""
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    (folder / "images").symlink_to((data / "images").resolve(), target_is_directory=True)
    for name in ("images.txt", "bounding_boxes.txt", "classes.txt", "image_class_labels.txt"):
        shutil.copyfile(data / name, folder / name)
    class_of = dict(line.split() for line in (data / "image_class_labels.txt").read_text().split("\n") if line.strip())
    kept: dict[str, int] = {}
    lines = []
    for line in (data / "train_test_split.txt").read_text().split("\n"):
        if not line.strip():
            continue
        image_id, flag = line.split()
        if flag == "0":
            kept[class_of[image_id]] = kept.get(class_of[image_id], 0) + 1
            flag = "0" if kept[class_of[image_id]] <= per_class else "2"
        lines.append(f"{image_id} {flag}")
    (folder / "train_test_split.txt").write_text("\n".join(lines) + "\n")
    from acol.data.datasets import build_dataset
    count = len(build_dataset(folder, "test"))
    if count != per_class * len(kept):
        raise Abort(f"{folder}: {count} validation images, expected {per_class * len(kept)}")
    return folder


def write_weights(work: Path) -> Path:
    path = work / "lite0_imagenet.safetensors"
    command = [sys.executable, str(REPO / "bench" / "backbone_weights.py"), "--out", str(path),
               "--expect-sha256", BACKBONE_SHA256]
    result = subprocess.run(command, capture_output=True, text=True, timeout=120)
    for line in (result.stdout + result.stderr).strip().splitlines():
        log(f"  weights: {line}")
    if result.returncode != 0:
        raise Abort("could not write the backbone weights")
    return path


def prepare(session: Session) -> None:
    """Everything before the first run: the speed probe started (unless ``--epochs`` is given), the
    environment, data and weights checked and written meanwhile, then the plan from the probe."""
    args = session.args
    log(f"work folder {session.work}, output folder {session.out_dir}, deadline +{args.deadline_s:.0f}s")
    session.work.mkdir(parents=True, exist_ok=True)
    probe_output = session.work / "probe.out"
    if args.epochs is None:
        start_probe(session, probe_output)
    session.facts["environment"] = environment(args.dry_run)
    log("environment: " + ", ".join(f"{k} {v}" for k, v in session.facts["environment"].items()))
    session.facts["data"] = check_data(DATA)
    log(f"data: {DATA.relative_to(REPO)}: {session.facts['data']}")
    session.val_per_class_data = make_val_per_class(DATA, session.work / "cub50_val1perclass")
    session.full_data = session.val_per_class_data if args.dry_run else DATA
    session.eval_data = session.val_per_class_data if args.dry_run else DATA
    log(f"validation at the end of each training: {session.val_per_class_data} (1 image a class); "
        f"candidates: {session.full_data}; evaluations: {session.eval_data}")
    session.weights = write_weights(session.work)
    session.device = "cpu" if args.dry_run else "cuda"
    session.train_extra = (["--batch-size", str(args.batch_size), "--max-steps-per-epoch", "2", "--workers", "1"]
                           if args.dry_run else [])
    session.eval_workers = 1 if args.dry_run else 2
    plan(session, probe_output)


def start_probe(session: Session, probe_output: Path) -> None:
    """The speed probe, started in its own process group (``gpu_finetune.py --probe``)."""
    args = session.args
    probe_command = [sys.executable, str(REPO / "bench" / "gpu_finetune.py"), "--probe", "--device",
                     "cpu" if args.dry_run else "cuda", "--input-size", str(args.input_size),
                     "--resize-size", str(args.resize_size), "--batch-size", str(args.batch_size),
                     "--probe-steps", str(args.probe_steps), "--data", str(DATA), str(session.out_dir)]
    with open(probe_output, "w") as output:
        session.probe_process = subprocess.Popen(probe_command, stdout=output, stderr=subprocess.STDOUT, cwd=REPO,
                                                 env=session.environment_for_children(), process_group=0)
    log(f"speed probe started ({args.probe_steps} training steps on random data on the "
        f"{'CPU' if args.dry_run else 'GPU'}, and the loader's cost on one core)")


def plan(session: Session, probe_output: Path) -> None:
    """The session's epochs (the same for every run), runs at once and expected durations: from the
    probe's figures, so that the planned training fits ``--train-budget-s``; else ``--epochs``."""
    args = session.args
    train_images = session.facts["data"]["train_images"] // args.batch_size * args.batch_size
    if args.dry_run:
        train_images = min(train_images, 2 * args.batch_size)  # --max-steps-per-epoch 2
    planned_runs = 3 + 3 + len(args.candidates) + 2 * (len(args.candidates) > 0)
    session.max_train = args.max_train
    if session.probe_process is not None:
        speed = session.facts["probe"] = probe_figures(session.probe_process, probe_output, args.probe_timeout_s)
        # the trainers' own processes and the evaluations leave the rest of the cores to the loaders
        loader_cores = max(1, (os.cpu_count() or 2) - session.max_train - 2)
        loader_ips = loader_cores * 1000 / speed["load_ms_per_image"]
        rate = min(speed["images_per_s"], loader_ips)
        if not args.dry_run and speed["peak_memory_gib"] > 0:
            memory = session.facts["environment"]["gpu_memory_gib"]
            session.max_train = max(1, min(session.max_train, int(0.8 * memory // (speed["peak_memory_gib"] + 2))))
        epochs = int(args.train_budget_s * rate // (planned_runs * train_images))
        session.epochs = max(args.min_epochs, min(args.max_epochs, epochs))
        log(f"probe: {speed['images_per_s']:.0f} images/s on the {'CPU' if args.dry_run else 'GPU'} (step {speed['step_ms']:.0f} ms, batch "
            f"{args.batch_size} at {args.input_size} px, peak {speed['peak_memory_gib']:.1f} GiB); the loader "
            f"{speed['load_ms_per_image']:.1f} ms an image on one core, {loader_ips:.0f} images/s on "
            f"{loader_cores} cores; so {rate:.0f} images/s")
        log(f"plan: {planned_runs} runs x {session.epochs} epochs x {train_images} images = "
            f"{planned_runs * session.epochs * train_images} images, about "
            f"{planned_runs * session.epochs * train_images / rate:.0f} s of training at {rate:.0f} images/s "
            f"(budget {args.train_budget_s:.0f} s; epochs clamped to [{args.min_epochs}, {args.max_epochs}]); "
            f"up to {session.max_train} runs at once")
        session.expected_train_s = session.epochs * train_images / (rate / min(session.max_train, planned_runs)) + 20
    else:
        session.epochs = args.epochs
        session.expected_train_s = 60.0
        log(f"epochs given: {session.epochs} (no speed probe)")
    session.expected_eval_s = 20.0 if args.dry_run else 75.0
    session.facts.update(epochs=session.epochs, max_train=session.max_train, planned_runs=planned_runs,
                         input_size=args.input_size)


def probe_figures(probe_process: subprocess.Popen, probe_output: Path, timeout_s: float) -> dict:
    """The finished probe's figures (its ``PROBE {...}`` line); ``Abort`` if it failed or ran over."""
    try:
        probe_process.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        os.killpg(probe_process.pid, signal.SIGKILL)
        raise Abort(f"the speed probe took over {timeout_s:.0f} s:\n{tail(probe_output)}")
    lines = [line for line in probe_output.read_text().splitlines() if line.startswith("PROBE ")]
    if probe_process.returncode != 0 or not lines:
        raise Abort(f"the speed probe failed:\n{tail(probe_output)}")
    return json.loads(lines[-1][6:])
