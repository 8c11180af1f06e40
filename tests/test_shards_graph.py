"""Graph views of the shards: the structural connectome beside the FC, picked per role."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from modalmerge.data.shards.dataset import ShardDataset
from modalmerge.data.shards.graphs import sc_path
from modalmerge.data.shards.split_arrays import read_manifest
from modalmerge.data.shards.subjects import write_shards
from modalmerge.io import InputError
from tests.test_shards import PARAMS, R, make_inputs


def _write_sc(raw, subject: str, matrix: np.ndarray) -> None:
    names = [f"r{k}" for k in range(R)]
    table = pd.DataFrame(matrix, index=names, columns=names).rename_axis("region").reset_index()
    path = sc_path(raw, subject)
    path.parent.mkdir(parents=True, exist_ok=True)
    table.to_csv(path, sep="\t", index=False)


def _sc(i: int) -> np.ndarray:
    a = np.random.default_rng(i).random((R, R))
    return (a + a.T) / 2


def test_sc_view_is_stored_and_each_role_reads_its_view(tmp_path):
    subjects, parc, anat, tsv, texts = make_inputs(tmp_path)
    for i, s in enumerate(subjects):
        _write_sc(tsv.parent, s, _sc(i))
    write_shards(subjects, parc, anat, tsv, texts, tmp_path / "shards", PARAMS)
    assert read_manifest(tmp_path / "shards")["shapes"]["graph_sc"] == [R, R]
    data = ShardDataset(tmp_path / "shards", "train", "graph", "graph", condition_graph="sc")
    item = data[0]
    i = subjects.index(item["subject"])
    np.testing.assert_allclose(item["condition"].numpy(), _sc(i), rtol=1e-6)
    # the target defaults to the fc view: the parcellated connectivity
    np.testing.assert_allclose(item["target"].numpy(), np.eye(R) * i)
    with pytest.raises(ValueError, match="condition_graph applies to graph, not 'tabular'"):
        ShardDataset(tmp_path / "shards", "train", "tabular", "graph", condition_graph="sc")


def test_without_sc_files_the_shards_are_as_before_and_asking_for_sc_is_an_error(tmp_path):
    subjects, parc, anat, tsv, texts = make_inputs(tmp_path)
    write_shards(subjects, parc, anat, tsv, texts, tmp_path / "shards", PARAMS)
    assert "graph_sc" not in read_manifest(tmp_path / "shards")["shapes"]
    with pytest.raises(ValueError, match="the condition 'graph_sc' is not in these shards"):
        ShardDataset(tmp_path / "shards", "train", "graph", "graph", condition_graph="sc")


def test_a_missing_or_asymmetric_sc_names_the_file(tmp_path):
    subjects, parc, anat, tsv, texts = make_inputs(tmp_path)
    for i, s in enumerate(subjects[1:], start=1):
        _write_sc(tsv.parent, s, _sc(i))
    with pytest.raises(
        InputError, match="sub-001_desc-sc_connectome.tsv.*no structural connectome"
    ):
        write_shards(subjects, parc, anat, tsv, texts, tmp_path / "shards", PARAMS)
    bad = _sc(0)
    bad[0, 1] += 1.0
    _write_sc(tsv.parent, subjects[0], bad)
    with pytest.raises(InputError, match="sub-001_desc-sc_connectome.tsv.*not symmetric"):
        write_shards(subjects, parc, anat, tsv, texts, tmp_path / "shards", PARAMS)
