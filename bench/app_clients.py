"""The viewer under load and its users, for ``bench/app_load.py``: ``python app.py`` in a
subprocess with its memory read from /proc, and one gradio_client user per browser tab (or
script), each with its own session and photo."""

from __future__ import annotations

import json
import os
import socket
import ssl
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
CUB50 = REPO.parent / "shared" / "data" / "cub50"
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")

from gradio_client import Client, handle_file  # noqa: E402


# gradio_client opens two fresh httpx clients per request, and httpx builds a TLS context for
# each (loading the CA bundle: ~25 ms of CPU), even for this plain-http loopback URL. On two
# cores shared with the server, that client-side work alone capped the load near 19 moves/s.
# A browser sets TLS up once, so every user here shares one context (never used over http).
SHARED_TLS = ssl.create_default_context()


BOX_THRESHOLD = 0.2


def example_file(group: int, index: int) -> Path:
    """A bundled example's file, as the page lists it (assets/examples, in labels.csv's order)."""
    folder = REPO / "assets" / ("examples" if group == 0 else "everyday")
    return folder / (folder / "labels.csv").read_text().splitlines()[1 + index].split(",")[0]


def photos(count: int, folder: Path) -> list[Path]:
    """``count`` different photos: CUB-50 test images of distinct classes, else smooth noise."""
    if (CUB50 / "images.txt").is_file():
        split = dict(line.split() for line in (CUB50 / "train_test_split.txt").read_text().splitlines())
        chosen, classes = [], set()
        for line in (CUB50 / "images.txt").read_text().splitlines():
            image_id, relative = line.split()
            if split[image_id] == "0" and relative.split("/")[0] not in classes:
                classes.add(relative.split("/")[0])
                chosen.append(CUB50 / "images" / relative)
        if len(chosen) >= count:
            return chosen[:count]
    paths = []
    for seed in range(count):
        coarse = np.random.default_rng(seed).integers(0, 256, (12, 16, 3), dtype=np.uint8)
        paths.append(folder / f"photo_{seed}.png")
        Image.fromarray(coarse).resize((500, 375), Image.Resampling.BICUBIC).save(paths[-1])
    return paths


class Server:
    """``python app.py`` in a subprocess on a free loopback port, with its memory sampled."""

    def __init__(self, checkpoints: Path):
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        env = {**os.environ, "GRADIO_SERVER_NAME": "127.0.0.1", "GRADIO_SERVER_PORT": str(self.port),
               "GRADIO_ANALYTICS_ENABLED": "False"}
        self.log = tempfile.TemporaryFile()  # a pipe nobody reads would stall the server when full
        self.process = subprocess.Popen([sys.executable, str(REPO / "app.py"), "--checkpoints", str(checkpoints)],
                                        cwd=REPO, env=env, stdout=self.log, stderr=subprocess.STDOUT)
        self.url = f"http://127.0.0.1:{self.port}/"
        deadline = time.time() + 120
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                break
            except OSError:
                if self.process.poll() is not None or time.time() > deadline:
                    self.log.seek(0)
                    raise RuntimeError(f"app.py did not start: {self.log.read().decode()[-2000:]}")
                time.sleep(0.5)

    def memory_mb(self, field: str = "VmRSS") -> float:
        """The server's resident memory now (VmRSS, or its RssAnon part) or its peak since the last
        reset (VmHWM)."""
        for line in open(f"/proc/{self.process.pid}/status"):
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
        raise RuntimeError(f"no {field} for process {self.process.pid}")

    def cpu_seconds(self) -> float:
        """The CPU time the server has used so far (user + system, every thread)."""
        fields = open(f"/proc/{self.process.pid}/stat").read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime, stime

    def reset_peak(self) -> None:
        with open(f"/proc/{self.process.pid}/clear_refs", "w") as refs:
            refs.write("5")

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=30)


class User:
    """One browser tab (or, ``scripts=True``, one gradio_client script): its own session, its own photo."""

    example_settings = (0.5, 0.2)  # the sliders of a fresh page: the first model's δ and box threshold (main)

    def __init__(self, url: str, photo: Path, model: str, compare_open: bool = False, scripts: bool = False):
        # Replies name their pictures without fetching them: a browser fetches them in its own
        # process, while gradio_client would fetch them here, on the server's two cores.
        self.client = Client(url, verbose=False, download_files=False, ssl_verify=SHARED_TLS)
        self.photo, self.model, self.scripts = photo, model, scripts
        self.baseline, self.compare_open, self.opened = None, compare_open, False
        self.requests = 0

    def upload(self) -> str:
        """The upload's status: the page's caption and B's verdicts (a script's status line). The
        page's request is one event (/page_explain: routed to the everyday model unless the user
        picked one, explained, payload and open tab's picture); a script's is /explain and /sweep."""
        if self.scripts:
            *_, baselines, _, status, _, _ = self.client.predict(handle_file(str(self.photo)), self.model, 0.6,
                                                              BOX_THRESHOLD, api_name="/explain")
            self.client.predict(api_name="/sweep")  # the page's follow-up
            self.requests += 2
        else:
            status, baselines = page_reply(self.client.predict(handle_file(str(self.photo)), self.model, 0.6,
                                                               BOX_THRESHOLD, api_name="/page_explain"), 5)
            self.requests += 1
        self.baseline = baselines["value"]
        if self.compare_open and not self.opened:  # the user clicks the tab once; it stays open
            self.client.predict(self.baseline, api_name="/compare")
            self.opened, self.requests = True, self.requests + 1
        return status

    def click_example(self, group: int = 0, index: int = 0) -> str:
        """A click on a bundled example, as the page sends it: one event (/page_example_N) whose
        answer the server computed at start-up; a script uploads the example's file instead."""
        self.requests += 1
        if self.scripts:
            return self.client.predict(handle_file(str(example_file(group, index))), self.model, 0.6, BOX_THRESHOLD,
                                       api_name="/explain")[-3]
        return page_reply(self.client.predict(index, self.model, *self.example_settings,
                                              api_name=f"/page_example_{group}"), 1)[0]

    def move_slider(self, delta: float) -> tuple[str, float | None]:
        """The move's status line and its latency (until the new panels are back); on the page,
        the browser draws it: no request, nothing to time."""
        if not self.scripts:
            return f"δ={delta} drawn in the browser", None
        started = time.perf_counter()
        *_, status, _, _ = self.client.predict(delta, BOX_THRESHOLD, self.baseline, api_name="/set_erase_threshold")
        self.requests += 1
        return status, time.perf_counter() - started


def page_reply(outputs, payload_at: int) -> tuple[str, dict]:
    """(status, baseline choices) of a page event's outputs (what gradio_client returns of
    acol.viewer.page's View: ..., the payload at ``payload_at``, the classes and the baselines after it):
    the payload's caption and every δ step's verdict, which tell one image and model from another."""
    payload, baselines = json.loads(outputs[payload_at]), outputs[payload_at + 2]  # the payload comes as JSON text
    baselines = baselines if isinstance(baselines, dict) and "value" in baselines else {"value": None}
    if "states" not in payload:
        return payload["message"], baselines
    return " ".join([payload["caption"], *(step["verdict"] for step in payload["steps"])]), baselines
