# preprocess: anatomy and BOLD onto the atlas grid; BOLD detrended, band-passed, standardised.


rule preprocess:
    input:
        t1=rules.acquire_subject.output.t1,
        bold=rules.acquire_subject.output.bold,
        atlas=rules.acquire_cohort.output.atlas,
        confounds=rules.acquire_subject.output.confounds if WRITES["confounds"] else [],
    output:
        t1=f"{ROOT}/preproc/{{subject}}_T1w.nii.gz",
        bold=f"{ROOT}/preproc/{{subject}}_bold.nii.gz",
    params:
        settings=as_json(config["preprocess"]),
        code=fingerprint("modalmerge.data.preprocess"),
        confounds=lambda wildcards, input: (
            f"--confounds {shlex.quote(input.confounds)}" if input.confounds else ""
        ),
    log:
        f"{LOGS}/preprocess/{{subject}}.log",
    benchmark:
        f"{BENCH}/preprocess/{{subject}}.tsv"
    threads: 1
    resources:
        **cluster_resources(mem_mb=2000),
    conda:
        ENV
    shell:
        "modalmerge preprocess --settings {params.settings:q} --t1 {input.t1:q} --bold {input.bold:q}"
        " --atlas {input.atlas:q} {params.confounds} --out-t1 {output.t1:q} --out-bold {output.bold:q}"
        " > {log:q} 2>&1"
