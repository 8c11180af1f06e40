"""The brainspace source: a real fsaverage5 rest run mapped onto the raw/ contract."""

from __future__ import annotations

import importlib.util
import json
import shutil

import nibabel as nib
import numpy as np
import pandas as pd
import pytest

from modalmerge.data.sources import brainspace as source
from modalmerge.evaluation.homologs import homolog_base, homolog_pairs
from modalmerge.io import InputError

if importlib.util.find_spec("brainspace") is None:  # `make setup` installs it
    pytest.skip(
        "brainspace is not installed (pip install --no-deps brainspace)", allow_module_level=True
    )


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    root = tmp_path_factory.mktemp("brainspace")
    source.write_cohort({"tr": 1.4}, root)
    source.write_subject({"tr": 1.4}, source.SUBJECT, root)
    return root


def test_the_run_is_written_as_a_vertex_grid_with_its_tr_and_confounds(written):
    func = written / "raw" / source.SUBJECT / "func"
    bold = nib.load(func / f"{source.SUBJECT}_task-rest_bold.nii.gz")
    assert bold.shape == (20484, 1, 1, 652)
    assert bold.header.get_zooms()[3] == pytest.approx(1.4)
    sidecar = json.loads((func / f"{source.SUBJECT}_task-rest_bold.json").read_text())
    assert sidecar["RepetitionTime"] == 1.4 and sidecar["SpatialReference"] == "fsaverage5"
    confounds = pd.read_csv(
        func / f"{source.SUBJECT}_task-rest_desc-confounds_timeseries.tsv", sep="\t"
    )
    assert confounds.shape == (652, 29)
    # the data are the package's own: left hemisphere first, values unchanged
    lh = np.asarray(nib.load(source.package_dir() / f"{source.RUN}.fsa5.lh.mgz").dataobj)
    np.testing.assert_array_equal(np.asarray(bold.dataobj)[:10242, 0, 0, :5], lh[:, 0, 0, :5])


def test_the_atlas_has_34_cortical_regions_per_hemisphere_on_the_same_grid(written):
    labels = pd.read_csv(written / "atlas" / "labels.tsv", sep="\t")
    assert (labels["hemisphere"] == "L").sum() == 34 and (labels["hemisphere"] == "R").sum() == 34
    assert labels["name"].str.startswith(("L_", "R_")).all()
    image = np.asarray(nib.load(written / "atlas" / "atlas.nii.gz").dataobj).ravel()
    assert image.shape == (20484,)
    assert set(np.unique(image[:10242])) - {0} == set(labels.loc[labels.hemisphere == "L", "index"])
    assert (image == 0).sum() > 0  # the medial wall belongs to no region
    assert (labels.loc[labels.hemisphere == "L", "x"] < 0).all()  # left regions lie at x < 0


def test_participants_list_the_one_subject(written):
    table = pd.read_csv(written / "raw" / "participants.tsv", sep="\t")
    assert table["participant_id"].tolist() == [source.SUBJECT]


@pytest.mark.parametrize(
    ("params", "message"),
    [({}, "tr must be a positive"), ({"tr": 0}, "tr must be"), ({"tr": 1, "x": 1}, "unknown keys")],
)
def test_bad_params_are_refused(params, message):
    with pytest.raises(ValueError, match=message):
        source.subject_ids(params)


def test_a_truncated_run_is_an_error_naming_the_file(tmp_path):
    copy = tmp_path / "data"
    shutil.copytree(source.package_dir(), copy)
    rh = copy / f"{source.RUN}.fsa5.rh.mgz"
    rh.write_bytes(rh.read_bytes()[:5000])
    with pytest.raises(InputError, match=r"fsa5\.rh\.mgz"):
        source.write_subject({"tr": 1.0, "path": str(copy)}, source.SUBJECT, tmp_path / "out")
    assert not (tmp_path / "out" / "raw" / source.SUBJECT).exists()


def test_confounds_of_the_wrong_length_are_an_error_naming_the_file(tmp_path):
    copy = tmp_path / "data"
    shutil.copytree(source.package_dir(), copy)
    conf = copy / f"{source.RUN}_confounds.txt"
    conf.write_text("".join(conf.read_text().splitlines(keepends=True)[:100]))
    with pytest.raises(InputError, match="confounds.txt: 100 confound rows for 652 volumes"):
        source.write_subject({"tr": 1.0, "path": str(copy)}, source.SUBJECT, tmp_path / "out")


def test_homologs_pair_by_name_across_hemispheres():
    assert homolog_base("insula_L") == homolog_base("insula_R") == "insula"
    assert (
        homolog_base("lh.precuneus") == "precuneus" and homolog_base("Left_Thalamus") == "thalamus"
    )
    pairs = homolog_pairs(["cuneus_R", "insula_R", "vermis"], ["insula_L", "cuneus_L", "other_L"])
    assert pairs == {0: 1, 1: 0}  # 'vermis' has no hemisphere tag, so no homolog
