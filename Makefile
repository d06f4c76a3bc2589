# Both targets set up .venv with pip on a fresh machine, then run. Each installs only what
# it needs: `make loadtest` the library and torchvision, `make test` every extra the tests
# exercise (the `test` extra), so that only the cuda tests skip.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
TEST_STAMP := $(VENV)/.installed-test
RUN_STAMP := $(VENV)/.installed-run

.PHONY: test loadtest lint typecheck unit bench clean

$(PY):
	$(PYTHON) -m venv $(VENV)

$(TEST_STAMP): pyproject.toml | $(PY)
	$(PY) -m pip install --quiet -e '.[test]'
	touch $@

$(RUN_STAMP): pyproject.toml | $(PY)
	$(PY) -m pip install --quiet -e '.[vision]'
	touch $@

test: $(TEST_STAMP) lint typecheck unit

lint: $(TEST_STAMP)
	$(PY) -m ruff check aiosched tests benchmarks examples
	$(PY) -m ruff format --check aiosched tests benchmarks examples

typecheck: $(TEST_STAMP)
	$(PY) -m mypy

unit: $(TEST_STAMP)
	$(PY) -m pytest -q -rs

loadtest: $(RUN_STAMP)
	$(VENV)/bin/aiosched loadtest

bench: $(RUN_STAMP)
	$(PY) benchmarks/overhead.py

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
