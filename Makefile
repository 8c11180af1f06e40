# Set-up and the two main jobs. `make run` runs the whole workflow on the embedded
# default config.yaml; `make test` runs the test suite. Each creates the virtual
# environment on first use: CPU torch first (so pip never resolves a CUDA build),
# then the project with its dev and cluster extras.
VENV ?= .venv
PYTHON ?= python3
TORCH ?= torch==2.13.0
# the versions CI tested (see its header); `make setup CONSTRAINTS=` resolves afresh
CONSTRAINTS ?= constraints.txt
CORES ?= 2
BIN := $(VENV)/bin
export PATH := $(abspath $(BIN)):$(PATH)

.PHONY: setup run real-demo real-group test lint report schema clean

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml Makefile $(CONSTRAINTS)
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q "$(TORCH)"
	$(BIN)/python -m pip install -q -e ".[dev,cluster]" $(if $(CONSTRAINTS),-c $(CONSTRAINTS))
	# brainspace ships the real resting-state run of configs/real_demo.yaml; only its
	# data files are read, so its 640 MB vtk dependency is not installed
	$(BIN)/python -m pip install -q --no-deps "brainspace==0.3.0"
	# nitime ships a real 28-ROI fMRI table the tests read (its networkx/matplotlib
	# dependencies are not needed for that)
	$(BIN)/python -m pip install -q --no-deps "nitime==0.12.1"
	touch $@

run: setup
	$(BIN)/snakemake --cores $(CORES) --profile workflow/profiles/default

real-demo: setup
	$(BIN)/snakemake --cores $(CORES) --configfile configs/real_demo.yaml --profile workflow/profiles/default

real-group: setup
	$(BIN)/snakemake --cores $(CORES) --configfile configs/real_group.yaml --profile workflow/profiles/default

report: setup
	$(BIN)/snakemake --cores $(CORES) --profile workflow/profiles/default --report results/report.html

test: setup
	$(BIN)/python -m pytest -q -p no:cacheprovider

# the config schema is generated from modalmerge/settings.py (the one definition of the settings)
schema: setup
	$(BIN)/python -m modalmerge.settings_schema

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/python -m modalmerge.settings_schema --check
	$(BIN)/snakemake --lint --cores 1

clean:
	rm -rf results logs benchmarks/results .snakemake
