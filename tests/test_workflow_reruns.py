"""What a dry run plans after an edit to the dataset on disk (issue 17): the source files are
inputs of the acquire jobs, each subject's params hold only what concerns it, and the shard
command line stays short at any cohort size.

A BIDS dataset (the fault corpus's valid one, plus a third subject) is acquired, preprocessed
and parcellated once; each test edits it and reads the job set of a dry run.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import sys
import time

import pandas as pd
import pytest
from test_fault_corpus import make_dataset
from workflow_utils import copy_project, load_yaml, planned_jobs, snakemake, write_config

pytestmark = pytest.mark.slow

NAME = "reruns"


def _targets(subjects):
    root = f"results/{NAME}"
    npz = [f"{root}/parcellated/{s}/{s}_space-MNI152_seg-atlas_parcellated.npz" for s in subjects]
    return [f"{root}/raw/participants.tsv", *npz]


def _add_subject(bids, source, new):
    """Copy ``source``'s folder as subject ``new`` and list it in participants.tsv."""
    shutil.copytree(bids / source, bids / new)
    for path in sorted((bids / new).rglob("*")):
        if path.is_file() and source in path.name:
            path.rename(path.with_name(path.name.replace(source, new)))
    table = pd.read_csv(bids / "participants.tsv", sep="\t")
    table.loc[len(table)] = {"participant_id": new, "age": 50}
    table.to_csv(bids / "participants.tsv", sep="\t", index=False)


@pytest.fixture(scope="module")
def bids_run(tmp_path_factory):
    """(workdir, bids root, subjects) after acquire -> parcellate of 3 BIDS subjects."""
    tmp = tmp_path_factory.mktemp("reruns")
    files = make_dataset(tmp / "bids")
    bids = tmp / "bids"
    _add_subject(bids, "sub-02", "sub-03")
    work = copy_project(tmp / "work")
    config = load_yaml(work / "configs" / "tiny.yaml")
    config["dataset"] = {
        "name": NAME,
        "kind": "bids",
        "params": {"path": str(bids), "task": "rest", "atlas": files["atlas_spec"]},
    }
    write_config(work, config)
    subjects = ["sub-01", "sub-02", "sub-03"]
    result = snakemake(work, *_targets(subjects))
    assert result.returncode == 0, result.stderr[-3000:]
    return work, bids, subjects


def _dry(work, targets):
    result = snakemake(work, "--dry-run", *targets)
    assert result.returncode == 0, result.stderr[-3000:]
    return planned_jobs(result)


def test_a_finished_run_plans_nothing(bids_run):
    work, _, subjects = bids_run
    assert _dry(work, _targets(subjects)) == {}


def test_editing_one_subject_s_sidecar_reruns_that_subject_s_chain_only(bids_run):
    work, bids, subjects = bids_run
    sidecar = bids / "sub-02" / "func" / "sub-02_task-rest_bold.json"
    original = sidecar.read_text()
    stat = sidecar.stat()
    try:
        sidecar.write_text(json.dumps({"RepetitionTime": 2.0, "EchoTime": 0.03}))
        future = time.time() + 5  # newer than every output, whatever the clock's resolution
        os.utime(sidecar, (future, future))
        jobs = _dry(work, _targets(subjects))
    finally:
        sidecar.write_text(original)
        os.utime(sidecar, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert jobs == {"acquire_subject": 1, "preprocess": 1, "parcellate": 1}
    assert _dry(work, _targets(subjects)) == {}  # the old mtime is back: nothing (see docs)


def test_adding_a_subject_reruns_it_and_the_cohort_table_only(bids_run):
    work, bids, subjects = bids_run
    table = bids / "participants.tsv"
    original, stat = table.read_text(), table.stat()
    try:
        _add_subject(bids, "sub-02", "sub-04")
        future = time.time() + 5
        os.utime(table, (future, future))
        jobs = _dry(work, _targets([*subjects, "sub-04"]))
    finally:  # the module's later tests start from the finished 3-subject run again
        shutil.rmtree(bids / "sub-04", ignore_errors=True)
        table.write_text(original)
        os.utime(table, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    # the atlas (its own job, params without the subject list) and sub-01..03 stay
    assert jobs == {"acquire_cohort": 1, "acquire_subject": 1, "preprocess": 1, "parcellate": 1}


def test_the_shard_command_line_stays_short_at_2000_subjects(tmp_path):
    """The file lists reach the shard job through a JSON file (`--inputs-json`): at 1,200
    subjects the command line once held 224,761 characters, past the kernel's limit."""
    work = copy_project(tmp_path / "work")
    config = load_yaml(work / "configs" / "tiny.yaml")
    config["dataset"]["params"]["n_subjects"] = 2000
    write_config(work, config)
    result = snakemake(work, "--dry-run", "--printshellcmds", "results/tiny/shards")
    assert result.returncode == 0, result.stderr[-3000:]
    out = result.stdout + result.stderr
    shard = "modalmerge shard "  # printed as "Shell command: modalmerge shard ..."
    commands = [line[line.index(shard) :] for line in out.splitlines() if shard in line]
    assert len(commands) == 1 and len(commands[0]) < 4096, [len(c) for c in commands]
    assert planned_jobs(result)["acquire_subject"] == 2000


TEMP_PROBE = """
import json, sys
from pathlib import Path
from snakemake.api import SnakemakeApi
from snakemake.io import is_flagged
from snakemake.settings.types import ConfigSettings, OutputSettings, ResourceSettings

with SnakemakeApi(OutputSettings()) as api:
    workflow_api = api.workflow(
        resource_settings=ResourceSettings(cores=1),
        config_settings=ConfigSettings(configfiles=[Path(sys.argv[1])]),
        snakefile=Path("Snakefile"),
        workdir=Path(sys.argv[2]),
    )
    workflow_api.list_rules()
    rule = workflow_api._workflow.get_rule("preprocess")
    print(json.dumps({name: is_flagged(rule.output[i], "temp")
                      for name, (i, _) in rule.output._names.items()}))
"""


@pytest.mark.parametrize("keep", [False, True])
def test_the_cleaned_bold_is_temporary_unless_kept(tmp_path, keep):
    work = copy_project(tmp_path / "work")
    config = load_yaml(work / "configs" / "tiny.yaml")
    config["preprocess"]["keep_intermediate"] = keep
    configfile = write_config(work, config, "keep.yaml")
    done = subprocess.run(
        [sys.executable, "-c", TEMP_PROBE, str(configfile), str(tmp_path / "run")],
        capture_output=True, text=True, timeout=120, cwd=work,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    temp = json.loads(done.stdout.strip().splitlines()[-1])
    assert temp == {"t1": False, "bold": not keep, "bold_json": False}


# acquire's fingerprint covers every source and the atlas fetchers (nilearn, scipy), so a
# nilearn upgrade reruns the whole chain; numba is imported by parcellate's ROI kernel only,
# whose rerun needs the cleaned BOLD again (a temp() output, deleted): preprocess too.
ALL_JOBS = {"acquire_atlas": 1, "acquire_cohort": 1, "acquire_subject": 3, "preprocess": 3,
            "parcellate": 3}  # fmt: skip
UPGRADES = [("nilearn", ALL_JOBS), ("numba", {"preprocess": 3, "parcellate": 3})]


@pytest.mark.parametrize(("dist", "expected"), UPGRADES, ids=[d for d, _ in UPGRADES])
def test_a_dependency_upgrade_reruns_the_stages_that_import_it_and_downstream(
    bids_run, tmp_path, monkeypatch, dist, expected
):
    """A fake ``<dist>-99.0.dist-info`` ahead of site-packages on PYTHONPATH: the dry run's
    ``importlib.metadata.version(dist)`` reads 99.0 (the package itself still imports from
    site-packages), so every stage whose code fingerprint lists ``dist`` changes."""
    work, _, subjects = bids_run
    fake = tmp_path / "fake-dists" / f"{dist}-99.0.dist-info"
    fake.mkdir(parents=True)
    (fake / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 99.0\n")
    (fake / "top_level.txt").write_text(f"{dist}\n")
    monkeypatch.setenv(
        "PYTHONPATH", os.pathsep.join([str(fake.parent), os.environ.get("PYTHONPATH", "")])
    )
    assert _dry(work, _targets(subjects)) == expected
    monkeypatch.undo()
    assert _dry(work, _targets(subjects)) == {}  # the installed version again: nothing


# the cleaned BOLD is temporary here: preprocess and parcellate are one job per batch
BATCH0 = {"acquire_batch_0000": 1, "preprocess_parcellate_batch_0000": 1}
STAGES = ("acquire", "preprocess_parcellate")


@pytest.fixture(scope="module")
def batched_run(bids_run):
    """(workdir, bids root, targets, extra args) after the same run with
    ``cluster.subjects_per_job: 2``: one job per batch of 2 subjects and stage. Its tests come
    last in this module: the batched run's metadata records replace the per-subject ones."""
    work, bids, _ = bids_run
    config = load_yaml(work / "config.yaml")
    config["cluster"]["subjects_per_job"] = 2
    args = ["--configfile", str(write_config(work, config, "batched.yaml"))]
    # batched, the per-subject files are not Snakemake outputs: the batches' flags stand for them
    flags = [f"results/{NAME}/plan/{s}-batch-{i:04d}.done" for s in STAGES for i in (0, 1)]
    targets = _targets([])[:1] + flags
    result = snakemake(work, *targets, *args)
    assert result.returncode == 0, result.stderr[-3000:]
    return work, bids, targets, args


def test_a_batch_runs_the_per_subject_rules_command_lines(batched_run):
    """The batches' commands files hold, for each subject, exactly the command line that
    subject's per-subject rule runs (as Snakemake prints it), the log redirection left out."""
    work, bids, _, _ = batched_run
    targets = _targets(sorted(p.name for p in bids.glob("sub-*")))  # unbatched: per subject
    singles = snakemake(work, "--dry-run", "--printshellcmds", "--forceall", *targets)
    assert singles.returncode == 0, singles.stderr[-3000:]
    expected = set()
    for line in (singles.stdout + singles.stderr).splitlines():
        for stage in ("acquire-subject", "preprocess", "parcellate"):
            if f"modalmerge {stage} " in line:
                argv = shlex.split(line[line.index(f"modalmerge {stage} ") :])
                expected.add(json.dumps(argv[1 : argv.index(">")]))
    assert len(expected) == 9  # 3 subjects x 3 stages
    batched, removed = set(), []
    for path in (work / "results" / NAME / "plan").glob("*-batch-*.json"):
        for argv in json.loads(path.read_text()):
            if argv[0] == "remove-intermediate":  # the cleaned BOLD, once parcellate read it
                removed.append(argv[1])
            else:
                batched.add(json.dumps(argv))
    assert batched == expected
    assert len(removed) == 3 and not any((work / path).exists() for path in removed)


def test_a_batch_job_s_metadata_lists_its_commands_file_not_the_batch_s_inputs(batched_run):
    """Snakemake stores a job's inputs (and checksums) once per output file: a batch job's
    one input is its commands file, so the metadata a no-op rerun reads grows with the
    batch, not with its square."""
    work, _, _, _ = batched_run
    inputs = {}
    for record in (work / ".snakemake" / "metadata").rglob("*"):
        if not record.is_file():
            continue
        meta = json.loads(record.read_text())
        if "_batch_" in meta["rule"]:
            inputs.setdefault(meta["rule"], set()).add(tuple(meta["input"]))
    plan = f"results/{NAME}/plan"
    assert inputs == {
        f"{stage}_batch_{i:04d}": {(f"{plan}/{stage}-batch-{i:04d}.json",)}
        for stage in STAGES
        for i in (0, 1)
    }


def test_a_batch_job_s_one_output_is_its_flag(batched_run):
    """A batch job declares one output, its flag, not its subjects' files: Snakemake keeps one
    metadata record per batch and matches no per-subject file against the batch's outputs
    (the no-op rerun's cost at 1,000 subjects, docs/benchmarks.md)."""
    work, _, _, _ = batched_run
    outputs = {}
    for record in (work / ".snakemake" / "metadata").rglob("*"):
        meta = json.loads(record.read_text()) if record.is_file() else {}
        if "_batch_" in meta.get("rule", ""):
            outputs.setdefault(meta["rule"], []).append(meta["code"])
    assert sorted(outputs) == sorted(f"{s}_batch_{i:04d}" for s in STAGES for i in (0, 1))
    assert all(len(codes) == 1 for codes in outputs.values())
    npz = work / f"results/{NAME}/parcellated/sub-03/sub-03_space-MNI152_seg-atlas_parcellated.npz"
    assert npz.is_file()  # written by batch 1 all the same


def test_a_deleted_per_subject_file_reruns_its_batch_only(batched_run):
    """A subject's file deleted by hand reruns the batch that writes it (its flag is removed
    when the Snakefile is parsed), not the other batch."""
    work, _, targets, args = batched_run
    plan = work / "results" / NAME / "plan"
    npz = work / f"results/{NAME}/parcellated/sub-03/sub-03_space-MNI152_seg-atlas_parcellated.npz"
    flag = plan / "preprocess_parcellate-batch-0001.done"
    saved = work / "saved"
    saved.mkdir(exist_ok=True)
    shutil.copy2(npz, saved / npz.name)
    shutil.copy2(flag, saved / flag.name)
    try:
        npz.unlink()
        result = snakemake(work, "--dry-run", *targets, *args)
        assert result.returncode == 0, result.stderr[-3000:]
        assert planned_jobs(result) == {"preprocess_parcellate_batch_0001": 1}
        assert f"{npz.relative_to(work)} is missing" in result.stderr
        assert not flag.exists() and (plan / "preprocess_parcellate-batch-0000.done").exists()
    finally:  # the file and the flag back, with their times: the run is finished again
        shutil.copy2(saved / npz.name, npz)
        shutil.copy2(saved / flag.name, flag)
    assert _dry(work, [*targets, *args]) == {}


def test_batched_subjects_rerun_one_batch_when_one_subject_s_sidecar_changes(batched_run):
    """The unit of rerun is the batch: an edited sidecar of sub-02 reruns batch 0's chain
    (its commands files, then its jobs), not batch 1's."""
    work, bids, targets, args = batched_run
    log = (work / "logs" / NAME / "preprocess_parcellate" / "batch-0000.log").read_text()
    assert log.count("batch 1/1: preprocess in") == 2  # one process ran both subjects
    assert _dry(work, [*targets, *args]) == {}
    sidecar = bids / "sub-02" / "func" / "sub-02_task-rest_bold.json"
    original, stat = sidecar.read_text(), sidecar.stat()
    try:  # new content (a touched but unchanged small file is checksummed: no rerun)
        sidecar.write_text(json.dumps({"RepetitionTime": 2.0, "EchoTime": 0.03}))
        future = time.time() + 5
        os.utime(sidecar, (future, future))
        jobs = _dry(work, [*targets, *args])
    finally:
        sidecar.write_text(original)
        os.utime(sidecar, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert jobs == BATCH0 | {f"{stage}_commands_0000": 1 for stage in STAGES}


def test_batched_subjects_rerun_one_stage_when_its_settings_change(batched_run):
    """A parcellate setting reruns every preprocess + parcellate batch (the cleaned BOLD that
    parcellate reads is temporary: gone), not acquire."""
    work, _, targets, args = batched_run
    config = load_yaml(work / "batched.yaml")
    config["parcellate"]["tissue_threshold"] = 0.1
    changed = str(write_config(work, config, "batched-threshold.yaml"))
    jobs = _dry(work, [*targets, "--configfile", changed])
    assert jobs == {f"preprocess_parcellate_{kind}_{i:04d}": 1
                    for kind in ("commands", "batch") for i in (0, 1)}  # fmt: skip


def test_batched_data_stages_do_not_rerun_when_an_experiment_changes(batched_run):
    """Editing a model setting (an experiment's epochs, the training seed) plans no data-stage
    job: batch params hold the data stages' settings and code only."""
    work, _, targets, args = batched_run
    config = load_yaml(work / "batched.yaml")
    config["experiments"][0]["epochs"] = config["experiments"][0].get("epochs", 1) + 7
    config["train"]["seed"] = config["train"]["seed"] + 1
    changed = str(write_config(work, config, "batched-epochs.yaml"))
    assert _dry(work, [*targets, "--configfile", changed]) == {}


@pytest.mark.parametrize("keep", ["no", "keep_intermediate", "volume_series"])
def test_batches_run_preprocess_and_parcellate_together_unless_the_bold_is_kept(tmp_path, keep):
    """With a temporary cleaned BOLD one job per batch runs preprocess and parcellate (and
    deletes the BOLD); with preprocess.keep_intermediate they are separate jobs whose only
    input is their commands file (the kept BOLD is an input of parcellate's commands rule).
    shard.volume_series reads the BOLD after parcellate: separate jobs too, or the combined
    job would delete what shard needs."""
    work = copy_project(tmp_path / "work")
    config = load_yaml(work / "configs" / "tiny.yaml")
    config["cluster"]["subjects_per_job"] = 4
    config["preprocess"]["keep_intermediate"] = keep == "keep_intermediate"
    if keep == "volume_series":
        config["shard"]["volume_series"] = {"enabled": True}
    write_config(work, config)
    result = snakemake(work, "--dry-run", "results/tiny/shards")
    assert result.returncode == 0, result.stderr[-3000:]
    jobs = {rule: n for rule, n in planned_jobs(result).items() if "_batch_" in rule}
    stages = ("preprocess", "parcellate") if keep != "no" else ("preprocess_parcellate",)
    assert jobs == {f"{s}_batch_{i:04d}": 1 for s in ("acquire", *stages) for i in range(3)}


def test_batches_combine_with_repeats_each_repeat_with_its_own_batches(tmp_path):
    """repeats: 2 with subjects_per_job: 4 plans every batch job once per repeat, writing
    under each repeat's root; the commands rules of repeat 1 write its own files."""
    work = copy_project(tmp_path / "work")
    config = load_yaml(work / "configs" / "tiny.yaml")
    config["cluster"]["subjects_per_job"] = 4
    config["repeats"] = 2
    write_config(work, config)
    result = snakemake(work, "--dry-run", "results/tiny/shards", "results/tiny/rep-1/shards")
    assert result.returncode == 0, result.stderr[-3000:]
    jobs = {
        rule: n for rule, n in planned_jobs(result).items() if "batch" in rule or "comm" in rule
    }
    stages = ("acquire", "preprocess_parcellate")
    assert jobs == {f"{s}_{kind}_{i:04d}": 2
                    for s in stages for kind in ("commands", "batch") for i in range(3)}  # fmt: skip
    out = result.stdout + result.stderr
    for root in ("results/tiny", "results/tiny/rep-1"):
        assert f"output: {root}/plan/preprocess_parcellate-batch-0002.done" in out
    # repeat 1's batch runs what its per-subject rule runs: the repeat's cohort seed and root
    commands = work / "results/tiny/rep-1/plan/acquire-batch-0000.json"
    made = snakemake(work, str(commands.relative_to(work)))
    assert made.returncode == 0, made.stderr[-3000:]
    config["cluster"]["subjects_per_job"] = 1
    write_config(work, config, "single.yaml")
    raw = "results/tiny/rep-1/raw/{0}/anat/{0}_T1w.nii.gz"
    targets = [raw.format(f"sub-{i:03d}") for i in (1, 2, 3, 4)]
    single = snakemake(work, "-n", "-p", *targets, "--configfile", "single.yaml")
    assert single.returncode == 0, single.stderr[-3000:]
    word = "modalmerge acquire-subject "
    expected = [  # Snakemake's "Shell command: modalmerge ... > LOG 2>&1"
        shlex.split(line[line.index(word) :])[1:-3]
        for line in (single.stdout + single.stderr).splitlines()
        if word in line
    ]
    batched = json.loads(commands.read_text())
    assert sorted(batched) == sorted(expected) and len(batched) == 4
    assert all('"seed": 2' in argv[2] and argv[4] == "results/tiny/rep-1" for argv in batched)
