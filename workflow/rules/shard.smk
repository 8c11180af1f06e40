# shard: subject-level train/val/test splits, sliding windows, HDF5 shards and a manifest.


rule shard:
    input:
        parcellated=expand(rules.parcellate.output.npz, subject=SUBJECTS),
        anatomy=expand(rules.preprocess.output.t1, subject=SUBJECTS),
        texts=(
            expand(rules.acquire_subject.output.text, subject=SUBJECTS) if WRITES["text"] else []
        ),
        participants=rules.acquire_cohort.output.participants,
        extra_anatomy=preprocessed_anatomy(),
    output:
        directory(f"{ROOT}/shards"),
    log:
        f"{LOGS}/shard/shard.log",
    benchmark:
        f"{BENCH}/shard/shard.tsv"
    threads: 1
    resources:
        **cluster_resources(mem_mb=4000),
    params:
        settings=section_json("shard"),
        subjects=SUBJECTS,
        code=fingerprint("modalmerge.data.shards.subjects"),
        channels=shard_anatomy_args,
        texts=lambda wildcards, input: (
            "--texts " + " ".join(shlex.quote(t) for t in input.texts) if input.texts else ""
        ),
    shell:
        "modalmerge shard --settings {params.settings:q} --subjects {params.subjects:q}"
        " --parcellated {input.parcellated:q} --anatomy {input.anatomy:q} {params.texts}"
        " {params.channels} --participants {input.participants:q} --out {output:q} > {log:q} 2>&1"
