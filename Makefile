# meshkit: `make run` runs the mesh on its embedded default, `make test` installs and tests everything.
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: run test lint fmt bench soak system-deps venv clean

$(STAMP): pyproject.toml
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install -q --upgrade pip
	$(VENV)/bin/pip install -q -e '.[dev]'
	touch $(STAMP)

venv: $(STAMP)

system-deps:
	bash scripts/system-deps.sh

run: $(STAMP)
	$(VENV)/bin/meshkit serve --demo --data-dir .meshkit

test: system-deps $(STAMP)
	$(PY) -m pytest -q -p no:cacheprovider

lint: $(STAMP)
	$(VENV)/bin/ruff check src tests bench
	$(VENV)/bin/ruff format --check src tests bench
	$(VENV)/bin/mypy

fmt: $(STAMP)
	$(VENV)/bin/ruff check --fix src tests bench
	$(VENV)/bin/ruff format src tests bench

bench: system-deps $(STAMP)
	for b in bench/bench_*.py; do echo "== $$b"; $(PY) $$b || exit 1; done

soak: system-deps $(STAMP)
	$(PY) -m pytest -q -m soak tests/chaos tests/security

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
