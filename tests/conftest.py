import os
import struct
import zlib
from pathlib import Path

import pytest
import torch

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")

REPO = Path(__file__).resolve().parents[1]
CUB50 = REPO.parent / "shared" / "data" / "cub50"
ARTIFACTS = REPO / "test-artifacts"


@pytest.fixture(autouse=True)
def _seeded():
    torch.manual_seed(0)


@pytest.fixture
def cub50():
    if not (CUB50 / "images.txt").is_file():
        pytest.skip(f"real CUB-50 data not found at {CUB50} (it lives in ../shared/data beside the repo)")
    return CUB50


def png_header_only(width, height) -> bytes:
    """A tiny PNG file that claims to be width x height pixels (a decompression bomb)."""
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    pixels = zlib.compress(b"\0" * 64)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", pixels) + chunk(b"IEND", b"")


# ---------------------------------------------------------------------------------------------
# The viewer: tiny random-init checkpoints and one server shared by the app and browser tests


@pytest.fixture(scope="session")
def tiny_checkpoints(tmp_path_factory):
    """A folder with a random-init tiny ACoL checkpoint and its one-branch CAM baseline
    (3 classes, 64-pixel input, so 8x8 feature maps)."""
    from acol import ACoL, create_backbone
    from acol.checkpoint import save_checkpoint
    folder = tmp_path_factory.mktemp("checkpoints")
    torch.manual_seed(0)
    for name, branches in (("tiny_acol", 2), ("tiny_cam", 1)):
        model = ACoL(create_backbone("tiny"), 3, num_branches=branches, head_width=16)
        save_checkpoint(folder / f"{name}.safetensors", model.eval(), backbone="tiny",
                        class_names=["red crest", "blue crest", "green crest"], input_size=64)
    return folder


@pytest.fixture(scope="session")
def viewer_url(tiny_checkpoints):
    """The viewer (app.py) over the tiny checkpoints and assets/examples, served on a free port."""
    import socket

    import app
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    demo = app.build_demo(tiny_checkpoints, [REPO / "assets" / "examples"])
    app.launch(demo, server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True)
    yield f"http://127.0.0.1:{port}/"
    demo.close()


def pytest_configure(config):
    # Gradio's queue uses pandas options that pandas 3 deprecates; not ours to fix.
    config.addinivalue_line("filterwarnings", "ignore::Warning:gradio.queueing")
