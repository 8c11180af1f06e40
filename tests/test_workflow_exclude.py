"""``on_error: exclude`` through the workflow (issue 11): a broken subject of a BIDS
dataset is left out with its one-line reason, and the rest of the cohort is
acquired, preprocessed and parcellated by Snakemake."""

from __future__ import annotations

import pandas as pd
import pytest
from test_fault_corpus import FAULTS, make_dataset
from workflow_utils import copy_project, load_yaml, planned_jobs, snakemake, write_config

pytestmark = pytest.mark.slow


def test_exclude_mode_runs_the_rest_of_the_cohort(tmp_path):
    files = make_dataset(tmp_path / "bids")
    _, breaker, text, _ = FAULTS["constant run"]
    named = breaker(files)  # sub-01's BOLD never changes
    work = copy_project(tmp_path / "work")
    config = load_yaml(work / "configs" / "tiny.yaml")
    config["dataset"] = {
        "name": "corpus",
        "kind": "bids",
        "params": {
            "path": str(tmp_path / "bids"),
            "task": "rest",
            "atlas": files["atlas_spec"],
            "on_error": "exclude",
            "validation_cache": str(tmp_path / "cache"),
        },
    }
    write_config(work, config)
    # the data stages of every kept subject, and the cohort table (parcellate reads the atlas,
    # its own job, acquire_atlas, not the table)
    until = ("--until", "parcellate", "acquire_cohort")
    dry = snakemake(work, "--dry-run", *until)
    assert dry.returncode == 0, dry.stderr[-3000:]
    assert "sub-01" not in dry.stdout + dry.stderr
    assert planned_jobs(dry) == {
        "acquire_atlas": 1,
        "acquire_cohort": 1,
        "acquire_subject": 1,
        "preprocess": 1,
        "parcellate": 1,
    }
    result = snakemake(work, *until)
    assert result.returncode == 0, result.stderr[-3000:]
    raw = work / "results" / "corpus" / "raw"
    excluded = pd.read_csv(raw / "excluded.tsv", sep="\t")
    assert excluded["participant_id"].tolist() == ["sub-01"]
    assert excluded["reason"].iloc[0].startswith(f"{named}: ")
    assert text in excluded["reason"].iloc[0]
    assert pd.read_csv(raw / "participants.tsv", sep="\t")["participant_id"].tolist() == ["sub-02"]
    parcellated = work / "results" / "corpus" / "parcellated"
    assert list(parcellated.glob("sub-02/*_parcellated.npz")) and not (raw / "sub-01").exists()
    assert not list(parcellated.glob("sub-01*"))
