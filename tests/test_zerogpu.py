"""On a ZeroGPU Space: a request ZeroGPU refuses a GPU is answered on the CPU, never an error.

The refusals are the ``spaces`` package's own: its client asks a loopback stand-in for ZeroGPU's
device API (``SPACES_ZERO_DEVICE_API_URL``), which refuses every call as ZeroGPU does for a spent
quota. The path where ZeroGPU lends a GPU (a forked worker that needs one) cannot run here: what
it needs, every argument and answer of the decorated function crossing by pickle, is checked.
"""

import json
import os
import pickle
import socket
import subprocess
import sys
import threading
import time
from dataclasses import fields, is_dataclass
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.request import urlopen

import numpy as np
import pytest
import torch
from gradio_client import Client, handle_file
from PIL import Image

from acol.viewer.answers import Answer, ModelRunner
from acol.viewer.page import Page
from acol.viewer.view import Session
from acol.viewer.scripts import Scripts
from acol.viewer.shelf import CheckpointShelf, ExampleImages
from acol.viewer.zerogpu import CPU_NOTE, GpuOrCpu, noted_on_cpu, refused_by_zerogpu, zerogpu_mode
from conftest import REPO

ACOL, CAM, TEACHING = "tiny_acol", "tiny_cam", "tiny_synthetic_acol"


class DeviceAPI(BaseHTTPRequestHandler):
    """ZeroGPU's device API (spaces/zero/api.py) as it answers a visitor whose quota is spent:
    start-up reports are taken, every /schedule is refused (429, quota-exceeded)."""

    def do_POST(self):
        self.server.asked.append(self.path.split("?")[0])
        if self.path.startswith("/schedule"):
            self.answer(429, {"left": 3, "wait": 600}, {"X-Approve-Result": "quota-exceeded"})
        else:  # /startup-report, /allow, /release
            self.answer(200, {})

    def do_GET(self):
        self.server.asked.append(self.path)
        self.answer(200, 0)  # /queue-size

    def answer(self, status, body, headers=()):
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for name, value in dict(headers).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


@pytest.fixture
def device_api():
    """A loopback stand-in for ZeroGPU's device API that refuses every GPU; ``.asked``: the paths
    the client asked, in order."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), DeviceAPI)
    server.asked = []
    server.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def a_photo(path: Path, seed: int = 3) -> Path:
    Image.fromarray(np.random.default_rng(seed).integers(0, 256, (60, 80, 3), dtype=np.uint8)).save(path)
    return path


# ---------------------------------------------------------------------------------------------
# The refusal, as the spaces package raises it


def test_the_spaces_clients_refusal_is_a_refusal_and_a_tasks_own_error_is_not(device_api, monkeypatch):
    from spaces.config import Config
    from spaces.zero import client
    monkeypatch.setattr(Config, "zero_device_api_url", device_api.url)
    with pytest.raises(Exception) as refused:
        client.schedule(task_id=1, request=None, duration=timedelta(seconds=5))
    assert "GPU limit" in str(refused.value) and refused_by_zerogpu(refused.value)
    assert device_api.asked == ["/schedule"]

    import gradio as gr

    def task_that_fails(*args, **kwargs):
        raise gr.Error("the project's own message")
    with pytest.raises(gr.Error, match="own message"):  # not ZeroGPU's: stays an error
        GpuOrCpu(task_that_fails, lambda *args, **kwargs: pytest.fail("ran on the CPU"))("explain", ACOL)
    with pytest.raises(ValueError):
        GpuOrCpu(lambda *args, **kwargs: int("x"), lambda *args, **kwargs: pytest.fail("ran on the CPU"))("sweep", ACOL)


def test_a_refused_request_runs_on_the_cpu_and_its_answer_says_so(device_api, monkeypatch):
    from spaces.config import Config
    from spaces.zero import client
    monkeypatch.setattr(Config, "zero_device_api_url", device_api.url)
    answered = Answer(explanation=None, payload={"note": "**Unlikely:** ...", "states": []}, note="**Unlikely:** ...")

    def on_gpu(task, model_name, *args, **kwargs):
        client.schedule(task_id=1, request=None, duration=timedelta(seconds=5))
        pytest.fail("ZeroGPU granted a GPU")
    run = GpuOrCpu(on_gpu, lambda task, model_name, *args, **kwargs: answered)
    answer = run("explain", ACOL, "an image", payload=True)
    assert answer.note == answer.payload["note"] == f"**Unlikely:** ... {CPU_NOTE}" and run.refusals == 1
    assert answered.note == "**Unlikely:** ...", "the CPU's own answer is left as it is"
    assert noted_on_cpu([1, 2]) == [1, 2], "a sweep's explanations carry no note"


def test_in_cpu_mode_no_request_asks_zerogpu(monkeypatch):
    run = GpuOrCpu(lambda *args, **kwargs: pytest.fail("asked for a GPU"), lambda *args, **kwargs: "on the CPU", "cpu")
    assert run("explain", ACOL) == "on the CPU" and run.refusals == 0
    assert zerogpu_mode({}) == "gpu" and zerogpu_mode({"ACOL_ZEROGPU": "CPU"}) == "cpu"
    with pytest.raises(ValueError, match="ACOL_ZEROGPU"):
        zerogpu_mode({"ACOL_ZEROGPU": "tpu"})


# ---------------------------------------------------------------------------------------------
# The whole page, in ZeroGPU mode, against the stand-in


@pytest.mark.parametrize("mode", ["gpu", "cpu"])
def test_on_zerogpu_with_the_quota_spent_an_upload_is_answered_on_the_cpu(device_api, tiny_checkpoints, tmp_path,
                                                                          mode):
    """``python app.py`` with the spaces package in ZeroGPU mode. ``ACOL_ZEROGPU=gpu``: it starts
    (its models moved to the emulated GPU and packed at launch), ZeroGPU refuses every GPU, and
    an upload, a script's request and a class change are still answered, on the CPU, saying so.
    ``ACOL_ZEROGPU=cpu``: nothing asks ZeroGPU for a GPU, nothing is packed, nothing is noted."""
    port = free_port()
    env = {**os.environ, "SPACES_ZERO_GPU": "true", "SPACES_ZERO_DEVICE_API_URL": device_api.url,
           "ZEROGPU_OFFLOAD_DIR": str(tmp_path / "offload"), "HOME": str(tmp_path),
           "GRADIO_SERVER_PORT": str(port), "ACOL_ZEROGPU": mode}
    on_the_cpu_for_want_of_a_gpu = mode == "gpu"
    server = subprocess.Popen([sys.executable, str(REPO / "app.py"), "--checkpoints", str(tiny_checkpoints)],
                              cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    url = f"http://127.0.0.1:{port}/"
    try:
        deadline = time.monotonic() + 240
        while True:
            assert server.poll() is None, server.stdout.read()
            try:
                urlopen(url, timeout=5).read()
                break
            except OSError:
                assert time.monotonic() < deadline, "the page did not start"
                time.sleep(1)
        assert "/startup-report" in device_api.asked, "the page started as a ZeroGPU Space"
        packed = (tmp_path / "offload").is_dir() and any((tmp_path / "offload").iterdir())
        assert packed == on_the_cpu_for_want_of_a_gpu, "its models were packed for a GPU worker, unless kept on the CPU"

        client = Client(url, verbose=False)
        outputs = client.predict(handle_file(str(a_photo(tmp_path / "photo.png"))), ACOL, 0.5, 0.2,
                                 api_name="/page_explain")
        payload = next(json.loads(output) for output in outputs if isinstance(output, str) and '"states":' in output)
        assert payload["model"] == ACOL and len(payload["states"]) >= 1
        assert (CPU_NOTE in payload["note"]) == on_the_cpu_for_want_of_a_gpu, payload["note"]
        assert device_api.asked.count("/schedule") == on_the_cpu_for_want_of_a_gpu, "ZeroGPU was asked, and refused"

        *panels, classes, _, _, status, _, _ = client.predict(handle_file(str(a_photo(tmp_path / "other.png", 4))),
                                                              ACOL, 0.3, 0.2, api_name="/explain")
        assert all(Path(panel).is_file() for panel in panels)
        assert (CPU_NOTE in status) == on_the_cpu_for_want_of_a_gpu
        *_, status, _, verdict = client.predict(classes["choices"][1][1], 0.2, CAM, api_name="/set_class")
        assert (CPU_NOTE in status) == on_the_cpu_for_want_of_a_gpu and "δ = 0.30" in verdict
    finally:
        server.terminate()
        server.wait(timeout=30)


# ---------------------------------------------------------------------------------------------
# A GPU ZeroGPU lends: the call crosses to a forked worker by pickle, both ways


def same(sent, back, where="") -> None:
    """Whether ``back`` is ``sent`` after a pickle round trip: equal tensors (values, dtype,
    device), arrays, pictures, dataclasses field by field, and everything else by ==."""
    assert type(back) is type(sent), where
    if torch.is_tensor(sent):
        assert sent.dtype == back.dtype and sent.device == back.device and torch.equal(sent, back), where
    elif isinstance(sent, np.ndarray):
        assert sent.dtype == back.dtype and np.array_equal(sent, back), where
    elif isinstance(sent, Image.Image):
        assert sent.mode == back.mode and sent.size == back.size and sent.tobytes() == back.tobytes(), where
    elif is_dataclass(sent):
        for field in fields(sent):
            same(getattr(sent, field.name), getattr(back, field.name), f"{where}.{field.name}")
    elif isinstance(sent, (list, tuple)):
        assert len(sent) == len(back), where
        for index, (one, other) in enumerate(zip(sent, back)):
            same(one, other, f"{where}[{index}]")
    elif isinstance(sent, dict):
        assert sent.keys() == back.keys(), where
        for key in sent:
            same(sent[key], back[key], f"{where}[{key!r}]")
    else:
        assert sent == back, where


def test_every_argument_and_answer_of_the_decorated_function_survives_a_pickle_round_trip(tiny_checkpoints,
                                                                                       tiny_cub_root, tmp_path):
    """The page's every kind of request through ``ModelRunner.run`` as ZeroGPU runs it on a lent
    GPU: the arguments pickled to the worker, the answer pickled back, each equal after."""
    page = Page(CheckpointShelf(tiny_checkpoints), ExampleImages([REPO / "assets" / "examples", tiny_cub_root]))
    tasks = []

    def in_a_worker(task, model_name, *args, **kwargs):
        sent = (task, model_name, args, kwargs)
        received = pickle.loads(pickle.dumps(sent))
        same(sent, received, task)
        answer = page.runner.run_here(*received[:2], *received[2], **received[3])
        returned = pickle.loads(pickle.dumps(answer))
        same(answer, returned, f"{task}'s answer")
        tasks.append(task)
        return returned
    page.runner.run = in_a_worker

    view = page.open_upload(Session(model_picked=True), str(a_photo(tmp_path / "photo.png")), ACOL, 0.5, 0.2)
    view = page.choose_class(view.session, view.classes.choices[1][1], 0.35, 0.2)
    view = page.toggle_cell(view.session, 2, 3, 0.35, 0.2)
    view = page.open_tab(view.session, "sweep", None, 0.35, True)
    view = page.open_tab(view.session, "compare", CAM, 0.4, False)
    scripts = Scripts(page)
    reply = scripts.set_erase_threshold(view.session, 0.25, 0.2, CAM)
    scripts.toggle_cell(reply.session, 1, 1, 0.2, CAM)
    assert set(tasks) == set(ModelRunner.TASKS), tasks
