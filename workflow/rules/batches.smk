# Batched data stages (cluster.subjects_per_job > 1): one job, one process, per batch of
# subjects and stage (`modalmerge batch`), so the imports (nilearn: 2-5 s) are paid once per
# batch instead of once per subject. Each job writes the same per-subject files as the
# per-subject rules, atomically, one subject after the other. The unit of rerun is the batch:
# a change to one subject's source files or params reruns its batch (and what reads it), not
# the other batches (docs/architecture.md, "Batches"). The command lines go through a file
# written by a local rule (as shard_inputs does): as a batch job's params they would be stored
# in Snakemake's metadata once per output file (89 MB at 100 subjects in batches of 50).


include: "batch_commands.smk"


# batches exist for repeat 0 only (common.smk refuses subjects_per_job > 1 with repeats > 1):
# every path with the {rep} wildcard filled in as ""
LOGS0, BENCH0 = LOGS.replace("{rep}", ""), BENCH.replace("{rep}", "")
ATLAS = rules.acquire_atlas.output.atlas.replace("{rep}", "")
LABELS = rules.acquire_atlas.output.labels.replace("{rep}", "")
RAW, PRE, PARC = subject_outputs(), preprocess_outputs(), parcellate_outputs()

for _i, _batch in enumerate(BATCHES if SUBJECTS_PER_JOB > 1 else []):
    _tag = f"batch-{_i:04d}"
    _raw = {s: subject_files(RAW, s) for s in _batch}
    _pre = {s: subject_files(PRE, s) for s in _batch}
    _parc = {s: subject_files(PARC, s) for s in _batch}

    rule:
        name:
            f"acquire_commands_{_i:04d}"
        output:
            f"{ROOT0}/plan/acquire-{_tag}.json",
        localrule: True
        params:
            commands=batch_commands([acquire_command(s) for s in _batch]),
        run:
            write_text_atomic(output[0], params.commands)

    rule:
        name:
            f"acquire_batch_{_i:04d}"
        input:
            [f for s in _batch for f in PLAN["inputs"][s]],
            commands=f"{ROOT0}/plan/acquire-{_tag}.json",
        output:
            [f for s in _batch for f in _raw[s].values()],
        log:
            f"{LOGS0}/acquire/{_tag}.log",
        benchmark:
            f"{BENCH0}/acquire/{_tag}.tsv"
        threads: 1
        resources:
            **batch_resources("acquire_subject", len(_batch)),
        params:
            code=ACQUIRE_CODE,
        shell:
            "modalmerge batch --commands-file {input.commands:q} > {log:q} 2>&1"

    rule:
        name:
            f"preprocess_commands_{_i:04d}"
        output:
            f"{ROOT0}/plan/preprocess-{_tag}.json",
        localrule: True
        params:
            commands=batch_commands([preprocess_command(s, _raw[s], _pre[s]) for s in _batch]),
        run:
            write_text_atomic(output[0], params.commands)

    rule:
        name:
            f"preprocess_batch_{_i:04d}"
        input:  # what rule preprocess reads (not the description text)
            [f for s in _batch for k, f in _raw[s].items() if k != "text"],
            ATLAS,
            commands=f"{ROOT0}/plan/preprocess-{_tag}.json",
        output:
            flagged_outputs([(k, f) for s in _batch for k, f in _pre[s].items()]),
        log:
            f"{LOGS0}/preprocess/{_tag}.log",
        benchmark:
            f"{BENCH0}/preprocess/{_tag}.tsv"
        threads: 1
        resources:
            **batch_resources("preprocess", len(_batch)),
        params:
            code=fingerprint("modalmerge.data.preprocess"),
        shell:
            "modalmerge batch --commands-file {input.commands:q} > {log:q} 2>&1"

    rule:
        name:
            f"parcellate_commands_{_i:04d}"
        output:
            f"{ROOT0}/plan/parcellate-{_tag}.json",
        localrule: True
        params:
            commands=batch_commands([parcellate_command(s, _pre[s], _parc[s]) for s in _batch]),
        run:
            write_text_atomic(output[0], params.commands)

    rule:
        name:
            f"parcellate_batch_{_i:04d}"
        input:
            [f for s in _batch for k, f in _pre[s].items() if k in ("t1", "bold", "bold_json")],
            ATLAS,
            LABELS,
            commands=f"{ROOT0}/plan/parcellate-{_tag}.json",
        output:
            [f for s in _batch for f in _parc[s].values()],
        log:
            f"{LOGS0}/parcellate/{_tag}.log",
        benchmark:
            f"{BENCH0}/parcellate/{_tag}.tsv"
        threads: 1
        resources:
            **batch_resources("parcellate", len(_batch)),
        params:
            code=fingerprint("modalmerge.data.parcellation.parcellate"),
        shell:
            "modalmerge batch --commands-file {input.commands:q} > {log:q} 2>&1"
