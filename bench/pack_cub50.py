"""Re-encode ``../shared/data/cub50`` small enough to travel to the GPU machine.

    python bench/pack_cub50.py                        # measure WebP q80 and JPEG q75, write the one that fits
    python bench/pack_cub50.py --format webp --quality 80
    python bench/pack_cub50.py --measure-only

Only 64 MiB of the repository travel to the device machine: its tracked files and the ignored
folders named in the device call's ``carry``. The 2,000 photos (already 256 px on their short
side, JPEG q90: 48 MiB) do not fit beside the tracked files, so they are re-encoded at their own
size into ``gpu_data/cub50/`` (ignored by git: no CUB photo is ever committed), in the official
CUB layout: ``images.txt`` names the new files (the extension changes with the format), the other
txt files are copied unchanged, and ``acol.data.readers.CUBDataset`` reads the folder as it reads the
original (checked at the end: same ids, labels, boxes and image sizes, every image decoded).

The format is measured, not assumed: each candidate's total size and decode time per image are
printed, and the first candidate whose size keeps the tracked files + the packed folder under
``--budget-mib`` (60 MiB, leaving room under the 64 MiB limit) is written.
"""

from __future__ import annotations

import argparse
import io
import shutil
import subprocess
import sys
import time
from pathlib import Path

from PIL import Image

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

MIB = 1024 * 1024
TXT_FILES = ("bounding_boxes.txt", "classes.txt", "image_class_labels.txt", "train_test_split.txt")
# Tried in this order; the first that fits is written.
CANDIDATES = (("jpeg", 75), ("webp", 80), ("jpeg", 55), ("webp", 65))  # JPEG decodes 3x faster
EXTENSIONS = {"jpeg": ".jpg", "webp": ".webp"}


def read_images_txt(root: Path) -> list[tuple[str, str]]:
    rows = []
    for line in (root / "images.txt").read_text().splitlines():
        if line.strip():
            image_id, relative = line.split(maxsplit=1)
            rows.append((image_id, relative.strip()))
    return rows


def encode(image: Image.Image, fmt: str, quality: int) -> bytes:
    buffer = io.BytesIO()
    if fmt == "jpeg":
        image.save(buffer, "JPEG", quality=quality, optimize=True)
    elif fmt == "webp":
        image.save(buffer, "WEBP", quality=quality, method=6)
    else:
        raise ValueError(f"unknown format {fmt!r}")
    return buffer.getvalue()


def tracked_bytes() -> int:
    """The size of the repository's tracked files (what always travels)."""
    names = subprocess.run(["git", "-C", str(REPO), "ls-files", "-z"], capture_output=True,
                           check=True).stdout.split(b"\0")
    return sum((REPO / name.decode()).stat().st_size for name in names if name and (REPO / name.decode()).is_file())


def measure(src: Path, rows, fmt: str, quality: int) -> tuple[int, float]:
    """Total encoded bytes of every image, and the mean decode time (ms) of a sample."""
    total, sample = 0, []
    for index, (_, relative) in enumerate(rows):
        with Image.open(src / "images" / relative) as image:
            data = encode(image.convert("RGB"), fmt, quality)
        total += len(data)
        if index % 20 == 0:
            sample.append(data)
    started = time.perf_counter()
    for _ in range(3):
        for data in sample:
            with Image.open(io.BytesIO(data)) as image:
                image.convert("RGB").load()
    return total, 1000 * (time.perf_counter() - started) / (3 * len(sample))


def write(src: Path, dst: Path, rows, fmt: str, quality: int) -> None:
    if dst.exists():
        shutil.rmtree(dst)
    (dst / "images").mkdir(parents=True)
    lines = []
    for image_id, relative in rows:
        new_relative = str(Path(relative).with_suffix(EXTENSIONS[fmt]))
        target = dst / "images" / new_relative
        target.parent.mkdir(parents=True, exist_ok=True)
        with Image.open(src / "images" / relative) as image:
            target.write_bytes(encode(image.convert("RGB"), fmt, quality))
        lines.append(f"{image_id} {new_relative}")
    (dst / "images.txt").write_text("\n".join(lines) + "\n")
    for name in TXT_FILES:
        shutil.copyfile(src / name, dst / name)
    (dst / "PACKED.txt").write_text(
        f"Re-encoded from {src} by bench/pack_cub50.py: {fmt} quality {quality}, each photo at its own size.\n"
        "CUB-200-2011 photos (Flickr, research use): never commit them. This folder is ignored by git.\n")


def check(src: Path, dst: Path) -> None:
    """The packed folder reads as the original does: same ids, labels, boxes, sizes."""
    from acol.data.images import load_rgb_image
    from acol.data.datasets import build_dataset
    for split in ("train", "test"):
        original, packed = build_dataset(src, split), build_dataset(dst, split)
        if len(original) != len(packed) or original.class_names != packed.class_names:
            raise SystemExit(f"packed {split} split differs: {len(packed)} images against {len(original)}")
        for a, b in zip(original.records, packed.records):
            if (a.image_id, a.label, a.boxes) != (b.image_id, b.label, b.boxes):
                raise SystemExit(f"packed record {b.image_id} differs from the original")
            if load_rgb_image(a.path).size != load_rgb_image(b.path).size:
                raise SystemExit(f"packed image {b.path} changed size")
        print(f"check: {split} split, {len(packed)} images: ids, labels, boxes and sizes as the original's")


def folder_bytes(folder: Path) -> int:
    return sum(path.stat().st_size for path in folder.rglob("*") if path.is_file())


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--src", type=Path, default=REPO.parent / "shared" / "data" / "cub50")
    parser.add_argument("--dst", type=Path, default=REPO / "gpu_data" / "cub50")
    parser.add_argument("--format", choices=["auto", "jpeg", "webp"], default="auto")
    parser.add_argument("--quality", type=int, default=None, help="with --format jpeg|webp (default 75 / 80)")
    parser.add_argument("--budget-mib", type=float, default=60.0,
                        help="tracked files + the packed folder must stay under this")
    parser.add_argument("--measure-only", action="store_true")
    args = parser.parse_args(argv)
    if not (args.src / "images.txt").is_file():
        parser.error(f"{args.src} is not a CUB folder (no images.txt)")
    rows = read_images_txt(args.src)
    tracked = tracked_bytes()
    print(f"source: {args.src}: {len(rows)} images, {folder_bytes(args.src / 'images') / MIB:.1f} MiB")
    print(f"tracked files: {tracked / MIB:.1f} MiB; budget for tracked + packed: {args.budget_mib:g} MiB")
    candidates = (CANDIDATES if args.format == "auto" else
                  ((args.format, args.quality or dict(CANDIDATES)[args.format]),))
    txt = sum((args.src / name).stat().st_size for name in (*TXT_FILES, "images.txt"))
    chosen = None
    for fmt, quality in candidates:
        total, decode_ms = measure(args.src, rows, fmt, quality)
        packed = total + txt
        fits = (tracked + packed) / MIB < args.budget_mib
        print(f"{fmt} q{quality}: {packed / MIB:.1f} MiB ({packed / 1e6:.1f} MB), decode {decode_ms:.2f} ms an image; "
              f"tracked + packed {(tracked + packed) / MIB:.1f} MiB: {'fits' if fits else 'too big'}")
        if fits and chosen is None:
            chosen = (fmt, quality)
    if chosen is None:
        print("no candidate fits the budget", file=sys.stderr)
        return 1
    if args.measure_only:
        return 0
    print(f"writing {args.dst} as {chosen[0]} q{chosen[1]}")
    write(args.src, args.dst, rows, *chosen)
    print(f"wrote {args.dst}: {folder_bytes(args.dst) / MIB:.1f} MiB")
    check(args.src, args.dst)
    return 0


if __name__ == "__main__":
    sys.exit(main())
