# Two commands set everything up on a fresh machine: `make run` and `make test`.
# TORCH_PACKAGES is the torch/torchvision pair for this machine; override it elsewhere, e.g.
#   make test TORCH_PACKAGES="torch==2.9.1 torchvision==0.24.1"
PYTHON ?= python3.11
VENV ?= .venv
TORCH_PACKAGES ?= torch==2.14.1 torchvision==0.29.1
CONFIG ?= configs/quickstart.yaml
PYTEST_ARGS ?=

BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

export RAY_USAGE_STATS_ENABLED := 0
# The suite's throwaway clusters (`ray start --head` + `ray job submit` included) run without
# authentication on this machine; `make run` and the benchmarks keep mapruner's default (a local
# cluster that requires a fresh token per run, docs/reliability.md).
test test-slow test-reliability: export RAY_AUTH_MODE := disabled

.PHONY: venv run test test-slow test-reliability bench bench-full bench-frontier bench-fidelity bench-engine bench-overhead clean

venv: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet $(TORCH_PACKAGES)
	$(BIN)/python -m pip freeze | grep -iE '^(torch|torchvision)==' > $(VENV)/torch-pin.txt
	$(BIN)/python -m pip install --quiet -c $(VENV)/torch-pin.txt -e '.[dev]'
	$(BIN)/python -m pip freeze | grep -iE '^(torch|torchvision)==' | diff - $(VENV)/torch-pin.txt \
		|| (echo "error: installing the project replaced torch/torchvision" >&2; exit 1)
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/mapruner prune --config $(CONFIG)

test: $(STAMP)
	$(BIN)/python -m pytest $(PYTEST_ARGS)

test-slow: $(STAMP)
	$(BIN)/python -m pytest -m slow $(PYTEST_ARGS)

# The long reliability checks (a worker that always dies, a disk that fills mid-search); CI runs
# them after `make test` (a few minutes).
test-reliability: $(STAMP)
	$(BIN)/python -m pytest -m slow tests/reliability $(PYTEST_ARGS)

bench: $(STAMP)
	$(BIN)/python benchmarks/search_quality.py --quick

bench-full: $(STAMP)
	$(BIN)/python benchmarks/search_quality.py

# The accuracy-MACs frontier (issue 21): 4 settings x 6 methods x 16 trials x 3 seeds over 4
# targets, and multi_agent's joint sweep against one search per target; long (see benchmarks/README.md).
bench-frontier: $(STAMP)
	$(BIN)/python benchmarks/frontier.py

# Multi-fidelity search (issue 22): FIFO vs ASHA at equal and half the fine-tune steps, each
# search's best strategy recovered by mapruner finetune; 4 settings x 3 seeds; long.
bench-fidelity: $(STAMP)
	$(BIN)/python benchmarks/fidelity.py

bench-engine: $(STAMP)
	$(BIN)/python benchmarks/prune_engine.py

bench-overhead: $(STAMP)
	$(BIN)/python benchmarks/orchestration_overhead.py

clean:
	rm -rf $(VENV) build dist src/*.egg-info .pytest_cache
