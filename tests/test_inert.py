"""Untrusted files stay inert, and BIDS dataset-level files (issue 11, items 5 and 6)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from modalmerge.data.sources import get_source
from modalmerge.io import InputError
from tests._sources_fixtures import make_bids, make_fmriprep, tiny_atlas

REPO = Path(__file__).resolve().parents[1]


def _calls(pattern: str) -> list[tuple[Path, int, str]]:
    found = []
    for path in sorted((REPO / "modalmerge").rglob("*.py")):
        for i, line in enumerate(path.read_text().splitlines(), 1):
            if re.search(pattern, line):
                found.append((path, i, line))
    return found


def test_no_pickle_from_data_files():
    calls = _calls(r"np\.load\(")
    assert calls, "the scan found no np.load at all: the pattern is stale"
    bad = [c for c in calls if "allow_pickle=False" not in c[2]]
    assert not bad, f"np.load without allow_pickle=False: {bad}"
    assert not _calls(r"^\s*import pickle|pickle\.loads?\(|joblib\.load\(")


def test_checkpoints_load_with_weights_only():
    calls = _calls(r"torch\.load\(")
    code = [c for c in calls if not c[2].lstrip().startswith(("#", '"', "``"))]
    code = [c for c in code if "torch.load(path" in c[2] or "torch.load(f" in c[2]]
    assert code
    assert all("weights_only=True" in c[2] for c in code), code


# values a rule builds with shlex.quote itself, or that are not user data
_PRE_QUOTED = {"params.optional", "params.extra", "params.channels", "params.texts",
               "params.launcher", "params.time_split", "threads"}  # fmt: skip


def test_every_shell_value_is_quoted():
    for rule_file in sorted((REPO / "workflow" / "rules").glob("*.smk")):
        text = rule_file.read_text()
        for block in re.findall(r"shell:\n((?:\s+\".*\"\n)+)", text):
            for field in re.findall(r"\{([^{}]+)\}", block):
                name = field.split(":")[0]
                assert field.endswith(":q") or name in _PRE_QUOTED, f"{rule_file.name}: {{{field}}}"


@pytest.mark.parametrize("label", ["../escape", "01/../../x", "sub-01/..", "sub-01\\\\x", "a..b"])
def test_subject_filter_refuses_non_bids_labels(tmp_path, label):
    root = make_bids(tmp_path / "bids")
    params = {"path": str(root), "task": "rest", "subjects": [label]}
    with pytest.raises(InputError, match="dataset.params.subjects: .* is not a BIDS subject id"):
        get_source("bids").subject_ids(params)


def test_acquire_subject_cli_refuses_a_path_as_subject(tmp_path):
    root = make_bids(tmp_path / "bids")
    dataset = json.dumps({"kind": "bids", "params": {"path": str(root), "task": "rest"}})
    out = tmp_path / "res"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "modalmerge.cli",
            "acquire-subject",
            "--dataset",
            dataset,
            "--root",
            str(out),
            "--subject",
            "sub-01/../../../escape",
        ],  # fmt: skip
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 1
    assert "is not a BIDS subject id" in proc.stderr and "Traceback" not in proc.stderr
    assert not out.exists() and not (tmp_path / "escape").exists()


# ------------------------------------------------------------------ dataset-level files


def test_bids_requires_dataset_description(tmp_path):
    root = make_bids(tmp_path / "bids")
    params = {"path": str(root), "task": "rest"}
    (root / "dataset_description.json").unlink()
    with pytest.raises(InputError, match=r"dataset_description.json: is missing: BIDS requires"):
        get_source("bids").subject_ids(params)
    with pytest.raises(InputError, match=r"dataset_description.json: is missing"):
        get_source("bids").subject_ids({**params, "on_error": "exclude"})
    (root / "dataset_description.json").write_text("{not json")
    with pytest.raises(InputError, match="dataset_description.json: is not valid JSON"):
        get_source("bids").subject_ids(params)
    (root / "dataset_description.json").write_text(json.dumps({"Name": "x"}))
    with pytest.raises(InputError, match=r"lacks the REQUIRED field\(s\) \['BIDSVersion'\]"):
        get_source("bids").subject_ids(params)


def test_fmriprep_without_description_warns_in_the_log(tmp_path, caplog):
    root = make_fmriprep(tmp_path / "fmriprep")
    params = {"path": str(root), "task": "rest", "atlas": tiny_atlas(tmp_path)}
    with caplog.at_level("WARNING", logger="modalmerge"):
        get_source("fmriprep").write_cohort(params, tmp_path / "res")
    assert "dataset_description.json: missing" in caplog.text
    assert (tmp_path / "res" / "raw" / "participants.tsv").exists()


@pytest.mark.parametrize("content", ["", "onset\tduration\n-1\tx\n", "garbage\0\n"])
def test_events_are_not_read_and_pass_through_unchanged(tmp_path, content):
    """No stage uses events (docs/data-sources.md): a malformed file neither stops the
    run nor is interpreted; the BIDS source copies it byte for byte into raw/."""
    root = make_bids(tmp_path / "bids")
    (root / "task-rest_events.tsv").write_text(content)
    params = {"path": str(root), "task": "rest", "atlas": tiny_atlas(tmp_path)}
    source = get_source("bids")
    source.write_cohort(params, tmp_path / "res")
    assert (tmp_path / "res" / "raw" / "task-rest_events.tsv").read_text() == content


def test_raw_case_names_still_filter_brats_and_adni(tmp_path):
    from tests._sources_fixtures import make_adni, make_brats

    brats = {"path": str(make_brats(tmp_path / "brats")), "subjects": ["BraTS20_Training_002"]}
    assert get_source("brats").subject_ids(brats) == ["sub-BraTS20Training002"]
    # ADNI: a raw PTID in the filter passes the name check, but the cohort check then
    # compares the table's labels with the unmapped filter (a fault that predates issue 11)
    adni = {"path": str(make_adni(tmp_path / "adni")), "subjects": ["sub-002S0295"]}
    assert get_source("adni").subject_ids(adni) == ["sub-002S0295"]
