"""The session: every job it plans (the CAM, delta 0.7 and the candidate deltas, seed by seed; an
evaluation after each training), started while it is expected to finish before the deadline, the
other delta chosen on validation, everything stopped at the deadline."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from .jobs import CONFIG, REPO, T0, Abort, Job, count_log_rows, last_log_row, log, run_name, tail


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


