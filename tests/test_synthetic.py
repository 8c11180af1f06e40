"""The synthetic cohort: BIDS layout, determinism, validation and atomic writes."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest

from modalmerge.data.synthetic.anatomy import grid_affine
from modalmerge.data.synthetic.cohort import (
    SyntheticParams,
    subject_ids,
    write_cohort,
    write_subject,
)

TINY = {
    "seed": 0,
    "n_subjects": 4,
    "grid_shape": [20, 24, 20],
    "voxel_size_mm": 7.2,
    "n_timepoints": 100,
    "lesion_probability": 0.5,
}
SHAPE = (20, 24, 20)
TRUTH_KEYS = {
    "evoked",
    "spontaneous",
    "amplitude",
    "latency",
    "coupling",
    "structural",
    "feature_names",
    "age",
    "sex",
    "group",
    "atrophy",
    "ventricle_scale",
    "regional_factors",
}


def bold_path(root: Path, subject: str) -> Path:
    return root / "raw" / subject / "func" / f"{subject}_task-motor_bold.nii.gz"


def subject_files(root: Path, subject: str) -> list[Path]:
    return [
        root / "raw" / subject / "anat" / f"{subject}_T1w.nii.gz",
        bold_path(root, subject),
        bold_path(root, subject).with_name(f"{subject}_task-motor_bold.json"),
        root / "raw" / subject / f"{subject}_description.txt",
    ]


@pytest.fixture(scope="module")
def cohort(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("synthetic")
    write_cohort(TINY, root)
    for subject in subject_ids(TINY):
        write_subject(TINY, subject, root)
    return root


def test_subject_ids_are_bids_labels_numbered_from_one():
    assert subject_ids({"n_subjects": 3}) == ["sub-001", "sub-002", "sub-003"]
    assert subject_ids(SyntheticParams(n_subjects=1000))[-1] == "sub-1000"


def test_write_cohort_writes_participants_events_and_dataset_description(cohort):
    participants = pd.read_csv(cohort / "raw" / "participants.tsv", sep="\t")
    assert list(participants.columns) == ["participant_id", "age", "sex", "group"]
    assert list(participants.participant_id) == subject_ids(TINY)
    assert participants.age.between(20, 80).all()
    assert set(participants.sex) <= {"F", "M"}
    assert set(participants.group) <= {"control", "patient"}
    events = pd.read_csv(cohort / "raw" / "task-motor_events.tsv", sep="\t")
    assert list(events.columns) == ["onset", "duration", "trial_type"]
    assert (events.duration == 20.0).all() and set(events.trial_type) == {"left", "right"}
    assert (events.onset + events.duration <= 100 * 2.0).all()
    description = json.loads((cohort / "raw" / "dataset_description.json").read_text())
    assert description["BIDSVersion"] and description["DatasetType"] == "raw"


def test_atlas_labels_every_region_on_the_generation_grid(cohort):
    atlas = nib.load(cohort / "atlas" / "atlas.nii.gz")
    assert atlas.shape == SHAPE
    assert np.issubdtype(atlas.get_data_dtype(), np.integer)
    np.testing.assert_allclose(atlas.affine, grid_affine(SyntheticParams.from_dict(TINY)))
    labels = pd.read_csv(cohort / "atlas" / "labels.tsv", sep="\t")
    assert list(labels.columns) == ["index", "name", "x", "y", "z"]
    assert list(labels["index"]) == list(range(1, 17))
    assert set(np.unique(np.asarray(atlas.dataobj))) == set(range(17))
    left = labels.name.str.startswith("L_region")
    assert left.sum() == 8 and labels.name.str.startswith("R_region").sum() == 8
    assert (labels.x[left] < 0).all() and (labels.x[~left] > 0).all()  # RAS: left is -x


def test_write_subject_writes_t1_bold_sidecar_description_and_truth(cohort):
    for subject in subject_ids(TINY):
        for path in subject_files(cohort, subject):
            assert path.is_file(), path
    t1 = nib.load(subject_files(cohort, "sub-001")[0])
    bold = nib.load(bold_path(cohort, "sub-001"))
    assert t1.shape == SHAPE and bold.shape == (*SHAPE, 100)
    np.testing.assert_allclose(t1.affine, bold.affine)
    assert bold.header.get_zooms()[3] == pytest.approx(2.0)
    sidecar = json.loads(
        bold_path(cohort, "sub-001").with_suffix("").with_suffix(".json").read_text()
    )
    assert sidecar["RepetitionTime"] == 2.0 and sidecar["TaskName"] == "motor"
    data = bold.get_fdata(dtype=np.float32)
    head_mean = data.mean(axis=3)[data.mean(axis=3) > 0]
    assert 100 < np.median(head_mean) < 3000 and data.max() < 5000

    truth = np.load(cohort / "truth" / "sub-001.npz")
    assert TRUTH_KEYS <= set(truth.files)
    assert truth["evoked"].shape == (100, 16) and truth["coupling"].shape == (16, 16)
    assert truth["amplitude"].shape == (16,) and truth["latency"].shape == (16,)
    assert truth["structural"].shape == (16, len(truth["feature_names"]))
    assert list(truth["feature_names"]) == ["thickness_mm", "gm_intensity", "lesion_ml"]


def test_description_text_matches_participants_and_truth(cohort):
    participants = pd.read_csv(cohort / "raw" / "participants.tsv", sep="\t")
    for row in participants.itertuples():
        text = (
            cohort / "raw" / row.participant_id / f"{row.participant_id}_description.txt"
        ).read_text()
        truth = np.load(cohort / "truth" / f"{row.participant_id}.npz")
        assert f"{row.age:.0f}-year-old" in text
        assert {"F": "female", "M": "male"}[row.sex] in text
        assert f"{row.group} group" in text and "atrophy" in text and "ventricles" in text
        n_lesions = len(truth["lesion_radii_mm"])
        assert ("No white-matter lesions" in text) == (n_lesions == 0)


def test_same_seed_writes_identical_files(tmp_path):
    for root in (tmp_path / "a", tmp_path / "b"):
        write_subject(TINY, "sub-002", root)
    for a, b in zip(
        subject_files(tmp_path / "a", "sub-002"),
        subject_files(tmp_path / "b", "sub-002"),
        strict=True,
    ):
        assert a.read_bytes() == b.read_bytes(), a.name


def test_subject_written_alone_equals_subject_written_with_the_cohort(cohort, tmp_path):
    write_subject(TINY, "sub-003", tmp_path)  # no write_cohort, no other subject
    assert not (tmp_path / "raw" / "participants.tsv").exists()
    for a, b in zip(
        subject_files(cohort, "sub-003"), subject_files(tmp_path, "sub-003"), strict=True
    ):
        assert a.read_bytes() == b.read_bytes(), a.name
    alone = np.load(tmp_path / "truth" / "sub-003.npz")
    together = np.load(cohort / "truth" / "sub-003.npz")
    for key in together.files:
        np.testing.assert_array_equal(alone[key], together[key], err_msg=key)


def test_subjects_and_seeds_differ(cohort, tmp_path):
    one = nib.load(bold_path(cohort, "sub-001")).get_fdata()
    two = nib.load(bold_path(cohort, "sub-002")).get_fdata()
    assert not np.allclose(one, two)
    t1 = [nib.load(subject_files(cohort, s)[0]).get_fdata() for s in ("sub-001", "sub-002")]
    assert not np.allclose(*t1)
    write_subject({**TINY, "seed": 1}, "sub-001", tmp_path)
    other_seed = np.load(tmp_path / "truth" / "sub-001.npz")["amplitude"]
    assert not np.allclose(other_seed, np.load(cohort / "truth" / "sub-001.npz")["amplitude"])


def test_generating_one_subject_does_not_depend_on_cohort_size(tmp_path):
    write_subject({**TINY, "n_subjects": 10**6}, "sub-0000002", tmp_path)
    small = tmp_path / "small"
    write_subject(TINY, "sub-002", small)
    big = np.load(tmp_path / "truth" / "sub-0000002.npz")
    np.testing.assert_array_equal(big["evoked"], np.load(small / "truth" / "sub-002.npz")["evoked"])


def test_event_design_writes_brief_jittered_events(tmp_path):
    params = {**TINY, "design": "event", "n_conditions": 1, "event_isi_s": [4.0, 6.0]}
    write_cohort(params, tmp_path)
    events = pd.read_csv(tmp_path / "raw" / "task-motor_events.tsv", sep="\t")
    assert (events.duration == 1.0).all() and set(events.trial_type) == {"left"}
    gaps = np.diff(events.onset)
    assert gaps.min() >= 4.0 - 1e-3 and gaps.max() <= 6.0 + 1e-3 and gaps.std() > 0.1


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"n_subject": 3}, "n_subject"),
        ({"colour": "red", "seed": 1}, "colour"),
        ({"n_regions": 15}, "n_regions"),
        ({"n_regions": 0}, "n_regions"),
        ({"design": "mixed"}, "design"),
        ({"tr": -2.0}, "tr"),
        ({"tsnr": 0}, "tsnr"),
        ({"grid_shape": [20, 24]}, "grid_shape"),
        ({"grid_shape": 20}, "grid_shape"),
        ({"grid_shape": [8, 8, 8]}, "grid_shape"),
        ({"lesion_probability": 1.5}, "lesion_probability"),
        ({"n_conditions": 3}, "n_conditions"),
        ({"task": "finger-tap"}, "task"),
        ({"n_subjects": 2.5}, "n_subjects"),
        ({"coupling_strength": 0.9}, "coupling_strength"),
        ({"age_range": [60, 20]}, "age_range"),
    ],
)
def test_bad_settings_raise_value_error_naming_the_setting(settings, message):
    with pytest.raises(ValueError, match=message):
        SyntheticParams.from_dict(settings)


def test_defaults_are_valid_and_round_trip_through_a_dict():
    params = SyntheticParams()
    assert params.n_subjects == 48 and params.tr == 2.0 and params.n_regions == 16
    assert SyntheticParams.from_dict(params.to_dict()) == params
    assert SyntheticParams.from_dict(None) == params


@pytest.mark.parametrize("subject", ["sub-005", "sub-000", "sub-01", "subject-1", "sub-abc"])
def test_write_subject_rejects_subjects_outside_the_cohort(subject, tmp_path):
    with pytest.raises(ValueError, match="sub"):
        write_subject(TINY, subject, tmp_path)
    assert not any(tmp_path.iterdir())


def test_writes_leave_no_temporary_files(cohort):
    leftovers = [p for p in cohort.rglob("*") if p.name.startswith(".tmp-")]
    assert leftovers == []


def test_failed_write_leaves_no_partial_file_and_keeps_the_old_one(tmp_path, monkeypatch):
    truth_path = tmp_path / "truth" / "sub-001.npz"
    truth_path.parent.mkdir(parents=True)
    truth_path.write_bytes(b"previous")

    def crash_midway(path, **arrays):
        Path(path).write_bytes(b"half a file")
        raise OSError("disk full")

    monkeypatch.setattr(np, "savez_compressed", crash_midway)
    with pytest.raises(OSError, match="disk full"):
        write_subject(TINY, "sub-001", tmp_path)
    assert truth_path.read_bytes() == b"previous"
    assert [p for p in tmp_path.rglob("*") if p.name.startswith(".tmp-")] == []


def test_anatomy_sets_the_shape_of_each_task_region_s_response():
    """Task regions' left/right preference follows their grey-matter intensity asymmetry,
    so the evoked time course's shape, not only its size, is predictable from anatomy."""
    from scipy.stats import spearmanr

    from modalmerge.data.synthetic.factors import cohort_constants, subject_truth

    p = SyntheticParams(n_subjects=40, n_regions=8)
    cohort = cohort_constants(p)
    truths = [subject_truth(p, i) for i in range(40)]
    share = np.array([t.condition_weights[0] / t.condition_weights.sum(0) for t in truths])
    gmi = np.array([t.gm_intensity for t in truths])
    asymmetry = gmi - np.roll(gmi, p.regions_per_hemisphere, axis=1)
    task = np.flatnonzero(cohort.community != 1)
    assert task.size
    for r in task:
        assert share[:, r].std() > 0.05
        # a monotonic (saturating) function of the asymmetry
        assert spearmanr(asymmetry[:, r], share[:, r])[0] > 0.95
    for r in np.flatnonzero(cohort.community == 1):
        assert np.allclose(share[:, r], share[0, r])
