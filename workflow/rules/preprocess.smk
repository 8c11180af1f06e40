# preprocess: anatomy and BOLD onto the atlas grid; BOLD detrended, band-passed, censored
# (a sample mask in the raw sidecar), standardised; outputs are a BIDS derivative (common.smk).
# With shard.split_by: time each block of the run is cleaned on its own (--time-split).
# Anatomy-only sources (ADNI, BraTS) have no BOLD: the T1 alone, plus BraTS's other
# contrasts (normalised like the T1) and its segmentation (nearest neighbour).
# preprocess.chunk_mb bounds the memory of long runs; a resource knob, it reaches the job as a
# resource (not params: Snakemake compares params, and the shell text before formatting), so
# changing it reruns nothing.


rule preprocess:
    input:
        **anatomy_outputs(rules.acquire_subject),
        t1=rules.acquire_subject.output.t1,
        bold=rules.acquire_subject.output.bold if WRITES["bold"] else [],
        atlas=rules.acquire_atlas.output.atlas,
        confounds=rules.acquire_subject.output.confounds if WRITES["confounds"] else [],
    output:
        **preprocess_outputs(),
    log:
        f"{LOGS}/preprocess/{{subject}}.log",
    benchmark:
        f"{BENCH}/preprocess/{{subject}}.tsv"
    wildcard_constraints:
        subject=PER_SUBJECT_RULES,  # no subject when batched (batches.smk)
    threads: 1
    resources:
        **stage_resources("preprocess"),
        chunk_mb=SETTINGS.preprocess.chunk_mb,
    params:
        settings=section_json("preprocess"),
        code=fingerprint("modalmerge.data.preprocess"),
        optional=optional_args,
        extra=extra_anatomy_args,
        time_split=time_split_args(),
    shell:
        "modalmerge preprocess --settings {params.settings:q} --t1 {input.t1:q}"
        " --atlas {input.atlas:q} {params.optional} {params.extra} {params.time_split}"
        " --out-t1 {output.t1:q} --chunk-mb {resources.chunk_mb:q}"
        " > {log:q} 2>&1"
