"""The regional planted cohort (synthetic ``planted_links``): layout, truth, files, default off."""

import nibabel as nib
import numpy as np
import pandas as pd
import pytest

from modalmerge.data.synthetic.anatomy import template
from modalmerge.data.synthetic.cohort import write_cohort, write_subject
from modalmerge.data.synthetic.factors import cohort_constants, subject_truth
from modalmerge.data.synthetic.params import SyntheticParams
from modalmerge.data.synthetic.regional import LINK_LATENCY_S, planted_links

SMALL = dict(seed=3, n_subjects=4, voxel_size_mm=8.0, grid_shape=(18, 22, 18), n_timepoints=40)


def test_links_are_distinct_and_neither_homotopic_nor_neighbouring():
    p = SyntheticParams(n_regions=24, planted_links=8, **SMALL)
    links = planted_links(p)
    assert len(links.source) == 8
    regions = np.concatenate([links.source, links.target])
    assert len(set(regions.tolist())) == 16  # every region in at most one link
    directions = cohort_constants(p).region_directions
    for s, t in zip(links.source, links.target, strict=True):
        homologue = (s + 12) % 24
        assert t != homologue
        for r in (s, homologue):  # not among the 3 regions nearest the source or its homologue
            nearest = np.argsort(-(directions @ directions[r]))[1:4]
            assert t not in nearest
    # some links cross hemispheres
    assert np.any((links.source < 12) != (links.target < 12))


def test_truth_carries_each_link_from_source_anatomy_to_target_shape():
    """Noise-free truth: the source region's grey-matter intensity predicts the target's
    latency and condition preference across subjects, and no other link's source does."""
    p = SyntheticParams(n_regions=24, planted_links=8, intensity_sd=0.02, **SMALL)
    links = planted_links(p)
    truths = [subject_truth(p, i) for i in range(1, 41)]
    intensity = np.stack([t.gm_intensity[links.source] for t in truths])  # (S, K)
    latency = np.stack([t.latency[links.target] for t in truths])
    share = np.stack([t.condition_weights[0, links.target] / t.condition_weights[:, links.target].sum(0)
                      for t in truths])  # fmt: skip
    corr = np.corrcoef(intensity.T, latency.T)[:8, 8:]  # (source k, target j)
    assert np.all(np.diag(corr) > 0.75)
    off = corr[~np.eye(8, dtype=bool)]
    assert np.abs(off).max() < 0.5
    z = np.stack([t.planted_latents for t in truths])
    base = cohort_constants(p).base_latency[links.target]
    inside = np.abs(base + LINK_LATENCY_S * z - np.clip(base + LINK_LATENCY_S * z, -2, 4)) == 0
    assert np.allclose(latency[inside], (base + LINK_LATENCY_S * z)[inside])
    assert all(np.corrcoef(z[:, k], share[:, k])[0, 1] > 0.95 for k in range(8))
    # between-subject SD of the source intensity: a few per cent, not 15 %
    assert 0.02 < intensity.std(axis=0).mean() < 0.08


def test_default_cohort_draws_no_planted_numbers():
    off = SyntheticParams(n_regions=8, **SMALL)
    truth = subject_truth(off, 2)
    assert truth.planted_latents is None
    assert "planted_links" not in off.to_dict() and "atlas_channel" not in off.to_dict()
    on = SyntheticParams(n_regions=8, planted_links=1, **SMALL)
    planted = subject_truth(on, 2)
    # everything but the linked regions is the same subject
    links = planted_links(on)
    keep = np.setdiff1d(np.arange(8), np.concatenate([links.source, links.target]))
    assert truth.age == planted.age
    assert np.array_equal(truth.structural[keep], planted.structural[keep])
    assert np.array_equal(truth.latency[keep], planted.latency[keep])


def test_files_list_every_link_and_carry_the_atlas_channel(tmp_path):
    p = SyntheticParams(n_regions=16, planted_links=4, atlas_channel=True, **SMALL)
    write_cohort(p, tmp_path)
    write_subject(p, "sub-002", tmp_path)
    table = pd.read_csv(tmp_path / "raw" / "planted_links.tsv", sep="\t")
    links = planted_links(p)
    assert table["target_label"].tolist() == (links.target + 1).tolist()
    assert table["source_label"].tolist() == (links.source + 1).tolist()
    names = pd.read_csv(tmp_path / "atlas" / "labels.tsv", sep="\t")["name"].tolist()
    assert table["target_roi"].tolist() == [names[t] for t in links.target]
    dseg = nib.load(tmp_path / "raw" / "sub-002" / "anat" / "sub-002_dseg.nii.gz")
    assert np.array_equal(np.asarray(dseg.dataobj), template(p).atlas)
    with np.load(tmp_path / "truth" / "sub-002.npz") as truth:
        assert truth["planted_latents"].shape == (4,)


def test_too_many_links_is_refused_naming_the_setting():
    with pytest.raises(ValueError, match="planted_links"):
        planted_links(SyntheticParams(n_regions=8, planted_links=4, **SMALL))
