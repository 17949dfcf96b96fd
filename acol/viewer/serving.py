"""How a serving viewer stays responsive and small: time limits and memory that goes back.

``acol.evaluation.explain`` explains one image; a server explains images for many users all day, on a small
CPU host, from requests it cannot trust. Read top to bottom:

- ``call_with_timeout``: a request runs in a small, shared pool of threads and is abandoned with
  ``RequestTimeout`` past its time limit, so one slow upload cannot hold a user's page forever.
- glibc allocator tuning (``map_large_blocks_separately``, ``trim_freed_memory``,
  ``keep_trimming_freed_memory``): large blocks are returned when freed and the rest trimmed
  every few seconds, so memory stays flat under load instead of growing with every request.

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


# ----------------------------------------------------------------------------------------------
# A time limit for each request


class RequestTimeout(TimeoutError):
    """A viewer request that ran past its time limit."""


_request_workers = ThreadPoolExecutor(max_workers=2, thread_name_prefix="acol-request")


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


M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3   # glibc's <malloc.h>
LARGE_BLOCK = 1 << 20        # bytes
TRIM_THRESHOLD = 128 << 10   # glibc's default, before it raised it while the model loaded


def map_large_blocks_separately(threshold_bytes: int = LARGE_BLOCK) -> bool:
    """Have glibc serve every block of ``threshold_bytes`` or more (decoded uploads, backbone
    activations) from its own memory map, returned to the system the moment it is freed, and
    keep no more than 128 KB free at the top of each heap.

    By default glibc raises the first threshold each time such a block is freed (from 128 KB up
    to 32 MB) and the second with it (to twice that), so the large, short-lived blocks of the
    server's many worker threads end up in their heaps, which grow in steps and never shrink:
    +8 KB a request over a 5-minute, 16-user soak (bench/app_load.py). With both fixed, the
    same soak stayed flat (+0.9 KB a request, within the ~20 MB the load makes RSS wobble) and
    went back to its starting RSS when the load stopped. Fixing only the first left +6 KB a
    request; a 4 MB top, +5.7. The price is fresh pages for every large block: the soak's
    server answered about a quarter fewer requests (~6,000 against ~8,000 in 300 s), and at a
    128 KB first threshold a third fewer.
    """
    return (_glibc_call("mallopt", M_MMAP_THRESHOLD, threshold_bytes)
            and _glibc_call("mallopt", M_TRIM_THRESHOLD, TRIM_THRESHOLD))


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
