# Batched data stages (cluster.subjects_per_job > 1): one job, one process, per batch of
# subjects and stage (`modalmerge batch`), so the imports (nilearn: 2-5 s) are paid once per
# batch instead of once per subject. Each job writes the same per-subject files as the
# per-subject rules, atomically, one subject after the other. The unit of rerun is the batch:
# a change to one subject's source files or params reruns its batch (and what reads it), not
# the other batches (docs/architecture.md, "Batches").
#
# Two rules per batch and stage. A local rule writes the batch's commands file (the
# per-subject rule's command line for each subject, rule_command in batch_commands.smk); its
# inputs are every file the batch reads, its params the command lines. The batch job's only
# input is that file. Snakemake stores a job's inputs and their checksums in the metadata
# record of each output file: listing the batch's reads on the batch job cost (outputs x
# inputs) per batch, 24 MB of .snakemake/metadata at 100 subjects in batches of 50, read by
# every no-op rerun; the commands file stores them once. An updated input, or a changed
# setting, reruns the commands rule, whose new file reruns the batch. When the cleaned BOLD
# is temporary (preprocess.keep_intermediate: false), preprocess and parcellate are one job
# per batch (preprocess_parcellate_batch_NNNN) that deletes each subject's cleaned BOLD once
# its parcellate has read it (python -m modalmerge.batch_clean): as a temp() file it would have to be an input of the job that
# reads it, in every output's record again; and a parcellate rerun needs preprocess anyway.


include: "batch_commands.smk"


# batches exist for repeat 0 only (common.smk refuses subjects_per_job > 1 with repeats > 1):
# every path with the {rep} wildcard filled in as ""
LOGS0, BENCH0 = LOGS.replace("{rep}", ""), BENCH.replace("{rep}", "")
ATLAS = rules.acquire_atlas.output.atlas.replace("{rep}", "")
LABELS = rules.acquire_atlas.output.labels.replace("{rep}", "")
RAW, PRE, PARC = subject_outputs(), preprocess_outputs(), parcellate_outputs()
# shard.volume_series reads the cleaned BOLD after parcellate: then the two stay separate
# batch jobs and Snakemake deletes the temp() BOLD once shard has run
TEMP_BOLD = (
    WRITES["bold"]
    and not SETTINGS.preprocess.keep_intermediate
    and not SETTINGS.shard.volume_series.enabled
)

for _i, _batch in enumerate(BATCHES if SUBJECTS_PER_JOB > 1 else []):
    _tag = f"batch-{_i:04d}"
    _raw = {s: subject_files(RAW, s) for s in _batch}
    _pre = {s: subject_files(PRE, s) for s in _batch}
    _parc = {s: subject_files(PARC, s) for s in _batch}
    # what each stage reads (as its per-subject rule): the source files; the raw files but
    # the description text, with the atlas; the preprocessed T1 and BOLD (sidecar) and atlas
    _reads = {
        "acquire": [f for s in _batch for f in PLAN["inputs"][s]],
        "preprocess": [f for s in _batch for k, f in _raw[s].items() if k != "text"] + [ATLAS],
        "parcellate": [
            f for s in _batch for k, f in _pre[s].items() if k in ("t1", "bold", "bold_json")
        ]
        + [ATLAS, LABELS],
    }

    rule:
        name:
            f"acquire_commands_{_i:04d}"
        input:
            _reads["acquire"],
        output:
            f"{ROOT0}/plan/acquire-{_tag}.json",
        localrule: True
        params:
            commands=batch_commands(
                [rule_command(rules.acquire_subject, s, {}, _raw[s]) for s in _batch]
            ),
        run:
            write_text_atomic(output[0], params.commands)

    rule:
        name:
            f"acquire_batch_{_i:04d}"
        input:
            commands=f"{ROOT0}/plan/acquire-{_tag}.json",
        output:
            [f for s in _batch for f in _raw[s].values()],
        log:
            f"{LOGS0}/acquire/{_tag}.log",
        benchmark:
            f"{BENCH0}/acquire/{_tag}.tsv"
        threads: 1
        resources:
            **batch_resources("acquire_subject", len(_batch), _reads["acquire"]),
        params:
            code=ACQUIRE_CODE,
        shell:
            "modalmerge batch --commands-file {input.commands:q} > {log:q} 2>&1"

    if TEMP_BOLD:

        rule:
            name:
                f"preprocess_parcellate_commands_{_i:04d}"
            input:
                _reads["preprocess"] + [LABELS],
            output:
                f"{ROOT0}/plan/preprocess_parcellate-{_tag}.json",
            localrule: True
            params:
                commands=batch_commands(
                    [
                        step
                        for s in _batch
                        for step in (
                            rule_command(rules.preprocess, s, _raw[s] | {"atlas": ATLAS}, _pre[s]),
                            rule_command(
                                rules.parcellate,
                                s,
                                _pre[s] | {"atlas": ATLAS, "labels": LABELS},
                                _parc[s],
                            ),
                            ["remove-intermediate", _pre[s]["bold"]],
                        )
                    ]
                ),
            run:
                write_text_atomic(output[0], params.commands)

        rule:
            name:
                f"preprocess_parcellate_batch_{_i:04d}"
            input:
                commands=f"{ROOT0}/plan/preprocess_parcellate-{_tag}.json",
            output:
                [f for s in _batch for k, f in _pre[s].items() if k != "bold"],
                [f for s in _batch for f in _parc[s].values()],
            log:
                f"{LOGS0}/preprocess_parcellate/{_tag}.log",
            benchmark:
                f"{BENCH0}/preprocess_parcellate/{_tag}.tsv"
            threads: 1
            resources:
                **batch_resources("preprocess", len(_batch), _reads["preprocess"]),
            params:
                code=fingerprint(
                    "modalmerge.batch_clean",
                    "modalmerge.data.preprocess",
                    "modalmerge.data.parcellation.parcellate",
                ),
            shell:
                "python -m modalmerge.batch_clean {input.commands:q} > {log:q} 2>&1"

    else:

        rule:
            name:
                f"preprocess_commands_{_i:04d}"
            input:
                _reads["preprocess"],
            output:
                f"{ROOT0}/plan/preprocess-{_tag}.json",
            localrule: True
            params:
                commands=batch_commands(
                    [
                        rule_command(rules.preprocess, s, _raw[s] | {"atlas": ATLAS}, _pre[s])
                        for s in _batch
                    ]
                ),
            run:
                write_text_atomic(output[0], params.commands)

        rule:
            name:
                f"preprocess_batch_{_i:04d}"
            input:
                commands=f"{ROOT0}/plan/preprocess-{_tag}.json",
            output:
                flagged_outputs([(k, f) for s in _batch for k, f in _pre[s].items()]),
            log:
                f"{LOGS0}/preprocess/{_tag}.log",
            benchmark:
                f"{BENCH0}/preprocess/{_tag}.tsv"
            threads: 1
            resources:
                **batch_resources("preprocess", len(_batch), _reads["preprocess"]),
            params:
                code=fingerprint("modalmerge.data.preprocess"),
            shell:
                "modalmerge batch --commands-file {input.commands:q} > {log:q} 2>&1"

        rule:
            name:
                f"parcellate_commands_{_i:04d}"
            input:
                _reads["parcellate"],
            output:
                f"{ROOT0}/plan/parcellate-{_tag}.json",
            localrule: True
            params:
                commands=batch_commands(
                    [
                        rule_command(
                            rules.parcellate,
                            s,
                            _pre[s] | {"atlas": ATLAS, "labels": LABELS},
                            _parc[s],
                        )
                        for s in _batch
                    ]
                ),
            run:
                write_text_atomic(output[0], params.commands)

        rule:
            name:
                f"parcellate_batch_{_i:04d}"
            input:
                commands=f"{ROOT0}/plan/parcellate-{_tag}.json",
            output:
                [f for s in _batch for f in _parc[s].values()],
            log:
                f"{LOGS0}/parcellate/{_tag}.log",
            benchmark:
                f"{BENCH0}/parcellate/{_tag}.tsv"
            threads: 1
            resources:
                **batch_resources("parcellate", len(_batch), _reads["parcellate"]),
            params:
                code=fingerprint("modalmerge.data.parcellation.parcellate"),
            shell:
                "modalmerge batch --commands-file {input.commands:q} > {log:q} 2>&1"
