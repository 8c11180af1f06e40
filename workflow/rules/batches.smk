# Batched data stages (cluster.subjects_per_job > 1): one job, one process, per batch of
# subjects and stage (`modalmerge batch`), so the imports (nilearn: 2-5 s) are paid once per
# batch instead of once per subject. Each job writes the same per-subject files as the
# per-subject rules, atomically, one subject after the other. The unit of rerun is the batch:
# a change to one subject's source files or params reruns its batch (and what reads it), not
# the other batches (docs/architecture.md, "Batches").
#
# Two rules per batch and stage, with the {rep} wildcard (each repeat has its own batches).
# A local rule writes the batch's commands file (the per-subject rule's command line for each
# subject, rule_command in batch_commands.smk); its inputs are what the batch reads: the
# source files (acquire), else the flag of the batch upstream and the atlas; its params the
# command lines. The batch job's only input is that file, its only output a flag file
# (plan/<stage>-batch-NNNN.done, touched by Snakemake on success): the per-subject files are
# not Snakemake outputs. Snakemake keeps a metadata record per output file and matches every
# requested file against every output of the rule that may make it (a regular expression
# each): with N per-subject outputs per batch a no-op rerun spent most of its time there
# (docs/benchmarks.md, "No-op rerun at 1,000 subjects"). A per-subject file deleted by hand
# is noticed at parse time instead (reopen_incomplete_batches: its batch's flag is removed).
# An updated source file, or a changed setting, reruns the commands rule, whose new file
# reruns the batch, whose new flag reruns the next stage's commands rule. When the cleaned
# BOLD is temporary (preprocess.keep_intermediate: false), preprocess and parcellate are one
# job per batch (preprocess_parcellate_batch_NNNN) that deletes each subject's cleaned BOLD
# once its parcellate has read it (python -m modalmerge.batch_clean); a parcellate rerun
# needs preprocess anyway.


include: "batch_commands.smk"


def write_commands(path, commands, log_path):
    """A batch's commands file, written atomically, and a one-line log of it (the commands
    rules are local: this is all they do)."""
    write_text_atomic(path, commands)
    write_text_atomic(log_path, f"wrote {path} ({len(commands)} characters)\n")


ATLAS, LABELS = rules.acquire_atlas.output.atlas, rules.acquire_atlas.output.labels
RAW, PRE, PARC = subject_outputs(), preprocess_outputs(), parcellate_outputs()
# shard.volume_series reads the cleaned BOLD after parcellate: then the two stay separate
# batch jobs, the temporary BOLDs are outputs of the preprocess batch (besides its flag), and
# Snakemake deletes them once shard has run
TEMP_BOLD = (
    WRITES["bold"]
    and not SETTINGS.preprocess.keep_intermediate
    and not SETTINGS.shard.volume_series.enabled
)
BATCH_STAGES = ("acquire",) + (
    ("preprocess_parcellate",) if TEMP_BOLD else ("preprocess", "parcellate")
)
if SUBJECTS_PER_JOB > 1 and workflow.is_main_process:
    reopen_incomplete_batches(BATCH_STAGES)

for _i, _batch in enumerate(BATCHES if SUBJECTS_PER_JOB > 1 else []):
    _tag = f"batch-{_i:04d}"

    rule:
        name:
            f"acquire_commands_{_i:04d}"
        input:
            acquire_reads(_batch, ""),
        output:
            batch_file("acquire", _i, "json"),
        log:
            f"{LOGS}/acquire/{_tag}-commands.log",
        localrule: True
        params:
            commands=commands_param(acquire_commands, _batch),
        run:
            write_commands(output[0], params.commands, log[0])

    rule:
        name:
            f"acquire_batch_{_i:04d}"
        input:
            commands=batch_file("acquire", _i, "json"),
        output:
            touch(batch_file("acquire", _i, "done")),
        log:
            f"{LOGS}/acquire/{_tag}.log",
        benchmark:
            f"{BENCH}/acquire/{_tag}.tsv"
        threads: 1
        resources:
            **batch_resources("acquire_subject", _batch, acquire_reads),
        params:
            code=ACQUIRE_CODE,
        shell:
            "modalmerge batch --commands-file {input.commands:q} > {log:q} 2>&1"

    if TEMP_BOLD:

        rule:
            name:
                f"preprocess_parcellate_commands_{_i:04d}"
            input:
                batch_file("acquire", _i, "done"),
                ATLAS,
                LABELS,
            output:
                batch_file("preprocess_parcellate", _i, "json"),
            log:
                f"{LOGS}/preprocess_parcellate/{_tag}-commands.log",
            localrule: True
            params:
                commands=commands_param(preprocess_parcellate_commands, _batch),
            run:
                write_commands(output[0], params.commands, log[0])

        rule:
            name:
                f"preprocess_parcellate_batch_{_i:04d}"
            input:
                commands=batch_file("preprocess_parcellate", _i, "json"),
            output:
                touch(batch_file("preprocess_parcellate", _i, "done")),
            log:
                f"{LOGS}/preprocess_parcellate/{_tag}.log",
            benchmark:
                f"{BENCH}/preprocess_parcellate/{_tag}.tsv"
            threads: 1
            resources:
                **batch_resources("preprocess", _batch, preprocess_reads),
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
                batch_file("acquire", _i, "done"),
                ATLAS,
            output:
                batch_file("preprocess", _i, "json"),
            log:
                f"{LOGS}/preprocess/{_tag}-commands.log",
            localrule: True
            params:
                commands=commands_param(preprocess_commands, _batch),
            run:
                write_commands(output[0], params.commands, log[0])

        rule:
            name:
                f"preprocess_batch_{_i:04d}"
            input:
                commands=batch_file("preprocess", _i, "json"),
            output:
                touch(batch_file("preprocess", _i, "done")),
                temporary_bolds(_batch, output=True),
            log:
                f"{LOGS}/preprocess/{_tag}.log",
            benchmark:
                f"{BENCH}/preprocess/{_tag}.tsv"
            threads: 1
            resources:
                **batch_resources("preprocess", _batch, preprocess_reads),
            params:
                code=fingerprint("modalmerge.data.preprocess"),
            shell:
                "modalmerge batch --commands-file {input.commands:q} > {log:q} 2>&1"

        rule:
            name:
                f"parcellate_commands_{_i:04d}"
            input:
                batch_file("preprocess", _i, "done"),
                ATLAS,
                LABELS,
                temporary_bolds(_batch),
            output:
                batch_file("parcellate", _i, "json"),
            log:
                f"{LOGS}/parcellate/{_tag}-commands.log",
            localrule: True
            params:
                commands=commands_param(parcellate_commands, _batch),
            run:
                write_commands(output[0], params.commands, log[0])

        rule:
            name:
                f"parcellate_batch_{_i:04d}"
            input:
                commands=batch_file("parcellate", _i, "json"),
            output:
                touch(batch_file("parcellate", _i, "done")),
            log:
                f"{LOGS}/parcellate/{_tag}.log",
            benchmark:
                f"{BENCH}/parcellate/{_tag}.tsv"
            threads: 1
            resources:
                **batch_resources("parcellate", _batch, parcellate_reads),
            params:
                code=fingerprint("modalmerge.data.parcellation.parcellate"),
            shell:
                "modalmerge batch --commands-file {input.commands:q} > {log:q} 2>&1"
