# parcellate: per subject ROI time series, connectivity and ROI structural features
# (structural features only for anatomy-only sources).


rule parcellate:
    input:
        t1=rules.preprocess.output.t1,
        bold=rules.preprocess.output.bold if WRITES["bold"] else [],
        atlas=rules.acquire_cohort.output.atlas,
        labels=rules.acquire_cohort.output.labels,
    output:
        f"{ROOT}/parcellated/{{subject}}.npz",
    params:
        settings=section_json("parcellate"),
        code=fingerprint("modalmerge.data.parcellation.parcellate"),
        optional=lambda wildcards, input: optional_args(wildcards, input),
    log:
        f"{LOGS}/parcellate/{{subject}}.log",
    benchmark:
        f"{BENCH}/parcellate/{{subject}}.tsv"
    threads: 1
    resources:
        **cluster_resources(mem_mb=2000),
    shell:
        "modalmerge parcellate --settings {params.settings:q} --t1 {input.t1:q}"
        " {params.optional} --atlas {input.atlas:q} --labels {input.labels:q} --out {output:q}"
        " > {log:q} 2>&1"
