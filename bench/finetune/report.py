"""The session's report: each run's figures, each delta's MaxBoxAccV2 margin over the CAM (from
``bench/seed_margin.py``), the best pair's checkpoints and logs, ``summary.json`` and ``summary.md``."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from typing import TYPE_CHECKING

from .jobs import REPO, last_log_row, log, run_name

if TYPE_CHECKING:
    from .session import Session


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


def evaluation(session: Session, delta: float | None, seed: int) -> dict | None:
    for job in session.jobs:
        if job.kind == "eval" and job.status == "done" and job.delta == delta and job.seed == seed:
            return json.loads((job.folder / "metrics.json").read_text())
    return None


def results(session: Session) -> dict:
    runs = []
    for job in [job for job in session.jobs if job.kind == "train"]:
        entry = {"name": job.name, "delta": job.delta, "seed": job.seed, "role": job.role,
                 "status": job.status, "train_s": job.seconds}
        row = last_log_row(job.folder)
        if row:
            entry["last_epoch"] = {k: v for k, v in row.items() if v != ""}
        evaluated = evaluation(session, job.delta, job.seed) if job.status == "done" else None
        if evaluated:
            entry["validation"] = {name: {key: round(numbers[key], 2) for key in
                                          ("top1_cls", "gt_known_loc", "top1_loc", "max_box_acc", "max_box_acc_v2",
                                           "box_coverage", "peak_in_box", "cam_threshold")}
                                   for name, numbers in evaluated["maps"].items()}
            entry["validation"].update({k: round(evaluated[k], 2) for k in ("region_iou_A_B", "b_names_a_class")
                                        if k in evaluated})
            entry["eval_s"] = next(j.seconds for j in session.jobs if j.kind == "eval" and j.name == job.name)
        runs.append(entry)
    return {"runs": runs}


def margins(session: Session) -> dict:
    margins = {}
    for delta in [0.7] + ([session.chosen_delta] if session.chosen_delta is not None else []):
        seeds = [seed for seed in session.args.seeds
                 if evaluation(session, delta, seed) is not None and evaluation(session, None, seed) is not None]
        if not seeds:
            log(f"delta {delta:g}: no seed with both ACoL and CAM evaluated: no margin")
            continue
        command = [sys.executable, str(REPO / "bench" / "seed_margin.py"),
                   "--acol", *[str(session.work / "eval" / run_name(delta, seed)) for seed in seeds],
                   "--cam", *[str(session.work / "eval" / run_name(None, seed)) for seed in seeds]]
        result = subprocess.run(command, capture_output=True, text=True, timeout=120, cwd=REPO)
        lines = result.stdout.strip().splitlines()
        if result.returncode != 0 or not lines:
            log(f"seed_margin failed for delta {delta:g}:\n{result.stdout}{result.stderr}")
            continue
        log(f"seed_margin, ACoL delta {delta:g} (fused) minus CAM, MaxBoxAccV2, seeds {seeds}:")
        for line in lines[:-1]:
            print("    " + line.replace(str(session.work) + "/", ""), flush=True)
        margins[f"{delta:g}"] = {"seeds": seeds, **json.loads(lines[-1])}
    return margins


def write_outputs(session: Session, results: dict) -> None:
    """The best pair's shipped checkpoints and training logs, summary.json and summary.md."""
    out = session.out_dir
    best = None
    for run in results["runs"]:
        if run["delta"] is not None and "validation" in run and evaluation(session, None, run["seed"]) is not None:
            score = run["validation"]["fused"]["max_box_acc_v2"]
            if best is None or score > best[0]:
                best = (score, run)
    if best is not None:
        run = best[1]
        pair = [run["name"], run_name(None, run["seed"])]
        for name in pair:
            shutil.copyfile(session.work / "ship" / f"{name}.safetensors", out / f"{name}.safetensors")
            shutil.copyfile(session.work / "runs" / name / "log.csv", out / f"{name}_log.csv")
        results["best_pair"] = pair
        log(f"best pair: {pair[0]} (fused MaxBoxAccV2 {best[0]:.2f}) with {pair[1]}: their shipped "
            f"checkpoints and training logs are in {out}")
    else:
        log("no ACoL run was evaluated with its seed's CAM: no pair to write")
    (out / "summary.json").write_text(json.dumps(results, indent=2, default=str))
    (out / "summary.md").write_text(summary_table(results) + "\n")
    print(summary_table(results), flush=True)
