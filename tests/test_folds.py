"""Leave-one-site-out as one DAG (issue #14): ``shard.test_site: all`` and
``shard.harmonize: both`` expand into folds (modalmerge/folds.py, workflow/rules)."""

from __future__ import annotations

import json
import re

import pytest
import yaml
from test_sites import SITE_SHARDS, site_inputs
from workflow_utils import copy_project, planned_jobs, snakemake, write_config

from modalmerge.data.shards.subjects import write_shards
from modalmerge.folds import cohort_sites, fold_params, fold_suffixes, parse_fold
from modalmerge.settings import ShardSettings

SITES = {f"sub-{k:03d}": f"site{'ABC'[(k - 1) % 3]}" for k in range(1, 10)}  # 3 per site
LOSO = {"split_by": "site", "test_site": "all", "harmonize": "both"}


def test_test_site_all_and_harmonize_both_give_one_fold_per_site_and_harmonisation():
    folds = fold_suffixes(LOSO, SITES)
    assert folds == [f"/loso/{h}/site{s}" for h in ("none", "combat") for s in "ABC"]
    assert fold_suffixes({**LOSO, "harmonize": "combat"}, SITES) == [
        f"/loso/combat/site{s}" for s in "ABC"
    ]
    one_site_both = fold_suffixes({**LOSO, "test_site": "siteB"}, SITES)
    assert one_site_both == ["/loso/none/siteB", "/loso/combat/siteB"]
    # one held-out site, one harmonisation: the single split (no folds, default paths)
    assert fold_suffixes({**LOSO, "test_site": "siteB", "harmonize": "none"}, SITES) == []
    assert fold_suffixes({"split_by": "subject"}, SITES) == []


def test_a_folds_shard_params_are_the_single_split_params_of_its_site():
    base = ShardSettings.coerce({"split_by": "site", "test_site": "all", "harmonize": "both"})
    params = base.subject_params()
    single = ShardSettings.coerce({"split_by": "site", "test_site": "siteC"}).subject_params()
    assert fold_params(params, "/loso/none/siteC") == single  # harmonize none: left out
    combat = ShardSettings.coerce(
        {"split_by": "site", "test_site": "siteC", "harmonize": "combat"}
    ).subject_params()
    assert fold_params(params, "/loso/combat/siteC") == combat
    assert fold_params(params, "") == params
    assert parse_fold("") is None
    with pytest.raises(ValueError, match="not a fold suffix"):
        parse_fold("/loso/ridge/siteA")


def test_folds_refuse_a_site_with_too_few_subjects_and_too_few_sites():
    lonely = dict(SITES, **{"sub-010": "siteD"})  # siteD: one subject
    with pytest.raises(ValueError, match=r"\{'siteD': 1\} have fewer than 2 subjects"):
        fold_suffixes(LOSO, lonely)
    two = {s: site for s, site in SITES.items() if site != "siteC"}
    with pytest.raises(ValueError, match="at least 3 sites"):
        fold_suffixes(LOSO, two)
    with pytest.raises(ValueError, match="not a site"):
        fold_suffixes({**LOSO, "test_site": "siteZ"}, SITES)


def test_cohort_sites_come_from_the_synthetic_sites_and_other_sources_are_refused():
    dataset = {"kind": "synthetic", "params": {"sites": [{"name": "a"}, {"name": "b"}]}}
    assert cohort_sites(dataset, ["sub-001", "sub-002", "sub-003"]) == {
        "sub-001": "a", "sub-002": "b", "sub-003": "a",
    }  # fmt: skip
    with pytest.raises(ValueError, match="only the synthetic source"):
        cohort_sites({"kind": "bids", "params": {}}, ["sub-01"])


def test_settings_and_write_shards_refuse_folds_where_they_cannot_work(tmp_path):
    with pytest.raises(ValueError, match="harmonize: both .* needs split_by site"):
        ShardSettings.coerce({"harmonize": "both"})
    subjects, parc, anat, tsv = site_inputs(tmp_path)
    for fold in ({"test_site": "all"}, {"test_site": "s1", "harmonize": "both"}):
        with pytest.raises(ValueError, match="name folds, not one split"):
            write_shards(subjects, parc, anat, tsv, None, tmp_path / "o", {**SITE_SHARDS, **fold})


def _multisite(work, **changes):
    config = yaml.safe_load((work / "configs" / "multisite.yaml").read_text())
    for section, values in changes.items():
        config[section] = {**config[section], **values}
    return write_config(work, config, "loso.yaml")


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    return copy_project(tmp_path_factory.mktemp("folds"))


def test_the_multisite_config_plans_every_fold_in_one_dag(project):
    done = snakemake(
        project, "--dry-run", "--printshellcmds", "--configfile", "configs/multisite.yaml"
    )
    assert done.returncode == 0, done.stderr[-3000:]
    jobs = planned_jobs(done)
    n_exp = 2
    assert jobs["shard"] == 8 and jobs["site_summary"] == 1  # 4 sites x (none, combat)
    assert jobs["train"] == jobs["evaluate"] == 8 * n_exp
    assert jobs["preprocess"] == 48  # the data stages run once for every fold
    assert "figures" not in jobs and "summarize" not in jobs
    out = done.stdout
    assert "--out results/multisite/loso/combat/siteC/shards" in out
    settings = [json.loads(m) for m in re.findall(r"modalmerge shard --settings '([^']+)'", out)]
    folds = {(s.get("harmonize", "none"), s["test_site"]) for s in settings}
    assert folds == {(h, f"site{x}") for h in ("none", "combat") for x in "ABCD"}
    assert all(s["tr"] == 2.0 for s in settings)


def test_a_site_with_too_few_subjects_stops_the_dag_with_a_clear_error(project):
    configfile = _multisite(project, dataset={"name": "loso_small"})
    config = yaml.safe_load(configfile.read_text())
    config["dataset"]["params"]["n_subjects"] = 7  # siteD gets 1 subject
    write_config(project, config, "loso.yaml")
    done = snakemake(project, "--dry-run", "--configfile", "loso.yaml")
    assert done.returncode != 0
    assert "{'siteD': 1} have fewer than 2 subjects" in done.stdout + done.stderr


def test_a_single_held_out_site_keeps_the_single_split_paths(project):
    configfile = _multisite(project, shard={"test_site": "siteB", "harmonize": "none"})
    done = snakemake(project, "--dry-run", "--printshellcmds", "--configfile", str(configfile))
    assert done.returncode == 0, done.stderr[-3000:]
    assert planned_jobs(done)["shard"] == 1 and "site_summary" not in planned_jobs(done)
    assert "--out results/multisite/shards " in done.stdout and "loso" not in done.stdout


def test_site_summary_reads_the_workflows_fold_layout(tmp_path):
    from test_sites import fold_record

    from modalmerge.evaluation.sites import read_folds, site_summary
    from modalmerge.evaluation.summary import write_metrics
    from modalmerge.io import InputError

    paths = []
    for k, site in enumerate(("siteA", "siteB", "siteC")):
        for harmonize in ("none", "combat"):
            path = tmp_path / "loso" / harmonize / site / "eval" / "image_to_ts" / "metrics.json"
            record = fold_record(k, harmonize == "combat")
            ceiling = [0.6 + 1e-9 * (harmonize == "combat")] * 6  # float rounding only
            record["scores"]["noise_ceiling"] = {"pearson_r": 0.6}
            record["per_unit"]["noise_ceiling"] = {"pearson_r": ceiling}
            write_metrics(path, record)
            paths.append(path)
    assert sorted(read_folds(paths)) == sorted(
        (h, s, "image_to_ts") for h in ("none", "combat") for s in ("siteA", "siteB", "siteC")
    )
    import pandas as pd

    table = pd.read_csv(site_summary(paths, tmp_path / "s.csv"))
    assert set(table.harmonize) == {"none", "combat", "combat-none"}
    combat = table[table.harmonize == "combat-none"]
    assert set(combat.model) == {"model", "group_mean"}  # no row for the truth's ceiling
    with pytest.raises(InputError, match="a second metrics.json of fold"):
        read_folds(paths + [paths[0]])
    with pytest.raises(InputError, match="not one of"):
        wrong = tmp_path / "loso" / "ridge" / "siteA" / "eval" / "x" / "metrics.json"
        write_metrics(wrong, fold_record(0, False))
        read_folds([wrong])
