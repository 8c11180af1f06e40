# Helpers of batches.smk (cluster.subjects_per_job > 1): the per-subject command lines a batch
# job runs, its files and resources. Functions only, as Snakemake's lint asks of rule files.
import json as _json


def subject_files(outputs, subject):
    """A rule's per-subject {key: pattern} (common.smk) with ``{subject}`` filled in."""
    return {
        key: str(pattern).replace("{subject}", subject).replace("{rep}", "")
        for key, pattern in outputs.items()
    }


def batch_commands(commands):
    """A batch's command lines as JSON: the content of its commands file."""
    return _json.dumps(commands, sort_keys=True)


def batch_resources(stage, n_subjects):
    """:func:`stage_resources` of ``stage`` for a job that runs ``n_subjects`` one after
    another: memory of one subject's share of the input, runtime of all of them."""
    resources = cluster_resources()
    resources["runtime"] = CLUSTER.runtime_minutes * n_subjects
    resources["mem_mb"] = lambda wildcards, input, attempt: stage_mem_mb(
        stage, input.size_mb / n_subjects, attempt, CLUSTER
    )
    return resources


def flagged_outputs(files):
    """Output files of a batch, the cleaned BOLD ``temp()`` as in preprocess_outputs()."""
    keep = SETTINGS.preprocess.keep_intermediate
    return [temp(f) if key == "bold" and not keep else f for key, f in files]


def acquire_command(subject):
    return ["acquire-subject", "--dataset", as_json(PLAN["params"][subject]), "--root", ROOT0,
            "--subject", subject]  # fmt: skip


def preprocess_command(subject, raw, out):
    """``modalmerge preprocess`` of one subject: what rule preprocess runs."""
    cmd = ["preprocess", "--settings", section_json("preprocess"), "--t1", raw["t1"]]
    cmd += ["--atlas", ATLAS, "--out-t1", out["t1"]]
    for flag, files, key in (("--bold", raw, "bold"), ("--confounds", raw, "confounds"),
                             ("--out-bold", out, "bold")):  # fmt: skip
        if key in files:
            cmd += [flag, files[key]]
    for name in ANATOMY:
        cmd += ["--extra", name, raw[anatomy_key(name)], out[anatomy_key(name)]]
    for name in LABEL_ANATOMY:
        cmd += ["--label", name]
    cmd += shlex.split(time_split_args())  # blocks cleaned alone, as in the preprocess rule
    return cmd + ["--chunk-mb", str(SETTINGS.preprocess.chunk_mb)]


def parcellate_command(subject, pre, out):
    """``modalmerge parcellate`` of one subject: what rule parcellate runs."""
    cmd = ["parcellate", "--settings", section_json("parcellate"), "--t1", pre["t1"]]
    cmd += ["--atlas", ATLAS, "--labels", LABELS, "--out", out["npz"]]
    cmd += ["--out-features", out["features"]]
    for flag, files, key in (("--bold", pre, "bold"), ("--out-timeseries", out, "timeseries"),
                             ("--out-relmat", out, "relmat")):  # fmt: skip
        if key in files:
            cmd += [flag, files[key]]
    return cmd
