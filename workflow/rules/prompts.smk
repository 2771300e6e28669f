rule prompts:
    output:
        metadata=f"{RESULTS}/prompts/evaluation_metadata.jsonl",
        names=f"{RESULTS}/prompts/object_names.txt",
    log:
        log_path("prompts"),
    benchmark:
        bench_path("prompts")
    # the settings files first, so the teachers' sampling (priority 1) can start before training
    priority: 2
    conda:
        ENV
    params:
        args=prompts_args(),
    shell:
        "python -m eval.geneval.prompts {params.args} --out {output.metadata} > {log} 2>&1"


rule run_config:
    output:
        f"{RESULTS}/runs/{{run}}.json",
    log:
        log_path("run_config/{run}"),
    benchmark:
        bench_path("run_config/{run}")
    priority: 2
    conda:
        ENV
    params:
        settings=lambda w: json.dumps(run_settings(w.run)),
    shell:
        "python -m gdmd.study --settings {params.settings:q} --out {output} > {log} 2>&1"
