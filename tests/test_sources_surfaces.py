"""Real surface point clouds: brainspace's conte69 cortex with its thickness, T1w/T2w and curvature."""

from __future__ import annotations

import importlib.util
import shutil

import numpy as np
import pytest
import torch

from modalmerge.data.sources.surfaces import brainspace_root, conte69_point_cloud
from modalmerge.io import InputError
from modalmerge.models.encoders.point_cloud import PointTransformerEncoder

if importlib.util.find_spec("brainspace") is None:  # `make setup` installs it
    pytest.skip(
        "brainspace is not installed (pip install --no-deps brainspace)", allow_module_level=True
    )


def test_the_conte69_cloud_is_the_cortex_with_plausible_maps():
    points, names = conte69_point_cloud()
    assert names == ["thickness", "t1wt2w", "curvature"]
    assert points.shape == (58558, 6) and np.isfinite(points).all()  # medial wall left out
    half = len(points) // 2
    assert np.mean(points[:half, 0] < 0) > 0.99 and np.mean(points[half:, 0] > 0) > 0.99
    assert 1.5 < np.median(points[:, 3]) < 4.0  # cortical thickness, mm
    assert points[:, 5].min() < 0 < points[:, 5].max()  # sulci and gyri


def test_a_sample_is_seeded_and_feeds_the_point_encoder():
    a, _ = conte69_point_cloud(n_points=2048, seed=1)
    b, _ = conte69_point_cloud(n_points=2048, seed=1)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, conte69_point_cloud(n_points=2048, seed=2)[0])
    torch.manual_seed(0)
    encoder = PointTransformerEncoder(a.shape, 16, n_tokens=32, n_layers=0)
    x = torch.from_numpy(a)[None]
    x[..., 3:] = (x[..., 3:] - x[..., 3:].mean(1)) / x[..., 3:].std(1)
    assert encoder(x).shape == (1, 32, 16)
    centroids = encoder.token_coordinates(x)[0]
    assert (centroids[:, 0] < 0).sum() > 8 and (centroids[:, 0] > 0).sum() > 8  # both hemispheres


def test_missing_or_broken_files_are_named(tmp_path):
    root = tmp_path / "datasets"
    shutil.copytree(brainspace_root() / "surfaces", root / "surfaces")
    (root / "matrices" / "main_group").mkdir(parents=True)
    with pytest.raises(InputError, match="conte69_32k_thickness.csv"):
        conte69_point_cloud(path=root)
    for name in ("thickness", "t1wt2w", "curvature"):
        src = brainspace_root() / "matrices" / "main_group" / f"conte69_32k_{name}.csv"
        shutil.copy(src, root / "matrices" / "main_group")
    (root / "matrices" / "main_group" / "conte69_32k_curvature.csv").write_text("1,2\n")
    with pytest.raises(InputError, match="curvature map has shape"):
        conte69_point_cloud(path=root)
    with pytest.raises(InputError, match="cannot sample 10000000"):
        conte69_point_cloud(n_points=10_000_000)
