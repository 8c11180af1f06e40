# Paths, parameters and code fingerprints shared by the rules: one place where paths are built.
import json
import re
import shlex
from pathlib import Path

from modalmerge.data.derivatives import relmat_stat, seg_label, space_label
from modalmerge.fingerprint import code_fingerprint
from modalmerge.io import atomic_path
from modalmerge.repeats import REPEAT_PATTERN, repeat_dataset, repeat_index, repeat_seed
from modalmerge.repeats import repeat_suffixes
from modalmerge.folds import FOLD_PATTERN, cohort_sites, fold_params, fold_suffixes, has_folds
from modalmerge.settings import identity_dict
from modalmerge.mean_sources import mean_from
from modalmerge.stages.train_resources import evaluate_gpus
from modalmerge.stages.train_resources import train_resources as train_job_resources
from modalmerge.stages.train_resources import train_threads
from modalmerge.stages.acquire import (
    source_anatomy,
    source_point_cloud,
    source_connectome,
    source_atlas_dataset,
    source_cohort_files,
    source_module_name,
    source_sample_unit,
    source_subject_params,
    source_task,
    source_writes,
)
from modalmerge.stages.environment import distributions, write_environment
from modalmerge.stages.plan import make_plan, read_plan, write_plan
from modalmerge.stages.resources import check_stage_memory, stage_mem_mb

# Repeats (top-level `repeats: K`, modalmerge/repeats.py): every path carries the wildcard
# {rep}: empty for repeat 0 (results/<name>/..., the layout of an unrepeated run, reused when
# K grows), a slash and rep-<k> for repeat k >= 1; seeds that differ per repeat reach the rules through
# rep_dataset() and section_json(). ROOT0 is repeat 0's root (summary_repeats.csv goes there).
REPEATS = SETTINGS.repeats
ROOT0 = f"results/{config['dataset']['name']}"
ROOT = f"{ROOT0}{{rep}}"
LOGS = f"logs/{config['dataset']['name']}{{rep}}"
BENCH = f"benchmarks/results/{config['dataset']['name']}{{rep}}"
# Planning once (issue 17): the main process plans the cohort (subjects, exclusions, the
# params and source files of each subject; run length and TR checked against the filter) and writes
# it to subjects.json; a cluster job, which re-parses this file, reads it instead of
# re-planning (no header re-checks, no source scans), and stops on a missing or stale plan.
# One plan for all repeats: they share subject ids and source files (a synthetic repeat
# differs in its cohort seed only, which subject_params() applies).
PLAN_PATH = f"{ROOT0}/subjects.json"
if workflow.is_main_process:
    PLAN = make_plan(config, ROOT0)
    write_plan(PLAN_PATH, PLAN)
else:
    PLAN = read_plan(PLAN_PATH, config)
SUBJECTS = PLAN["subjects"]
# Leave-one-site-out folds (shard.test_site: all, shard.harmonize: both; modalmerge/folds.py):
# shard, train, evaluate and figures paths carry the wildcard {fold} after the repeat's root:
# empty for the single split (the paths of a run without folds), /loso/<harmonize>/<site> for
# a fold; site_summary gathers the folds under LOSO.
SHARD_PARAMS = SETTINGS.shard.subject_params()
FOLDS = (
    fold_suffixes(SHARD_PARAMS, cohort_sites(config["dataset"], SUBJECTS))
    if has_folds(SHARD_PARAMS)
    else []
)
if FOLDS and REPEATS > 1:
    raise ValueError(
        f"shard.test_site all / harmonize both (leave-one-site-out folds) cannot be combined"
        f" with repeats: {REPEATS} yet; use repeats: 1"
    )
FROOT = f"{ROOT}{{fold}}"
FLOGS = f"{LOGS}{{fold}}"
FBENCH = f"{BENCH}{{fold}}"
LOSO = f"{ROOT}/loso"
TASK = source_task(config["dataset"])
WRITES = source_writes(config["dataset"])  # optional per-subject files: bold, text, confounds
SAMPLE_UNIT = source_sample_unit(config["dataset"])  # "subject", or "region" (group data)
# anatomy besides the T1w (BraTS: contrasts, segmentation) -> further image channels
ANATOMY, LABEL_ANATOMY = source_anatomy(config["dataset"])
# a surface point cloud per subject (synthetic surface_points > 0) -> the shards' point_cloud
POINT_CLOUD = source_point_cloud(config["dataset"])
# a structural connectome TSV per subject (synthetic connectome: true) -> the shards' graph_sc
CONNECTOME = source_connectome(config["dataset"])
CLUSTER = SETTINGS.cluster  # typed settings of every section: built in the Snakefile
check_stage_memory(CLUSTER)  # cluster.stage_mem_mb / mem_per_input_mb name data-stage rules
# BIDS-derivative entities of preproc/ and parcellated/ (modalmerge.data.derivatives)
SPACE = space_label(config["dataset"])
SEG = seg_label(config["dataset"])
RELMAT_STAT = relmat_stat(SETTINGS.parcellate.connectivity)
ACQUIRE_CODE = code_fingerprint(
    "modalmerge.stages.acquire", source_module_name(config["dataset"]["kind"])
)
EXPERIMENTS = {e.name: e for e in SETTINGS.experiments}  # names are unique (from_config)
# cluster.subjects_per_job > 1: one job (one process) per batch of subjects and stage
# (batches.smk); the per-subject rules then stay defined, for their output patterns, but match
# no file. Batches are consecutive runs of the planned subjects.
SUBJECTS_PER_JOB = CLUSTER.subjects_per_job
BATCHES = [SUBJECTS[i : i + SUBJECTS_PER_JOB] for i in range(0, len(SUBJECTS), SUBJECTS_PER_JOB)]
PER_SUBJECT_RULES = "sub-[A-Za-z0-9]+" if SUBJECTS_PER_JOB == 1 else "(?!)"


wildcard_constraints:
    rep=REPEAT_PATTERN,
    fold=FOLD_PATTERN,
    subject="sub-[A-Za-z0-9]+",
    experiment="|".join(EXPERIMENTS) or "NONE",


def subject_outputs():
    """acquire_subject's outputs: anatomy always; BOLD unless the source is anatomy-only
    (ADNI, BraTS); description text (synthetic) and confounds TSV (fMRIPrep, HCP,
    brainspace) when the source writes them."""
    raw = f"{ROOT}/raw/{{subject}}"
    outputs = {"t1": f"{raw}/anat/{{subject}}_T1w.nii.gz"}
    if WRITES["bold"]:
        outputs["bold"] = f"{raw}/func/{{subject}}_task-{TASK}_bold.nii.gz"
    for name in ANATOMY:
        outputs[anatomy_key(name)] = f"{raw}/anat/{{subject}}_{name}.nii.gz"
    if WRITES["text"]:
        outputs["text"] = f"{raw}/{{subject}}_description.txt"
    if WRITES["confounds"]:
        outputs["confounds"] = f"{raw}/func/{{subject}}_task-{TASK}_desc-confounds_timeseries.tsv"
    if POINT_CLOUD:
        outputs["point_cloud"] = f"{raw}/anat/{{subject}}_desc-white_pointcloud.npz"
    if CONNECTOME:  # read by the shard stage (modalmerge.data.shards.graphs.sc_path)
        outputs["sc"] = f"{ROOT}/raw/derivatives/connectome/{{subject}}_desc-sc_connectome.tsv"
    return outputs


def preprocess_outputs():
    """preprocess's outputs, a BIDS derivative (XCP-D names): the T1 (and extra anatomy) on
    the atlas grid, and the cleaned BOLD with its sidecar (TR, censored volumes) when there
    is one. The stage also writes preproc/dataset_description.json."""
    sub = f"{ROOT}/preproc/{{subject}}"
    outputs = {"t1": f"{sub}/anat/{{subject}}_space-{SPACE}_desc-preproc_T1w.nii.gz"}
    if WRITES["bold"]:
        stem = f"{sub}/func/{{subject}}_task-{TASK}_space-{SPACE}_desc-clean_bold"
        # read by parcellate only: deleted once it has (~4 GB per HCP-size subject on a 1 mm
        # atlas) unless preprocess.keep_intermediate; the sidecar stays (bytes)
        bold = f"{stem}.nii.gz"
        outputs["bold"] = bold if SETTINGS.preprocess.keep_intermediate else temp(bold)
        outputs["bold_json"] = f"{stem}.json"
    for name in ANATOMY:
        entities, _, suffix = name.rpartition("_")  # ce-gd_T1w -> ce-gd, T1w
        entities = f"_{entities}" if entities else ""
        outputs[anatomy_key(name)] = (
            f"{sub}/anat/{{subject}}{entities}_space-{SPACE}_desc-preproc_{suffix}.nii.gz"
        )
    return outputs


def parcellate_outputs():
    """parcellate's outputs, a BIDS derivative (XCP-D names): ROI structural features, and
    the ROI time series and connectivity when there is BOLD, as TSVs; and the same arrays in
    one .npz, the fast form the shard stage reads (docs/benchmarks.md). The stage also
    writes parcellated/dataset_description.json."""
    sub = f"{ROOT}/parcellated/{{subject}}"
    ents = f"space-{SPACE}_seg-{SEG}"
    outputs = {
        "npz": f"{sub}/{{subject}}_{ents}_parcellated.npz",
        "features": f"{sub}/anat/{{subject}}_{ents}_desc-structural_morph.tsv",
    }
    if WRITES["bold"]:
        func = f"{sub}/func/{{subject}}_task-{TASK}_{ents}"
        outputs["timeseries"] = f"{func}_stat-mean_timeseries.tsv"
        outputs["relmat"] = f"{func}_stat-{RELMAT_STAT}_relmat.tsv"
    return outputs


def anatomy_key(name):
    """A rule's input/output name for an extra anatomy image (``ce-gd_T1w`` -> ``anat_ce_gd_T1w``)."""
    safe = re.sub(r"\W", "_", name)
    return f"anat_{safe}"


def anatomy_outputs(rule):
    """A rule's extra anatomy outputs by key (acquire_subject's feed preprocess)."""
    return {anatomy_key(n): getattr(rule.output, anatomy_key(n)) for n in ANATOMY}


def preprocessed_anatomy():
    """Every subject's preprocessed extra anatomy, subject-major (the shard stage's order)."""
    keys = [anatomy_key(n) for n in ANATOMY]
    outputs = [getattr(rules.preprocess.output, k) for k in keys]
    return [expand(out, subject=s, allow_missing=True)[0] for s in SUBJECTS for out in outputs]


def extra_anatomy_args(wildcards, input, output):
    """``--extra NAME IN OUT`` for each extra anatomy image, ``--label NAME`` for label images."""
    args = []
    for name in ANATOMY:
        key = anatomy_key(name)
        args += ["--extra", name, shlex.quote(input[key]), shlex.quote(output[key])]
    for name in LABEL_ANATOMY:
        args += ["--label", name]
    return " ".join(args)


def shard_inputs_json(wildcards):
    """The shard stage's file lists as one JSON object (``modalmerge shard --inputs-json``):
    subjects, their parcellated .npz, preprocessed T1w, texts, extra anatomy (subject-major)
    and the participants table, in the order of the shard rule's inputs (of repeat
    ``wildcards.rep``)."""
    t1 = rules.preprocess.output.t1
    rep = wildcards.rep
    inputs = {
        "subjects": SUBJECTS,
        "parcellated": expand(rules.parcellate.output.npz, subject=SUBJECTS, rep=rep),
        "anatomy": expand(t1, subject=SUBJECTS, rep=rep),
        "participants": expand(rules.acquire_cohort.output.participants, rep=rep)[0],
    }
    if WRITES["text"]:
        inputs["texts"] = expand(rules.acquire_subject.output.text, subject=SUBJECTS, rep=rep)
    if POINT_CLOUD:
        inputs["point_clouds"] = expand(
            rules.acquire_subject.output.point_cloud, subject=SUBJECTS, rep=rep
        )
    if ANATOMY:
        inputs["channels"] = ANATOMY
        inputs["extra_anatomy"] = expand(preprocessed_anatomy(), rep=rep)
        inputs["label_channels"] = LABEL_ANATOMY
    if SETTINGS.shard.volume_series.enabled:  # absent otherwise: the plan file is unchanged
        inputs["bold"] = expand(volume_series_bold(), rep=rep)
        inputs["events"] = expand(f"{ROOT}/raw/task-{TASK}_events.tsv", rep=rep)[0]
    return as_json(inputs)


def volume_series_bold():
    """Every subject's cleaned BOLD when shard.volume_series is on (the shard stage stores
    its windows of volumes), else nothing: the shard job then reads what it always did."""
    if not (SETTINGS.shard.volume_series.enabled and WRITES["bold"]):
        return []
    bold = rules.preprocess.output.bold
    return [expand(bold, subject=s, allow_missing=True)[0] for s in SUBJECTS]


def unbatched(files):
    """``files`` (per-subject inputs of shard), or none when the data stages are batched:
    shard then waits for the batches' flags (batches.smk), which stand for those files."""
    return files if SUBJECTS_PER_JOB == 1 else []


def write_text_atomic(path, text):
    """``text`` to ``path``, atomically (a local rule's one line of Python)."""
    with atomic_path(path) as tmp:
        Path(tmp).write_text(f"{text}\n")


def optional_args(wildcards, input, output=None):
    """``--bold``/``--out-bold``/``--confounds``/``--out-timeseries``/``--out-relmat`` for
    the inputs and outputs a rule has (anatomy-only data has no BOLD; only some sources
    write confounds)."""
    args = []
    for flag, files, key in (
        ("--bold", input, "bold"),
        ("--confounds", input, "confounds"),
        ("--out-bold", output, "bold"),
        ("--out-timeseries", output, "timeseries"),
        ("--out-relmat", output, "relmat"),
    ):
        value = files.get(key) if files is not None else None
        if value:
            args += [flag, shlex.quote(str(value))]
    return " ".join(args)


def time_split_args():
    """``--time-split`` with the shard keys that place the blocks when runs are split in
    time (preprocess then cleans each block on its own; the window only when it sets the
    gap), else nothing: subject splits keep whole-run cleaning and their command line."""
    shard = SETTINGS.shard
    if shard.split_by != "time":
        return ""
    keys = ("split_by", "fractions", "gap") + (("window",) if shard.gap is None else ())
    blocks = as_json({k: shard.subject_params()[k] for k in keys})
    return f"--time-split {shlex.quote(blocks)}"


def section_json(name):
    """One config section's typed settings (defaults filled) as a rule's params: only the
    keys that stage reads, so editing another section does not rerun it, and without its
    resource knobs (``train.threads``: the job gets them as ``--threads {threads}``), so a
    thread count never reruns a stage. ``shard`` and ``train``: a function of the job's
    wildcards, whose ``seed`` is the repeat's (modalmerge.repeats.repeat_seed; repeat 0:
    the configured seed, the same params as an unrepeated run)."""
    if name == "shard":  # subject shards; region shards read other keys (regions.smk)
        return seeded_json(SHARD_PARAMS, folded=True)
    if name == "shard_regions":
        return seeded_json(SETTINGS.shard.region_params())
    if name == "train":
        return seeded_json(identity_dict(SETTINGS.train))
    return as_json(identity_dict(getattr(SETTINGS, name)))


def seeded_json(params, folded=False):
    """Rule params (a function of wildcards): ``params`` with ``seed`` of repeat ``rep``;
    ``folded``: with the held-out site and harmonisation of fold ``fold`` (unchanged for
    the single split, modalmerge.folds.fold_params)."""

    def value(wildcards):
        seeded = params | {"seed": repeat_seed(params["seed"], repeat_index(wildcards.rep))}
        return as_json(fold_params(seeded, wildcards.fold) if folded else seeded)

    return value


def rep_dataset(wildcards):
    """The ``dataset:`` section of the job's repeat (synthetic: its own cohort seed)."""
    return repeat_dataset(config["dataset"], repeat_index(wildcards.rep))


def subject_params(wildcards):
    """acquire_subject's params of the job's subject and repeat: the plan's (repeat 0, real
    data) or, for a synthetic repeat k >= 1, the source's with the repeat's cohort seed."""
    dataset = rep_dataset(wildcards)
    if dataset is config["dataset"]:
        return PLAN["params"][wildcards.subject]
    return source_subject_params(dataset, wildcards.subject)


def rep_path(pattern):
    """Rule params: ``pattern`` with the job's repeat filled in (params are not formatted)."""
    return lambda wildcards: pattern.format(rep=wildcards.rep)


def dataset_root(path):
    """results/<dataset>/ of an output path under it (the rule's params derive it from outputs)."""
    parts = Path(path).parts
    end = parts.index("results") + 2
    if re.fullmatch(r"rep-[1-9][0-9]*", parts[end]):  # a repeat's root: results/<name>/rep-<k>
        end += 1
    return str(Path(*parts[:end]))


def as_json(value):
    """A config section as one canonical JSON string: the rule reruns when it changes."""
    return json.dumps(value, sort_keys=True)


def fingerprint(*modules):
    """Fingerprint of the package code a stage runs (Snakemake's code trigger sees only the rule)."""
    return code_fingerprint(*modules)


def experiment_json(wildcards):
    return as_json(EXPERIMENTS[wildcards.experiment].record())


def mean_source_model(wildcards):
    """A residual diffusion experiment with method_options mean_from: the named experiment's
    model.pt in the same repeat and fold (its frozen encoder and mean head; the train stage
    reads it as the sibling models/NAME/model.pt). No input for every other experiment."""
    name = mean_from(EXPERIMENTS[wildcards.experiment])
    if name is None:
        return []
    return [f"{ROOT0}{wildcards.rep}{wildcards.fold}/models/{name}/model.pt"]


def experiment_gpus(wildcards):
    return EXPERIMENTS[wildcards.experiment].gpus


def train_launcher(wildcards):
    """`modalmerge` for one process; torchrun (one process per GPU, DDP) when gpus > 1."""
    gpus = experiment_gpus(wildcards)
    if gpus > 1:
        return f"torchrun --standalone --nproc_per_node={gpus} -m modalmerge.cli"
    return "modalmerge"


def cluster_resources(mem_mb=None):
    """Resources every rule asks a cluster for, from config['cluster'] (local runs ignore
    partition and account). Unset values are left out: a resource cannot be None."""
    resources = {"runtime": CLUSTER.runtime_minutes, "mem_mb": mem_mb or CLUSTER.mem_mb}
    if CLUSTER.partition:
        resources["slurm_partition"] = CLUSTER.partition
    if CLUSTER.account:
        resources["slurm_account"] = CLUSTER.account
    return resources


def stage_resources(rule_name):
    """A data stage's resources: :func:`cluster_resources`, and memory that grows with the
    job's input size and with each retry (``modalmerge.stages.resources.stage_mem_mb``;
    per-rule overrides in ``cluster.stage_mem_mb`` and ``cluster.mem_per_input_mb``)."""
    resources = cluster_resources()
    resources["mem_mb"] = lambda wildcards, input, attempt: stage_mem_mb(
        rule_name, input.size_mb, attempt, CLUSTER
    )
    return resources


def train_resource(key):
    """One resource of a train job, by its experiment's GPUs (modalmerge.stages.train_resources)."""
    return lambda wildcards: train_job_resources(experiment_gpus(wildcards), CLUSTER)[key]


def evaluate_resource(key):
    """One resource of an evaluate job: a train job's for the GPUs it draws samples on
    (:func:`evaluate_gpus`: one for a diffusion model trained on GPUs, else none), with the
    data stages' memory (:func:`stage_resources`) where that is more. Only the memory reads
    the job's input (a dry run shows it as <TBD> until the input exists)."""

    def gpus(wildcards):
        experiment = EXPERIMENTS[wildcards.experiment]
        return evaluate_gpus(experiment.method, experiment.gpus)

    if key == "mem_mb":
        return lambda wildcards, input, attempt: max(
            train_job_resources(gpus(wildcards), CLUSTER)["mem_mb"],
            stage_mem_mb("evaluate", input.size_mb, attempt, CLUSTER),
        )
    return lambda wildcards: train_job_resources(gpus(wildcards), CLUSTER)[key]


def train_loader_workers():
    """train.num_workers as the train job's string resource ``loader_workers`` ("auto": from
    the job's CPUs): a resource, unlike params or the shell command, reruns nothing."""
    n = SETTINGS.train.num_workers
    return "auto" if n is None else str(n)


def train_job_threads(wildcards):
    """CPUs of a train job: gpus x cluster.cpus_per_gpu, or train.threads without GPUs."""
    return train_threads(experiment_gpus(wildcards), CLUSTER, SETTINGS.train.threads)


def summary_of_run():
    """What the environment lock follows: the run's summary.csv, or with folds the site summary."""
    return f"{LOSO}/site_summary.csv" if FOLDS else f"{ROOT}/eval/summary.csv"


def final_outputs():
    """Every repeat's summary, chart and figures; with repeats > 1, summary_repeats.csv;
    with leave-one-site-out folds, the site summary and its figure instead."""
    if FOLDS:
        outputs = [f"{LOSO}/site_summary.csv", f"{LOSO}/site_scores.png"]
        return expand(outputs + [f"{ROOT}/environment.txt"], rep=repeat_suffixes(REPEATS))
    outputs = [f"{ROOT}/eval/summary.csv", f"{ROOT}/figures/summary.png"]
    outputs.append(f"{ROOT}/environment.txt")  # the environment lock of the run
    outputs += [f"{ROOT}/figures/{name}" for name in EXPERIMENTS]
    outputs = expand(outputs, rep=repeat_suffixes(REPEATS))
    if REPEATS > 1:
        outputs.append(f"{ROOT0}/eval/summary_repeats.csv")
    return outputs
