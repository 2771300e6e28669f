rule table:
    input:
        runs=expand(f"{RESULTS}/runs/{{run}}.json", run=list(RUNS)),
        geneval=all_runs_seeds(f"{RESULTS}/geneval/{{run}}/seed{{seed}}.summary.json"),
        preference=all_runs_seeds(
            f"{RESULTS}/preference/{{run}}/seed{{seed}}.summary.json"
        ),
    output:
        csv=report(
            f"{RESULTS}/tables/main.csv",
            caption="../report/table.rst",
            category="Tables",
        ),
        md=f"{RESULTS}/tables/main.md",
    log:
        log_path("table"),
    benchmark:
        bench_path("table")
    conda:
        ENV
    shell:
        "python -m reports table --runs {input.runs} --geneval {input.geneval}"
        " --preference {input.preference} --out {output.csv} --markdown {output.md}"
        " > {log} 2>&1"


rule geneval_figure:
    input:
        rules.table.output.csv,
    output:
        report(
            f"{RESULTS}/figures/geneval_tags.png",
            caption="../report/geneval_tags.rst",
            category="Figures",
        ),
    log:
        log_path("geneval_figure"),
    benchmark:
        bench_path("geneval_figure")
    conda:
        ENV
    shell:
        "python -m reports geneval-bars --table {input} --out {output} > {log} 2>&1"


rule sample_grid:
    input:
        f"{RESULTS}/samples/{{run}}/seed{{seed}}",
    output:
        report(
            f"{RESULTS}/figures/samples/{{run}}_seed{{seed}}.png",
            caption="../report/samples.rst",
            category="Samples",
        ),
    log:
        log_path("sample_grid/{run}/seed{seed}"),
    benchmark:
        bench_path("sample_grid/{run}/seed{seed}")
    conda:
        ENV
    shell:
        "python -m reports sample-grid --images {input} --out {output} > {log} 2>&1"
