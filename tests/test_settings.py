"""The typed settings (modalmerge/settings.py): one definition of every stage's keys and defaults.

The config schema is generated from the dataclasses, the package and the CLI
fill the same defaults, and a bad value stops a dry run naming its key.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys

import pytest
from workflow_utils import REPO, copy_project, load_yaml, snakemake, write_config

from modalmerge import settings as typed
from modalmerge.settings_schema import SCHEMA_PATH, render


def test_committed_schema_is_the_one_generated_from_the_dataclasses():
    committed = (REPO / SCHEMA_PATH).read_text()
    assert committed == render(), "workflow/schemas/config.schema.yaml is stale: run `make schema`"


def test_schema_defaults_fill_a_config_like_the_dataclasses():
    """Snakemake's validate (schema defaults) and from_dict (dataclass defaults) agree."""
    from snakemake.utils import validate

    config = {"dataset": {"name": "d", "kind": "synthetic"}}
    config["experiments"] = [{"name": "e", "condition": "image", "target": "time_series"}]
    filled = json.loads(json.dumps(config))
    validate(filled, str(REPO / SCHEMA_PATH))
    for name in ("preprocess", "parcellate", "shard", "train", "evaluate", "figures", "cluster"):
        assert typed.from_dict(name, filled[name]) == typed.from_dict(name, {}), name
        schema_keys = set(filled[name])
        default_keys = {
            k for k, v in typed.to_dict(typed.from_dict(name, {})).items() if v is not None
        }
        assert schema_keys == default_keys, name


def test_the_package_and_the_workflow_share_the_defaults_the_workflow_ran():
    """Where code and schema disagreed, the schema's values (what the workflow ran) won."""
    assert typed.PreprocessSettings().high_pass == 0.008
    assert typed.PreprocessSettings().low_pass == 0.15
    assert (typed.ShardSettings().window, typed.ShardSettings().stride) == (50, 25)
    train = typed.TrainSettings()
    assert (train.epochs, train.lr, train.patience) == (40, 0.002, 8)
    assert typed.ShardSettings().fractions.as_dict() == {"train": 0.7, "val": 0.15, "test": 0.15}


@pytest.mark.parametrize(
    ("section", "mapping", "message"),
    [
        ("preprocess", {"high_pass": 0}, "preprocess.high_pass: must be > 0 or null, got 0"),
        ("preprocess", {"high_pass": 0.2, "low_pass": 0.1}, "preprocess.high_pass: must be below"),
        ("preprocess", {"detrend": "yes"}, "preprocess.detrend: must be true or false"),
        ("parcellate", {"connectivity": "tangent"}, "parcellate.connectivity: must be one of"),
        ("shard", {"windows": 3}, "shard.windows: unknown key"),
        ("shard", {"window": 1}, "shard.window: must be >= 2, got 1"),
        ("shard", {"fractions": {"train": 0.5}}, "shard.fractions: must sum to 1"),
        ("shard", {"fractions": {"tran": 1}}, "shard.fractions.tran: unknown key"),
        ("train", {"lr": "fast"}, "train.lr: must be a number > 0, got 'fast'"),
        ("train", {"epochs": True}, "train.epochs: must be an integer >= 1, got true"),
        ("evaluate", {"ridge_alphas": [1, -1]}, "evaluate.ridge_alphas[1]: must be > 0"),
        ("evaluate", {"in_memory_mb": -1}, "evaluate.in_memory_mb: must be >= 0, got -1"),
        ("experiments", {"name": "x", "condition": "image"}, "experiments[].target: required"),
        ("nonsense", {}, "nonsense: unknown config section"),
    ],
)
def test_bad_values_are_value_errors_naming_the_key_path(section, mapping, message):
    with pytest.raises(ValueError) as exc:
        typed.from_dict(section, mapping)
    assert message in str(exc.value)


def test_tangent_hint_and_the_kinds_parcellate_accepts():
    with pytest.raises(ValueError, match="shard.connectivity: tangent"):
        typed.from_dict("parcellate", {"connectivity": "tangent"})
    for kind in ("covariance", "precision", "partial correlation"):
        assert typed.from_dict("parcellate", {"connectivity": kind}).connectivity == kind
    assert typed.from_dict("shard", {"connectivity": "tangent"}).connectivity == "tangent"


def test_settings_round_trip_through_json_and_experiments_override_train():
    shard = typed.from_dict("shard", {"fractions": {"train": 0.6, "val": 0.2, "test": 0.2}})
    assert typed.from_dict("shard", json.loads(json.dumps(typed.to_dict(shard)))) == shard
    keys = set(typed.ShardSettings.SUBJECT_KEYS)
    assert set(shard.subject_params()) == keys - set(typed.ShardSettings.OMITTED_AT_DEFAULT)
    site = typed.from_dict(
        "shard", {"split_by": "site", "test_site": "A", "harmonize": "combat", "tr": 2.0}
    )
    assert set(site.subject_params()) == keys - {"volume_series"}  # set away: recorded
    volumes = typed.from_dict("shard", {"volume_series": {"enabled": True}})
    assert volumes.subject_params()["volume_series"]["downsample"] == 2
    # volumes are stored at the acquisition TR: windowing them at another TR is refused
    with pytest.raises(ValueError, match="shard.volume_series: the volumes are stored at"):
        typed.from_dict("shard", {"tr": 2.0, "volume_series": {"enabled": True}})
    entry = {"name": "e", "condition": "text", "target": "tabular", "lr": 1, "target_rois": "^R"}
    experiment = typed.from_dict("experiments", entry)
    assert experiment.lr == 1.0 and isinstance(experiment.lr, float)
    train = experiment.training(typed.TrainSettings(epochs=7))
    assert (train.epochs, train.lr, train.batch_size) == (7, 1.0, 16)


def test_whole_config_is_typed_and_duplicate_experiment_names_are_refused():
    config = load_yaml(REPO / "config.yaml")
    settings = typed.from_config(config)
    assert settings.train.epochs == config["train"]["epochs"]
    assert [e.name for e in settings.experiments] == [e["name"] for e in config["experiments"]]
    config["experiments"].append(dict(config["experiments"][0]))
    with pytest.raises(ValueError, match="experiments: names must be unique"):
        typed.from_config(config)
    with pytest.raises(ValueError, match=r"experiments\[1\]\.heads: must be >= 1, got 0"):
        typed.from_config(config | {"experiments": [config["experiments"][0], {
            "name": "b", "condition": "image", "target": "text", "heads": 0}]})  # fmt: skip


def test_a_workflow_needs_a_test_split_the_package_does_not():
    fractions = {"train": 1.0, "val": 0.0, "test": 0.0}  # e.g. a benchmark's shards
    assert typed.from_dict("shard", {"fractions": fractions}).fractions.test == 0
    config = load_yaml(REPO / "config.yaml")
    config["shard"]["fractions"] = fractions
    with pytest.raises(ValueError, match=r"shard\.fractions\.test: must be > 0"):
        typed.from_config(config)


def test_dataset_kinds_are_the_registered_sources():
    from modalmerge.data.sources import SOURCES

    assert typed.SOURCE_KINDS == tuple(SOURCES)


def test_settings_import_no_numpy_or_torch():
    code = "import sys, modalmerge.settings; print(sorted(m for m in ('numpy', 'torch', 'yaml') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_cli_refuses_a_bad_setting_naming_the_key(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "modalmerge.cli", "parcellate", "--settings",
         '{"connectivity": "tangent"}', "--t1", "a", "--atlas", "b", "--labels", "c",
         "--out", str(tmp_path / "o.npz")],
        capture_output=True, text=True,
    )  # fmt: skip
    assert result.returncode != 0
    assert "parcellate.connectivity: must be one of" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    workdir = copy_project(tmp_path_factory.mktemp("settings_project"))
    return workdir, load_yaml(workdir / "configs" / "tiny.yaml")


@pytest.mark.parametrize(
    ("section", "edit", "message"),
    [
        ("parcellate", {"connectivity": "tangent"}, "parcellate.connectivity: must be one of"),
        ("preprocess", {"high_pass": 0}, "preprocess.high_pass: must be > 0 or null, got 0"),
        ("shard", {"windw": 30}, "shard.windw: unknown key"),
    ],
)
def test_dry_run_with_a_bad_value_stops_naming_the_key(project, section, edit, message):
    workdir, config = project
    write_config(workdir, {**config, section: {**config[section], **edit}})
    result = snakemake(workdir, "--dry-run")
    assert result.returncode != 0
    assert message in result.stdout + result.stderr


@pytest.mark.parametrize("kind", ["covariance", "precision"])
def test_dry_run_accepts_the_connectivity_kinds_parcellate_computes(project, kind):
    workdir, config = project
    write_config(workdir, {**config, "parcellate": {"connectivity": kind}})
    result = snakemake(workdir, "--dry-run", "--printshellcmds")
    assert result.returncode == 0, result.stderr[-3000:]
    assert f'"connectivity": "{kind}"' in result.stdout  # the parcellate jobs' --settings


def test_resource_knobs_stay_out_of_a_stage_s_identity():
    """train.threads is how a job runs, not what it computes: the workflow's params JSON
    (identity_dict) leaves it out, so a thread count never reruns training (issue 17)."""
    train = typed.TrainSettings.from_dict({"threads": 4, "lr": 0.01})
    identity = typed.identity_dict(train)
    assert "threads" not in identity and identity["lr"] == 0.01
    assert typed.to_dict(train)["threads"] == 4  # still a setting the CLI and rules read
    assert identity == typed.identity_dict(typed.TrainSettings.from_dict({"lr": 0.01}))


def _configfiles(path) -> list:
    """The configfiles a committed config runs with: the ``--configfile`` list of its header
    comment where that list names it (a config given after another one), else itself."""
    header = []
    for line in path.read_text().splitlines():
        if not line.startswith("#"):
            break
        header.append(line.lstrip("#").replace("\\", " "))
    for match in re.finditer(r"--configfile((?:\s+configs/[\w.-]+\.yaml)+)", " ".join(header)):
        files = [REPO / name for name in match.group(1).split()]
        if path in files:
            return files
    return [path]


COMMITTED_CONFIGS = sorted((REPO / "configs").glob("*.yaml")) + [REPO / "config.yaml"]


@pytest.mark.parametrize("path", COMMITTED_CONFIGS, ids=lambda p: p.name)
def test_every_committed_config_passes_the_checks_the_snakefile_makes(path):
    """What a run of the config checks before planning a job (Snakefile: from_config,
    check_mean_sources, the schema), on the configfiles merged as Snakemake merges them;
    a config nobody runs in the suite (configs/gpu.yaml, the fresh-cohort configs) would
    otherwise rot unnoticed."""
    from snakemake.utils import update_config, validate

    from modalmerge.mean_sources import check_mean_sources

    config: dict = {}
    for file in _configfiles(path):
        update_config(config, load_yaml(file))
    settings = typed.from_config(config)
    check_mean_sources(settings.experiments)
    validate(config, str(REPO / SCHEMA_PATH))
    assert settings.experiments, f"{path.name}: no experiments"


def test_a_config_given_after_another_is_checked_on_the_merge():
    stacked = _configfiles(REPO / "configs" / "decoding_seed8.yaml")
    assert [p.name for p in stacked] == ["decoding.yaml", "decoding_seed8.yaml"]
    assert _configfiles(REPO / "configs" / "gpu.yaml") == [REPO / "configs" / "gpu.yaml"]
