"""Graph -> graph on one group connectome: local sub-graphs of region data as samples
(shard.subgraph_nodes), their graph views, and the per-edge baselines of evaluate."""

from __future__ import annotations

import importlib.util
import json

import numpy as np
import pandas as pd
import pytest

from modalmerge.data.shards.dataset import ShardDataset
from modalmerge.data.shards.regions import write_region_shards
from modalmerge.data.shards.subgraphs import nearest_members, subgraph_views
from modalmerge.evaluation.graph_edges import distance_decay, edge_baselines, edge_distances
from modalmerge.evaluation.graph_targets import triangles

HAS_BRAINSPACE = importlib.util.find_spec("brainspace") is not None


def region_table(n_per_hemi=20, seed=0) -> pd.DataFrame:
    """Regions on a 2-D sheet per hemisphere with FC = exp(-d / 20 mm) + 0.5 MPC (planted)."""
    rng = np.random.default_rng(seed)
    side = int(np.ceil(np.sqrt(n_per_hemi)))
    grid = np.stack(np.meshgrid(np.arange(side), np.arange(side)), -1).reshape(-1, 2)[:n_per_hemi]
    coords = np.concatenate(
        [np.c_[np.full(n_per_hemi, x), grid * 10.0] for x in (-40.0, 40.0)]
    )  # (x, y, z): a 10 mm grid in y-z per hemisphere
    n = len(coords)
    names = [f"{'L' if i < n_per_hemi else 'R'}_{i + 1:03d}" for i in range(n)]
    a = rng.normal(size=(n, n))
    mpc = np.tanh((a + a.T) / 3)
    distance = np.linalg.norm(coords[:, None] - coords[None], axis=-1)
    fc = np.exp(-distance / 20.0) + 0.5 * mpc
    np.fill_diagonal(fc, 1.0)
    table = pd.DataFrame(
        {
            "region": names,
            "label": np.arange(1, n + 1),
            "hemisphere": ["L"] * n_per_hemi + ["R"] * n_per_hemi,
            "x": coords[:, 0],
            "y": coords[:, 1],
            "z": coords[:, 2],
            "thickness": rng.normal(2.5, 0.2, n),
            "t1wt2w": rng.normal(1.4, 0.1, n),
            "curvature": rng.normal(0, 0.1, n),
        }
    )
    blocks = [
        pd.DataFrame(m, columns=[f"{p}_{r}" for r in names]) for p, m in (("mpc", mpc), ("fc", fc))
    ]
    return pd.concat([table, *blocks], axis=1)


@pytest.fixture
def shards(tmp_path):
    path = tmp_path / "regions.tsv"
    region_table().to_csv(path, sep="\t", index=False)
    params = {"n_blocks": 8, "subgraph_nodes": 5, "buffer_mm": 0}
    params["fractions"] = {"train": 0.5, "val": 0.2, "test": 0.3}
    manifest = write_region_shards(path, tmp_path / "shards", params)
    return tmp_path / "shards", manifest


def test_a_sub_graph_is_its_centre_then_its_nearest_regions_of_the_same_split():
    coords = np.array([[0.0, 0, 0], [1, 0, 0], [5, 0, 0], [2, 0, 0], [3, 0, 0]])
    assert nearest_members(coords, [0, 2, 3, 4], 3).tolist() == [
        [0, 3, 4],
        [2, 4, 3],
        [3, 4, 0],
        [4, 3, 2],
    ]
    with pytest.raises(ValueError, match="subgraph_nodes 5 exceeds the 4 regions"):
        nearest_members(coords, [0, 2, 3, 4], 5)


def test_sub_graph_shards_keep_every_split_s_nodes_inside_it(shards):
    shard_dir, manifest = shards
    record = manifest["subgraphs"]
    assert record["n_nodes"] == 5 and record["coordinate_columns"] == [3, 4, 5]
    assert manifest["shapes"]["graph_mpc"] == [5, 6 + 5]
    assert manifest["shapes"]["connectivity"] == [5, 5]
    assert manifest["params"]["subgraph_nodes"] == 5
    for split, members in manifest["splits"].items():
        for region in members:  # no test region is a node of a training sub-graph
            assert record["nodes"][region][0] == region
            assert set(record["nodes"][region]) <= set(members), (split, region)
    table = region_table().set_index("region")
    data = ShardDataset(
        shard_dir, "test", "graph", "graph", condition_graph="mpc", target_graph="fc"
    )
    item = data[0]
    nodes = record["nodes"][item["subject"]]
    assert tuple(item["condition"].shape) == (5, 11) and tuple(item["target"].shape) == (5, 5)
    fc = table.loc[nodes, [f"fc_{r}" for r in nodes]].to_numpy()
    mpc = table.loc[nodes, [f"mpc_{r}" for r in nodes]].to_numpy()
    np.testing.assert_allclose(item["target"].numpy(), fc, rtol=1e-5)  # source values
    np.testing.assert_allclose(item["condition"][:, 6:].numpy(), mpc, rtol=1e-5)
    # coordinates keep distances: scaled by one factor
    xyz = item["condition"][:, 3:6].numpy() * record["coordinate_scale_mm"]
    mm = table.loc[nodes, ["x", "y", "z"]].to_numpy()
    np.testing.assert_allclose(
        np.linalg.norm(xyz[0] - xyz[1]), np.linalg.norm(mm[0] - mm[1]), rtol=1e-4
    )


def test_without_subgraph_nodes_the_region_shards_are_unchanged(tmp_path):
    path = tmp_path / "regions.tsv"
    region_table().to_csv(path, sep="\t", index=False)
    plain = write_region_shards(path, tmp_path / "a", {"n_blocks": 8})
    assert "subgraphs" not in plain and "subgraph_nodes" not in plain["params"]
    assert set(plain["shapes"]) == {"tabular"}
    with pytest.raises(ValueError, match="'graph_mpc' is not in these shards"):
        ShardDataset(tmp_path / "a", "train", "graph", "graph", condition_graph="mpc")
    with pytest.raises(ValueError, match=">= 3"):
        subgraph_views(region_table().set_index("region"), {"train": []}, 2)


def test_distance_decay_and_edge_ridge_recover_a_planted_edge_rule():
    rng = np.random.default_rng(3)

    def graphs(n):  # packed (n, 6, 1 feature + 3 coordinates + 6)
        xyz = rng.uniform(0, 50, (n, 6, 3))
        feature = rng.normal(size=(n, 6, 1))
        a = rng.normal(size=(n, 6, 6))
        mpc = (a + a.transpose(0, 2, 1)) / 2
        return np.concatenate([feature, xyz, mpc], axis=2)

    train, test = graphs(200), graphs(30)
    coordinates = [1, 2, 3]

    def truth(g):
        return np.exp(-edge_distances(g, coordinates) / 15.0) + 0.3 * triangles(g[..., 4:])

    edges = edge_baselines(train, truth(train), test, coordinates)
    decay_only = np.exp(-edge_distances(test, coordinates) / 15.0)
    r_decay = np.corrcoef(edges["distance_decay"].ravel(), decay_only.ravel())[0, 1]
    assert r_decay > 0.95  # the binned curve follows the planted decay
    r_ridge = np.corrcoef(edges["ridge_edges"].ravel(), truth(test).ravel())[0, 1]
    r_plain = np.corrcoef(edges["distance_decay"].ravel(), truth(test).ravel())[0, 1]
    assert r_ridge > 0.9 and r_ridge > r_plain + 0.1  # ridge also reads the MPC edge
    flat = distance_decay(np.ones(10), np.arange(10.0), np.array([[0.5, 3.0]]))
    assert flat.shape == (1, 2) and np.allclose(flat, 4.5)  # one distance: the mean
    with pytest.raises(ValueError, match="coordinate columns"):
        edge_baselines(train, truth(train), test, [])


@pytest.mark.skipif(not HAS_BRAINSPACE, reason="brainspace is not installed")
def test_real_group_graph_config_runs_offline_to_graph_scores_with_edge_baselines(tmp_path):
    """configs/real_group_graph.yaml end to end on brainspace's shipped files (2 epochs)."""
    from workflow_utils import copy_project, load_yaml, planned_jobs, snakemake, write_config

    workdir = copy_project(tmp_path / "graph")
    config = load_yaml(workdir / "configs" / "real_group_graph.yaml")
    config["train"]["epochs"] = 2
    config["shard"]["subgraph_nodes"] = 8
    config["experiments"] = config["experiments"][:1]
    write_config(workdir, config, "graph.yaml")
    result = snakemake(workdir, "--configfile", "graph.yaml")
    assert result.returncode == 0, result.stderr[-4000:]
    root = workdir / "results" / config["dataset"]["name"]
    manifest = json.loads((root / "shards" / "manifest.json").read_text())
    assert manifest["shapes"]["graph_mpc"] == [8, 6 + 8]
    name = config["experiments"][0]["name"]
    metrics = json.loads((root / "eval" / name / "metrics.json").read_text())
    assert metrics["n_test_subjects"] == len(manifest["splits"]["test"])
    scores = metrics["scores"]
    for predictor in ("model", "group_mean", "ridge", "distance_decay", "ridge_edges"):
        assert -1 <= scores[predictor]["edge_r"] <= 1, predictor
    assert scores["distance_decay"]["edge_r"] > 0.2  # FC falls with distance on real data
    summary = (root / "eval" / "summary.csv").read_text()
    assert "ridge_edges" in summary and "distance_decay" in summary
    assert (root / "figures" / name / "graph_prediction.png").stat().st_size > 0
    again = snakemake(workdir, "--configfile", "graph.yaml", "--dry-run")
    assert planned_jobs(again) == {}
