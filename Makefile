# Every target that runs Python depends on the virtual environment, so each works alone on a
# fresh clone. Pins in pyproject.toml make pip take the local torch wheels (no download).
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
DATA_DIR ?= data
PHOTOS ?=
SHARED_DATA ?= ../shared/data

.PHONY: venv demo test bench lint run clean

venv: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev,scale,ray]'
	touch $(STAMP)

demo: $(STAMP)
	PHOTOS="$(PHOTOS)" DATA_DIR="$(DATA_DIR)" PY="$(PY)" sh scripts/demo.sh

test: $(STAMP)
	$(PY) -m pytest -q

bench: $(STAMP)
	SHARED_DATA="$(SHARED_DATA)" $(PY) -m pytest -q -m bench -s -p no:cacheprovider

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy

run: $(STAMP)
	$(PY) -m bot

clean:
	rm -rf $(VENV) .cache .mypy_cache .ruff_cache .pytest_cache
