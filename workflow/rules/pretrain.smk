# The shapes study's pretrained assets. `snakemake pretrain` trains them into
# config["pretrain"]["out"]; `make pretrain` then installs them into resources/ (the
# study reads resources/, which no rule writes, so a fresh clone never retrains). The
# teacher trains in stages: pretrain_teacher_base (stage 1) from scratch, then one stage per
# entry of the pretraining config's `teacher_finetune:` list, each from the one before;
# the last stage writes {out}/teacher (pretrain_teacher), the others {out}/teacher_stage<K>.
# PRETRAIN_OUT, PRETRAIN_CONFIG, N_TEACHER_STAGES and the helpers are in common.smk.


rule pretrain_clip:
    input:
        PRETRAIN_CONFIG,
    output:
        directory(f"{PRETRAIN_OUT}/clip"),
    log:
        log_path("pretrain/clip"),
    benchmark:
        bench_path("pretrain/clip")
    conda:
        ENV
    threads: 4
    shell:
        "python -m gdmd.shapes.pretrain clip --config {input} --out {output} > {log} 2>&1"


rule pretrain_aesthetic:
    input:
        config=PRETRAIN_CONFIG,
        clip=rules.pretrain_clip.output[0],
    output:
        directory(f"{PRETRAIN_OUT}/aesthetic"),
    log:
        log_path("pretrain/aesthetic"),
    benchmark:
        bench_path("pretrain/aesthetic")
    conda:
        ENV
    threads: 4
    shell:
        "python -m gdmd.shapes.pretrain aesthetic --config {input.config} --clip {input.clip}"
        " --out {output} > {log} 2>&1"


rule pretrain_teacher_base:
    input:
        config=PRETRAIN_CONFIG,
        clip=rules.pretrain_clip.output[0],
    output:
        directory(f"{PRETRAIN_OUT}/teacher_base"),
    log:
        log_path("pretrain/teacher_base"),
    benchmark:
        bench_path("pretrain/teacher_base")
    conda:
        ENV
    threads: 4
    resources:
        gpu=1,
    shell:
        "python -m gdmd.shapes.pretrain teacher --config {input.config} --clip {input.clip}"
        " --out {output} > {log} 2>&1"


rule pretrain_teacher_stage:
    input:
        config=PRETRAIN_CONFIG,
        clip=rules.pretrain_clip.output[0],
        init=lambda w: teacher_dir(int(w.stage) - 1),
    output:
        directory(f"{PRETRAIN_OUT}/teacher_stage{{stage}}"),
    log:
        log_path("pretrain/teacher_stage{stage}"),
    benchmark:
        bench_path("pretrain/teacher_stage{stage}")
    wildcard_constraints:
        stage=r"\d+",
    conda:
        ENV
    threads: 4
    resources:
        gpu=1,
    params:
        asset=lambda w, input: teacher_stage_args(int(w.stage), input.init),
    shell:
        "python -m gdmd.shapes.pretrain {params.asset} --config {input.config} --clip {input.clip}"
        " --out {output} > {log} 2>&1"


rule pretrain_teacher:
    input:
        config=PRETRAIN_CONFIG,
        clip=rules.pretrain_clip.output[0],
        init=[teacher_dir(N_TEACHER_STAGES - 1)] if N_TEACHER_STAGES > 1 else [],
    output:
        directory(f"{PRETRAIN_OUT}/teacher"),
    log:
        log_path("pretrain/teacher"),
    benchmark:
        bench_path("pretrain/teacher")
    conda:
        ENV
    threads: 4
    resources:
        gpu=1,
    params:
        asset=lambda w, input: teacher_stage_args(N_TEACHER_STAGES, input.init),
    shell:
        "python -m gdmd.shapes.pretrain {params.asset} --config {input.config} --clip {input.clip}"
        " --out {output} > {log} 2>&1"


rule pretrain:
    default_target: False
    input:
        rules.pretrain_clip.output,
        rules.pretrain_aesthetic.output,
        rules.pretrain_teacher.output,
