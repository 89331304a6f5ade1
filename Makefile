# adrec — the two commands on a fresh machine are `make demo` and `make test`; each installs what it needs.
PYTHON ?= python3.11
VENV   ?= .venv
BIN     = $(VENV)/bin
STAMP   = $(VENV)/.installed
PYTEST_ARGS ?=

.PHONY: demo serve test test-fast lint format bench clean install

$(STAMP): pyproject.toml
	@command -v $(PYTHON) >/dev/null || { echo "error: $(PYTHON) not found; set PYTHON=/path/to/python3.11"; exit 1; }
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

## Simulate a seeded ad market into ./adrec-demo/adrec.db and show what is in it.
demo: $(STAMP)
	$(BIN)/adrec demo

## Serve the HTTP API on http://127.0.0.1:8000 over the demo's store and model (run `make demo` first).
serve: $(STAMP)
	$(BIN)/adrec serve --db sqlite:///adrec-demo/adrec.db --models adrec-demo/models

## Run the whole test suite (PostgreSQL integration tests included; they skip, outside CI, without a server).
test: $(STAMP)
	$(BIN)/python -m pytest $(PYTEST_ARGS)

## The suite without the slow tests.
test-fast: $(STAMP)
	$(BIN)/python -m pytest -m "not slow" $(PYTEST_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks
	$(BIN)/mypy

format: $(STAMP)
	$(BIN)/ruff check --fix src tests benchmarks
	$(BIN)/ruff format src tests benchmarks

## Benchmarks write benchmarks/results/NAME.json and NAME.md (peers installed from the `bench` extra).
bench: $(STAMP)
	$(BIN)/python -m pip install --quiet -e '.[dev,bench]'
	$(BIN)/python -m benchmarks.bench_ingest --postgres postgresql://postgres@127.0.0.1:5432/test
	$(BIN)/python -m benchmarks.bench_simulate
	$(BIN)/python -m benchmarks.bench_simulate --scale 0.1 --name simulate-0.1x
	$(BIN)/python -m benchmarks.bench_experiment
	$(BIN)/python -m benchmarks.bench_experiment --config config/experiment.default.toml --name experiment-default
	$(BIN)/python -m benchmarks.bench_experiment --config config/experiment.gan.toml --name experiment-gan
	$(BIN)/python -m benchmarks.bench_experiment_http
	$(BIN)/python -m benchmarks.bench_aa --seeds 60
	$(BIN)/python -m benchmarks.bench_baselines
	$(BIN)/python -m benchmarks.bench_eval
	$(BIN)/python -m benchmarks.bench_lightgcn
	$(BIN)/python -m benchmarks.bench_lightgcn --part quality --name lightgcn-d128 --params '{"epochs": 1000, "factors": 128, "patience": 4, "max_decays": 3}'
	$(BIN)/python -m benchmarks.bench_lightgcn --part quality --name lightgcn-d128-reg1e3 --params '{"epochs": 1000, "factors": 128, "reg": 0.001, "patience": 4, "max_decays": 3}'
	$(BIN)/python -m benchmarks.bench_gan
	$(BIN)/python -m benchmarks.bench_ctr
	$(BIN)/python -m benchmarks.bench_ctr --target conversion
	$(BIN)/python -m benchmarks.bench_ctr_obd
	$(BIN)/python -m benchmarks.bench_gan --dataset gowalla
	$(BIN)/python -m benchmarks.bench_coldstart
	$(BIN)/python -m benchmarks.bench_lookalike
	$(BIN)/python -m benchmarks.bench_serving
	$(MAKE) $(OBP_VENV)/.installed
	$(BIN)/python -m benchmarks.bench_ope_obp --obp-python $(OBP_VENV)/bin/python
	$(BIN)/python -m benchmarks.bench_ope_sim

## The Open Bandit Pipeline (obp 0.4.1) in an environment of its own (its pins clash with adrec's): the peer of
## the off-policy estimators (benchmarks/bench_ope_obp.py).
OBP_VENV ?= .venv-obp
$(OBP_VENV)/.installed:
	test -x $(OBP_VENV)/bin/python || $(PYTHON) -m venv $(OBP_VENV)
	$(OBP_VENV)/bin/python -m pip install --quiet --no-deps obp==0.4.1
	$(OBP_VENV)/bin/python -m pip install --quiet mypy-extensions pyyaml scipy tqdm matplotlib seaborn torch==2.13.0 \
		'pandas<2' 'numpy<2' 'scikit-learn<1.4'
	touch $@

clean:
	rm -rf $(VENV) $(OBP_VENV) adrec-demo .pytest_cache .mypy_cache .ruff_cache
