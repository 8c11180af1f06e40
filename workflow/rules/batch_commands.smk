# Helpers of batches.smk (cluster.subjects_per_job > 1): the per-subject command lines a batch
# job runs, its files and resources. Functions only, as Snakemake's lint asks of rule files.
import inspect as _inspect
import json as _json
import os as _os
import sys as _sys

from snakemake.io import Namedlist as _Namedlist
from snakemake.utils import format as _format

from modalmerge import shellwords as _shellwords


def subject_files(outputs, subject, rep=""):
    """A rule's per-subject {key: pattern} (common.smk) with ``{subject}`` and the repeat's
    path suffix ``rep`` ("" for repeat 0) filled in."""
    return {
        key: str(pattern).replace("{subject}", subject).replace("{rep}", rep)
        for key, pattern in outputs.items()
    }


def rep_file(pattern, rep):
    """``pattern`` (a path with ``{rep}``) of the repeat with path suffix ``rep``."""
    return str(pattern).replace("{rep}", rep)


def batch_file(stage, i, extension):
    """``results/<name>{rep}/plan/<stage>-batch-NNNN.<extension>``: a batch's commands file
    (json) or the flag its job leaves on success (done), with the ``{rep}`` wildcard."""
    return f"{ROOT}/plan/{stage}-batch-{i:04d}.{extension}"


def rule_command(single, subject, inputs, outputs, rep=""):
    """The command line of the per-subject rule ``single`` (acquire_subject, preprocess, parcellate)
    for ``subject`` of the repeat with path suffix ``rep``, as a list without ``modalmerge`` and the log redirection:
    what a batch job runs for that subject. It is the rule's own shell text, formatted as
    Snakemake formats it, with the rule's own params (functions called with the subject's
    wildcards, ``inputs`` and ``outputs``) and resources: one argv builder for both forms,
    so a batch cannot drift from the rule (it once did). The words are read back with
    modalmerge.shellwords (shlex.split's words, ~9x faster on the quoted settings JSON)."""
    wildcards = _Namedlist(fromdict={"subject": subject, "rep": rep})
    named = {"wildcards": wildcards, "input": _Namedlist(fromdict=inputs)}
    named["output"] = _Namedlist(fromdict=outputs)
    params = {}
    for name, value in single.params.items():
        if callable(value):
            wanted = _inspect.signature(value).parameters
            value = value(**{k: named[k] for k in wanted if k in named})
        params[name] = value
    named["params"] = _Namedlist(fromdict=params)
    named["resources"] = _Namedlist(fromdict=dict(single.rule.resources))
    argv = _shellwords.split(_format(single.rule.shellcmd, log="LOG", **named))
    if argv[0] != "modalmerge" or ">" not in argv:  # the form every data-stage rule has
        raise ValueError(f"{single.rule.name} runs no 'modalmerge ... > {{log}} 2>&1'")
    return argv[1 : argv.index(">")]


def batch_commands(commands):
    """A batch's command lines as JSON: the content of its commands file."""
    return _json.dumps(commands, sort_keys=True)


def batch_resources(stage, batch, reads):
    """:func:`stage_resources` of ``stage`` for a job that runs the subjects of ``batch`` one
    after another: memory of one subject's share of ``reads(batch, rep)`` (the files the batch
    reads; the job's own input is its small commands file), runtime of all of them. Evaluated
    again when the job is ready to run (Snakemake resets resources then), so the files exist."""
    resources = cluster_resources()
    resources["runtime"] = CLUSTER.runtime_minutes * len(batch)
    resources["mem_mb"] = lambda wildcards, attempt: stage_mem_mb(
        stage, files_mb(reads(batch, wildcards.rep)) / len(batch), attempt, CLUSTER
    )
    return resources


def files_mb(files):
    """Summed size of the ``files`` that exist, in MiB (Snakemake's ``input.size_mb``)."""
    return sum(_os.path.getsize(f) for f in files if _os.path.exists(f)) / 1024 / 1024


def commands_param(build, batch):
    """A commands rule's params (a function of the job's wildcards): the JSON of
    ``build(batch, rep)``, the command lines of the batch's subjects in the job's repeat."""
    return lambda wildcards: batch_commands(build(batch, wildcards.rep))


def acquire_commands(batch, rep):
    """acquire_subject's command line for each subject of ``batch``."""
    return [
        rule_command(rules.acquire_subject, s, {}, subject_files(RAW, s, rep), rep) for s in batch
    ]


def preprocess_command(subject, rep):
    raw = subject_files(RAW, subject, rep) | {"atlas": rep_file(ATLAS, rep)}
    return rule_command(rules.preprocess, subject, raw, subject_files(PRE, subject, rep), rep)


def parcellate_command(subject, rep):
    atlas = {"atlas": rep_file(ATLAS, rep), "labels": rep_file(LABELS, rep)}
    pre = subject_files(PRE, subject, rep) | atlas
    return rule_command(rules.parcellate, subject, pre, subject_files(PARC, subject, rep), rep)


def preprocess_commands(batch, rep):
    return [preprocess_command(s, rep) for s in batch]


def parcellate_commands(batch, rep):
    return [parcellate_command(s, rep) for s in batch]


def preprocess_parcellate_commands(batch, rep):
    """preprocess, parcellate, then the deletion of the cleaned BOLD, for each subject."""
    return [
        step
        for s in batch
        for step in (
            preprocess_command(s, rep),
            parcellate_command(s, rep),
            ["remove-intermediate", subject_files(PRE, s, rep)["bold"]],
        )
    ]


def acquire_reads(batch, rep):
    """The source files acquire reads for ``batch`` (the same for every repeat)."""
    return [f for s in batch for f in PLAN["inputs"][s]]


def preprocess_reads(batch, rep):
    """The raw files but the description text, and the atlas."""
    raw = [f for s in batch for k, f in subject_files(RAW, s, rep).items() if k != "text"]
    return raw + [rep_file(ATLAS, rep)]


def parcellate_reads(batch, rep):
    """The preprocessed T1 and BOLD (sidecar), the atlas and its labels."""
    keys = ("t1", "bold", "bold_json")
    pre = [f for s in batch for k, f in subject_files(PRE, s, rep).items() if k in keys]
    return pre + [rep_file(ATLAS, rep), rep_file(LABELS, rep)]


def batch_writes(stage, batch, rep):
    """The per-subject files a finished batch of ``stage`` leaves (the temporary cleaned
    BOLD left out): what its flag stands for."""
    keep = SETTINGS.preprocess.keep_intermediate
    files = {"acquire": [RAW], "preprocess": [PRE], "parcellate": [PARC]}
    files["preprocess_parcellate"] = [PRE, PARC]
    return [
        f
        for outputs in files[stage]
        for s in batch
        for k, f in subject_files(outputs, s, rep).items()
        if k != "bold" or outputs is not PRE or keep
    ]


def reopen_incomplete_batches(stages):
    """Remove the flag of every finished batch (of ``stages``, in every repeat) that misses
    one of its subjects' files, so that the batch reruns: its per-subject files are not
    Snakemake outputs (only the flag is), and a file deleted by hand would otherwise go
    unnoticed. Main process only; a stat per file (~20 ms for 9,000 files)."""
    for rep in repeat_suffixes(REPEATS):
        for stage in stages:
            for i, batch in enumerate(BATCHES):
                flag = rep_file(batch_file(stage, i, "done"), rep)
                if not _os.path.exists(flag):
                    continue
                missing = [f for f in batch_writes(stage, batch, rep) if not _os.path.exists(f)]
                if missing:
                    print(
                        f"ModalMerge: {missing[0]} is missing ({len(missing)} file(s) of"
                        f" {stage} batch {i:04d}): removing {flag}, the batch reruns",
                        file=_sys.stderr,
                    )
                    _os.remove(flag)


def batch_flags(stages):
    """The flags of every batch of ``stages`` (with ``{rep}``): a batched shard's inputs."""
    if SUBJECTS_PER_JOB == 1:
        return []
    return [batch_file(stage, i, "done") for stage in stages for i in range(len(BATCHES))]


def temporary_bolds(batch, output=False):
    """The cleaned BOLDs of ``batch`` (with ``{rep}``) when they are temporary but outlive
    parcellate (shard.volume_series reads them): outputs of the preprocess batch, inputs of
    parcellate's commands rule and of shard, so Snakemake deletes them after shard; else none
    (kept BOLDs are per-subject files like the others)."""
    if SETTINGS.preprocess.keep_intermediate or not WRITES["bold"]:
        return []
    bolds = [str(PRE["bold"]).replace("{subject}", s) for s in batch]
    return [temp(f) for f in bolds] if output else bolds
