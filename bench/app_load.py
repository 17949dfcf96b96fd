"""Load on the viewer: N concurrent gradio_client users against a real ``python app.py``.

    python bench/app_load.py [--users 1 4 16] [--moves 10] [--soak 300] [--compare-open] [--checkpoints DIR]
                             [--scripts] [--example-at DELTA BOX]

A class on one page: each user opens their own session; all N click the same bundled example at
the same moment (the teaching model's first example, with the sliders where the page opens them, or
at ``--example-at``: moved, as a teacher asks), then all upload a different photo at the
same moment (CUB-50 test photos of distinct classes when ../shared/data/cub50 is there, else
generated ones; the page sends an upload to the everyday model), then move the δ slider
``--moves`` times. The requests are the page's: a click is one /page_example_0 event, an upload
one /page_explain event (each answers with the payload the browser draws every slider step
from); a slider move sends nothing (the browser draws it), so it is not timed. With
``--scripts`` users are gradio_client scripts instead: a click uploads the example's file to
/explain, an upload is /explain (four pictures) and /sweep, a slider move one
/set_erase_threshold, timed. With ``--compare-open`` every user has also opened the "Compare with
CAM" tab (/compare), so every upload redraws the comparison too.

Printed per N and per kind of request: the median, p95 and slowest latency (from the moment all
users fired to each reply), errors, isolation errors (a reply that differs from what that user's
requests gave when alone on the server) and the server's peak memory. ``--soak`` then keeps all
N users busy for that many seconds and prints the server's memory over time with its growth
per request. Loopback only; bounded in users, requests and time. Linux (reads /proc).
"""

from __future__ import annotations

import argparse
import os
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
CUB50 = REPO.parent / "shared" / "data" / "cub50"
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")

from gradio_client import Client, handle_file  # noqa: E402

sys.path.insert(0, str(REPO))  # run as a script from anywhere
from acol.viewer.shelf import CheckpointShelf, ExampleImages  # noqa: E402

DELTAS = [0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9]
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
    payload, baselines = outputs[payload_at], outputs[payload_at + 2]
    baselines = baselines if isinstance(baselines, dict) and "value" in baselines else {"value": None}
    if "states" not in payload:
        return payload["message"], baselines
    return " ".join([payload["caption"], *(step["verdict"] for step in payload["steps"])]), baselines


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else float("nan")


def session_script(user: User, moves: int) -> list[tuple[str, str]]:
    """What the user does, as (request, status) pairs: an example click, an upload and then the
    slider moves."""
    return [("example", user.click_example()), ("upload", user.upload())] + [
        (f"δ={delta}", user.move_slider(delta)[0]) for delta in (DELTAS * moves)[:moves]]


def run_users(server: Server, photos_: list[Path], model: str, moves: int, expected: dict,
              compare_open: bool, scripts: bool) -> dict:
    """N users at once: all click the same bundled example at the same moment, then all upload
    their own photo at the same moment and move the slider; each reply is compared with what that
    user's requests gave when alone on the server."""
    users = [User(server.url, photo, model, compare_open, scripts) for photo in photos_]
    timings = {"example": [], "upload": [], "slider": []}
    errors, isolation_errors = [], 0
    lock = threading.Lock()
    together = threading.Barrier(len(users))

    def timed(what: str, request):
        together.wait()  # everyone at the same moment, as a class told "now click"
        started = time.perf_counter()
        reply = request()
        with lock:
            timings[what].append(time.perf_counter() - started)
        return reply

    def act(user: User):
        nonlocal isolation_errors
        try:
            replies = [("example", timed("example", user.click_example)), ("upload", timed("upload", user.upload))]
            for delta in (DELTAS * moves)[:moves]:
                status, latency = user.move_slider(delta)
                replies.append((f"δ={delta}", status))
                if latency is not None:
                    with lock:
                        timings["slider"].append(latency)
            with lock:
                isolation_errors += sum(reply != want for reply, want in zip(replies, expected[user.photo]))
        except Exception as error:  # noqa: BLE001  every failure is counted and shown
            together.abort()
            with lock:
                errors.append(f"{type(error).__name__}: {error}")

    server.reset_peak()
    started = time.perf_counter()
    with ThreadPoolExecutor(len(users)) as pool:
        list(pool.map(act, users))
    wall = time.perf_counter() - started
    return {"requests": sum(user.requests for user in users), "wall": wall, "timings": timings, "errors": errors,
            "isolation_errors": isolation_errors, "peak_mb": server.memory_mb("VmHWM")}


def soak(server: Server, photos_: list[Path], model: str, seconds: float, compare_open: bool,
         scripts: bool) -> None:
    """All users busy for ``seconds``: uploads and slider moves (on the page, a move costs the
    server nothing, so each user uploads again a second after the last reply); memory sampled."""
    users = [User(server.url, photo, model, compare_open, scripts) for photo in photos_]
    for user in users:
        user.upload()
    stop_at = time.time() + seconds

    def count() -> int:
        return sum(user.requests for user in users)
    start = count()

    def sample() -> tuple[int, float, float]:  # (requests so far, RSS, its anonymous part)
        return count() - start, server.memory_mb(), server.memory_mb("RssAnon")
    samples = [sample()]

    def busy(user: User):
        step = 0
        while time.time() < stop_at:
            if step % 10 == 9:
                user.upload()
            elif user.move_slider(DELTAS[step % len(DELTAS)])[1] is None:
                time.sleep(0.1)  # the hand drags; the browser draws
            step += 1

    threads = [threading.Thread(target=busy, args=(user,)) for user in users]
    for thread in threads:
        thread.start()
    while any(thread.is_alive() for thread in threads):
        time.sleep(max(1.0, seconds / 60))  # many samples: RSS under load wobbles by ~10 MB
        if any(thread.is_alive() for thread in threads):  # the growth is judged under load only
            samples.append(sample())
    for thread in threads:
        thread.join()
    time.sleep(15)  # idle: the server hands freed memory back every 10 s
    _, *idle = sample()
    print(f"\nsoak: {len(users)} users for {seconds:.0f} s, {count() - start} requests")
    # RSS also counts pages of the server's own libraries as it first touches them; the
    # anonymous part (heap, arrays) is what a leak would grow.
    print("  requests  server RSS (MB)  of which anonymous")
    for requests, rss, anonymous in samples[::max(1, len(samples) // 12)] + samples[-1:]:
        print(f"  {requests:8d}  {rss:15.1f}  {anonymous:17.1f}")
    half = [sample for sample in samples if sample[0] >= samples[-1][0] / 2]  # after warm-up
    if len(half) >= 2:
        for column, name in ((1, "RSS"), (2, "anonymous")):
            values = [s[column] for s in half]
            slope = np.polyfit([s[0] for s in half], values, 1)[0] * 1024
            print(f"  {name} growth over the second half: {slope:+.2f} KB per request "
                  f"({half[0][column]:.1f} -> {half[-1][column]:.1f} MB over {half[-1][0] - half[0][0]} requests; "
                  f"{len(half)} samples between {min(values):.1f} and {max(values):.1f} MB)")
    print(f"  15 s after the load stopped: RSS {idle[0]:.1f} MB, of which anonymous {idle[1]:.1f} MB "
          f"(at the start: {samples[0][1]:.1f}, {samples[0][2]:.1f})")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--users", type=int, nargs="+", default=[1, 4, 16])
    parser.add_argument("--moves", type=int, default=10, help="slider moves per user")
    parser.add_argument("--soak", type=float, default=300, help="seconds of the soak (0: none)")
    parser.add_argument("--soak-users", type=int, default=16)
    parser.add_argument("--compare-open", action="store_true", help="users have the Compare with CAM tab open")
    parser.add_argument("--scripts", action="store_true",
                        help="users are gradio_client scripts (/explain, /set_erase_threshold), not the page")
    parser.add_argument("--example-at", type=float, nargs=2, metavar=("DELTA", "BOX"),
                        help="the sliders where users click the example (default: where the page opens), "
                             "e.g. 0.6 0.2 after a teacher moved them")
    parser.add_argument("--checkpoints", default=str(REPO / "checkpoints"))
    parser.add_argument("--model", default=None, help="checkpoint name (default: the first ACoL one)")
    args = parser.parse_args(argv)
    if max(args.users + [args.soak_users]) > 64 or args.soak > 1800:
        parser.error("at most 64 users and a 30-minute soak")

    with tempfile.TemporaryDirectory() as scratch:
        pictures = photos(max(args.users + [args.soak_users]), Path(scratch))
        shelf = CheckpointShelf(args.checkpoints)
        teaching = ExampleImages([REPO / "assets" / "examples"]).groups[0].class_names
        model = args.model or shelf.names(teaching)[0]  # the page's first model: the teaching one
        User.example_settings = tuple(args.example_at or (shelf[model].model.erase_threshold,
                                                           shelf[model].default_box_threshold))
        # Each photo alone on a server first: the replies every session must get back. Every load
        # then meets a fresh server, which has seen no upload (it answers a repeated picture from
        # its cache: that would not time an upload).
        server = Server(Path(args.checkpoints))
        try:
            print(f"model {model}, {os.cpu_count()} CPU cores, idle RSS of a fresh server {server.memory_mb():.0f} MB")
            expected = {photo: session_script(User(server.url, photo, model, args.compare_open, args.scripts),
                                              args.moves) for photo in pictures}
        finally:
            server.stop()
        print(f"{'users':>5} {'requests':>8} {'what':>8} {'p50':>8} {'p95':>8} {'last':>8} {'errors':>6} "
              f"{'isolation':>9} {'peak MB':>8}")
        for users in args.users:
            server = Server(Path(args.checkpoints))
            try:
                result = run_users(server, pictures[:users], model, args.moves, expected, args.compare_open,
                                   args.scripts)
            finally:
                server.stop()
            for what in ("example", "upload", "slider"):
                times = result["timings"][what]
                if times:
                    print(f"{users:5d} {result['requests']:8d} {what:>8} {1000 * statistics.median(times):6.0f}ms "
                          f"{1000 * percentile(times, 95):6.0f}ms {1000 * max(times):6.0f}ms "
                          f"{len(result['errors']):6d} {result['isolation_errors']:9d} {result['peak_mb']:8.0f}")
            if not args.scripts:
                print(f"      slider moves: {users * args.moves}, drawn in the browser: no request, not timed")
            for error in result["errors"][:3]:
                print(f"      error: {error[:300]}")
        if args.soak:
            server = Server(Path(args.checkpoints))
            try:
                soak(server, pictures[:args.soak_users], model, args.soak, args.compare_open, args.scripts)
            finally:
                server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
