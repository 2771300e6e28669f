import json

from snakemake.utils import validate

validate(config, schema="../schemas/config.schema.yaml")

# Every rule runs in the project's environment; the usual way is to create it once
# (`make setup` or `conda env create -f environment.yml`) and run snakemake inside it.
ENV = "../../environment.yml"

STUDY = config["study"]
RESULTS = f"results/{STUDY}"
RUNS = config["runs"]
SEEDS = config["seeds"]
PROMPTS = config["prompts"]
TRAINED = {}  # method name -> True for methods that train (filled by rules/train.smk)


def log_path(name):
    return f"{RESULTS}/logs/{name}.log"


def bench_path(name):
    return f"{RESULTS}/benchmarks/{name}.tsv"


def run_settings(run):
    """Everything one run's jobs need, as written to results/<study>/runs/<run>.json."""
    r = RUNS[run]
    return {
        "study": STUDY,
        "run": run,
        "backbone": config["backbone"],
        "assets": config["assets"],
        "method": r["method"],
        "steps": r["steps"],
        "cfg_scale": r.get("cfg_scale", 1.0),
        "batch_size": config.get("sampling", {}).get("batch_size", 128),
        "train": r.get("train", {}),
    }


def is_trained(run):
    return RUNS[run]["method"] != "teacher"


def run_checkpoint(wildcards):
    """The trained generator a student run samples from (nothing for teacher runs)."""
    if is_trained(wildcards.run):
        return f"{RESULTS}/train/{wildcards.run}/seed{wildcards.seed}/final"
    return []


def all_runs_seeds(pattern):
    return expand(pattern, run=list(RUNS), seed=SEEDS)


def preference_weights():
    return ",".join(f"{k}={v}" for k, v in config["preference"]["weights"].items())
