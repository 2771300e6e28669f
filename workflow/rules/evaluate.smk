rule geneval:
    input:
        images=f"{RESULTS}/samples/{{run}}/seed{{seed}}",
        names=rules.prompts.output.names,
    output:
        rows=f"{RESULTS}/geneval/{{run}}/seed{{seed}}.jsonl",
        summary=f"{RESULTS}/geneval/{{run}}/seed{{seed}}.summary.json",
    log:
        log_path("geneval/{run}/seed{seed}"),
    benchmark:
        bench_path("geneval/{run}/seed{seed}")
    conda:
        ENV
    threads: 1
    resources:
        gpu=1,
    params:
        args=geneval_args(),
    shell:
        "python -m eval.geneval --images {input.images} --object-names {input.names}"
        " {params.args} --out {output.rows} --summary {output.summary} > {log} 2>&1"


rule preference:
    input:
        f"{RESULTS}/samples/{{run}}/seed{{seed}}",
    output:
        scores=f"{RESULTS}/preference/{{run}}/seed{{seed}}.csv",
        summary=f"{RESULTS}/preference/{{run}}/seed{{seed}}.summary.json",
    log:
        log_path("preference/{run}/seed{seed}"),
    benchmark:
        bench_path("preference/{run}/seed{seed}")
    conda:
        ENV
    threads: 1
    resources:
        gpu=1,
    params:
        metrics=",".join(config["preference"]["metrics"]),
        weights=preference_weights(),
    shell:
        "python -m eval.preference --images {input} --metrics {params.metrics}"
        " --weights {params.weights} --out {output.scores} --summary {output.summary} > {log} 2>&1"
