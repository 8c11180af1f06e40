"""Anatomy-only data (ADNI, BraTS: no BOLD) through the workflow.

An ADNI-layout folder built by the tests (8 subjects, one T1 per baseline visit,
an ADNIMERGE-like table) runs acquire -> preprocess (T1 only) -> parcellate
(structural features only) -> shard (one sample per subject) -> train an
image -> clinical-table model -> evaluate against the mean and ridge -> figures.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import h5py
import nibabel as nib
import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent))
from _sources_fixtures import make_adni, make_brats, tiny_atlas  # noqa: E402
from workflow_utils import (  # noqa: E402
    copy_project,
    load_yaml,
    planned_jobs,
    snakemake,
    write_config,
)

PTIDS = tuple(f"{100 + i:03d}_S_{2000 + i}" for i in range(8))


def _config(workdir: Path, dataset: dict) -> dict:
    config = load_yaml(workdir / "configs" / "tiny.yaml")
    config["dataset"] = dataset
    config["shard"] = {"seed": 0, "fractions": {"train": 0.5, "val": 0.25, "test": 0.25}}
    config["evaluate"] = {"pca_components": 2}
    config["experiments"] = [
        {
            "name": "t1_to_clinical",
            "condition": "image",
            "target": "tabular",
            "encoder": "cnn",
            "decoder": "mlp",
            "embedding_dim": 8,
            "heads": 2,
        }
    ]
    return config


@pytest.fixture(scope="module")
def adni_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("adni")
    data = make_adni(root / "ADNI", ptids=PTIDS)
    workdir = copy_project(root / "project")
    dataset = {
        "name": "adni_tiny",
        "kind": "adni",
        "params": {"path": str(data), "atlas": tiny_atlas(root)},
    }
    write_config(workdir, _config(workdir, dataset), "adni.yaml")
    result = snakemake(workdir, "--configfile", "adni.yaml")
    assert result.returncode == 0, result.stderr[-4000:]
    return workdir, workdir / "results" / "adni_tiny"


def test_anatomy_only_cohort_runs_from_t1_to_clinical_predictions(adni_run):
    workdir, root = adni_run
    assert not list(root.glob("raw/sub-*/func")) and not list(root.glob("preproc/sub-*/func"))
    t1s = list(root.glob("preproc/sub-*/anat/sub-*_space-MNI152_desc-preproc_T1w.nii.gz"))
    assert len(t1s) == len(PTIDS)
    for stage in ("preproc", "parcellated"):  # BIDS derivatives
        description = json.loads((root / stage / "dataset_description.json").read_text())
        assert description["DatasetType"] == "derivative"
    assert not list(root.glob("parcellated/sub-*/func"))  # no BOLD: no series, no relmat
    assert len(list(root.glob("parcellated/sub-*/anat/*_morph.tsv"))) == len(PTIDS)
    with np.load(next(root.glob("parcellated/sub-*/*_parcellated.npz"))) as npz:
        assert "structural_features" in npz.files and "roi_timeseries" not in npz.files
    manifest = json.loads((root / "shards" / "manifest.json").read_text())
    assert "time_series" not in manifest["shapes"] and "image" in manifest["shapes"]
    assert sum(manifest["n_samples"].values()) == len(PTIDS)  # one sample per subject
    with h5py.File(root / "shards" / "train-0000.h5") as h5:
        assert "time_series" not in h5["samples"] and "connectivity" not in h5["subjects"]
    assert "MMSE" in manifest["tabular"]["columns"]
    metrics = json.loads((root / "eval" / "t1_to_clinical" / "metrics.json").read_text())
    assert {"model", "group_mean", "ridge"} <= set(metrics["scores"])
    assert metrics["n_test_subjects"] == len(manifest["splits"]["test"])
    figures = root / "figures" / "t1_to_clinical"
    for name in ("tabular_prediction", "attention", "learning_curves"):
        assert (figures / f"{name}.png").stat().st_size > 0, name
    again = snakemake(workdir, "--configfile", "adni.yaml", "--dry-run")
    assert planned_jobs(again) == {}


def test_a_time_series_experiment_on_anatomy_only_data_fails_with_a_clear_error(adni_run):
    workdir, _ = adni_run
    config = load_yaml(workdir / "adni.yaml")
    config["experiments"][0] = {**config["experiments"][0], "name": "bad", "target": "time_series"}
    write_config(workdir, config, "bad.yaml")
    result = snakemake(workdir, "--configfile", "bad.yaml")
    assert result.returncode != 0
    log = (workdir / "logs" / "adni_tiny" / "train" / "bad.log").read_text()
    assert "the target 'time_series' is not in these shards" in log


CASES = tuple(f"BraTS20_Training_{i:03d}" for i in range(1, 9))


def test_brats_contrasts_and_segmentation_become_image_channels_for_image_targets(tmp_path):
    """BraTS through the workflow: T1w -> FLAIR (image -> image) and T1w -> dseg
    (image -> segmentation, scored by Dice), on 8 generated cases."""
    data = make_brats(tmp_path / "BraTS", cases=CASES)
    workdir = copy_project(tmp_path / "project")
    dataset = {"name": "brats_tiny", "kind": "brats", "params": {"path": str(data)}}
    dataset["params"]["atlas"] = tiny_atlas(tmp_path)
    config = _config(workdir, dataset)
    image_to_image = {"condition": "image", "target": "image", "encoder": "cnn"}
    image_to_image |= {"decoder": "deconv", "embedding_dim": 8, "heads": 2}
    config["experiments"] = [
        {"name": "t1_to_flair", **image_to_image, "condition_channels": "T1w",
         "target_channels": "FLAIR"},
        {"name": "t1_to_seg", **image_to_image, "condition_channels": ["T1w"],
         "target_channels": ["dseg"]},
    ]  # fmt: skip
    write_config(workdir, config, "brats.yaml")
    result = snakemake(workdir, "--configfile", "brats.yaml")
    assert result.returncode == 0, result.stderr[-4000:]
    root = workdir / "results" / "brats_tiny"
    assert not list(root.glob("raw/sub-*/func")) and not list(root.glob("preproc/sub-*/func"))
    seg = nib.load(next(root.glob("preproc/sub-*/anat/*_desc-preproc_dseg.nii.gz"))).get_fdata()
    assert list(root.glob("preproc/sub-*/anat/sub-*_ce-gd_space-MNI152_desc-preproc_T1w.nii.gz"))
    assert set(np.unique(seg)) <= {0, 1, 2, 4}  # nearest neighbour: labels stay labels
    manifest = json.loads((root / "shards" / "manifest.json").read_text())
    assert manifest["image_channels"] == ["T1w", "ce-gd_T1w", "T2w", "FLAIR", "dseg"]
    assert manifest["label_channels"] == ["dseg"] and manifest["shapes"]["image"][0] == 5
    flair = json.loads((root / "eval" / "t1_to_flair" / "metrics.json").read_text())
    assert {"ssim", "psnr", "mse"} <= set(flair["scores"]["model"])
    assert "dice" not in flair["scores"]["model"]
    seg_metrics = json.loads((root / "eval" / "t1_to_seg" / "metrics.json").read_text())
    for predictor in ("model", "group_mean", "ridge"):
        assert 0 <= seg_metrics["scores"][predictor]["dice_foreground"] <= 1
    with np.load(root / "eval" / "t1_to_seg" / "predictions.npz") as npz:
        assert npz["target"].shape[1:] == (1, 4, 5, 4)  # one target channel
    assert (root / "figures" / "t1_to_flair" / "image_prediction.png").stat().st_size > 0


def test_channel_views_reject_unknown_channels_and_other_modalities(tmp_path):
    from modalmerge.data.shards.split_arrays import image_channels

    manifest = {"image_channels": ["T1w", "FLAIR", "dseg"]}
    assert image_channels(manifest, ["dseg", "T1w"]).tolist() == [2, 0]
    assert image_channels(manifest, "FLAIR").tolist() == [1]
    assert image_channels({}, "T1w").tolist() == [0]  # older shards: the T1w alone
    with pytest.raises(ValueError, match=r"no image channel \['T2w'\]"):
        image_channels(manifest, ["T2w"])
