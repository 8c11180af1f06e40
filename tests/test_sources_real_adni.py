"""ADNI downloads as the IDA and Clinica channels deliver them (issue #16)."""

from __future__ import annotations

import pandas as pd
import pytest
from _real_layouts import make_adni_clinica, make_adni_ida
from _sources_fixtures import tiny_atlas

from modalmerge.data.sources import get_source
from modalmerge.data.sources.adni_layouts import viscode


@pytest.fixture(autouse=True)
def _private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))


def sources_of(tmp_path, params):
    """Plan and write every subject; return subject -> resolved placed T1w."""
    params = {"atlas": tiny_atlas(tmp_path), **params}
    source = get_source("adni")
    subjects = source.subject_ids(params)
    out = tmp_path / "out"
    source.write_cohort(params, out)
    placed = {}
    for s in subjects:
        files = source.collect(params, s)
        source.write_subject(params, s, out)
        placed[s] = files.anat["T1w"]
    return placed


def test_ida_tree_maps_image_ids_to_visits_and_description_picks_the_series(tmp_path):
    root = make_adni_ida(tmp_path / "dl")
    params = {"path": str(root), "layout": "ida", "visit": "m12"}
    with pytest.raises(
        ValueError, match=r"2 images of 002_S_0295 match .*set dataset.params.description"
    ):
        sources_of(tmp_path, params)
    placed = sources_of(tmp_path, {**params, "description": "N3__Scaled"})
    assert sorted(placed) == ["sub-002S0295", "sub-011S0002"]
    assert placed["sub-002S0295"].name.endswith("_I79122.nii")  # IMAGEUID of m12
    # the raw MPRAGE has no IMAGEUID row: its scan date goes to the nearest EXAMDATE
    placed = sources_of(tmp_path, {**params, "description": "MPRAGE", "visit": "bl"})
    assert placed["sub-011S0002"].name.endswith("_I7024.nii")
    table = pd.read_csv(tmp_path / "out/raw/participants.tsv", sep="\t")
    assert table["participant_id"].tolist() == [
        "sub-002S0295",
        "sub-011S0002",
    ]  # dated ADNIMERGE found


def test_clinica_bids_maps_subjects_and_sessions_to_ptid_and_viscode(tmp_path):
    assert [viscode(s) for s in ("ses-M000", "ses-M006", "ses-M012", "ses-M120")] == [
        "bl",
        "m06",
        "m12",
        "m120",
    ]
    root = make_adni_clinica(tmp_path / "adni_bids")
    placed = sources_of(tmp_path, {"path": str(root), "layout": "clinica", "visit": "m12"})
    assert sorted(placed) == ["sub-002S0295", "sub-011S0002"]
    assert placed["sub-002S0295"].name == "sub-ADNI002S0295_ses-M012_T1w.nii.gz"
    assert (tmp_path / "out/raw/sub-002S0295/anat/sub-002S0295_T1w.nii.gz").exists()


def test_dicom_download_says_how_to_convert(tmp_path):
    root = make_adni_ida(tmp_path / "dl", dicom=True)
    for layout in ("ida", "template"):
        with pytest.raises(
            ValueError, match=r"ADNI download is DICOM.*clinica convert adni-to-bids.*dcm2niix"
        ):
            get_source("adni").subject_ids({"path": str(root), "layout": layout})
