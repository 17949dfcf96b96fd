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
import os
import signal
import sys
import time
from pathlib import Path

from finetune.jobs import CONFIG, DATA, T0, Abort, log
from finetune.prepare import prepare
from finetune.probe import probe
from finetune import report
from finetune.session import Session


def parse_args(argv=None) -> argparse.Namespace:
    """The flags, each default filled in from the recipe (``configs/cub50_e2e_gpu.yaml``) or, in a
    dry run, for the CPU."""
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
    from acol.data.transforms import resize_size_for
    config = yaml.safe_load(CONFIG.read_text())
    dry = args.dry_run
    args.input_size = args.input_size or (64 if dry else config["input_size"])
    args.resize_size = args.resize_size or (resize_size_for(args.input_size) if dry or args.input_size != config["input_size"]
                                            else config["resize_size"])
    args.batch_size = args.batch_size or (8 if dry else config["batch_size"])
    args.max_epochs = args.max_epochs or (1 if dry else config["epochs"])
    args.min_epochs = min(args.min_epochs, args.max_epochs)
    args.probe_steps = args.probe_steps or (2 if dry else 12)
    args.train_budget_s = args.train_budget_s or (30.0 if dry else 270.0)
    args.deadline_s = args.deadline_s or (1200.0 if dry else 500.0)
    args.max_train = args.max_train or (2 if dry else 4)
    args.max_eval = args.max_eval or (2 if dry else 3)
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
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
        prepare(session)
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
            results = {**session.facts, "chosen_delta": session.chosen_delta, **report.results(session),
                       "elapsed_s": round(time.time() - T0, 1)}
            results["margins"] = report.margins(session) if code == 0 else {}
            report.write_outputs(session, results)
            if "best_pair" not in results:
                code = code or 1  # nothing to report
        except Exception as error:  # the report must not hide the first error
            log(f"could not write the outputs: {error!r}")
            code = code or 1
    log(f"finished in {time.time() - T0:.0f} s, exit {code}")
    return code


if __name__ == "__main__":
    sys.exit(main())
