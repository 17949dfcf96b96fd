# The two commands of the README. Python 3.11; pins in requirements*.txt.
PYTHON ?= python3

.PHONY: app test

app:  ## install and open the viewer on the shipped checkpoints (http://127.0.0.1:7860)
	$(PYTHON) -m pip install -q -r requirements.txt
	GRADIO_ANALYTICS_ENABLED=False $(PYTHON) app.py

test:  ## install everything (Chromium from Debian for the browser test) and run the whole suite
	$(PYTHON) -m pip install -q -r requirements-test.txt
	command -v chromium >/dev/null || (apt-get update -qq && apt-get install -y -qq chromium >/dev/null)
	$(PYTHON) -m pytest -q
