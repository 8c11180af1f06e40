"""Surface point clouds: the synthetic grey/white boundary, the file checks, the shards' view."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from modalmerge.data.point_clouds import (
    point_cloud_name,
    read_point_cloud,
    write_point_cloud,
)
from modalmerge.data.shards.dataset import ShardDataset
from modalmerge.data.shards.split_arrays import load_split_arrays, read_manifest
from modalmerge.data.shards.subjects import write_shards
from modalmerge.data.synthetic.anatomy import render_t1, tissue_fractions
from modalmerge.data.synthetic.cohort import write_subject
from modalmerge.data.synthetic.factors import subject_truth
from modalmerge.data.synthetic.params import SyntheticParams
from modalmerge.data.synthetic.surface import FEATURE_NAMES, surface_point_cloud
from modalmerge.evaluation.scoring import condition_features
from modalmerge.io import InputError
from tests.test_shards import PARAMS, make_inputs

TINY = {
    "seed": 1,
    "n_subjects": 4,
    "voxel_size_mm": 8.0,
    "grid_shape": [18, 22, 18],
    "n_regions": 8,
    "n_timepoints": 20,
}


def _cloud(p: SyntheticParams, index: int, n: int = 256) -> np.ndarray:
    truth = subject_truth(p, index)
    t1 = render_t1(p, truth, tissue_fractions(p, truth))
    return surface_point_cloud(p, truth, t1, n)


def test_the_surface_lies_inside_the_head_on_the_grey_white_boundary_with_its_features():
    p = SyntheticParams.from_dict(TINY)
    cloud = _cloud(p, 1)
    assert cloud.shape == (256, 3 + len(FEATURE_NAMES)) and cloud.dtype == np.float32
    xyz, intensity, thickness, curvature = cloud[:, :3], cloud[:, 3], cloud[:, 4], cloud[:, 5]
    radius = np.linalg.norm(xyz, axis=1)
    half_fov = 0.5 * np.array(TINY["grid_shape"]) * TINY["voxel_size_mm"]
    assert (np.abs(xyz) < half_fov).all() and radius.min() > 10  # a shell, not a blob
    assert (thickness > 0).all() and 400 < np.median(intensity) < 1000  # T1 units, cortex
    assert np.isfinite(curvature).all() and curvature.std() > 0
    # same subject, same cloud; another subject, another surface
    np.testing.assert_array_equal(cloud, _cloud(p, 1))
    assert not np.allclose(cloud, _cloud(p, 2))


def test_a_thinner_cortex_gives_a_smaller_thickness_proxy():
    p = SyntheticParams.from_dict(TINY)
    thin = SyntheticParams.from_dict({**TINY, "thickness_mean_mm": 2.0})
    assert np.median(_cloud(thin, 1)[:, 4]) < np.median(_cloud(p, 1)[:, 4])


def test_only_surface_points_writes_a_cloud_and_the_default_settings_stay_as_they_were(tmp_path):
    assert (
        "surface_points" not in SyntheticParams.from_dict(TINY).to_dict()
    )  # default files unchanged
    with pytest.raises(ValueError, match="surface_points"):
        SyntheticParams.from_dict({**TINY, "surface_points": -1})
    write_subject(TINY, "sub-001", tmp_path / "off")
    assert not list((tmp_path / "off").rglob("*pointcloud*"))
    write_subject({**TINY, "surface_points": 100}, "sub-001", tmp_path / "on")
    points, names = read_point_cloud(
        tmp_path / "on" / "raw" / "sub-001" / "anat" / point_cloud_name("sub-001")
    )
    assert points.shape == (100, 6) and names == list(FEATURE_NAMES)
    # the cloud adds a file and changes none: the T1 is the same bytes
    t1 = "raw/sub-001/anat/sub-001_T1w.nii.gz"
    assert (tmp_path / "on" / t1).read_bytes() == (tmp_path / "off" / t1).read_bytes()


@pytest.mark.parametrize(
    "points, names, message",
    [
        (np.zeros((5, 2)), [], "must be \\(N, 3 \\+ F\\)"),
        (np.zeros((5, 5)), ["a"], "2 feature columns but 1 feature names"),
        (np.full((5, 4), np.nan), ["a"], "5 point\\(s\\) hold NaN"),
    ],
)
def test_a_bad_cloud_is_refused_naming_the_file(tmp_path, points, names, message):
    with pytest.raises(InputError, match=message) as err:
        write_point_cloud(tmp_path / "sub-001_cloud.npz", points, names)
    assert "sub-001_cloud.npz" in str(err.value)
    assert not list(tmp_path.iterdir())  # nothing half-written


def test_too_few_points_and_foreign_files_are_refused(tmp_path):
    path = write_point_cloud(tmp_path / "c.npz", np.zeros((3, 4)), ["a"])
    with pytest.raises(InputError, match="3 points, fewer than the 8 needed"):
        read_point_cloud(path, min_points=8)
    (tmp_path / "bad.npz").write_bytes(b"not a zip")
    with pytest.raises(InputError, match="bad.npz.*not a readable point-cloud"):
        read_point_cloud(tmp_path / "bad.npz")


@pytest.fixture(scope="module")
def cloud_shards(tmp_path_factory):
    root = tmp_path_factory.mktemp("cloud_shards")
    subjects, parc, anat, tsv, texts = make_inputs(root)
    rng = np.random.default_rng(0)
    clouds = []
    for i, sid in enumerate(subjects):
        points = np.concatenate([rng.normal(0, 50, (32, 3)), rng.normal(10 * i, 2, (32, 2))], 1)
        clouds.append(write_point_cloud(root / "raw" / point_cloud_name(sid), points, ["u", "v"]))
    write_shards(subjects, parc, anat, tsv, texts, root / "shards", PARAMS, point_clouds=clouds)
    return root / "shards", dict(zip(subjects, clouds, strict=True))


def test_shards_hold_each_subject_s_cloud_with_features_scaled_on_the_training_subjects(
    cloud_shards,
):
    shards, files = cloud_shards
    manifest = read_manifest(shards)
    assert manifest["shapes"]["point_cloud"] == [32, 5]
    entry = manifest["point_cloud"]
    train = load_split_arrays(shards, "train", "point_cloud")
    features = train["data"][..., 3:]
    np.testing.assert_allclose(features.reshape(-1, 2).mean(0), 0, atol=1e-5)
    test = load_split_arrays(shards, "test", "point_cloud")
    for subject, cloud in zip(test["subject"], test["data"], strict=True):
        raw, _ = read_point_cloud(files[subject])
        np.testing.assert_allclose(cloud[:, :3], raw[:, :3], rtol=1e-6)  # mm as written
        expected = (raw[:, 3:] - entry["feature_mean"]) / entry["feature_std"]
        np.testing.assert_allclose(cloud[:, 3:], expected, rtol=1e-5, atol=1e-5)
    dataset = ShardDataset(shards, "val", "point_cloud", "time_series")
    item = dataset[0]
    assert item["condition"].shape == (32, 5) and item["condition"].dtype == torch.float32
    dataset.close()


def test_shards_without_clouds_refuse_the_point_cloud_view(tmp_path):
    subjects, parc, anat, tsv, texts = make_inputs(tmp_path)
    write_shards(subjects, parc, anat, tsv, texts, tmp_path / "shards", PARAMS)
    assert "point_cloud" not in read_manifest(tmp_path / "shards")
    with pytest.raises(ValueError, match="'point_cloud' is not in these shards"):
        ShardDataset(tmp_path / "shards", "train", "point_cloud", "time_series")


def test_clouds_of_different_sizes_are_refused_naming_the_file(tmp_path):
    subjects, parc, anat, tsv, texts = make_inputs(tmp_path)
    clouds = [
        write_point_cloud(
            tmp_path / point_cloud_name(s), np.zeros((10 + (s == "sub-003"), 4)), ["a"]
        )
        for s in subjects
    ]
    with pytest.raises(InputError, match="sub-003.*differs from"):
        write_shards(
            subjects, parc, anat, tsv, texts, tmp_path / "out", PARAMS, point_clouds=clouds
        )
    assert not (tmp_path / "out").exists()


def test_the_ridge_sees_order_free_summaries_of_a_cloud():
    rng = np.random.default_rng(0)
    clouds = np.concatenate([rng.normal(0, 50, (3, 40, 3)), rng.normal(0, 1, (3, 40, 2))], -1)
    features = condition_features("point_cloud", clouds, None)
    assert features.shape == (3, 10 * 2)
    shuffled = clouds[:, rng.permutation(40)]
    np.testing.assert_allclose(
        condition_features("point_cloud", shuffled, None), features, rtol=1e-5
    )


@pytest.mark.slow  # two DAG builds: a minute or more on a busy machine
def test_the_workflow_plans_a_cloud_per_subject_into_the_shards_only_when_asked(tmp_path):
    from workflow_utils import copy_project, load_yaml, snakemake, write_config

    workdir = copy_project(tmp_path / "project")
    config = load_yaml(workdir / "configs" / "surface.yaml")
    config["dataset"]["params"]["n_subjects"] = 6
    write_config(workdir, config)
    result = snakemake(workdir, "--dry-run", "--printshellcmds", "--until", "shard")
    assert result.returncode == 0, result.stderr[-3000:]
    out = result.stdout
    assert out.count("_desc-white_pointcloud.npz") >= 6  # acquire_subject outputs, shard inputs
    config["dataset"]["params"].pop("surface_points")
    config["experiments"] = config["experiments"][1:]  # the image experiment alone
    write_config(workdir, config)
    result = snakemake(workdir, "--dry-run", "--printshellcmds", "--until", "shard")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "pointcloud" not in result.stdout


def test_attention_is_drawn_on_the_points_each_coloured_by_its_nearest_centroid():
    from modalmerge.viz.point_cloud import attention_on_points

    rng = np.random.default_rng(0)
    points = np.concatenate([rng.normal(-40, 5, (50, 3)), rng.normal(40, 5, (50, 3))])
    centroids = np.array([[-40.0, -40, -40], [40, 40, 40]])
    fig = attention_on_points(points, centroids, np.array([0.9, 0.1]))
    colours = fig.axes[0].collections[0].get_array()
    np.testing.assert_allclose(colours, [0.9] * 50 + [0.1] * 50)
    assert len([ax for ax in fig.axes if ax.name == "3d"]) == 3
    with pytest.raises(ValueError, match="M weights"):
        attention_on_points(points, centroids, np.ones(3))


def test_point_cloud_targets_are_scored_per_subject_against_the_training_surface_map():
    from types import SimpleNamespace

    from modalmerge.evaluation.point_cloud import feature_r, score_point_cloud
    from modalmerge.evaluation.scoring import BaselineSettings, ScoringInput

    rng = np.random.default_rng(0)

    def cloud(shift):  # one feature that grows along x, plus a subject shift
        xyz = rng.normal(0, 40, (60, 3))
        return np.concatenate([xyz, xyz[:, :1] / 40 + shift], axis=1).astype(np.float32)

    train_clouds = np.stack([cloud(s) for s in rng.normal(0, 1, 6)])
    test_clouds = np.stack([cloud(s) for s in (-2.0, 0.0, 2.0, 4.0, 1.0)])
    perfect = test_clouds.copy()

    def split(clouds, prediction=None):
        subjects = [f"sub-{i:02d}" for i in range(len(clouds))]
        return SimpleNamespace(subjects=subjects, target=clouds, prediction=prediction)

    data = ScoringInput(
        "image",
        split(train_clouds),
        split(test_clouds, perfect),
        None,
        None,
        BaselineSettings(np.array([1.0])),
    )
    scored = score_point_cloud(data)
    assert scored.extra["primary_metric"] == "feature_r"
    assert scored.scores["model"]["feature_r"] == pytest.approx(1.0)
    assert scored.scores["model"]["feature_mse"] == pytest.approx(0.0, abs=1e-10)
    # the training map follows x (r high) but misses each subject's shift (mse > 0)
    assert scored.scores["group_mean"]["feature_r"] > 0.8
    assert scored.scores["group_mean"]["feature_mse"] > 1.0
    assert len(scored.per_unit["model"]["feature_r"]) == 5
    assert feature_r(np.ones((4, 1)), np.arange(4.0)[:, None]) == 0.0  # flat: 0, not NaN
    moved = perfect.copy()
    moved[..., 0] += 1.0  # a generated set: no paired points -> scored as a set
    x = np.zeros((len(train_clouds), 1)), np.zeros((len(test_clouds), 1))
    scored = score_point_cloud(
        ScoringInput(
            "image",
            split(train_clouds),
            split(test_clouds, moved),
            *x,
            BaselineSettings(np.array([1.0])),
        )
    )
    assert scored.extra["primary_metric"] == "fscore"
    assert scored.scores["model"]["accuracy_mm"] == pytest.approx(1.0, abs=0.05)
