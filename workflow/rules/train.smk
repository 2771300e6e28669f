# Training of student runs (method != teacher). One core per job locally (jobs run side by
# side; the pinned numerics make results independent of the thread count); cluster
# profiles set their own threads. The final checkpoint is the output; the
# work directory beside it (checkpoints every N iterations, metrics.csv) is not, so a
# preempted or failed job resumes from it when rerun. The log is appended to, so it keeps
# every attempt (and the iteration each one resumed from). A job granted several GPUs
# (the profile's `gpu` resource) trains data-parallel, one process per GPU, through
# `accelerate launch` (gdmd/distributed.py); with one, a plain process.
#
# A run with DMD's regression loss trains on teacher ODE pairs made once per seed by the
# `pairs` rule and shared by every run with the same pair settings (common.smk: pairs_key);
# the file is named after the first such run.


rule pairs:
    input:
        run=f"{RESULTS}/runs/{{run}}.json",
    output:
        f"{RESULTS}/pairs/{{run}}/seed{{seed}}.safetensors",
    log:
        log_path("pairs/{run}/seed{seed}"),
    benchmark:
        bench_path("pairs/{run}/seed{seed}")
    priority: 2  # every student of the seed waits for it
    conda:
        ENV
    threads: 1
    resources:
        gpu=1,
    shell:
        "python -m gdmd.pairs --run-config {input.run} --seed {wildcards.seed}"
        " --out {output} > {log} 2>&1"


rule train:
    input:
        run=f"{RESULTS}/runs/{{run}}.json",
        pairs=run_pairs,
    output:
        final=directory(f"{RESULTS}/train/{{run}}/seed{{seed}}/final"),
        metrics=f"{RESULTS}/metrics/{{run}}/seed{{seed}}.csv",
    log:
        log_path("train/{run}/seed{seed}"),
    benchmark:
        bench_path("train/{run}/seed{seed}")
    priority: train_priority
    conda:
        ENV
    threads: 1
    resources:
        gpu=1,
    params:
        launch=train_launcher,
        pairs=lambda wildcards, input: f"--pairs {input.pairs}" if input.pairs else "",
    shell:
        "{params.launch} gdmd.train --run-config {input.run} --seed {wildcards.seed}"
        " --out {output.final} --metrics-out {output.metrics} {params.pairs} >> {log} 2>&1"
