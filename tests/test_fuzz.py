"""Fuzzing the image path: whatever bytes arrive, the app and ``acol explain`` end in a correct
result or a clear error naming the file; never a crash or a hang.

The cases: random bytes; PNG/JPEG/GIF/WebP/TIFF/BMP files of every Pillow mode and of extreme
sizes and aspect ratios, whole, truncated or with bytes overwritten; headers that declare
gigantic images. ``pytest-timeout`` turns a hang into a failure.
"""

import contextlib
import io
import tempfile
from datetime import timedelta
from pathlib import Path

import numpy as np
import pytest
from gradio_client import Client, handle_file
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from conftest import png_header_only

from acol.data.images import ImageLoadError, load_rgb_image
from acol.evaluation.explain import Explainer
from acol.viewer.explain_command import main as explain_cli

SUFFIXES = {"PNG": ".png", "JPEG": ".jpg", "GIF": ".gif", "WEBP": ".webp", "TIFF": ".tif", "BMP": ".bmp"}
MODES = ["1", "L", "P", "RGB", "RGBA", "LA", "CMYK", "YCbCr", "I;16", "I", "F"]
SIDES = st.one_of(st.integers(1, 40), st.sampled_from([1, 2, 1200]))
FUZZ = settings(deadline=timedelta(seconds=5), suppress_health_check=list(HealthCheck))


def encode(image_format: str, mode: str, width: int, height: int, seed: int) -> bytes:
    """A real image file; modes a format cannot store are saved as that format's RGB."""
    noise = np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)
    image = Image.fromarray(noise)
    try:
        image = image.convert(mode)
    except ValueError:  # Pillow cannot convert RGB to, say, I;16 directly
        image = image.convert("L").convert(mode)
    if mode == "I" and image_format == "PNG":  # the same 16-bit file Pillow wrote from "I" (deprecated in 12)
        image = image.convert("I;16")
    buffer = io.BytesIO()
    try:
        image.save(buffer, image_format)
    except (OSError, ValueError, KeyError):
        buffer = io.BytesIO()
        image.convert("RGB").save(buffer, image_format)
    return buffer.getvalue()


@st.composite
def image_files(draw) -> tuple[bytes, str]:
    """(file bytes, file suffix)."""
    kind = draw(st.sampled_from(["random bytes", "whole", "truncated", "overwritten", "gigantic"]))
    image_format = draw(st.sampled_from(sorted(SUFFIXES)))
    if kind == "random bytes":
        return draw(st.binary(max_size=4096)), SUFFIXES[image_format]
    if kind == "gigantic":
        return png_header_only(draw(st.integers(6000, 2**31 - 1)), draw(st.integers(6000, 2**31 - 1))), ".png"
    data = encode(image_format, draw(st.sampled_from(MODES)), draw(SIDES), draw(SIDES), draw(st.integers(0, 99)))
    if kind == "truncated":
        data = data[: draw(st.integers(0, len(data) - 1))]
    elif kind == "overwritten":
        data = bytearray(data)
        for _ in range(draw(st.integers(1, 8))):
            data[draw(st.integers(0, len(data) - 1))] = draw(st.integers(0, 255))
        data = bytes(data)
    return data, SUFFIXES[image_format]


@contextlib.contextmanager
def written(case: tuple[bytes, str]):
    """The case as a file in a fresh folder (removed afterwards); yields the file's path."""
    data, suffix = case
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / f"fuzzed{suffix}"
        path.write_bytes(data)
        yield path


@pytest.fixture(scope="module")
def explainer(tiny_checkpoints):
    return Explainer.from_checkpoint(tiny_checkpoints / "tiny_acol.safetensors")


@pytest.mark.timeout(300)
@settings(FUZZ, max_examples=200)
@given(case=image_files())
def test_loading_and_explaining_any_file_gives_a_result_or_an_image_load_error(explainer, case):
    with written(case) as path:
        try:
            image = load_rgb_image(path)
        except ImageLoadError as error:
            assert str(path) in str(error)
            return
        assert image.mode == "RGB" and min(image.size) >= 1
        explanation = explainer.explain(image)
        assert explanation.display.ndim == 3 and explanation.display.shape[2] == 3
        fused = explanation.output.fused_map
        assert fused.isfinite().all() and 0 <= fused.min() and fused.max() <= 1


@pytest.mark.timeout(300)
@settings(FUZZ, max_examples=40)
@given(case=image_files())
def test_the_explain_cli_writes_a_figure_or_prints_one_error_line(tiny_checkpoints, case):
    with written(case) as path:
        figure = path.with_name("figure.png")
        stdout, stderr = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
            code = explain_cli([str(path), "-o", str(figure),
                                "--checkpoint", str(tiny_checkpoints / "tiny_acol.safetensors")])
        if code == 0:
            assert figure.is_file() and "wrote" in stdout.getvalue()
        else:
            assert code == 1 and not figure.exists()
            message = stderr.getvalue()
            assert message.startswith("error: ") and path.name in message and message.count("\n") == 1


@pytest.fixture(scope="module")
def client(viewer_url):
    return Client(viewer_url, verbose=False)


@pytest.mark.timeout(300)
@settings(FUZZ, max_examples=30)
@given(case=image_files())
def test_the_page_shows_the_maps_or_says_what_is_wrong_with_the_file(client, case):
    with written(case) as path:
        *panels, classes, _, _, status, _, _ = client.predict(handle_file(str(path)), "tiny_acol", 0.6, 0.2,
                                                        api_name="/explain")
    if status.startswith("**Cannot explain this:**"):
        assert path.name in status and "/tmp" not in status  # names the file, hides server paths
        assert panels == [None] * 4
    else:
        assert "δ = 0.60" in status and all(Path(panel).is_file() for panel in panels)
        assert len(classes["choices"]) == 3
