# shard: subject-level train/val/test splits, sliding windows, HDF5 shards and a manifest.


# The file lists go to the shard job through a JSON file, not its command line: a few
# hundred subjects' paths exceed the kernel's argument limit (E2BIG). A local job writes it;
# it reruns (and so does shard) only when the lists change.
localrules:
    shard_inputs,


rule shard_inputs:
    output:
        f"{ROOT}/plan/shard_inputs.json",
    log:
        f"{LOGS}/shard/shard_inputs.log",
    params:
        inputs=shard_inputs_json,
    run:
        write_text_atomic(output[0], params.inputs)


rule shard:
    input:
        inputs_json=rules.shard_inputs.output[0],
        # per-subject files (allow_missing: {rep}, the repeat, is filled from the job's
        # output); batched, the flags of the batches that write them instead (batches.smk)
        parcellated=unbatched(
            expand(rules.parcellate.output.npz, subject=SUBJECTS, allow_missing=True)
        ),
        anatomy=unbatched(expand(rules.preprocess.output.t1, subject=SUBJECTS, allow_missing=True)),
        texts=unbatched(
            expand(rules.acquire_subject.output.text, subject=SUBJECTS, allow_missing=True)
            if WRITES["text"]
            else []
        ),
        participants=rules.acquire_cohort.output.participants,
        extra_anatomy=unbatched(preprocessed_anatomy()),
        point_clouds=unbatched(
            expand(rules.acquire_subject.output.point_cloud, subject=SUBJECTS, allow_missing=True)
            if POINT_CLOUD
            else []
        ),
        # connectome: true only: the structural connectome TSVs (the graph_sc view)
        sc=unbatched(
            expand(rules.acquire_subject.output.sc, subject=SUBJECTS, allow_missing=True)
            if CONNECTOME
            else []
        ),
        batches=batch_flags(BATCH_STAGES),
        # shard.volume_series only: the cleaned BOLD (a temp() output kept until shard has run)
        bold=volume_series_bold(),
    output:
        directory(f"{FROOT}/shards"),
    log:
        f"{FLOGS}/shard/shard.log",
    benchmark:
        f"{FBENCH}/shard/shard.tsv"
    threads: 1
    resources:
        **stage_resources("shard"),
    params:
        settings=section_json("shard"),
        code=fingerprint("modalmerge.data.shards.subjects"),
    shell:
        "modalmerge shard --settings {params.settings:q} --inputs-json {input.inputs_json:q}"
        " --out {output:q} > {log:q} 2>&1"
