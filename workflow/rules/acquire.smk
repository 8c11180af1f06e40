# acquire: map the data source (synthetic generator or a dataset on disk) onto raw/ in BIDS layout.


rule acquire_cohort:
    output:
        participants=f"{ROOT}/raw/participants.tsv",
        atlas=f"{ROOT}/atlas/atlas.nii.gz",
        labels=f"{ROOT}/atlas/labels.tsv",
    log:
        f"{LOGS}/acquire/cohort.log",
    benchmark:
        f"{BENCH}/acquire/cohort.tsv"
    threads: 1
    resources:
        **cluster_resources(mem_mb=2000),
    params:
        dataset=as_json(config["dataset"]),
        code=ACQUIRE_CODE,
        root=lambda wildcards, output: dataset_root(output.atlas),
    shell:
        "modalmerge acquire-cohort --dataset {params.dataset:q} --root {params.root:q} > {log:q} 2>&1"


rule acquire_subject:
    output:
        **subject_outputs(),
    log:
        f"{LOGS}/acquire/{{subject}}.log",
    benchmark:
        f"{BENCH}/acquire/{{subject}}.tsv"
    threads: 1
    resources:
        **cluster_resources(mem_mb=2000),
    params:
        dataset=as_json(config["dataset"]),
        code=ACQUIRE_CODE,
        root=lambda wildcards, output: dataset_root(output.t1),
    shell:
        "modalmerge acquire-subject --dataset {params.dataset:q} --root {params.root:q}"
        " --subject {wildcards.subject:q} > {log:q} 2>&1"
