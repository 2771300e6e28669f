rule sample:
    input:
        run=f"{RESULTS}/runs/{{run}}.json",
        metadata=rules.prompts.output.metadata,
        checkpoint=run_checkpoint,
    output:
        directory(f"{RESULTS}/samples/{{run}}/seed{{seed}}"),
    log:
        log_path("sample/{run}/seed{seed}"),
    benchmark:
        bench_path("sample/{run}/seed{seed}")
    # the longest teacher sampling before training, the others after (common.smk)
    priority: sample_priority
    conda:
        ENV
    threads: 1
    resources:
        gpu=1,
    params:
        checkpoint=lambda w, input: (
            f"--checkpoint {input.checkpoint}" if input.checkpoint else ""
        ),
        images_per_prompt=PROMPTS["images_per_prompt"],
    shell:
        "python -m gdmd.sample --run-config {input.run} --metadata {input.metadata}"
        " --images-per-prompt {params.images_per_prompt} --seed {wildcards.seed}"
        " {params.checkpoint} --out {output} > {log} 2>&1"
