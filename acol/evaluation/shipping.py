"""Shipping an evaluated model (``evaluate --ship PATH``): a float16 copy of the checkpoint that
records the CAM thresholds chosen and the validation figures, with its training history beside
it; never over a model that scored better on the same split unless forced."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from ..core.checkpoint import CheckpointError, atomic_path, load_checkpoint, read_metadata, save_checkpoint
from ..core.history import history_path, load_history


class ShipRefused(RuntimeError):
    """``--ship`` would replace a checkpoint that did better on the same validation data."""


def check_replacement(path, config: dict, results: dict) -> None:
    """Refuse to ship over a checkpoint whose final map (fused, or CAM's) scored a higher
    MaxBoxAccV2 on the same split of the same classes: an evaluation of a diverged run once
    replaced a good shipped model that way. ``--force`` skips this check."""
    if not Path(path).exists():
        return
    try:
        shipped = json.loads(read_metadata(path)["config"])
        validation = shipped["metrics"]["validation"]
        final_map = list(validation["maps"])[-1]
        before = validation["maps"][final_map]["max_box_acc_v2"]
    except (CheckpointError, KeyError, IndexError, TypeError, json.JSONDecodeError):
        return  # no numbers to compare with
    now = results["maps"].get(final_map, {}).get("max_box_acc_v2")
    comparable = validation["split"] == results["split"] and shipped.get("class_names") == config["class_names"]
    if comparable and now is not None and now < before:
        raise ShipRefused(f"not shipping over {path}: it scored MaxBoxAccV2 {before:.2f} ({final_map} map, "
                          f"split {results['split']!r}) and this model {now:.2f}. Ship elsewhere, or pass "
                          "--force to replace it anyway.")


def check_shipping(path, checkpoint, model, config: dict, results: dict, input_size: int, force: bool) -> Path | None:
    """Raise ``ShipRefused`` or ``HistoryError`` unless ``model`` (the ``checkpoint`` evaluated
    into ``results``) may be shipped to ``path``: checked before anything is shipped, so a pair
    that belongs together is shipped, or nothing. Returns the run's training history to ship
    beside it (None: it kept none)."""
    if not force:
        check_replacement(path, config, results)
    history = history_path(checkpoint)  # the run's history.safetensors, if it kept one
    if not history.exists():
        return None
    load_history(history, model, dict(config, input_size=input_size))
    return history


def ship_checkpoint(path, model, config: dict, results: dict, description: str | None = None) -> Path:
    """Save ``model`` (fp16) with the thresholds chosen on, and the numbers of, ``results``;
    ``description`` replaces the checkpoint's own (kept when None)."""
    summary = {name: {key: round(value, 2) for key, value in numbers.items() if isinstance(value, float)}
               for name, numbers in results["maps"].items()}
    metrics = {"cam_thresholds": {name: numbers["cam_threshold"] for name, numbers in results["maps"].items()},
               "validation": {"data": results["data"], "split": results["split"], "maps": summary,
                              **({"region_iou_A_B": round(results["region_iou_A_B"], 2)}
                                 if "region_iou_A_B" in results else {})},
               "history": config.get("metrics", {}).get("history", [])}
    return save_checkpoint(path, model, backbone=config["model"]["backbone"],
                           class_names=config["class_names"], input_size=results["input_size"],
                           recipe=config.get("recipe", {}), metrics=metrics, half=True,
                           description=config.get("description", "") if description is None else description)


def ship_history(history: Path | None, shipped: str | Path) -> Path | None:
    """Copy a run's training history beside its shipped checkpoint ``X.safetensors``, as
    ``X.history.safetensors``, and check the two belong together as shipped. A model shipped
    without one removes the history of the model it replaces there (it would not match)."""
    destination = history_path(shipped)
    if history is None:
        if destination.exists():
            destination.unlink()
            print(f"removed {destination}: the history of the model this one replaced")
        return None
    if Path(history).resolve() != destination.resolve():
        with atomic_path(destination) as temporary:
            shutil.copyfile(history, temporary)
            temporary.chmod(0o644)
    load_history(destination, *load_checkpoint(shipped))
    return destination
