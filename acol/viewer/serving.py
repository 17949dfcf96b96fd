"""How a serving viewer stays responsive and small: time limits and memory that goes back.

``acol.evaluation.explain`` explains one image; a server explains images for many users all day, on a small
CPU host, from requests it cannot trust. Read top to bottom:

- ``call_with_timeout``: a request runs in a small, shared pool of threads and is abandoned with
  ``RequestTimeout`` past its time limit, so one slow upload cannot hold a user's page forever;
  ``share_cores_between`` gives the requests that run at once a share of the cores each.
- glibc allocator tuning (``share_few_heaps``, ``trim_freed_memory``,
  ``keep_trimming_freed_memory``): every thread allocates from two heaps, which are trimmed every
  few seconds, so memory stays flat under load instead of growing with every request.

What the page offers is ``acol.viewer.shelf``, what it computes and shares ``acol.viewer.answers``, its events
``acol.viewer.page``; nothing here imports Gradio.
"""

from __future__ import annotations

import contextvars
import ctypes
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout

import torch


# ----------------------------------------------------------------------------------------------
# A time limit for each request


class RequestTimeout(TimeoutError):
    """A viewer request that ran past its time limit."""


REQUEST_WORKERS = 2  # requests that run at once (and glibc heaps, share_few_heaps)
_request_workers = ThreadPoolExecutor(max_workers=REQUEST_WORKERS, thread_name_prefix="acol-request")


def call_with_timeout(timeout_s: float, function, *args, **kwargs):
    """``function(*args, **kwargs)``, or RequestTimeout if it has not returned in ``timeout_s``.

    Python cannot stop a thread, so an abandoned call still runs to its end in the background;
    the two workers bound how many can, and later requests wait for a free one within their own
    time limit (when the machine is swamped they time out too, rather than pile up).
    """
    # In the caller's context: a ZeroGPU Space finds the Gradio request the GPU is lent for there.
    future = _request_workers.submit(contextvars.copy_context().run, function, *args, **kwargs)
    try:
        return future.result(timeout=timeout_s)
    except FutureTimeout:
        future.cancel()  # still queued: never start it
        raise RequestTimeout(f"gave up after {timeout_s:g} s: the server is busy or the image too "
                             "slow to decode; try again or try a smaller image") from None


def share_cores_between(requests: int) -> int:
    """Give each of ``requests`` requests explained at once its share of torch's threads (by
    default each took all of them: on 2 cores, two uploads ran 4 threads that waited on each
    other). For a server: one user alone waits a little longer for the backbone, a class less
    (README, "a class of 30"). Returns the threads each request now has."""
    torch.set_num_threads(max(1, torch.get_num_threads() // requests))
    return torch.get_num_threads()


# ----------------------------------------------------------------------------------------------
# Memory that goes back to the system (glibc)


def _glibc_call(name: str, *args) -> bool:
    """``name(*args)`` from glibc, True if it reports success; False where there is no glibc
    (macOS, musl), whose allocators need none of this."""
    try:
        return bool(getattr(ctypes.CDLL(None), name)(*args))
    except (AttributeError, OSError):
        return False


def trim_freed_memory() -> bool:
    """Give the pages of memory this process has freed back to the system (glibc's
    ``malloc_trim``): glibc keeps freed heap memory for reuse, so a server that draws and frees
    pictures all day holds more than it uses. Once the load stops, this gives back 20-50 MB."""
    return _glibc_call("malloc_trim", 0)


M_ARENA_MAX = -8  # glibc's <malloc.h>


def share_few_heaps(heaps: int = REQUEST_WORKERS) -> bool:
    """Have all of the server's threads allocate from at most ``heaps`` glibc heaps (arenas).

    By default glibc gives threads up to 8 heaps per core, and the server has dozens of threads
    (Gradio's, HTTP's, the request workers): each heap keeps what its threads freed, so memory
    grows with the number of threads that ever held a large block. Few heaps keep the freed
    memory in few places, where ``trim_freed_memory`` gives it back every few seconds, and
    large blocks are reused from them without asking the system again.

    Measured on the 2-core machine, 30 uploads at once (``bench/app_load.py --users 30``, one
    run each; the 120 s, 30-user soak in the same runs): glibc's defaults, server CPU 7.5 s, p95
    4.6 s, +2.5 KB a request; two heaps, 7.0 s, p95 4.1 s, +0.9 KB a request (both with torch
    at one thread per upload, ``app.main``). The tuning these replace mapped every block of
    1 MB and more separately, returned when freed: as flat (+1.7 KB a request), but each
    upload's backbone then asked the system for fresh, zeroed pages for each activation: 13.3 s
    of server CPU for the 30 uploads, p95 8.6 s.
    """
    return _glibc_call("mallopt", M_ARENA_MAX, heaps)


_trimmer: threading.Thread | None = None


def keep_trimming_freed_memory(every_s: float = 10.0) -> threading.Thread:
    """Run ``trim_freed_memory`` every ``every_s`` seconds in one daemon thread per process."""
    global _trimmer
    if _trimmer is None:
        def trim_forever():
            while True:
                time.sleep(every_s)
                trim_freed_memory()
        _trimmer = threading.Thread(target=trim_forever, name="acol-trim-freed-memory", daemon=True)
        _trimmer.start()
    return _trimmer
