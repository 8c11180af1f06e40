# parcellate: per subject ROI time series, connectivity and ROI structural features, as
# BIDS-derivative TSVs plus the .npz the shard stage reads (structural features only for
# anatomy-only sources). A cleaned run larger than preprocess.chunk_mb is read in chunks of
# volumes; like preprocess, the chunk size is a resource, so changing it reruns nothing.


rule parcellate:
    input:
        t1=rules.preprocess.output.t1,
        bold=rules.preprocess.output.bold if WRITES["bold"] else [],
        bold_json=rules.preprocess.output.bold_json if WRITES["bold"] else [],
        atlas=rules.acquire_atlas.output.atlas,
        labels=rules.acquire_atlas.output.labels,
    output:
        **parcellate_outputs(),
    log:
        f"{LOGS}/parcellate/{{subject}}.log",
    benchmark:
        f"{BENCH}/parcellate/{{subject}}.tsv"
    wildcard_constraints:
        subject=PER_SUBJECT_RULES,  # no subject when batched (batches.smk)
    threads: 1
    resources:
        **stage_resources("parcellate"),
        chunk_mb=SETTINGS.preprocess.chunk_mb,
    params:
        settings=section_json("parcellate"),
        code=fingerprint("modalmerge.data.parcellation.parcellate"),
        optional=optional_args,
    shell:
        "modalmerge parcellate --settings {params.settings:q} --t1 {input.t1:q}"
        " {params.optional} --atlas {input.atlas:q} --labels {input.labels:q}"
        " --out {output.npz:q} --out-features {output.features:q}"
        " --chunk-mb {resources.chunk_mb:q} > {log:q} 2>&1"
