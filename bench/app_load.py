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
requests gave when alone on the server), the server's peak memory and the CPU time the server used
over that burst (all its threads; the clients run in this process, not the server's). ``--soak``
then keeps all N users busy for that many seconds and prints the server's memory over time with
its growth per request. Loopback only; bounded in users, requests and time. Linux (reads /proc).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from app_clients import REPO, Server, User, photos  # noqa: E402  (sets gradio_client's environment first)

sys.path.insert(0, str(REPO))  # run as a script from anywhere
from acol.viewer.shelf import CheckpointShelf, ExampleImages  # noqa: E402

DELTAS = [0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9]


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
    cpu_at = []  # the server's CPU time when each timed burst starts, and at the end
    together = threading.Barrier(len(users), action=lambda: cpu_at.append(server.cpu_seconds()))

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
    cpu_at.append(server.cpu_seconds())
    # The clicks' burst runs from the first mark to the second, the uploads' (and, for scripts, the
    # slider moves') from the second to the end.
    cpu = dict(zip(("example", "upload"), np.diff(cpu_at))) if len(cpu_at) == 3 else {}
    return {"requests": sum(user.requests for user in users), "wall": wall, "timings": timings, "errors": errors,
            "isolation_errors": isolation_errors, "peak_mb": server.memory_mb("VmHWM"), "cpu": cpu}


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


def parse_args(argv: list[str] | None) -> argparse.Namespace:
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
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    with tempfile.TemporaryDirectory() as scratch:
        pictures = photos(max(args.users + [args.soak_users]), Path(scratch))
        shelf = CheckpointShelf(args.checkpoints)
        teaching = ExampleImages([REPO / "assets" / "examples"]).groups[0].class_names
        model = args.model or shelf.names(teaching)[0]  # the page's first model: the teaching one
        User.example_settings = tuple(args.example_at or (shelf[model].model.erase_threshold,
                                                           shelf[model].default_box_threshold))
        expected = alone(args, pictures, model)
        print(f"{'users':>5} {'requests':>8} {'what':>8} {'p50':>8} {'p95':>8} {'last':>8} {'errors':>6} "
              f"{'isolation':>9} {'peak MB':>8} {'server CPU':>10}")
        for users in args.users:
            server = Server(Path(args.checkpoints))
            try:
                result = run_users(server, pictures[:users], model, args.moves, expected, args.compare_open,
                                   args.scripts)
            finally:
                server.stop()
            print_load(users, result, args)
        if args.soak:
            server = Server(Path(args.checkpoints))
            try:
                soak(server, pictures[:args.soak_users], model, args.soak, args.compare_open, args.scripts)
            finally:
                server.stop()
    return 0


def alone(args, pictures: list[Path], model: str) -> dict:
    """Each photo alone on a server first: the replies every session must get back. Every load
    then meets a fresh server, which has seen no upload (it answers a repeated picture from its
    cache: that would not time an upload)."""
    server = Server(Path(args.checkpoints))
    try:
        print(f"model {model}, {os.cpu_count()} CPU cores, idle RSS of a fresh server {server.memory_mb():.0f} MB")
        return {photo: session_script(User(server.url, photo, model, args.compare_open, args.scripts), args.moves)
                for photo in pictures}
    finally:
        server.stop()


def print_load(users: int, result: dict, args) -> None:
    """One load's rows: per kind of request, its latencies, errors and the server's peak memory."""
    for what in ("example", "upload", "slider"):
        times = result["timings"][what]
        if times:
            print(f"{users:5d} {result['requests']:8d} {what:>8} {1000 * statistics.median(times):6.0f}ms "
                  f"{1000 * percentile(times, 95):6.0f}ms {1000 * max(times):6.0f}ms "
                  f"{len(result['errors']):6d} {result['isolation_errors']:9d} {result['peak_mb']:8.0f} "
                  f"{result['cpu'].get(what, float('nan')):9.2f}s")
    if not args.scripts:
        print(f"      slider moves: {users * args.moves}, drawn in the browser: no request, not timed")
    for error in result["errors"][:3]:
        print(f"      error: {error[:300]}")

if __name__ == "__main__":
    sys.exit(main())
