import os
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
