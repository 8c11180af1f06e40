# Helpers of batches.smk (cluster.subjects_per_job > 1): the per-subject command lines a batch
# job runs, its files and resources. Functions only, as Snakemake's lint asks of rule files.
import inspect as _inspect
import json as _json
import os as _os

from snakemake.io import Namedlist as _Namedlist
from snakemake.utils import format as _format

from modalmerge import shellwords as _shellwords


def subject_files(outputs, subject):
    """A rule's per-subject {key: pattern} (common.smk) with ``{subject}`` filled in."""
    return {
        key: str(pattern).replace("{subject}", subject).replace("{rep}", "")
        for key, pattern in outputs.items()
    }


def rule_command(single, subject, inputs, outputs):
    """The command line of the per-subject rule ``single`` (acquire_subject, preprocess, parcellate)
    for ``subject`` of repeat 0, as a list without ``modalmerge`` and the log redirection:
    what a batch job runs for that subject. It is the rule's own shell text, formatted as
    Snakemake formats it, with the rule's own params (functions called with the subject's
    wildcards, ``inputs`` and ``outputs``) and resources: one argv builder for both forms,
    so a batch cannot drift from the rule (it once did). The words are read back with
    modalmerge.shellwords (shlex.split's words, ~9x faster on the quoted settings JSON)."""
    wildcards = _Namedlist(fromdict={"subject": subject, "rep": ""})
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


def batch_resources(stage, n_subjects, files):
    """:func:`stage_resources` of ``stage`` for a job that runs ``n_subjects`` one after
    another: memory of one subject's share of ``files`` (what the batch reads; the job's
    own input is its small commands file), runtime of all of them. Evaluated again when
    the job is ready to run (Snakemake resets resources then), so the files exist."""
    resources = cluster_resources()
    resources["runtime"] = CLUSTER.runtime_minutes * n_subjects
    resources["mem_mb"] = lambda wildcards, attempt: stage_mem_mb(
        stage, files_mb(files) / n_subjects, attempt, CLUSTER
    )
    return resources


def files_mb(files):
    """Summed size of the ``files`` that exist, in MiB (Snakemake's ``input.size_mb``)."""
    return sum(_os.path.getsize(f) for f in files if _os.path.exists(f)) / 1024 / 1024


def flagged_outputs(files):
    """Output files of a batch, the cleaned BOLD ``temp()`` as in preprocess_outputs()."""
    keep = SETTINGS.preprocess.keep_intermediate
    return [temp(f) if key == "bold" and not keep else f for key, f in files]
