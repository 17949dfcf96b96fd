"""Every device present: the model, erasing, re-explaining, the page's payload, evaluation and a
short train + resume run on each, and CUDA agrees with the CPU. CUDA cases skip without a GPU
(bench/gpu_check.sh runs this file on the GPU machine). No Gradio here: the GPU machine has none."""

import json

import numpy as np
import pytest
import torch
from PIL import Image

from acol import ACoL, create_backbone
from acol.viewer.answers import ModelRunner
from acol.core.device import available_devices, resolve_device
from acol.evaluation.scoring import compute_metrics, run_inference
from acol.evaluation.explain import Explainer
from acol.viewer.payload import page_payload
from acol.training.train import main as train_main
from conftest import REPO

CUDA = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device here")
DEVICES = ["cpu", pytest.param("cuda", marks=CUDA)]
EXAMPLE = REPO / "assets" / "examples" / "synthetic_2_0005.png"


def tiny_explainer(device, head="linear") -> Explainer:
    torch.manual_seed(0)
    model = ACoL(create_backbone("tiny"), 4, head=head, head_width=16).eval()
    config = {"class_names": ["red", "blue", "yellow", "green"], "input_size": 64, "mean": [0.5] * 3, "std": [0.25] * 3}
    return Explainer(model, config, f"tiny_{head}", device)


def test_auto_is_cuda_when_there_is_one_and_a_device_that_is_not_here_is_refused():
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    assert available_devices()[0] == "cpu"
    for wrong in ("tpu", "cuda:99", "gpu"):
        with pytest.raises(ValueError, match="device"):
            resolve_device(wrong)
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="no CUDA device"):
            resolve_device("cuda")


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("head", ["linear", "paper"])
def test_the_model_erasing_and_reexplaining_run_on_the_device_and_agree_with_the_cpu(device, head):
    image = Image.open(EXAMPLE).convert("RGB")
    here, cpu = tiny_explainer(device, head), tiny_explainer("cpu", head)
    explained, reference = here.explain(image, erase_threshold=0.5), cpu.explain(image, erase_threshold=0.5)
    output = explained.output
    assert output.features.device.type == device and output.erase_masks[1].device.type == device
    torch.testing.assert_close(output.logits[0].cpu(), reference.output.logits[0], atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(output.fused_map.cpu(), reference.output.fused_map, atol=1e-4, rtol=1e-4)
    assert (output.erase_masks[1].cpu() != reference.output.erase_masks[1]).sum() <= 1, "a cell at δ may tip"
    again = here.reexplain(explained, target_class=2, erase_threshold=0.3)
    assert again.output.features.data_ptr() == output.features.data_ptr(), "the backbone's features are reused"
    torch.testing.assert_close(again.output.logits[1].cpu(), cpu.reexplain(reference, 2, 0.3).output.logits[1],
                               atol=1e-4, rtol=1e-4)
    moved = explained.to("cpu")
    assert moved.output.features.device.type == "cpu" and moved.probabilities.device.type == "cpu"


@pytest.mark.parametrize("device", DEVICES)
def test_the_pages_payload_is_made_on_the_device_and_agrees_with_the_cpus(device):
    image = Image.open(EXAMPLE).convert("RGB")
    here, cpu = tiny_explainer(device), tiny_explainer("cpu")
    payload = page_payload(here.explain(image, [[47, 77, 107, 111]]), here.model, 0.5, 0.3)
    reference = page_payload(cpu.explain(image, [[47, 77, 107, 111]]), cpu.model, 0.5, 0.3)
    json.dumps(payload)  # plain data: nothing of the device's left in it
    assert [step["verdict"] for step in payload["steps"]] == [step["verdict"] for step in reference["steps"]]
    for state, expected in zip(payload["states"], reference["states"]):
        assert np.abs(np.array(state["boxes"]) - np.array(expected["boxes"])).max() <= 2, "within a pixel or two"
        assert np.allclose(state["ious"], expected["ious"], atol=0.03)
    runner = ModelRunner({here.name: here})
    answer = runner.run("explain", here.name, image, delta=0.5, payload=True)
    assert answer.explanation.output.features.device.type == "cpu", "an answer leaves the device as CPU data"


@pytest.mark.parametrize("device", DEVICES)
def test_evaluation_on_the_device_agrees_with_the_cpu(device):
    from acol.data.transforms import eval_transform, make_loader
    from acol.data.synthetic import SyntheticParts
    dataset = SyntheticParts(12, 4, 73, seed=5, transform=eval_transform(64, [0.5] * 3, [0.25] * 3))
    model = tiny_explainer("cpu").model
    loader = make_loader(dataset, 4, 0)
    reference = compute_metrics(run_inference(model, loader, "cpu", progress=False), progress=False)
    here = compute_metrics(run_inference(model.to(device), loader, device, progress=False), progress=False)
    for name, numbers in reference["maps"].items():
        assert abs(here["maps"][name]["max_box_acc_v2"] - numbers["max_box_acc_v2"]) <= 10 / 3, name
        assert here["maps"][name]["top1_cls"] == pytest.approx(numbers["top1_cls"], abs=100 / 12 + 1e-6), name


@pytest.mark.parametrize("device", DEVICES)
def test_a_short_training_run_and_its_resume_on_the_device(device, tmp_path):
    run = tmp_path / "run"
    tiny = ["--data", "synthetic", "--backbone", "tiny", "--weights", "none", "--input-size", "32",
            "--synthetic-images", "32", "--batch-size", "8", "--head-width", "16", "--workers", "0",
            "--max-steps-per-epoch", "2", "--device", device, "--out", str(run)]
    assert train_main(tiny + ["--epochs", "1"]) == 0
    assert train_main(["--resume", str(run), "--epochs", "2"]) == 0
    rows = (run / "log.csv").read_text().splitlines()
    assert len(rows) == 3 and json.loads((run / "config.json").read_text())["device"] == device
    from acol.core.checkpoint import load_checkpoint
    model, _ = load_checkpoint(run / "model.safetensors")
    assert all(torch.isfinite(p).all() for p in model.parameters())
