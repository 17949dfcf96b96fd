"""End-to-end fine-tuning of ACoL and its CAM baseline on CUB-50, on one GPU, in about 8 minutes.

    bash bench/gpu_finetune.sh OUT_DIR            # what to run (it calls this file and keeps its log)
    DRY_RUN=1 bash bench/gpu_finetune.sh OUT_DIR  # the whole pipeline in minutes on the CPU, 64 px

Recipe: ``configs/cub50_e2e_gpu.yaml`` (every backbone stage trains, 448 px, linear heads).
Runs, with ``python -m acol train``:

1. seed 0 of the CAM baseline (``--num-branches 1``), of ACoL at delta 0.7 and of ACoL at each
   candidate delta (0.6 and 0.8); the candidates validate on all 500 validation images at the end
   of training, the others on one image a class (50; their real numbers come from step 3);
2. seeds 1 and 2 of the CAM and of delta 0.7;
3. the other delta: the candidate whose fused MaxBoxAccV2 was best on validation, seeds 1 and 2.

Up to ``--max-train`` runs share the GPU at once; each finished run is evaluated on the
validation split with ``python -m acol evaluate ... --device cuda --jobs J`` (niced, so that the
data loaders of the runs still training come first), and shipped (float16, with its CAM
thresholds and validation numbers). Then ``bench/seed_margin.py`` gives each delta's MaxBoxAccV2
margin over the CAM with its 95% interval (seeds and images resampled), and the best pair (the
ACoL run with the best fused MaxBoxAccV2, with the CAM of its seed) goes to OUT_DIR with its
training logs, ``summary.json`` and ``summary.md``.

Time: a speed probe (12 training steps on random data on the GPU, and the data pipeline's cost
on one core) sets the epochs so that the planned training fits ``--train-budget-s`` (at most the
config's 12, at least 4; every run of the session gets the same). A hard ``--deadline-s`` (from
the start of bench/gpu_finetune.sh) is never passed: a run is started only if it is expected to
finish, with its evaluation, before it, and whatever still runs then is stopped; what finished
is reported. Every step prints a timestamped line; a run that fails (not one that diverges)
stops the whole script at once.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
T0 = float(os.environ.get("GPU_FINETUNE_T0") or time.time())
CONFIG = REPO / "configs" / "cub50_e2e_gpu.yaml"
DATA = REPO / "gpu_data" / "cub50"
# bench/backbone_weights.py's digest of the ImageNet tensors in the shipped frozen CAM checkpoint,
# checked against create_backbone("efficientnet_lite0", weights="imagenet") where the package is.
BACKBONE_SHA256 = "aed6d6465f61f3ebeb720feb40ebca16b134c2540168d9edac62a1ede27b00bc"


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


# ----------------------------------------------------------------------------------------------
# Preparation: environment, data, weights, speed


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


def probe(args) -> int:
    """``--probe``: images/s of the training step (random data, the run's model and optimizer)
    and one core's cost of the training transform per image; one JSON line."""
    import torch
    from acol import create_backbone
    from acol.data.transforms import train_transform
    from acol.data.datasets import build_dataset
    from acol.core.device import resolve_device
    from acol.core.model import ACoL
    from acol.training.recipe import build_model, make_optimizer, set_training_mode
    from acol.training.train import parse_config
    config, _ = parse_config(["--config", str(CONFIG), "--device", args.device, "--weights", "none",
                              "--input-size", str(args.input_size), "--resize-size", str(args.resize_size),
                              "--batch-size", str(args.batch_size)])
    device = resolve_device(config.device)
    model = build_model(create_backbone(config.backbone, None), 50, config).to(device)
    if device.type == "cuda":
        model = model.to(memory_format=torch.channels_last)
    optimizer = make_optimizer(model, config)
    set_training_mode(model, config)
    images = torch.randn(config.batch_size, 3, config.input_size, config.input_size, device=device)
    if device.type == "cuda":
        images = images.contiguous(memory_format=torch.channels_last)
    labels = torch.randint(0, 50, (config.batch_size,), device=device)

    def step():
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
            output = model(images, target_class=labels)
            loss = ACoL.loss(output, labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        model.keep_class_weights_nonnegative()
        return loss.item() + (output.logits[0].argmax(1) == labels).sum().item()

    synchronize = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    for _ in range(3):
        step()
    synchronize()
    started = time.perf_counter()
    for _ in range(args.probe_steps):
        step()
    synchronize()
    step_s = (time.perf_counter() - started) / args.probe_steps
    peak_gib = torch.cuda.max_memory_allocated() / 2**30 if device.type == "cuda" else 0.0

    torch.set_num_threads(1)
    dataset = build_dataset(args.data, "train", train_transform(config.input_size, model.backbone.mean,
                                                                model.backbone.std, config.resize_size))
    dataset[0]
    started = time.perf_counter()
    for index in range(0, len(dataset), max(len(dataset) // 24, 1)):
        dataset[index]
    load_s = (time.perf_counter() - started) / len(range(0, len(dataset), max(len(dataset) // 24, 1)))
    print("PROBE " + json.dumps({"images_per_s": config.batch_size / step_s, "step_ms": 1000 * step_s,
                                 "peak_memory_gib": round(peak_gib, 2), "load_ms_per_image": 1000 * load_s}))
    return 0


# ----------------------------------------------------------------------------------------------
# The runs


class Session:
    def __init__(self, args, out_dir: Path, work: Path):
        self.args, self.out_dir, self.work = args, out_dir, work
        self.jobs: list[Job] = []
        self.chosen_delta: float | None = None
        self.probe_process: subprocess.Popen | None = None
        self.facts: dict = {"config": str(CONFIG.relative_to(REPO)), "dry_run": args.dry_run}
        self.deadline = T0 + args.deadline_s

    # -- commands -----------------------------------------------------------------------------
    def train_job(self, delta: float | None, seed: int, role: str = "main") -> Job:
        name = run_name(delta, seed)
        folder = self.work / "runs" / name
        data = self.full_data if role == "candidate" else self.val_per_class_data
        command = [sys.executable, "-m", "acol", "train", "--config", str(CONFIG), "--weights", str(self.weights),
                   "--data", str(data), "--num-branches", "1" if delta is None else "2",
                   "--erase-threshold", f"{0.7 if delta is None else delta:g}", "--seed", str(seed),
                   "--epochs", str(self.epochs), "--input-size", str(self.args.input_size),
                   "--resize-size", str(self.args.resize_size), "--device", self.device, "--out", str(folder),
                   *self.train_extra]
        return Job(name, "train", command, folder, seed, delta, role)

    def eval_job(self, train: Job) -> Job:
        folder = self.work / "eval" / train.name
        command = ["nice", "-n", "10", sys.executable, "-m", "acol", "evaluate",
                   str(train.folder / "model.safetensors"), str(self.eval_data), "--split", "test",
                   "--device", self.device, "--workers", str(self.eval_workers), "--jobs", "JOBS",
                   "--batch-size", "32", "--out", str(folder),
                   "--ship", str(self.work / "ship" / f"{train.name}.safetensors"), "--force"]
        return Job(train.name, "eval", command, folder, train.seed, train.delta, train.role)

    def environment_for_children(self) -> dict:
        env = dict(os.environ, PYTHONUNBUFFERED="1", OMP_NUM_THREADS="1" if self.args.dry_run else "2")
        env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
        return env

    # -- preparation --------------------------------------------------------------------------
    def prepare(self) -> None:
        args = self.args
        log(f"work folder {self.work}, output folder {self.out_dir}, deadline +{args.deadline_s:.0f}s")
        self.work.mkdir(parents=True, exist_ok=True)
        probe_command = [sys.executable, str(Path(__file__).resolve()), "--probe", "--device",
                         "cpu" if args.dry_run else "cuda", "--input-size", str(args.input_size),
                         "--resize-size", str(args.resize_size), "--batch-size", str(args.batch_size),
                         "--probe-steps", str(args.probe_steps), "--data", str(DATA), str(self.out_dir)]
        probe_output = self.work / "probe.out"
        probe_process = None
        if args.epochs is None:
            with open(probe_output, "w") as output:
                probe_process = self.probe_process = subprocess.Popen(probe_command, stdout=output, stderr=subprocess.STDOUT, cwd=REPO,
                                                 env=self.environment_for_children(), process_group=0)
            log(f"speed probe started ({args.probe_steps} training steps on random data on the "
                f"{'CPU' if args.dry_run else 'GPU'}, and the loader's cost on one core)")
        self.facts["environment"] = environment(args.dry_run)
        log("environment: " + ", ".join(f"{k} {v}" for k, v in self.facts["environment"].items()))
        self.facts["data"] = check_data(DATA)
        log(f"data: {DATA.relative_to(REPO)}: {self.facts['data']}")
        self.val_per_class_data = make_val_per_class(DATA, self.work / "cub50_val1perclass")
        self.full_data = self.val_per_class_data if args.dry_run else DATA
        self.eval_data = self.val_per_class_data if args.dry_run else DATA
        log(f"validation at the end of each training: {self.val_per_class_data} (1 image a class); "
            f"candidates: {self.full_data}; evaluations: {self.eval_data}")
        self.weights = write_weights(self.work)
        self.device = "cpu" if args.dry_run else "cuda"
        self.train_extra = (["--batch-size", str(args.batch_size), "--max-steps-per-epoch", "2", "--workers", "1"]
                            if args.dry_run else [])
        cpus = os.cpu_count() or 2
        self.eval_workers = 1 if args.dry_run else 2

        train_images = self.facts["data"]["train_images"] // args.batch_size * args.batch_size
        if args.dry_run:
            train_images = min(train_images, 2 * args.batch_size)  # --max-steps-per-epoch 2
        planned_runs = 3 + 3 + len(args.candidates) + 2 * (len(args.candidates) > 0)
        self.max_train = args.max_train
        if probe_process is not None:
            try:
                probe_process.wait(timeout=args.probe_timeout_s)
            except subprocess.TimeoutExpired:
                os.killpg(probe_process.pid, signal.SIGKILL)
                raise Abort(f"the speed probe took over {args.probe_timeout_s:.0f} s:\n{tail(probe_output)}")
            lines = [line for line in probe_output.read_text().splitlines() if line.startswith("PROBE ")]
            if probe_process.returncode != 0 or not lines:
                raise Abort(f"the speed probe failed:\n{tail(probe_output)}")
            speed = json.loads(lines[-1][6:])
            self.facts["probe"] = speed
            loader_cores = max(1, cpus - self.max_train - 2)  # the trainers' own processes and the evaluations
            loader_ips = loader_cores * 1000 / speed["load_ms_per_image"]
            rate = min(speed["images_per_s"], loader_ips)
            if not args.dry_run and speed["peak_memory_gib"] > 0:
                memory = self.facts["environment"]["gpu_memory_gib"]
                self.max_train = max(1, min(self.max_train, int(0.8 * memory // (speed["peak_memory_gib"] + 2))))
            epochs = int(args.train_budget_s * rate // (planned_runs * train_images))
            self.epochs = max(args.min_epochs, min(args.max_epochs, epochs))
            log(f"probe: {speed['images_per_s']:.0f} images/s on the {'CPU' if args.dry_run else 'GPU'} (step {speed['step_ms']:.0f} ms, batch "
                f"{args.batch_size} at {args.input_size} px, peak {speed['peak_memory_gib']:.1f} GiB); the loader "
                f"{speed['load_ms_per_image']:.1f} ms an image on one core, {loader_ips:.0f} images/s on "
                f"{loader_cores} cores; so {rate:.0f} images/s")
            log(f"plan: {planned_runs} runs x {self.epochs} epochs x {train_images} images = "
                f"{planned_runs * self.epochs * train_images} images, about "
                f"{planned_runs * self.epochs * train_images / rate:.0f} s of training at {rate:.0f} images/s "
                f"(budget {args.train_budget_s:.0f} s; epochs clamped to [{args.min_epochs}, {args.max_epochs}]); "
                f"up to {self.max_train} runs at once")
            self.expected_train_s = self.epochs * train_images / (rate / min(self.max_train, planned_runs)) + 20
        else:
            self.epochs = args.epochs
            self.expected_train_s = 60.0
            log(f"epochs given: {self.epochs} (no speed probe)")
        self.expected_eval_s = 20.0 if args.dry_run else 75.0
        self.facts.update(epochs=self.epochs, max_train=self.max_train, planned_runs=planned_runs,
                          input_size=args.input_size)

    # -- scheduling ---------------------------------------------------------------------------
    def scoring_processes(self) -> int:
        """An evaluation's scoring processes: the cores the training runs leave (a run keeps about
        three busy: itself and its loaders), shared with the evaluations already running."""
        if self.args.dry_run:
            return 2
        running = [job.kind for job in self.jobs if job.status == "running"]
        free = (os.cpu_count() or 2) - 3 * running.count("train")
        return max(2, min(8, free // (running.count("eval") + 1)))

    def start(self, job: Job) -> None:
        if job.kind == "eval":
            job.command = [str(self.scoring_processes()) if part == "JOBS" else part for part in job.command]
        job.output = (self.work / "logs" / f"{job.kind}_{job.name}.out")
        job.output.parent.mkdir(parents=True, exist_ok=True)
        with open(job.output, "w") as output:  # the child keeps its own copy of the file
            job.process = subprocess.Popen(job.command, stdout=output, stderr=subprocess.STDOUT, cwd=REPO,
                                           env=self.environment_for_children(), process_group=0)
        job.started, job.status = time.time(), "running"
        log(f"start {job.kind} {job.name}" + (f" ({self.epochs} epochs)" if job.kind == "train" else
                                                f" ({job.command[job.command.index('--jobs') + 1]} scoring processes)"))

    def stop(self, job: Job, status: str) -> None:
        if job.process is not None and job.process.poll() is None:
            try:
                os.killpg(job.process.pid, signal.SIGTERM)
                job.process.wait(timeout=10)
            except (ProcessLookupError, subprocess.TimeoutExpired):
                try:
                    os.killpg(job.process.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        job.status, job.ended = status, time.time()

    def stop_all(self, status: str) -> None:
        if self.probe_process is not None and self.probe_process.poll() is None:
            os.killpg(self.probe_process.pid, signal.SIGKILL)
        for job in self.jobs:
            if job.status == "running":
                self.stop(job, status)
                log(f"stopped {job.kind} {job.name} ({status})")

    def observed(self, kind: str, default: float) -> float:
        times = [job.seconds for job in self.jobs if job.kind == kind and job.status == "done" and job.seconds]
        return max(times) if times else default

    def fits(self, kind: str) -> bool:
        remaining = self.deadline - time.time()
        if kind == "train":
            return remaining > self.observed("train", self.expected_train_s) + self.observed("eval", self.expected_eval_s)
        return remaining > self.observed("eval", self.expected_eval_s)

    def report_progress(self, job: Job) -> None:
        rows = count_log_rows(job.folder)
        if rows > job.epochs_logged:
            job.epochs_logged = rows
            row = last_log_row(job.folder) or {}
            validation = {k: v for k, v in row.items() if k.startswith("val_") and k.endswith("max_box_acc_v2") and v}
            log(f"  {job.name}: epoch {row.get('epoch')}/{self.epochs}, loss {row.get('train_loss')}, "
                f"train top-1 {row.get('train_top1')}%, {row.get('images_per_s')} images/s"
                + (f", {validation}" if validation else ""))

    def finished(self, job: Job) -> None:
        job.ended = time.time()
        code = job.process.returncode
        if code == 0:
            job.status = "done"
            log(f"done  {job.kind} {job.name} in {job.seconds:.0f} s")
            if job.kind == "train":
                self.after_training(job)
            return
        text = tail(job.output)
        if job.kind == "train" and ("diverged" in text or "loss became" in text or "chance level" in text):
            job.status = "diverged"
            log(f"DIVERGED {job.name} (a result, not a failure):\n{text}")
            if job.role == "candidate":
                self.choose_delta()
            return
        job.status = "failed"
        raise Abort(f"{job.kind} {job.name} failed (exit {code}); the end of its output:\n{text}")

    def after_training(self, job: Job) -> None:
        if job.role == "candidate":
            self.choose_delta()
        else:
            self.jobs.append(self.eval_job(job))

    def choose_delta(self) -> None:
        candidates = [job for job in self.jobs if job.kind == "train" and job.role == "candidate"]
        if any(job.status in ("waiting", "running") for job in candidates) or self.chosen_delta is not None:
            return
        scores = {}
        for job in candidates:
            row = last_log_row(job.folder) if job.status == "done" else None
            if row and row.get("val_fused_max_box_acc_v2"):
                scores[job.delta] = float(row["val_fused_max_box_acc_v2"])
        self.facts["candidate_validation"] = {f"{delta:g}": score for delta, score in scores.items()}
        if not scores:
            log("no candidate delta finished: no other delta")
            return
        self.chosen_delta = max(scores, key=lambda delta: (scores[delta], -abs(delta - 0.7)))
        log(f"other delta chosen on validation: {self.chosen_delta:g} (seed 0, fused MaxBoxAccV2 over all "
            f"{self.facts['data']['val_images'] if not self.args.dry_run else 50} validation images, every 5th "
            f"CAM threshold: {self.facts['candidate_validation']})")
        for job in candidates:
            if job.delta == self.chosen_delta:
                job.role = "main"
                self.jobs.append(self.eval_job(job))
        for seed in self.args.seeds[1:]:
            self.jobs.append(self.train_job(self.chosen_delta, seed))

    def schedule(self) -> None:
        seeds = self.args.seeds
        self.jobs += [self.train_job(None, seeds[0]), self.train_job(0.7, seeds[0])]
        self.jobs += [self.train_job(delta, seeds[0], role="candidate") for delta in self.args.candidates]
        for seed in seeds[1:]:
            self.jobs += [self.train_job(None, seed), self.train_job(0.7, seed)]
        if not self.args.candidates:
            self.chosen_delta = None
        while True:
            for job in self.jobs:
                if job.status == "running":
                    if job.kind == "train":
                        self.report_progress(job)
                    if job.process.poll() is not None:
                        if job.kind == "train":
                            self.report_progress(job)
                        self.finished(job)
            if time.time() > self.deadline:
                log("the deadline has come: stopping what still runs")
                self.stop_all("killed")
                for job in self.jobs:
                    if job.status == "waiting":
                        job.status = "skipped"
                break
            for kind, limit in (("train", self.max_train), ("eval", self.args.max_eval)):
                running = sum(job.kind == kind and job.status == "running" for job in self.jobs)
                for job in [job for job in self.jobs if job.kind == kind and job.status == "waiting"]:
                    if running >= limit:
                        break
                    if not self.fits(kind):
                        job.status = "skipped"
                        log(f"skip {kind} {job.name}: not expected to finish before the deadline "
                            f"({self.deadline - time.time():.0f} s left)")
                        continue
                    self.start(job)
                    running += 1
            if not any(job.status in ("waiting", "running") for job in self.jobs):
                break
            time.sleep(1.0 if not self.args.dry_run else 0.5)

    # -- results ------------------------------------------------------------------------------
    def evaluation(self, delta: float | None, seed: int) -> dict | None:
        for job in self.jobs:
            if job.kind == "eval" and job.status == "done" and job.delta == delta and job.seed == seed:
                return json.loads((job.folder / "metrics.json").read_text())
        return None

    def results(self) -> dict:
        runs = []
        for job in [job for job in self.jobs if job.kind == "train"]:
            entry = {"name": job.name, "delta": job.delta, "seed": job.seed, "role": job.role,
                     "status": job.status, "train_s": job.seconds}
            row = last_log_row(job.folder)
            if row:
                entry["last_epoch"] = {k: v for k, v in row.items() if v != ""}
            evaluated = self.evaluation(job.delta, job.seed) if job.status == "done" else None
            if evaluated:
                entry["validation"] = {name: {key: round(numbers[key], 2) for key in
                                              ("top1_cls", "gt_known_loc", "top1_loc", "max_box_acc", "max_box_acc_v2",
                                               "box_coverage", "peak_in_box", "cam_threshold")}
                                       for name, numbers in evaluated["maps"].items()}
                entry["validation"].update({k: round(evaluated[k], 2) for k in ("region_iou_A_B", "b_names_a_class")
                                            if k in evaluated})
                entry["eval_s"] = next(j.seconds for j in self.jobs if j.kind == "eval" and j.name == job.name)
            runs.append(entry)
        return {"runs": runs}

    def margins(self) -> dict:
        margins = {}
        for delta in [0.7] + ([self.chosen_delta] if self.chosen_delta is not None else []):
            seeds = [seed for seed in self.args.seeds
                     if self.evaluation(delta, seed) is not None and self.evaluation(None, seed) is not None]
            if not seeds:
                log(f"delta {delta:g}: no seed with both ACoL and CAM evaluated: no margin")
                continue
            command = [sys.executable, str(REPO / "bench" / "seed_margin.py"),
                       "--acol", *[str(self.work / "eval" / run_name(delta, seed)) for seed in seeds],
                       "--cam", *[str(self.work / "eval" / run_name(None, seed)) for seed in seeds]]
            result = subprocess.run(command, capture_output=True, text=True, timeout=120, cwd=REPO)
            lines = result.stdout.strip().splitlines()
            if result.returncode != 0 or not lines:
                log(f"seed_margin failed for delta {delta:g}:\n{result.stdout}{result.stderr}")
                continue
            log(f"seed_margin, ACoL delta {delta:g} (fused) minus CAM, MaxBoxAccV2, seeds {seeds}:")
            for line in lines[:-1]:
                print("    " + line.replace(str(self.work) + "/", ""), flush=True)
            margins[f"{delta:g}"] = {"seeds": seeds, **json.loads(lines[-1])}
        return margins

    def write_outputs(self, results: dict) -> None:
        """The best pair's shipped checkpoints and training logs, summary.json and summary.md."""
        out = self.out_dir
        best = None
        for run in results["runs"]:
            if run["delta"] is not None and "validation" in run and self.evaluation(None, run["seed"]) is not None:
                score = run["validation"]["fused"]["max_box_acc_v2"]
                if best is None or score > best[0]:
                    best = (score, run)
        if best is not None:
            run = best[1]
            pair = [run["name"], run_name(None, run["seed"])]
            for name in pair:
                shutil.copyfile(self.work / "ship" / f"{name}.safetensors", out / f"{name}.safetensors")
                shutil.copyfile(self.work / "runs" / name / "log.csv", out / f"{name}_log.csv")
            results["best_pair"] = pair
            log(f"best pair: {pair[0]} (fused MaxBoxAccV2 {best[0]:.2f}) with {pair[1]}: their shipped "
                f"checkpoints and training logs are in {out}")
        else:
            log("no ACoL run was evaluated with its seed's CAM: no pair to write")
        (out / "summary.json").write_text(json.dumps(results, indent=2, default=str))
        (out / "summary.md").write_text(summary_table(results) + "\n")
        print(summary_table(results), flush=True)


def summary_table(results: dict) -> str:
    lines = [f"epochs {results.get('epochs')}, {results.get('input_size')} px, chosen other delta: "
             f"{results.get('chosen_delta')}, candidates on validation (seed 0, fused): "
             f"{results.get('candidate_validation')}", "",
             "| run | status | train s | eval s | top-1 cls | GT-known | top-1 loc | MaxBoxAccV2 A | B | fused | A/B IoU |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for run in results["runs"]:
        validation = run.get("validation", {})
        final = validation.get("fused") or validation.get("A") or {}

        def figure(map_name, key="max_box_acc_v2"):
            value = validation.get(map_name, {}).get(key)
            return "" if value is None else f"{value:.1f}"
        lines.append(f"| {run['name']} | {run['status']} | {run.get('train_s') or ''} | {run.get('eval_s') or ''} | "
                     f"{final.get('top1_cls', '')} | {final.get('gt_known_loc', '')} | {final.get('top1_loc', '')} | "
                     f"{figure('A')} | {figure('B')} | {figure('fused')} | {validation.get('region_iou_A_B', '')} |")
    for delta, margin in results.get("margins", {}).items():
        low, high = margin["interval_95"]
        lines.append(f"\nACoL delta {delta} minus CAM (fused MaxBoxAccV2), seeds {margin['seeds']}: "
                     f"{', '.join(f'{m:+.2f}' for m in margin['seed_margins'])}; mean {margin['margin']:+.2f}, "
                     f"95% interval [{low:+.2f}, {high:+.2f}]")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out_dir", type=Path)
    parser.add_argument("--dry-run", action="store_true", help="64 px on the CPU, 2 steps an epoch, 1 epoch")
    parser.add_argument("--work", type=Path, default=None, help="run folders (default: a new folder in /tmp)")
    parser.add_argument("--input-size", type=int, default=None, help="default: the config's (448); 64 in a dry run")
    parser.add_argument("--resize-size", type=int, default=None)
    parser.add_argument("--batch-size", type=int, default=None)
    parser.add_argument("--epochs", type=int, default=None, help="skip the speed probe and train this many")
    parser.add_argument("--min-epochs", type=int, default=4)
    parser.add_argument("--max-epochs", type=int, default=None, help="default: the config's epochs")
    parser.add_argument("--candidates", type=float, nargs="*", default=[0.6, 0.8])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--train-budget-s", type=float, default=None, help="default 270 (dry run 30)")
    parser.add_argument("--deadline-s", type=float, default=None, help="default 500 (dry run 1200)")
    parser.add_argument("--max-train", type=int, default=None, help="runs training at once (default 4; dry run 2)")
    parser.add_argument("--max-eval", type=int, default=None, help="evaluations at once (default 3; dry run 2)")
    parser.add_argument("--probe", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--probe-steps", type=int, default=None)
    parser.add_argument("--probe-timeout-s", type=float, default=150)
    parser.add_argument("--device", default="cuda", help=argparse.SUPPRESS)
    parser.add_argument("--data", type=Path, default=DATA, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    import yaml
    config = yaml.safe_load(CONFIG.read_text())
    dry = args.dry_run
    args.input_size = args.input_size or (64 if dry else config["input_size"])
    args.resize_size = args.resize_size or (round(args.input_size * 256 / 224) if dry or args.input_size != config["input_size"]
                                            else config["resize_size"])
    args.batch_size = args.batch_size or (8 if dry else config["batch_size"])
    args.max_epochs = args.max_epochs or (1 if dry else config["epochs"])
    args.min_epochs = min(args.min_epochs, args.max_epochs)
    args.probe_steps = args.probe_steps or (2 if dry else 12)
    args.train_budget_s = args.train_budget_s or (30.0 if dry else 270.0)
    args.deadline_s = args.deadline_s or (1200.0 if dry else 500.0)
    args.max_train = args.max_train or (2 if dry else 4)
    args.max_eval = args.max_eval or (2 if dry else 3)
    if args.probe:
        return probe(args)
    args.out_dir.mkdir(parents=True, exist_ok=True)
    work = args.work or Path(os.environ.get("TMPDIR", "/tmp")) / f"acol_gpu_finetune_{time.strftime('%Y%m%d_%H%M%S')}"
    session = Session(args, args.out_dir, work)
    def terminated(*_):
        raise Abort("terminated (SIGTERM)")
    signal.signal(signal.SIGTERM, terminated)
    code = 0
    try:
        session.prepare()
        session.schedule()
    except (Abort, KeyboardInterrupt) as error:
        log(f"STOPPED: {error}")
        session.stop_all("killed")
        for job in session.jobs:
            if job.status == "waiting":
                job.status = "not started"
        code = 1
    finally:
        try:
            results = {**session.facts, "chosen_delta": session.chosen_delta, **session.results(),
                       "elapsed_s": round(time.time() - T0, 1)}
            results["margins"] = session.margins() if code == 0 else {}
            session.write_outputs(results)
            if "best_pair" not in results:
                code = code or 1  # nothing to report
        except Exception as error:  # the report must not hide the first error
            log(f"could not write the outputs: {error!r}")
            code = code or 1
    log(f"finished in {time.time() - T0:.0f} s, exit {code}")
    return code


if __name__ == "__main__":
    sys.exit(main())
