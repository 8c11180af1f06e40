"""Planning once (issue 17): the main Snakemake process writes the cohort plan
(``results/<name>/subjects.json``), cluster jobs read it instead of re-planning, and a
missing or stale plan is a clear error, never a silent re-plan."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from workflow_utils import copy_project, load_yaml, snakemake, write_config

from modalmerge.stages.plan import make_plan, read_plan, write_plan

# Parses the Snakefile as a cluster job does (exec mode "remote"), with every planning call
# of the source replaced by one that fails: the parse must take the subjects from the plan.
JOB_PARSE = """
import json, sys
from pathlib import Path
import modalmerge.stages.acquire as acquire
import modalmerge.stages.plan as plan

calls = []
def refuse(name):
    def call(*args, **kwargs):
        calls.append(name)
        raise AssertionError(f"a job re-planned: {name}")
    return call
for name in ("source_subject_ids", "source_input_files", "source_subject_params",
             "check_settings"):
    setattr(acquire, name, refuse(name))
plan.make_plan = refuse("make_plan")

from snakemake.api import SnakemakeApi
from snakemake_interface_executor_plugins.settings import ExecMode
from snakemake.settings.types import (ConfigSettings, OutputSettings, ResourceSettings,
                                      WorkflowSettings)

with SnakemakeApi(OutputSettings()) as api:
    workflow_api = api.workflow(
        resource_settings=ResourceSettings(cores=1),
        config_settings=ConfigSettings(configfiles=[Path(sys.argv[1])]),
        workflow_settings=WorkflowSettings(exec_mode=ExecMode.REMOTE),
        snakefile=Path("Snakefile"),
        workdir=Path(sys.argv[2]),
    )
    workflow_api.list_rules()
    print(json.dumps({"subjects": workflow_api._workflow.globals["SUBJECTS"], "calls": calls}))
"""


def _tiny_config(n_subjects=4):
    from workflow_utils import REPO

    config = load_yaml(REPO / "configs" / "tiny.yaml")
    config["dataset"]["params"]["n_subjects"] = n_subjects
    return config


def test_a_plan_reads_back_and_a_stale_or_missing_one_is_refused(tmp_path):
    config = _tiny_config()
    plan = make_plan(config, tmp_path)
    assert plan["subjects"] == ["sub-001", "sub-002", "sub-003", "sub-004"]
    assert plan["params"]["sub-002"]["params"] != plan["params"]["sub-003"]["params"]
    path = tmp_path / "subjects.json"
    write_plan(path, plan)
    assert read_plan(path, config)["subjects"] == plan["subjects"]
    other = _tiny_config(5)
    with pytest.raises(ValueError, match=r"subjects\.json: stale cohort plan"):
        read_plan(path, other)
    with pytest.raises(FileNotFoundError, match=r"nothing\.json: no cohort plan"):
        read_plan(tmp_path / "nothing.json", config)


def _job_parse(work, configfile):
    return subprocess.run(
        [sys.executable, "-c", JOB_PARSE, str(configfile), str(work)],
        capture_output=True, text=True, timeout=120, cwd=work,
    )  # fmt: skip


def test_a_cluster_job_s_parse_reads_the_plan_and_never_re_plans(tmp_path):
    work = copy_project(tmp_path / "work")
    config = _tiny_config(3)
    configfile = write_config(work, config, "plan.yaml")
    missing = _job_parse(work, configfile)  # no main process has planned yet
    assert missing.returncode != 0
    assert "results/tiny/subjects.json: no cohort plan" in missing.stderr + missing.stdout
    # the main process (here a dry run) plans and writes the plan
    main = snakemake(work, "--dry-run", "--configfile", str(configfile))
    assert main.returncode == 0, main.stderr[-3000:]
    plan = json.loads((work / "results" / "tiny" / "subjects.json").read_text())
    assert plan["subjects"] == ["sub-001", "sub-002", "sub-003"]
    done = _job_parse(work, configfile)
    assert done.returncode == 0, done.stderr[-3000:]
    probe = json.loads(done.stdout.strip().splitlines()[-1])
    assert probe == {"subjects": ["sub-001", "sub-002", "sub-003"], "calls": []}
