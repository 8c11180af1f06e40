# acquire: map the data source (synthetic generator or a dataset on disk) onto raw/ in BIDS layout.
# The dataset's own files are inputs (their mtimes rerun what read them), and each job's params
# carry only what concerns it: a new subject reruns the cohort table, not the atlas or the other
# subjects (docs/architecture.md, "What reruns").


rule acquire_atlas:
    input:
        source_cohort_files(config["dataset"], "atlas"),
    output:
        atlas=f"{ROOT}/atlas/atlas.nii.gz",
        labels=f"{ROOT}/atlas/labels.tsv",
    log:
        f"{LOGS}/acquire/atlas.log",
    benchmark:
        f"{BENCH}/acquire/atlas.tsv"
    threads: 1
    resources:
        **stage_resources("acquire_atlas"),
    params:
        dataset=lambda wildcards: as_json(source_atlas_dataset(rep_dataset(wildcards))),
        code=ACQUIRE_CODE,
        root=lambda wildcards, output: dataset_root(output.atlas),
    shell:
        "modalmerge acquire-cohort --part atlas --dataset {params.dataset:q}"
        " --root {params.root:q} > {log:q} 2>&1"


rule acquire_cohort:
    input:
        source_cohort_files(config["dataset"], "table"),
    output:
        participants=f"{ROOT}/raw/participants.tsv",
        # always written: header-only unless on_error: exclude left subjects out
        excluded=report(
            f"{ROOT}/raw/excluded.tsv",
            caption="../report/excluded.rst",
            category="Cohort",
        ),
    log:
        f"{LOGS}/acquire/cohort.log",
    benchmark:
        f"{BENCH}/acquire/cohort.tsv"
    threads: 1
    resources:
        **stage_resources("acquire_cohort"),
    params:
        dataset=lambda wildcards: as_json(rep_dataset(wildcards)),
        code=ACQUIRE_CODE,
        root=lambda wildcards, output: dataset_root(output.participants),
    shell:
        "modalmerge acquire-cohort --part table --dataset {params.dataset:q}"
        " --root {params.root:q} > {log:q} 2>&1"


rule acquire_subject:
    input:
        lambda wildcards: PLAN["inputs"][wildcards.subject],
    output:
        **subject_outputs(),
    log:
        f"{LOGS}/acquire/{{subject}}.log",
    benchmark:
        f"{BENCH}/acquire/{{subject}}.tsv"
    wildcard_constraints:
        subject=PER_SUBJECT_RULES,  # no subject when batched (batches.smk)
    threads: 1
    resources:
        **stage_resources("acquire_subject"),
    params:
        dataset=lambda wildcards: as_json(subject_params(wildcards)),
        code=ACQUIRE_CODE,
        root=lambda wildcards, output: dataset_root(output.t1),
    shell:
        "modalmerge acquire-subject --dataset {params.dataset:q} --root {params.root:q}"
        " --subject {wildcards.subject:q} > {log:q} 2>&1"
