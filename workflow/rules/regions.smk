# Region data (dataset kinds whose samples are regions, e.g. brainspace_group): the source
# writes one region table; shards split its regions in spatial blocks. The rules keep the
# subject DAG's names (acquire_cohort, shard), so train, evaluate and figures run unchanged.


rule acquire_cohort:
    output:
        regions=f"{ROOT}/raw/regions.tsv",
        # always written, header-only: region sources exclude no subject
        excluded=report(
            f"{ROOT}/raw/excluded.tsv",
            caption="../report/excluded.rst",
            category="Cohort",
        ),
        atlas=f"{ROOT}/atlas/atlas.nii.gz",
        labels=f"{ROOT}/atlas/labels.tsv",
    log:
        f"{LOGS}/acquire/cohort.log",
    benchmark:
        f"{BENCH}/acquire/cohort.tsv"
    threads: 1
    resources:
        **stage_resources("acquire_cohort"),
    params:
        dataset=as_json(config["dataset"]),
        code=ACQUIRE_CODE,
        root=lambda wildcards, output: dataset_root(output.atlas),
    shell:
        "modalmerge acquire-cohort --dataset {params.dataset:q} --root {params.root:q} > {log:q} 2>&1"


rule shard:
    input:
        regions=rules.acquire_cohort.output.regions,
    output:
        directory(f"{ROOT}/shards"),
    log:
        f"{LOGS}/shard/shard.log",
    benchmark:
        f"{BENCH}/shard/shard.tsv"
    threads: 1
    resources:
        **stage_resources("shard"),
    params:
        settings=section_json("shard_regions"),
        code=fingerprint("modalmerge.data.shards.regions"),
    shell:
        "modalmerge shard-regions --settings {params.settings:q} --regions {input.regions:q}"
        " --out {output:q} > {log:q} 2>&1"
