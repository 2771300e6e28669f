# The shapes study's pretrained assets. `snakemake pretrain` trains them into
# config["pretrain"]["out"]; `make pretrain` then installs them into resources/ (the
# study reads resources/, which no rule writes, so a fresh clone never retrains). The
# teacher has two stages: pretrain_teacher_base from scratch, pretrain_teacher fine-tunes it.

PRETRAIN_OUT = config.get("pretrain", {}).get("out", f"results/pretrain/{STUDY}")
PRETRAIN_CONFIG = config.get("pretrain", {}).get("config", "")


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


rule pretrain_teacher:
    input:
        config=PRETRAIN_CONFIG,
        clip=rules.pretrain_clip.output[0],
        init=rules.pretrain_teacher_base.output[0],
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
    shell:
        "python -m gdmd.shapes.pretrain teacher-finetune --config {input.config} --clip {input.clip}"
        " --init {input.init} --out {output} > {log} 2>&1"


rule pretrain:
    default_target: False
    input:
        rules.pretrain_clip.output,
        rules.pretrain_aesthetic.output,
        rules.pretrain_teacher.output,
