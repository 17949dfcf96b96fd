"""The parts of ``bench/gpu_finetune.py``: its jobs and log (``jobs``), the preparation and the
speed probe (``prepare``, ``probe``), the session that schedules the runs (``session``) and the
report (``report``). Imported by that script, which puts ``bench/`` on the path."""
