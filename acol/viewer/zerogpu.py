"""Where a request's model runs on a ZeroGPU Space: on a GPU ZeroGPU lends, or on the Space's CPU.

    an event -> ModelRunner.run(task, model, ...)
                  |
    ACOL_ZEROGPU=gpu (the default)
                  +-- spaces.GPU(duration=GPU_SECONDS): ZeroGPU asks its scheduler for a GPU
                  |     granted -> a forked worker runs the task on it (arguments and answer pickled)
                  |     refused -> a gr.Error from spaces.zero.client, before any GPU or any of this
                  |                project's code ran: the visitor's quota is spent, the Space
                  |                reached its limit, no GPU came free, ...
                  |                  -> the same task on the CPU copies of the models this process
                  |                     keeps (Page(keep_cpu_models=True)), and its answer says so
                  |                     (CPU_NOTE): never an error for a model this small
    ACOL_ZEROGPU=cpu
                  +-- the CPU, always: no visitor's quota is spent. The decorated function is still
                        declared (a ZeroGPU Space is started with one), never called.

Only ZeroGPU's refusals fall back: an error of the task itself, on the GPU or not, stays an error.
An answer made on the CPU keeps its note in the shared cache: whoever is shown it later is told
where it was computed.
Nothing here imports Gradio until an error needs judging. Away from ZeroGPU (``spaces`` does
nothing without ``SPACES_ZERO_GPU``) app.py uses none of this.
"""

from __future__ import annotations

import logging
import os
from dataclasses import replace

from .answers import Answer

MODES = ("gpu", "cpu")
# What one call may take on a lent GPU. The work is small: an upload's explanation and payload
# take ~0.1-0.3 s of CPU time here (bench/app_latency.py; the model's part is a few milliseconds
# on a GPU), but a worker's first call also starts CUDA and moves the models to the GPU (~1-2 s).
# 5 s covers that with room; ZeroGPU refuses a call while the visitor has less than this left,
# and a smaller request is served sooner in its queue.
GPU_SECONDS = 5
CPU_NOTE = "**Answered on the CPU:** ZeroGPU lent no GPU for this (the daily quota is spent, or none was free)."


def zerogpu_mode(environ=os.environ) -> str:
    """Where requests run on a ZeroGPU Space (``ACOL_ZEROGPU``): ``gpu`` (a GPU when ZeroGPU lends
    one, else the CPU) or ``cpu`` (always the CPU, no visitor's quota spent)."""
    mode = environ.get("ACOL_ZEROGPU", "gpu").strip().lower()
    if mode not in MODES:
        raise ValueError(f"ACOL_ZEROGPU={mode!r}: use gpu (a GPU when ZeroGPU lends one) or cpu (always the CPU)")
    return mode


def refused_by_zerogpu(error: BaseException) -> bool:
    """Whether ``error`` is ZeroGPU refusing a GPU: a ``gr.Error`` raised by the ``spaces``
    package's scheduling (``spaces.zero.client``: "ZeroGPU quota exceeded", "Space app has
    reached its GPU limit", "No GPU was available", an illegal duration, ...), judged by where it
    was raised, not by its words. Errors from the task, which ZeroGPU re-raises from its worker
    (``spaces.zero.wrappers``), are not refusals."""
    import gradio as gr
    if not isinstance(error, gr.Error):
        return False
    traceback = error.__traceback__
    while traceback is not None and traceback.tb_next is not None:
        traceback = traceback.tb_next
    return traceback is not None and traceback.tb_frame.f_globals.get("__name__") == "spaces.zero.client"


def noted_on_cpu(result):
    """A task's result as answered on the CPU instead of a lent GPU: an Answer says so in its note
    (the scripts' status line) and in its payload's (the page's status line)."""
    if not isinstance(result, Answer):
        return result
    note = " ".join(filter(None, [result.note, CPU_NOTE]))
    payload = None if result.payload is None else {**result.payload, "note": note}
    return replace(result, note=note, payload=payload)


class GpuOrCpu:
    """``ModelRunner.run`` on a ZeroGPU Space: ``on_gpu`` (the runner's ``run_here`` decorated
    with ``spaces.GPU``) unless the mode is ``cpu`` or ZeroGPU refuses, then ``on_cpu`` (a runner's
    ``run_here`` over models in this process, on the CPU)."""

    def __init__(self, on_gpu, on_cpu, mode: str = "gpu"):
        if mode not in MODES:
            raise ValueError(f"mode {mode!r}: use one of {MODES}")
        self.on_gpu, self.on_cpu, self.mode = on_gpu, on_cpu, mode
        self.refusals = 0  # how many requests ZeroGPU refused a GPU (each answered on the CPU)

    def __call__(self, task: str, model_name: str, *args, **kwargs):
        if self.mode == "cpu":
            return self.on_cpu(task, model_name, *args, **kwargs)
        try:
            return self.on_gpu(task, model_name, *args, **kwargs)
        except Exception as error:
            if not refused_by_zerogpu(error):
                raise
            self.refusals += 1
            logging.getLogger(__name__).info("ZeroGPU refused a GPU (%s): %s answered on the CPU", error, task)
        return noted_on_cpu(self.on_cpu(task, model_name, *args, **kwargs))
