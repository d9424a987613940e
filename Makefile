# One command sets everything up and runs the main job (`make demo`); one runs the tests (`make test`).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
CONFIG ?= configs/vivit_factorised.yaml
export WANDB_MODE ?= offline

.PHONY: install demo test lint bench clean

$(BIN)/vt: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt -e ".[dev]"
	touch $(BIN)/vt

install: $(BIN)/vt

# Each vt fit gets its own folder, runs/<config name>/version_<N>; --ckpt_path best is the newest run's best.ckpt,
# the one the line before wrote.
demo: install
	$(BIN)/vt fit --config $(CONFIG)
	$(BIN)/vt test --config $(CONFIG) --ckpt_path best

test: install
	$(BIN)/python -m pytest -q

lint: install
	$(BIN)/ruff check video_transformers tests benchmarks
	$(BIN)/ruff format --check video_transformers tests benchmarks

bench: install
	$(BIN)/python benchmarks/bench_models.py $(BENCH_ARGS)
	$(BIN)/python benchmarks/bench_data.py --out runs/bench_data
	$(BIN)/python benchmarks/bench_precision.py  # needs the make demo checkpoint; says so and skips without it

clean:
	rm -rf runs lightning_logs .pytest_cache
