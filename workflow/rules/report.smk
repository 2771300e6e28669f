# Tables and figures: built from score files and training logs only, so a study's report
# can be rebuilt from those alone (`--config scores_only=true`, see the Snakefile).


rule table:
    input:
        runs=expand(f"{RESULTS}/runs/{{run}}.json", run=list(RUNS)),
        geneval=all_runs_seeds(f"{RESULTS}/geneval/{{run}}/seed{{seed}}.summary.json"),
        preference=all_runs_seeds(
            f"{RESULTS}/preference/{{run}}/seed{{seed}}.summary.json"
        ),
        reference=reference_files(),
    output:
        csv=report(
            f"{RESULTS}/tables/main.csv",
            caption="../report/table.rst",
            category="Tables",
        ),
        html=report(
            f"{RESULTS}/tables/main.html",
            caption="../report/table_md.rst",
            category="Tables",
        ),
        md=f"{RESULTS}/tables/main.md",
        tex=f"{RESULTS}/tables/main.tex",
    log:
        log_path("table"),
    benchmark:
        bench_path("table")
    conda:
        ENV
    params:
        reference=reference_args(),
        title=STUDY,
    shell:
        "python -m reports table --runs {input.runs} --geneval {input.geneval}"
        " --preference {input.preference} {params.reference} --title {params.title}"
        " --out {output.csv} --markdown {output.md} --latex {output.tex} --html {output.html}"
        " > {log} 2>&1"


rule ablations:
    input:
        runs=expand(f"{RESULTS}/runs/{{run}}.json", run=list(RUNS)),
        geneval=all_runs_seeds(f"{RESULTS}/geneval/{{run}}/seed{{seed}}.summary.json"),
        preference=all_runs_seeds(
            f"{RESULTS}/preference/{{run}}/seed{{seed}}.summary.json"
        ),
    output:
        html=report(
            f"{RESULTS}/tables/ablations.html",
            caption="../report/ablations.rst",
            category="Tables",
        ),
        md=f"{RESULTS}/tables/ablations.md",
        tex=f"{RESULTS}/tables/ablations.tex",
    log:
        log_path("ablations"),
    benchmark:
        bench_path("ablations")
    conda:
        ENV
    params:
        groups=json.dumps(REPORT.get("ablations", {})),
    shell:
        "python -m reports ablations --runs {input.runs} --geneval {input.geneval}"
        " --preference {input.preference} --groups {params.groups:q}"
        " --markdown {output.md} --latex {output.tex} --html {output.html} > {log} 2>&1"


rule figure_geneval_tags:
    input:
        rules.table.output.csv,
    output:
        png=report(
            f"{RESULTS}/figures/geneval_tags.png",
            caption="../report/geneval_tags.rst",
            category="Figures",
        ),
        pdf=f"{RESULTS}/figures/geneval_tags.pdf",
    log:
        log_path("figure_geneval_tags"),
    benchmark:
        bench_path("figure_geneval_tags")
    conda:
        ENV
    params:
        command="geneval-bars",
    shell:
        "python -m reports {params.command} --table {input} --out {output.png} > {log} 2>&1"


rule figure_metrics_by_run:
    input:
        rules.table.output.csv,
    output:
        png=report(
            f"{RESULTS}/figures/metrics_by_run.png",
            caption="../report/metrics_by_run.rst",
            category="Figures",
        ),
        pdf=f"{RESULTS}/figures/metrics_by_run.pdf",
    log:
        log_path("figure_metrics_by_run"),
    benchmark:
        bench_path("figure_metrics_by_run")
    conda:
        ENV
    params:
        command="metrics-by-run",
    shell:
        "python -m reports {params.command} --table {input} --out {output.png} > {log} 2>&1"


rule figure_metric_vs_nfe:
    input:
        rules.table.output.csv,
    output:
        png=report(
            f"{RESULTS}/figures/metric_vs_nfe.png",
            caption="../report/metric_vs_nfe.rst",
            category="Figures",
        ),
        pdf=f"{RESULTS}/figures/metric_vs_nfe.pdf",
    log:
        log_path("figure_metric_vs_nfe"),
    benchmark:
        bench_path("figure_metric_vs_nfe")
    conda:
        ENV
    params:
        command="metric-vs-nfe",
    shell:
        "python -m reports {params.command} --table {input} --out {output.png} > {log} 2>&1"


rule figure_reward_vs_geneval:
    input:
        rules.table.output.csv,
    output:
        png=report(
            f"{RESULTS}/figures/reward_vs_geneval.png",
            caption="../report/reward_vs_geneval.rst",
            category="Figures",
        ),
        pdf=f"{RESULTS}/figures/reward_vs_geneval.pdf",
    log:
        log_path("figure_reward_vs_geneval"),
    benchmark:
        bench_path("figure_reward_vs_geneval")
    conda:
        ENV
    params:
        command=f"reward-vs-geneval --rewards {','.join(reward_metrics())}",
    shell:
        "python -m reports {params.command} --table {input} --out {output.png} > {log} 2>&1"


rule training_curves:
    input:
        training_logs(),
    output:
        png=report(
            f"{RESULTS}/figures/training_curves.png",
            caption="../report/training_curves.rst",
            category="Figures",
        ),
        pdf=f"{RESULTS}/figures/training_curves.pdf",
    log:
        log_path("training_curves"),
    benchmark:
        bench_path("training_curves")
    conda:
        ENV
    shell:
        "python -m reports training-curves --logs {input} --out {output.png} > {log} 2>&1"


rule study_grid:
    input:
        [f"{RESULTS}/samples/{run}/seed{SEEDS[0]}" for run in RUNS],
    output:
        png=report(
            f"{RESULTS}/figures/samples.png",
            caption="../report/samples.rst",
            category="Figures",
        ),
        pdf=f"{RESULTS}/figures/samples.pdf",
    log:
        log_path("study_grid"),
    benchmark:
        bench_path("study_grid")
    conda:
        ENV
    shell:
        "python -m reports study-grid --images {input} --out {output.png} > {log} 2>&1"


rule sample_grid:
    input:
        f"{RESULTS}/samples/{{run}}/seed{{seed}}",
    output:
        f"{RESULTS}/figures/samples/{{run}}_seed{{seed}}.png",
    log:
        log_path("sample_grid/{run}/seed{seed}"),
    benchmark:
        bench_path("sample_grid/{run}/seed{seed}")
    conda:
        ENV
    shell:
        "python -m reports sample-grid --images {input} --out {output} > {log} 2>&1"


rule reports_from_scores:
    input:
        score_reports(),
