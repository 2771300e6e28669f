import json
from pathlib import Path

from snakemake.utils import validate

from gdmd.study import resolve, validate_study

# A study may build on another (`base:`) and a run on another (`like:`), resolved first
# (gdmd.study.resolve); then the study config
# against its JSON schema, at parse time: first as one line naming the key
# (gdmd.study.validate_study), then through Snakemake, which also fills in defaults.
_resolved = resolve(config)
config.clear()
config.update(_resolved)
validate_study(config, workflow.source_path("../schemas/config.schema.yaml"), "config")
validate(config, schema="../schemas/config.schema.yaml")


def check_metrics():
    """The preference metrics against the study's weight paths, at parse time."""
    from gdmd.io import UserError
    from eval.preference import check_metric

    for i, name in enumerate(config["preference"]["metrics"]):
        problem = check_metric(
            name, config["preference"]["weights"], "add {} to preference.weights"
        )
        if problem:
            raise UserError(f"config: preference.metrics[{i}]: {problem}")


def train_config(run):
    """A student run's `train:` section as its method's typed config, defaults filled in
    (torch-free: gdmd.methods imports no method code until a method runs)."""
    from gdmd import config as cfglib
    from gdmd.methods import get_method

    r = config["runs"][run]
    return cfglib.from_dict(
        get_method(r["method"]).Config, r.get("train", {}), f"runs.{run}.train"
    )


def check_train_sections():
    """Each student run's `train:` section against its method's typed config (keys, types,
    ranges), and its rewards against the study's weight paths, at parse time (torch-free:
    gdmd.methods imports no method code until a method runs)."""
    from gdmd.io import UserError
    from eval.preference import check_metric

    for name, r in config["runs"].items():
        if r["method"] == "teacher":
            continue
        where = f"runs.{name}.train"
        cfg = train_config(name)
        for i, term in enumerate(getattr(cfg, "rewards", ())):
            problem = check_metric(
                term.metric,
                config["preference"]["weights"],
                "add {} to preference.weights",
            )
            if problem:
                raise UserError(f"{where}.rewards[{i}].metric: {problem}")


check_metrics()
check_train_sections()

# Every rule runs in the project's environment; the usual way is to create it once
# (`make setup` or `conda env create -f environment.yml`) and run snakemake inside it.
ENV = "../../environment.yml"

STUDY = config["study"]
RESULTS = f"results/{STUDY}"
RUNS = config["runs"]
if config.get("report", {}).get("order"):  # the table's row order (every run, once)
    _order = config["report"]["order"]
    if sorted(_order) != sorted(RUNS):
        from gdmd.io import UserError

        raise UserError(
            f"config: report.order: must list every run once ({', '.join(RUNS)}), got {', '.join(_order)}"
        )
    RUNS = {name: RUNS[name] for name in _order}
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


def train_priority(wildcards):
    """Longest training first, so that the job left running alone at the end of a study on
    a small machine is a short one. A rough cost, mapped into (0, 1) to stay below the
    longest teacher sampling (priority 1, `sample_priority`) and above the other sampling
    and scoring jobs (0): iterations x batch x (one critic update + every gen_every-th
    iteration a generator update, which costs DMD 1.7 critic updates and each method its
    `generator_cost` times that: benchmarks/results/step_time.json)."""
    cfg = train_config(wildcards.run)
    per_iteration = 1 + 1.7 * cfg.generator_cost / cfg.gen_every
    cost = cfg.iterations * cfg.batch_size * per_iteration
    return cost / (cost + 1e5)


def nfe(run):
    """Network evaluations per image of a run's sampler (CFG doubles a teacher's steps)."""
    r = RUNS[run]
    return r["steps"] * (
        2 if not is_trained(run) and r.get("cfg_scale", 1.0) > 1 else 1
    )


def sample_priority(wildcards):
    """The study's longest sampling job (the teacher run with the most NFE) starts at once,
    with the pairs, before the trainings; every other sampling job is short and waits behind
    the trainings (priority 0, as the scoring jobs), so that on a small machine they fill the
    cores while the last training runs instead of delaying the trainings."""
    teachers = [r for r in RUNS if not is_trained(r)]
    return 1 if teachers and wildcards.run == max(teachers, key=nfe) else 0


def train_launcher(wildcards, resources):
    """`python -m`, or with several GPUs `accelerate launch` of one process per GPU."""
    gpus = int(resources.get("gpu", 1) or 1)
    if gpus > 1:
        return f"accelerate launch --multi_gpu --num_processes {gpus} -m"
    return "python -m"


def pairs_key(run):
    """What a student run's regression pairs depend on besides the seed (None: the run has
    no regression loss): runs with equal keys share one pairs file per seed."""
    from gdmd.methods.configs import source_options

    cfg = train_config(run)
    if cfg.reg_weight <= 0:
        return None
    s = run_settings(run)
    return json.dumps(
        [
            s["backbone"],
            s.get("backbone_options"),
            s["assets"],
            cfg.prompts,
            source_options(cfg),
            cfg.reg_pairs,
            cfg.reg_steps,
            cfg.real_cfg_scale,
        ],
        sort_keys=True,
        default=str,
    )


def pairs_owner(run):
    """The first run (in the study's order) whose pairs are this run's: it names the file."""
    key = pairs_key(run)
    return next(r for r in RUNS if is_trained(r) and pairs_key(r) == key)


def run_pairs(wildcards):
    """The teacher pairs a student run trains with (nothing without a regression loss)."""
    if pairs_key(wildcards.run) is None:
        return []
    owner = pairs_owner(wildcards.run)
    return f"{RESULTS}/pairs/{owner}/seed{wildcards.seed}.safetensors"


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


# -- reports (rules/report.smk) --
REPORT = config.get("report", {})
for _title, _group in REPORT.get("ablations", {}).items():
    for _run in _group["runs"]:
        if _run not in RUNS:
            from gdmd.io import UserError

            raise UserError(f"config: report.ablations.{_title}: {_run!r} is not a run")


def reference_args():
    """--reference arguments: the config's report.reference entries (FILE.csv[:id,...])."""
    refs = REPORT.get("reference", [])
    return ("--reference " + " ".join(refs)) if refs else ""


def reference_files():
    """The files of report.reference: a path, or a name in reports/reference/ (checked at
    parse time, so a misspelt name fails before any job runs)."""
    from gdmd.io import UserError
    from reports.tables import REFERENCE_DIR

    files = []
    for i, spec in enumerate(REPORT.get("reference", [])):
        path = Path(spec.partition(":")[0])
        found = path if path.exists() else REFERENCE_DIR / path
        if not found.is_file():
            known = ", ".join(sorted(p.name for p in REFERENCE_DIR.glob("*.csv")))
            raise UserError(
                f"config: report.reference[{i}]: {str(path)!r} is neither a file nor one of reports/reference/ ({known})"
            )
        files.append(str(found))
    return files


reference_files()


def reward_metrics():
    """Every metric a run trains on (for the reward-vs-GenEval figure)."""
    out = []
    for r in RUNS.values():
        for term in r.get("train", {}).get("rewards", []):
            if term["metric"] not in out:
                out.append(term["metric"])
    return out or list(config["preference"]["metrics"])


def training_logs():
    return [
        f"{RESULTS}/metrics/{run}/seed{seed}.csv"
        for run in RUNS
        if is_trained(run)
        for seed in SEEDS
    ]


def score_reports():
    """Every table and figure that score files and training logs alone make."""
    out = [f"{RESULTS}/tables/main.{ext}" for ext in ("csv", "md", "tex", "html")]
    out += [
        f"{RESULTS}/figures/{f}.png"
        for f in (
            "geneval_tags",
            "metrics_by_run",
            "metric_vs_nfe",
            "reward_vs_geneval",
        )
    ]
    if REPORT.get("ablations"):
        out.append(f"{RESULTS}/tables/ablations.md")
    if training_logs():
        out.append(f"{RESULTS}/figures/training_curves.png")
    return out


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

    if not PRETRAIN_CONFIG:  # a study without pretraining (the real ones)
        return 1
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
