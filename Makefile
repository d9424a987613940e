# One command sets everything up and runs the main job (`make demo`); one runs the tests (`make test`).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
CONFIG ?= configs/vivit_factorised.yaml
RUN_DIR ?= runs/vivit_factorised
export WANDB_MODE ?= offline

.PHONY: install demo test lint bench clean

$(BIN)/vt: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt -e ".[dev]"
	touch $(BIN)/vt

install: $(BIN)/vt

demo: install
	$(BIN)/vt fit --config $(CONFIG)
	$(BIN)/vt test --config $(CONFIG) --ckpt_path $(RUN_DIR)/checkpoints/best.ckpt

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
