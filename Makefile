# The two commands of the README. Python 3.11; pins in requirements*.txt.
# Everything installs into ./.venv: Debian 12 and Ubuntu 24.04 refuse `pip install` into their
# own python3 (PEP 668, "externally-managed-environment"), and a venv never touches the system.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: app test

$(PY):  # Debian's python3 makes venvs only with its python3-venv package
	$(PYTHON) -m venv $(VENV) || (apt-get update -qq && apt-get install -y -qq python3-venv \
		&& $(PYTHON) -m venv $(VENV))

app: $(PY)  ## install and open the viewer on the shipped checkpoints (http://127.0.0.1:7860)
	$(PY) -m pip install -q -r requirements.txt
	GRADIO_ANALYTICS_ENABLED=False $(PY) app.py

test: $(PY)  ## install everything (Chromium from Debian for the browser test) and run the whole suite
	$(PY) -m pip install -q -r requirements-test.txt
	command -v chromium >/dev/null || (apt-get update -qq && apt-get install -y -qq chromium >/dev/null)
	$(PY) -m pytest -q
