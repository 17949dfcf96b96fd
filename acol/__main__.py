"""Command line: ``python -m acol {train,train-everyday,evaluate,explain,story} ...`` (``--help`` on each)."""

import importlib
import sys

COMMANDS = {
    "train": ("acol.training.train", "train ACoL or the CAM baseline"),
    "train-everyday": ("acol.training.everyday", "train branch B of the everyday model (A: the ImageNet classifier)"),
    "evaluate": ("acol.evaluation.evaluate", "classification and localization metrics of a checkpoint"),
    "explain": ("acol.viewer.explain_command", "the four-panel ACoL figure of one image"),
    "story": ("acol.evaluation.story_command",
              "whether a synthetic model tells ACoL's story, checked with the part masks"),
}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] not in COMMANDS:
        lines = [f"  {name:<15} {help_text}" for name, (_, help_text) in COMMANDS.items()]
        print("usage: python -m acol COMMAND [options]\n\ncommands:\n" + "\n".join(lines))
        return 0 if argv and argv[0] in ("-h", "--help") else 2
    module = importlib.import_module(COMMANDS[argv[0]][0])
    return module.main(argv[1:]) or 0


if __name__ == "__main__":
    sys.exit(main())
