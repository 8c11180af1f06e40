"""The synthetic structural connectome TSVs are declared files of the DAG (issue 13): with
``connectome: true`` they are outputs of acquire_subject and inputs of shard, so editing one
by hand reruns the shard stage (and what reads the shards). Without it the DAG is as before
(config.yaml: 221 jobs, docs/benchmarks.md)."""

from __future__ import annotations

import pandas as pd
import pytest
from workflow_utils import copy_project, load_yaml, planned_jobs, snakemake, write_config

pytestmark = pytest.mark.slow  # acquire -> shard of 4 tiny subjects, then dry runs

NAME = "tiny_sc"
SHARDS = f"results/{NAME}/shards"  # a target, not --until: its dry run says "Nothing to be done"


@pytest.fixture(scope="module")
def sc_run(tmp_path_factory):
    work = copy_project(tmp_path_factory.mktemp("sc") / "work")
    config = load_yaml(work / "configs" / "tiny.yaml")
    config["dataset"]["name"] = NAME
    config["dataset"]["params"].update(n_subjects=4, connectome=True)
    config["shard"]["fractions"] = {"train": 0.5, "val": 0.25, "test": 0.25}
    write_config(work, config)
    result = snakemake(work, SHARDS)
    assert result.returncode == 0, result.stderr[-3000:]
    return work


def test_editing_one_sc_tsv_reruns_the_shard_stage_and_no_acquire(sc_run):
    work = sc_run
    assert planned_jobs(snakemake(work, "--dry-run", SHARDS)) == {}
    tsvs = sorted((work / "results" / NAME / "raw" / "derivatives" / "connectome").glob("*.tsv"))
    assert len(tsvs) == 4
    table = pd.read_csv(tsvs[1], sep="\t", index_col="region")
    table.iloc[0, 1] = table.iloc[1, 0] = table.iloc[0, 1] + 0.5  # still symmetric
    table.to_csv(tsvs[1], sep="\t")
    planned = planned_jobs(snakemake(work, "--dry-run", SHARDS))
    assert planned.get("shard") == 1
    assert not {rule for rule in planned if rule.startswith(("acquire", "preprocess"))}
