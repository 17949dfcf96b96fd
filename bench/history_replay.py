"""How long ``acol.core.replay.replay`` takes for one picture: every epoch's maps of a shipped model.

    python bench/history_replay.py [--checkpoint checkpoints/synthetic_acol_efficientnet_lite0_s8.safetensors]
                                   [--image assets/examples/synthetic_2_0005.png] [--repeats 20] [--threads N]

Loads the checkpoint and the history beside it (``acol.core.history.history_path``), makes the
picture as the model's eval transform does, and times ``replay`` for A's top-1 class: the
median and the fastest of ``--repeats`` calls after one warm-up, with one plain forward pass of
the model (the last epoch alone) for scale. Loading the history is timed once, apart.
"""

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch
from PIL import Image
from torchvision.transforms.functional import pil_to_tensor

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from acol.core.checkpoint import load_checkpoint  # noqa: E402
from acol.data.transforms import eval_transform  # noqa: E402
from acol.core.history import history_path, load_history  # noqa: E402
from acol.core.replay import replay, trained_stage_count  # noqa: E402


def timed(function, repeats: int) -> list[float]:
    function()  # warm-up: first-call allocations
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        function()
        times.append(time.perf_counter() - started)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint",
                        default=str(REPO / "checkpoints" / "synthetic_acol_efficientnet_lite0_s8.safetensors"))
    parser.add_argument("--image", default=str(REPO / "assets" / "examples" / "synthetic_2_0005.png"))
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    model, config = load_checkpoint(args.checkpoint)
    started = time.perf_counter()
    history = load_history(history_path(args.checkpoint), model, config)
    loading = time.perf_counter() - started
    image = eval_transform(config["input_size"], config["mean"], config["std"])(
        pil_to_tensor(Image.open(args.image).convert("RGB"))).unsqueeze(0)  # as acol.evaluation.explain makes it
    with torch.no_grad():
        target = int(model(image).logits[0].argmax())
        plain = timed(lambda: model(image), args.repeats)
    replayed = timed(lambda: replay(model, history, image, target), args.repeats)
    maps = replay(model, history, image, target)
    print(f"{Path(args.checkpoint).name}: {len(history.epochs)} epochs, {len(history.names)} tensors, "
          f"{trained_stage_count(model, history.names)} of {len(model.backbone.stages)} backbone stages trained; "
          f"maps {tuple(maps.a_map.shape)}; torch threads {torch.get_num_threads()}")
    print(f"load the history: {1000 * loading:.0f} ms (once per model)")
    print(f"replay, one picture: median {1000 * statistics.median(replayed):.0f} ms, fastest "
          f"{1000 * min(replayed):.0f} ms ({args.repeats} calls)")
    print(f"one forward pass of the model: median {1000 * statistics.median(plain):.1f} ms")


if __name__ == "__main__":
    main()
