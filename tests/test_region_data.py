"""Group data whose samples are regions: the brainspace_group source, spatially blocked
region splits, region shards with column views, and the profile scores of evaluate.

The source is tested twice: on brainspace's real files (skipped when brainspace is not
installed) and on a small generated folder with the same layout (scale 8, the real
conte69 vertex count), which the broken-input tests damage one file at a time.
"""

from __future__ import annotations

import importlib.util
import json

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
import torch

from modalmerge.data.shards.dataset import ShardDataset
from modalmerge.data.shards.regions import (
    column_groups,
    read_region_table,
    split_regions,
    write_region_shards,
)
from modalmerge.data.shards.split_arrays import read_manifest, table_columns, tabular_schema
from modalmerge.data.sources import brainspace_group
from modalmerge.evaluation.region_profiles import row_r
from modalmerge.io import InputError
from modalmerge.models.model import MultiModalModel

N = brainspace_group.N_VERTICES
HAS_BRAINSPACE = importlib.util.find_spec("brainspace") is not None


def _matrix(rng, scale):
    a = rng.normal(size=(scale, scale))
    m = np.tanh((a + a.T) / 4)
    np.fill_diagonal(m, 1.0)
    return m


def make_brainspace_folder(root, scale=8, seed=0):
    """A folder with brainspace's dataset layout: matrices, parcellation, surfaces."""
    rng = np.random.default_rng(seed)
    half = scale // 2
    vertex = np.zeros(2 * N, dtype=int)
    vertex[: N - 100] = 1 + np.arange(N - 100) * half // (N - 100)  # contiguous bands
    vertex[N : 2 * N - 100] = half + 1 + np.arange(N - 100) * half // (N - 100)
    (root / "parcellations").mkdir(parents=True)
    np.savetxt(root / "parcellations" / f"vosdewael_{scale}_conte69.csv", vertex, fmt="%d")
    for group in ("main_group", "holdout_group", "fusion_tutorial"):
        (root / "matrices" / group).mkdir(parents=True)
    for group in ("main_group", "holdout_group"):
        np.savetxt(
            root / "matrices" / group / f"vosdewael_{scale}_mean_connectivity_matrix.csv",
            _matrix(rng, scale),
            delimiter=",",
        )
    mpc = np.abs(_matrix(rng, scale))
    np.fill_diagonal(mpc, 0)
    np.savetxt(
        root / "matrices" / "fusion_tutorial" / f"vosdewael_{scale}_mpc_matrix.csv",
        mpc,
        delimiter=",",
    )
    for name in brainspace_group.MAPS:
        values = rng.normal(size=2 * N)
        values[vertex == 0] = np.nan  # medial wall, as in the real maps
        np.savetxt(root / "matrices" / "main_group" / f"conte69_32k_{name}.csv", values)
    (root / "surfaces").mkdir()
    for hemi, sign in (("lh", -1), ("rh", 1)):
        coords = rng.normal(size=(N, 3)).astype(np.float32) * 20
        coords[:, 1] = np.linspace(-100, 70, N)  # labels run front to back: blocks in space
        coords[:, 0] = sign * (30 + np.abs(coords[:, 0]))
        faces = np.arange(3 * (N - 2), dtype=np.int32).reshape(-1, 3) % N
        image = nib.gifti.GiftiImage(
            darrays=[
                nib.gifti.GiftiDataArray(coords, intent="NIFTI_INTENT_POINTSET"),
                nib.gifti.GiftiDataArray(faces, intent="NIFTI_INTENT_TRIANGLE"),
            ]
        )
        nib.save(image, root / "surfaces" / f"conte69_32k_{hemi}.gii")
    return {"path": str(root), "scale": scale}


@pytest.fixture
def folder(tmp_path):
    return make_brainspace_folder(tmp_path / "brainspace")


# ------------------------------------------------------------------ the source


@pytest.mark.skipif(not HAS_BRAINSPACE, reason="brainspace is not installed")
def test_real_group_table_has_200_regions_with_structure_and_both_groups_fc():
    table, vertex = brainspace_group.region_table({})
    assert table.shape[0] == 200 and list(table["region"][:2]) == ["L_001", "L_002"]
    assert (table["hemisphere"] == "L").sum() == 100 and table["region"].iloc[-1] == "R_200"
    for prefix in ("mpc", "fc", "holdout_fc"):
        assert sum(c.startswith(f"{prefix}_") for c in table.columns) == 200
    assert np.isfinite(table.drop(columns=["region", "hemisphere"]).to_numpy(float)).all()
    assert (table["x"][table["hemisphere"] == "L"] < 0).all()  # left centroids left of midline
    assert table.loc[0, "fc_L_001"] == 1.0 and table.loc[0, "mpc_L_001"] == 0.0
    assert 2.0 < table["thickness"].mean() < 3.5  # mm: group cortical thickness
    assert vertex.shape == (2 * N,) and set(np.unique(vertex)) == set(range(201))


def test_write_cohort_writes_the_region_table_and_a_conte69_surface_atlas(folder, tmp_path):
    brainspace_group.write_cohort(folder, tmp_path / "out")
    table = read_region_table(tmp_path / "out" / "raw" / "regions.tsv")
    assert list(table.index) == [f"L_{i:03d}" for i in range(1, 5)] + [
        f"R_{i:03d}" for i in range(5, 9)
    ]
    atlas = nib.load(tmp_path / "out" / "atlas" / "atlas.nii.gz")
    assert atlas.shape == (2 * N, 1, 1)
    labels = pd.read_csv(tmp_path / "out" / "atlas" / "labels.tsv", sep="\t")
    assert list(labels["name"]) == list(table.index) and "hemisphere" in labels
    assert brainspace_group.subject_ids(folder) == []
    with pytest.raises(ValueError, match="regions, not subjects"):
        brainspace_group.write_subject(folder, "sub-01", tmp_path / "out")


def test_map_values_are_region_means_that_skip_nan_vertices(folder):
    table, vertex = brainspace_group.region_table(folder)
    path = f"{folder['path']}/matrices/main_group/conte69_32k_thickness.csv"
    values = np.loadtxt(path)
    expected = np.nanmean(values[vertex == 3])
    assert table.loc[2, "thickness"] == pytest.approx(expected)


@pytest.mark.parametrize(
    "damage, message",
    [
        (lambda r: (r / "parcellations" / "vosdewael_8_conte69.csv").unlink(), "not found|missing"),
        (
            lambda r: np.savetxt(
                r / "matrices" / "main_group" / "vosdewael_8_mean_connectivity_matrix.csv",
                np.ones((8, 7)),
                delimiter=",",
            ),
            r"shape \(8, 7\)",
        ),
        (
            lambda r: np.savetxt(
                r / "matrices" / "fusion_tutorial" / "vosdewael_8_mpc_matrix.csv",
                np.triu(np.ones((8, 8))),
                delimiter=",",
            ),
            "not symmetric",
        ),
        (
            lambda r: (r / "matrices" / "main_group" / "conte69_32k_t1wt2w.csv").write_text(
                "\n".join(["1.0"] * 10 + ["abc"])
            ),
            "not a numeric CSV",
        ),
        (
            lambda r: (r / "surfaces" / "conte69_32k_rh.gii").write_bytes(b"not gifti"),
            "unreadable GIFTI",
        ),
    ],
    ids=["missing-parcellation", "fc-shape", "mpc-asymmetric", "map-text", "broken-gifti"],
)
def test_a_damaged_file_is_named_in_a_one_line_error(folder, damage, message):
    from pathlib import Path

    damage(Path(folder["path"]))
    with pytest.raises((InputError, FileNotFoundError), match=message) as info:
        brainspace_group.region_table(folder)
    assert "\n" not in str(info.value)


def test_a_region_without_any_finite_map_value_is_an_error(folder):
    from pathlib import Path

    root = Path(folder["path"])
    vertex = np.loadtxt(root / "parcellations" / "vosdewael_8_conte69.csv").astype(int)
    path = root / "matrices" / "main_group" / "conte69_32k_curvature.csv"
    values = np.loadtxt(path)
    values[vertex == 6] = np.nan
    np.savetxt(path, values)
    with pytest.raises(InputError, match=r"no finite curvature value in region\(s\) \['R_006'\]"):
        brainspace_group.region_table(folder)


def test_unknown_parameter_and_odd_scale_are_rejected(folder):
    with pytest.raises(ValueError, match="unknown key"):
        brainspace_group.region_table({**folder, "scael": 8})
    with pytest.raises(ValueError, match="even number"):
        brainspace_group.region_table({**folder, "scale": 7})


# ------------------------------------------------------------------ region table and split


@pytest.fixture
def regions_tsv(folder, tmp_path):
    brainspace_group.write_cohort(folder, tmp_path / "out")
    return tmp_path / "out" / "raw" / "regions.tsv"


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda t: t.drop(columns=["hemisphere"]), r"lacks column\(s\) \['hemisphere'\]"),
        (lambda t: pd.concat([t, t.iloc[:1]]), "listed twice"),
        (
            lambda t: t.assign(thickness=np.nan),
            r"missing or infinite values in column\(s\) \['thickness'\]",
        ),
        (lambda t: t.assign(note="x"), r"non-numeric feature column\(s\) \['note'\]"),
    ],
    ids=["no-hemisphere", "duplicate", "nan", "text-column"],
)
def test_a_broken_region_table_is_named_in_the_error(regions_tsv, tmp_path, edit, message):
    table = pd.read_csv(regions_tsv, sep="\t")
    broken = tmp_path / "broken.tsv"
    edit(table).to_csv(broken, sep="\t", index=False)
    with pytest.raises(InputError, match=message) as info:
        read_region_table(broken)
    assert str(broken) in str(info.value)


def _grid(n_per_hemi=30):
    """Region centroids on two lines (one per hemisphere), 10 mm apart."""
    y = np.arange(n_per_hemi, dtype=float) * 10
    coords = np.concatenate(
        [np.stack([np.full_like(y, -40), y, np.zeros_like(y)], axis=1),
         np.stack([np.full_like(y, 40), y, np.zeros_like(y)], axis=1)]
    )  # fmt: skip
    hemis = ["L"] * n_per_hemi + ["R"] * n_per_hemi
    names = [f"{h}_{i:03d}" for i, h in enumerate(hemis)]
    return names, coords, hemis


def test_the_split_deals_whole_spatial_blocks_and_is_reproducible():
    names, coords, hemis = _grid()
    fractions = {"train": 0.6, "val": 0.2, "test": 0.2}
    params = {"n_blocks": 10, "seed": 3, "fractions": fractions, "buffer_mm": 0}
    splits, excluded, blocks, _ = split_regions(names, coords, hemis, params)
    again, _, _, _ = split_regions(names, coords, hemis, params)
    assert splits == again and excluded == []
    members = [r for s in splits.values() for r in s]
    assert sorted(members) == sorted(names)  # every region once
    split_of = {r: s for s, rs in splits.items() for r in rs}
    for block in np.unique(blocks):  # a block never straddles two splits
        assert len({split_of[names[i]] for i in np.flatnonzero(blocks == block)}) == 1
    for block in np.unique(blocks):  # nor the midline
        assert len({hemis[i] for i in np.flatnonzero(blocks == block)}) == 1
    assert 0.1 <= len(splits["test"]) / len(names) <= 0.35
    other, _, _, _ = split_regions(names, coords, hemis, {**params, "seed": 4})
    assert other != splits


def test_the_buffer_leaves_out_training_regions_next_to_held_out_ones():
    names, coords, hemis = _grid()
    params = {"n_blocks": 10, "seed": 3, "buffer_mm": 15.0}
    splits, excluded, _, info = split_regions(names, coords, hemis, params)
    assert info["buffer_mm_used"] == 15.0 and info["median_nn_mm"] == 10.0
    assert excluded  # on a 10 mm grid every block border loses its training neighbours
    position = {n: i for i, n in enumerate(names)}
    held = [position[r] for r in splits["val"] + splits["test"]]
    for region in splits["train"]:
        distance = np.linalg.norm(coords[held] - coords[position[region]], axis=1).min()
        assert distance >= 15.0
    for region in excluded:
        distance = np.linalg.norm(coords[held] - coords[position[region]], axis=1).min()
        assert distance < 15.0
    assert not set(excluded) & {r for s in splits.values() for r in s}


def _jittered(seed=0, n_per_hemi=40):
    """Random left centroids (x < 0) and their mirror images jittered by 2 mm."""
    rng = np.random.default_rng(seed)
    left = np.column_stack([rng.uniform(-70, -5, n_per_hemi), rng.uniform(-100, 70, n_per_hemi),
                            rng.uniform(-40, 70, n_per_hemi)])  # fmt: skip
    right = left * [-1, 1, 1] + rng.normal(0, 2, left.shape)
    order = rng.permutation(n_per_hemi)  # right regions in another order than their homologs
    coords = np.concatenate([left, right[order]])
    hemis = ["L"] * n_per_hemi + ["R"] * n_per_hemi
    names = [f"{h}_{i:03d}" for i, h in enumerate(hemis)]
    truth = {names[i]: names[n_per_hemi + int(np.flatnonzero(order == i)[0])]
             for i in range(n_per_hemi)}  # fmt: skip
    return names, coords, hemis, truth


def test_the_default_buffer_is_two_median_nearest_neighbour_distances():
    from modalmerge.data.shards.regions import median_nn_distance

    names, coords, hemis, _ = _jittered()
    distance = np.linalg.norm(coords[:, None] - coords[None], axis=-1)
    np.fill_diagonal(distance, np.inf)
    median_nn = float(np.median(distance.min(axis=1)))
    assert median_nn_distance(coords) == pytest.approx(median_nn)
    params = {"n_blocks": 8, "seed": 1}
    splits, excluded, _, info = split_regions(names, coords, hemis, params)
    assert info["buffer_mm_used"] == pytest.approx(2 * median_nn, abs=1e-3)
    assert info["median_nn_mm"] == pytest.approx(median_nn, abs=1e-3)
    assert not info["hold_out_homologs"] and "homologs" not in info
    position = {n: i for i, n in enumerate(names)}
    held = [position[r] for r in splits["val"] + splits["test"]]
    for region in splits["train"]:
        assert distance[held, position[region]].min() >= 2 * median_nn
    for region in excluded:
        assert distance[held, position[region]].min() < 2 * median_nn
    # a number keeps working as before
    _, fixed, _, info = split_regions(names, coords, hemis, {**params, "buffer_mm": 0})
    assert fixed == [] and info["buffer_mm_used"] == 0.0


def test_hold_out_homologs_moves_each_held_out_regions_mirror_to_its_split():
    from modalmerge.data.shards.regions import mirror_homologs

    names, coords, hemis, truth = _jittered()
    homolog = mirror_homologs(coords, hemis)
    for left, right in truth.items():  # matched by the mirrored centroid, not by name
        assert names[homolog[names.index(left)]] == right
        assert names[homolog[names.index(right)]] == left
    params = {"n_blocks": 10, "seed": 1, "buffer_mm": 0}
    plain, _, _, _ = split_regions(names, coords, hemis, params)
    split_of = {r: s for s, rs in plain.items() for r in rs}
    pairs = {**truth, **{r: left for left, r in truth.items()}}
    assert any(split_of[pairs[r]] == "train" for r in plain["test"])  # the case to fix
    for buffer in (0, None):
        splits, excluded, _, info = split_regions(
            names, coords, hemis, {**params, "buffer_mm": buffer, "hold_out_homologs": True}
        )
        assert info["hold_out_homologs"] and info["homologs"] == pairs
        split_of = {r: s for s, rs in splits.items() for r in rs}
        for split in ("test", "val"):
            for region in splits[split]:
                assert split_of.get(pairs[region]) != "train", (split, region)
        assert sorted([*split_of, *excluded]) == sorted(names)


@pytest.mark.parametrize(
    "params, message",
    [
        ({"n_blocks": 1}, "n_blocks"),
        ({"buffer_mm": -1}, "buffer_mm"),
        ({"fractions": {"train": 0.5, "val": 0.2, "test": 0.2}}, "sum to 1"),
        ({"blocks": 4}, r"shard\.blocks: unknown key"),  # window is a shard key too
        ({"buffer_mm": 1000}, "excludes every training region"),
    ],
)
def test_bad_split_settings_are_rejected(params, message):
    names, coords, hemis = _grid()
    with pytest.raises(ValueError, match=message):
        split_regions(names, coords, hemis, params)


# ------------------------------------------------------------------ shards and views


@pytest.fixture
def region_shards(regions_tsv, tmp_path):
    out = tmp_path / "shards"
    fractions = {"train": 0.5, "val": 0.25, "test": 0.25}
    write_region_shards(regions_tsv, out, {"n_blocks": 4, "fractions": fractions, "buffer_mm": 0})
    return out


def test_the_manifest_records_the_buffer_used_and_the_homologs(regions_tsv, tmp_path):
    from modalmerge.data.shards.regions import median_nn_distance, read_region_table

    table = read_region_table(regions_tsv)
    median_nn = median_nn_distance(table[["x", "y", "z"]].to_numpy())
    params = {"n_blocks": 4, "fractions": {"train": 0.5, "val": 0.25, "test": 0.25}}
    manifest = write_region_shards(regions_tsv, tmp_path / "a", params)
    assert manifest["buffer_mm_used"] == pytest.approx(2 * median_nn, abs=1e-3)
    assert manifest["params"]["buffer_mm"] is None and manifest["hold_out_homologs"] is False
    fractions = {"train": 0.75, "val": 0.125, "test": 0.125}  # 8 regions: 2 held + homologs
    both = write_region_shards(
        regions_tsv,
        tmp_path / "b",
        {"n_blocks": 8, "fractions": fractions, "buffer_mm": 0, "hold_out_homologs": True},
    )
    assert both["buffer_mm_used"] == 0.0 and len(both["splits"]["train"]) == 4
    held = both["splits"]["val"] + both["splits"]["test"]
    assert {both["homologs"][r] for r in held} == set(held)
    assert read_manifest(tmp_path / "b")["homologs"] == both["homologs"]
    assert both["hold_out_homologs"] is True and both["params"]["hold_out_homologs"] is True
    assert set(both["homologs"]) == set(both["roi_names"])
    assert both["config_hash"] != manifest["config_hash"]


def test_region_shards_hold_one_sample_per_region_with_group_standardised_rows(region_shards):
    manifest = read_manifest(region_shards)
    assert manifest["sample_unit"] == "region" and manifest["split_by"] == "space"
    assert sum(manifest["n_samples"].values()) == 8
    columns = manifest["tabular"]["columns"]
    std = dict(zip(columns, manifest["tabular"]["numeric_std"], strict=True))
    assert len({std[c] for c in columns if c.startswith("fc_")}) == 1  # one scale per matrix
    train = ShardDataset(region_shards, "train", "tabular", "tabular")
    rows = np.stack([train[i]["target"].numpy() for i in range(len(train))])
    fc = [i for i, c in enumerate(columns) if c.startswith("fc_")]
    assert abs(rows[:, fc].mean()) < 1e-5 and rows[:, fc].std() == pytest.approx(1, abs=1e-4)
    assert {train[i]["subject"] for i in range(len(train))} == set(manifest["splits"]["train"])


def test_column_views_give_condition_and_target_parts_of_one_table(region_shards):
    view = {"condition_columns": "^(mpc_.*|thickness)$", "target_columns": "^fc_"}
    data = ShardDataset(region_shards, "test", "tabular", "tabular", **view)
    item = data[0]
    assert item["condition"].shape == (9,) and item["target"].shape == (8,)
    whole = ShardDataset(region_shards, "test", "tabular", "tabular")[0]["target"]
    manifest = read_manifest(region_shards)
    index = table_columns(manifest, "^fc_")
    torch.testing.assert_close(item["target"], whole[torch.from_numpy(index)])
    batch = data.__getitems__([0, 1])
    assert tuple(batch[0]["condition"].shape) == (9,)
    assert tabular_schema(region_shards, "^fc_") == (8, [])
    with pytest.raises(ValueError, match="condition_columns applies to tabular"):
        ShardDataset(region_shards, "test", "time_series", "tabular", condition_columns="^fc_")
    with pytest.raises(ValueError, match="matches no column"):
        ShardDataset(region_shards, "test", "tabular", "tabular", target_columns="^nothing")
    with pytest.raises(ValueError, match="no column named"):
        ShardDataset(region_shards, "test", "tabular", "tabular", target_columns=["fc_X_999"])


def test_a_column_view_puts_numeric_columns_before_categorical_ones():
    manifest = {"tabular": {"columns": ["age", "sex", "score"], "categorical": ["sex"]}}
    assert table_columns(manifest, ["sex", "score", "age"]).tolist() == [2, 0, 1]
    assert table_columns(manifest, None) is None
    with pytest.raises(ValueError, match="twice"):
        table_columns(manifest, ["age", "age"])


def test_matrix_columns_share_a_standardisation_group():
    groups = column_groups(
        ["mpc_L_001", "holdout_fc_R_101", "thickness", "fc_L_001"], ["L_001", "R_101"]
    )
    assert groups == ["mpc", "holdout_fc", "thickness", "fc"]


def test_a_broken_table_leaves_no_shard_directory(regions_tsv, tmp_path):
    table = pd.read_csv(regions_tsv, sep="\t")
    table.loc[3, "fc_L_001"] = np.inf
    broken = tmp_path / "broken.tsv"
    table.to_csv(broken, sep="\t", index=False)
    with pytest.raises(InputError):
        write_region_shards(broken, tmp_path / "none", {"n_blocks": 4})
    assert not (tmp_path / "none").exists()
    assert not list(tmp_path.glob(".tmp-*"))


# ------------------------------------------------------------------ model and scores


def test_a_model_maps_one_table_view_to_another_of_different_width(tmp_path):
    model = MultiModalModel(
        "tabular", "tabular", embedding_dim=8, num_attention_heads=2,
        n_numeric=9, target_n_numeric=8,
    )  # fmt: skip
    out = model(torch.randn(3, 9), return_attention=True)
    assert out.prediction["numeric"].shape == (3, 8) and out.attention.shape == (3, 2, 8, 9)
    assert model.table_schema("condition") == (9, []) and model.table_schema("target") == (8, [])
    path = model.save(tmp_path / "m.pt")
    loaded = MultiModalModel.load(path)
    assert loaded.table_schema("target") == (8, [])
    with pytest.raises(ValueError, match="need a tabular target"):
        MultiModalModel("tabular", "time_series", n_numeric=3, target_n_numeric=2)


def test_row_r_leaves_out_the_masked_self_column():
    true = np.array([[1.0, 0.2, 0.4, 0.6], [0.1, 1.0, 0.3, 0.5]])
    pred = np.array([[-5.0, 0.2, 0.4, 0.6], [0.1, -5.0, 0.3, 0.5]])  # wrong only on self
    keep = ~np.eye(2, 4, dtype=bool)
    np.testing.assert_allclose(row_r(pred, true, keep), [1.0, 1.0])
    assert (row_r(pred, true, np.ones_like(keep)) < 0.5).all()


@pytest.mark.skipif(not HAS_BRAINSPACE, reason="brainspace is not installed")
def test_real_group_config_runs_offline_to_profile_scores_and_surface_figures(tmp_path):
    """configs/real_group.yaml end to end (training cut to 2 epochs): real data, no download."""
    from workflow_utils import copy_project, load_yaml, planned_jobs, snakemake, write_config

    workdir = copy_project(tmp_path / "group")
    config = load_yaml(workdir / "configs" / "real_group.yaml")
    config["train"]["epochs"] = 2
    config["experiments"] = config["experiments"][:1]
    write_config(workdir, config, "group.yaml")
    result = snakemake(workdir, "--configfile", "group.yaml")
    assert result.returncode == 0, result.stderr[-4000:]
    root = workdir / "results" / "real_group"
    manifest = json.loads((root / "shards" / "manifest.json").read_text())
    assert manifest["sample_unit"] == "region" and len(manifest["roi_names"]) == 200
    assert manifest["excluded"]  # the buffer leaves some training regions out
    assert manifest["buffer_mm_used"] == pytest.approx(2 * manifest["median_nn_mm"], abs=2e-3)
    assert 20 < manifest["buffer_mm_used"] < 30 and manifest["hold_out_homologs"] is False
    metrics = json.loads((root / "eval" / "structure_to_fc_xattn" / "metrics.json").read_text())
    scores = metrics["scores"]
    n_test = len(manifest["splits"]["test"])
    assert len(metrics["per_region"]["model"]["pearson_r"]) == n_test
    assert scores["noise_ceiling"]["pearson_r"] > 0.95  # the two groups' FC rows agree
    assert (
        scores["ridge"]["pearson_r_heldout_columns"]
        > scores["group_mean"]["pearson_r_heldout_columns"]
    )  # structure carries information about FC beyond the mean row
    assert 0 <= scores["model"]["matched_attention_fraction"] <= 1
    figures = root / "figures" / "structure_to_fc_xattn"
    for name in ("profiles", "surface_split", "surface_accuracy", "surface_attention"):
        assert (figures / f"{name}.png").stat().st_size > 0, name
    assert not (root / "preprocessed").exists()  # no subject stages for region data
    again = snakemake(workdir, "--configfile", "group.yaml", "--dry-run")
    assert planned_jobs(again) == {}


def test_hold_out_homologs_keeps_one_directional_pairs_off_the_training_side():
    """Nearest-mirror homologs need not be mutual (two left regions may share one right
    homolog): every pair (region, its homolog) still ends up wholly outside training."""
    from modalmerge.data.shards.regions import mirror_homologs

    rng = np.random.default_rng(3)
    right = rng.uniform([10, -100, -40], [70, 60, 70], (20, 3))
    mirrored = np.repeat(right * np.array([-1.0, 1, 1]), 2, axis=0)
    left = mirrored + rng.normal(0, 1.0, (40, 3))  # two left regions per right region
    coords = np.vstack([left, right])
    names = [f"L_{i:03d}" for i in range(40)] + [f"R_{i:03d}" for i in range(20)]
    hemis = ["L"] * 40 + ["R"] * 20
    homolog = mirror_homologs(coords, hemis)
    assert len(set(homolog[:40].tolist())) < 40  # left regions share right homologs
    fractions = {"train": 0.8, "val": 0.1, "test": 0.1}
    params = {"n_blocks": 12, "fractions": fractions, "buffer_mm": 0, "hold_out_homologs": True}
    for seed in range(4):
        splits, _, _, _ = split_regions(names, coords, hemis, {**params, "seed": seed})
        train = set(splits["train"])
        held = set(splits["val"]) | set(splits["test"])
        for i, h in enumerate(homolog):
            pair = {names[i], names[h]}
            assert not (pair & train and pair & held), (seed, pair)
