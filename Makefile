# gdmd-bench: `make study` runs the shapes study, `make test` the tests (both set up .venv).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
CORES ?= all
STUDY ?= config/shapes.yaml
# CPU numerics (gdmd/numerics.py): pinned = the same bits on any x86-64 CPU with AVX2;
# native = the CPU's fastest kernels, results that depend on it. `make study NUMERICS=native`
NUMERICS ?= $(or $(GDMD_NUMERICS),pinned)
export GDMD_NUMERICS := $(NUMERICS)
# jobs run `python -m ...`: put the venv first on PATH so that is its python
SNAKEMAKE := PATH="$(abspath $(BIN)):$$PATH" $(BIN)/snakemake --cores $(CORES)

.PHONY: setup setup-dev study study-full ablations test lint dryrun pretrain install-pretrained report report-from-scores rehearsal clean

# `setup`: what the studies need; `setup-dev`: plus the test, lint and cluster extras.
# pip --no-compile, then byte-compile what the study's jobs import by importing it once:
# half the set-up time of compiling all of torch, and every job still starts from cached
# bytecode (also where PYTHONDONTWRITEBYTECODE is set, as on CI machines). The list names
# what the jobs import lazily too (backbone, methods, scorers: diffusers, peft, open_clip);
# a module missing here is compiled from source by every job that imports it (diffusers: 5 s)
STUDY_MODULES := snakemake gdmd.study gdmd.train gdmd.sample gdmd.pairs eval.geneval.__main__ eval.geneval.prompts eval.preference.__main__ reports.__main__ \
	gdmd.backbones.shapes gdmd.shapes.prompts gdmd.shapes.detector gdmd.rewards eval.geneval.backends eval.preference.shapes open_clip \
	gdmd.methods.dmd gdmd.methods.dmd_nft gdmd.methods.dmd_refl gdmd.methods.dmdr gdmd.methods.gdmd
# two interpreters at once (torch and diffusers on one side, snakemake, open_clip and the
# reports on the other): 13 s instead of 17 on 2 cores
IMPORT_ARGV := import importlib, sys; [importlib.import_module(m) for m in sys.argv[1:]]
$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --upgrade pip -q
	$(BIN)/pip install --no-compile -e .
	env -u PYTHONDONTWRITEBYTECODE $(BIN)/python -c "$(IMPORT_ARGV)" $(filter gdmd.%,$(STUDY_MODULES)) & pid=$$!; \
	env -u PYTHONDONTWRITEBYTECODE $(BIN)/python -c "$(IMPORT_ARGV)" $(filter-out gdmd.%,$(STUDY_MODULES)) && wait $$pid
	touch $@

$(BIN)/.installed-dev: $(BIN)/.installed
	$(BIN)/pip install -e ".[test,cluster]"
	touch $@

setup: $(BIN)/.installed

setup-dev: $(BIN)/.installed-dev

## the main job: the shapes study, from the committed pretrained assets
study: setup
	$(SNAKEMAKE) --configfile $(STUDY)

## the 3-seed comparison (config/shapes-full.yaml) and, after it, GDMD's ablations (same results dir)
study-full: setup
	$(SNAKEMAKE) --configfile config/shapes-full.yaml

ablations: setup
	$(SNAKEMAKE) --configfile config/shapes-ablations.yaml

## the cluster path rehearsed: config/sd3m.yaml's whole DAG at small sizes on this machine's
## single-node SLURM (root, Debian: installs and starts it), random-weight models in the
## official formats, into rehearsal/ (README, "Before the cluster"; gdmd/rehearsal.py)
REHEARSAL ?= config/rehearsal.yaml
rehearsal: setup-dev
	profiles/local-slurm/cluster.sh install
	profiles/local-slurm/cluster.sh start
	PATH="$(abspath $(BIN)):$$PATH" $(BIN)/python -m gdmd.rehearsal --config $(REHEARSAL) --work rehearsal

## the tests (unit, CLI, DAG smoke run)
test: setup-dev
	$(BIN)/pytest -q

lint: setup-dev
	$(SNAKEMAKE) --lint --configfile $(STUDY)
	$(BIN)/snakefmt --check workflow
	$(BIN)/ruff check gdmd eval reports tests benchmarks
	$(BIN)/ruff format --check gdmd eval reports tests benchmarks

dryrun: setup
	$(SNAKEMAKE) -n --configfile $(STUDY)

## retrain the shapes study's teacher, CLIP and aesthetic head, then install them into resources/
pretrain: setup
	$(SNAKEMAKE) pretrain --configfile config/shapes.yaml
	$(MAKE) install-pretrained

install-pretrained: setup
	$(BIN)/python -m gdmd.shapes.assets install results/pretrain/shapes resources/shapes

## the HTML report of the study (after `make study`): results/<study>/report.html
report: setup
	$(SNAKEMAKE) --configfile $(STUDY) --report results/$$($(BIN)/python -c "from gdmd.study import resolve; from gdmd.config import read_yaml; print(resolve(read_yaml('$(STUDY)'))['study'])")/report.html

## tables and figures from score files and training logs alone (no training, sampling or scoring)
report-from-scores: setup
	$(SNAKEMAKE) --configfile $(STUDY) --config scores_only=true

clean:
	rm -rf results .snakemake rehearsal
