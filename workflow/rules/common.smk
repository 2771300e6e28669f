import json

from snakemake.utils import validate

from gdmd.study import validate_study

# The study config against its JSON schema, at parse time: first as one line naming the
# key (gdmd.study.validate_study), then through Snakemake, which also fills in defaults.
validate_study(config, workflow.source_path("../schemas/config.schema.yaml"), "config")
validate(config, schema="../schemas/config.schema.yaml")


def check_train_sections():
    """Each student run's `train:` section against its method's typed config, at parse time."""
    from gdmd import config as cfglib
    from gdmd.methods import get_method

    for name, r in config["runs"].items():
        if r["method"] != "teacher":
            cfglib.from_dict(
                get_method(r["method"]).Config, r.get("train", {}), f"runs.{name}.train"
            )


check_train_sections()

# Every rule runs in the project's environment; the usual way is to create it once
# (`make setup` or `conda env create -f environment.yml`) and run snakemake inside it.
ENV = "../../environment.yml"

STUDY = config["study"]
RESULTS = f"results/{STUDY}"
RUNS = config["runs"]
SEEDS = config["seeds"]
PROMPTS = config["prompts"]


def log_path(name):
    return f"{RESULTS}/logs/{name}.log"


def bench_path(name):
    return f"{RESULTS}/benchmarks/{name}.tsv"


def run_settings(run):
    """Everything one run's jobs need, as written to results/<study>/runs/<run>.json."""
    from gdmd.study import run_settings as settings

    return settings(config, run)


def is_trained(run):
    return RUNS[run]["method"] != "teacher"


def run_checkpoint(wildcards):
    """The trained generator a student run samples from (nothing for teacher runs)."""
    if is_trained(wildcards.run):
        return f"{RESULTS}/train/{wildcards.run}/seed{wildcards.seed}/final"
    return []


def trained_checkpoints():
    return [
        f"{RESULTS}/train/{run}/seed{seed}/final"
        for run in RUNS
        if is_trained(run)
        for seed in SEEDS
    ]


def prompts_args():
    """Command-line arguments of the `prompts` job, taken from the config's `prompts:` section."""
    src = PROMPTS["source"]
    if src == "shapes":
        return (
            f"--source shapes --per-tag {PROMPTS.get('per_tag', 50)}"
            f" --seed {PROMPTS.get('seed', 0)}"
        )
    args = "--source geneval"
    if "geneval_dir" in PROMPTS:
        args += f" --geneval-dir {PROMPTS['geneval_dir']}"
    if "limit" in PROMPTS:
        args += f" --limit {PROMPTS['limit']}"
    return args


def geneval_args():
    """Backend arguments of the `geneval` job, taken from the config's `geneval:` section."""
    g = config["geneval"]
    args = f"--backend {g['backend']}"
    if g["backend"] != "shapes":
        args += (
            f" --detector-weights {g['detector_weights']}"
            f" --color-weights {g['color_weights']}"
        )
    if "batch_size" in g:
        args += f" --batch-size {g['batch_size']}"
    return args


def all_runs_seeds(pattern):
    return expand(pattern, run=list(RUNS), seed=SEEDS)


def preference_weights():
    return ",".join(f"{k}={v}" for k, v in config["preference"]["weights"].items())


# -- pretraining (rules/pretrain.smk) --
PRETRAIN_OUT = config.get("pretrain", {}).get("out", f"results/pretrain/{STUDY}")
PRETRAIN_CONFIG = config.get("pretrain", {}).get("config", "")


def teacher_stages():
    """1 + the number of `teacher_finetune:` stages of the pretraining config (1 where the
    file is absent or unreadable: the pretraining CLI then reports what is wrong with it).
    """
    from gdmd.config import read_yaml
    from gdmd.io import UserError

    try:
        stages = read_yaml(PRETRAIN_CONFIG).get("teacher_finetune") or []
    except UserError:
        return 1
    return 1 + (len(stages) if isinstance(stages, list) else 0)


N_TEACHER_STAGES = teacher_stages()


def teacher_dir(stage):
    if stage == N_TEACHER_STAGES:
        return f"{PRETRAIN_OUT}/teacher"
    return (
        f"{PRETRAIN_OUT}/teacher_base"
        if stage == 1
        else f"{PRETRAIN_OUT}/teacher_stage{stage}"
    )


def teacher_stage_args(stage, init):
    """The pretraining CLI's asset arguments of one teacher stage."""
    return (
        "teacher" if stage == 1 else f"teacher-finetune --stage {stage} --init {init}"
    )
