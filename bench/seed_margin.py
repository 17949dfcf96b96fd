"""ACoL's MaxBoxAccV2 margin over its same-recipe CAM baseline, over seeds and images together.

    python bench/seed_margin.py --acol runs/eval_acol_s{0,1,2} --cam runs/eval_cam_s{0,1,2}
    python bench/seed_margin.py --acol runs/eval_everyday_s{0,1,2} --cam runs/eval_everyday_s{0,1,2} --cam-map A

Each folder is the ``--out`` of a ``python -m acol evaluate`` run on the same images; the i-th
ACoL evaluation is paired with the i-th CAM one (train them with the same seed). Prints every
seed's margin and the mean margin with a 95% interval from resampling seeds and images
(``acol.evaluation.metrics.seeded_paired_bootstrap``), so that a margin is never one lucky run. ``--cam-map A``
takes the CAM's map from another map of an evaluation: the everyday model's CAM baseline is its
own branch A (the pretrained network's CAM), scored in the same evaluation as its fused map.
"""

import argparse
import json
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from acol.evaluation.report import best_iou_file  # noqa: E402
from acol.evaluation.metrics import seeded_paired_bootstrap  # noqa: E402


def final_map_best_iou(evaluation_dir, map_name: str | None = None) -> tuple[list[str], np.ndarray]:
    """The image ids and a map's best-component IoU curves: ``map_name``'s, by default the final
    map's (fused for ACoL)."""
    with np.load(best_iou_file(evaluation_dir), allow_pickle=False) as saved:
        return saved["image_ids"].tolist(), saved[f"best_iou_{map_name or saved['map_names'][-1]}"]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--acol", nargs="+", required=True, help="evaluation folders, one per seed")
    parser.add_argument("--cam", nargs="+", required=True, help="the CAM evaluations, in the same seed order")
    parser.add_argument("--cam-map", default=None, help="the CAM evaluations' map to compare with (default: their final map)")
    parser.add_argument("--draws", type=int, default=2000)
    args = parser.parse_args(argv)
    if len(args.acol) != len(args.cam):
        parser.error(f"{len(args.acol)} ACoL evaluations against {len(args.cam)} CAM ones: pair them by seed")
    acol = [final_map_best_iou(d) for d in args.acol]
    cam = [final_map_best_iou(d, args.cam_map) for d in args.cam]
    ids = acol[0][0]
    if any(other_ids != ids for other_ids, _ in acol + cam):
        parser.error("the evaluations scored different images (or in another order)")
    result = seeded_paired_bootstrap([b for _, b in acol], [b for _, b in cam], args.draws)
    for acol_dir, cam_dir, margin in zip(args.acol, args.cam, result["seed_margins"]):
        print(f"{acol_dir} - {cam_dir}: {margin:+.2f}")
    low, high = result["interval_95"]
    print(f"mean over {len(args.acol)} seeds: {result['margin']:+.2f} MaxBoxAccV2, 95% interval "
          f"[{low:+.2f}, {high:+.2f}] (seeds and {len(ids)} images resampled, {args.draws} draws; "
          f"<= 0 in {result['share_at_most_0']:.1f}%)")
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
