rule prompts:
    output:
        f"{RESULTS}/prompts/evaluation_metadata.jsonl",
    log:
        log_path("prompts"),
    benchmark:
        bench_path("prompts")
    conda:
        ENV
    params:
        source=PROMPTS["source"],
        per_tag=PROMPTS["per_tag"],
        seed=PROMPTS["seed"],
    shell:
        "python -m eval.geneval.prompts --source {params.source} --per-tag {params.per_tag}"
        " --seed {params.seed} --out {output} > {log} 2>&1"


rule run_config:
    output:
        f"{RESULTS}/runs/{{run}}.json",
    log:
        log_path("run_config/{run}"),
    benchmark:
        bench_path("run_config/{run}")
    conda:
        ENV
    params:
        settings=lambda w: json.dumps(run_settings(w.run)),
    shell:
        "python -m gdmd.study --settings {params.settings:q} --out {output} > {log} 2>&1"
