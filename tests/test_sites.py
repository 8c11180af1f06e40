"""Multi-site cohorts: the synthetic ``sites`` setting, the site of real BIDS subjects,
and leave-site-out splits (issue #14)."""

from __future__ import annotations

import json

import h5py
import nibabel as nib
import numpy as np
import pandas as pd
import pytest
from _real_layouts import make_openneuro
from _sources_fixtures import tiny_atlas

from modalmerge.data.shards.subjects import split_subjects, write_shards
from modalmerge.data.sources import get_source
from modalmerge.data.synthetic.cohort import SyntheticParams, write_cohort, write_subject
from modalmerge.io import InputError

TINY = {
    "seed": 0,
    "n_subjects": 4,
    "grid_shape": [20, 24, 20],
    "voxel_size_mm": 7.2,
    "n_timepoints": 60,
}
SITES = [
    {"name": "A"},
    {"name": "B", "intensity_scale": 2.0, "tsnr": 10.0, "n_timepoints": 40,
     "age_range": [60.0, 80.0]},
]  # fmt: skip


def load(path):
    img = nib.load(path)
    return np.asarray(img.dataobj, dtype=np.float64), img


@pytest.fixture(scope="module")
def two_cohorts(tmp_path_factory):
    """sub-002 (site B) written with and without sites; the cohort files with sites."""
    root = tmp_path_factory.mktemp("sites")
    with_sites, without = root / "sites", root / "plain"
    params = {**TINY, "sites": SITES}
    write_cohort(params, with_sites)
    for subject in ("sub-001", "sub-002"):
        write_subject(params, subject, with_sites)
    write_subject(TINY, "sub-002", without)
    return with_sites, without


def test_participants_carry_the_site_round_robin_and_the_site_age_range(two_cohorts):
    root, _ = two_cohorts
    table = pd.read_csv(root / "raw" / "participants.tsv", sep="\t")
    assert table["site"].tolist() == ["A", "B", "A", "B"]
    assert table.loc[table.site == "B", "age"].between(60, 80).all()


def test_site_intensity_scale_and_run_length_appear_in_the_images_and_truth(two_cohorts):
    root, plain = two_cohorts
    t1, _ = load(root / "raw/sub-002/anat/sub-002_T1w.nii.gz")
    t1_plain, _ = load(plain / "raw/sub-002/anat/sub-002_T1w.nii.gz")
    truth = np.load(root / "truth/sub-002.npz")
    assert str(truth["site"]) == "B" and float(truth["site_intensity_scale"]) == 2.0
    assert float(truth["site_tsnr"]) == 10.0 and int(truth["site_n_timepoints"]) == 40
    # the same subject's anatomy (no extra random draw), at twice the intensity; its age
    # is drawn in the site's range, so the ageing of the white matter differs a little
    ratio = np.median(t1[t1_plain > 100] / t1_plain[t1_plain > 100])
    assert 1.9 < ratio < 2.1
    bold, img = load(root / "raw/sub-002/func/sub-002_task-motor_bold.nii.gz")
    sidecar = json.loads((root / "raw/sub-002/func/sub-002_task-motor_bold.json").read_text())
    assert bold.shape[3] == 40 and sidecar["RepetitionTime"] == 2.0
    plain_bold, _ = load(plain / "raw/sub-002/func/sub-002_task-motor_bold.nii.gz")
    assert plain_bold.shape[3] == 60
    np.testing.assert_allclose(bold.mean() / plain_bold.mean(), 2.0, rtol=0.05)


def test_site_thermal_noise_lowers_the_measured_tsnr(two_cohorts):
    root, plain = two_cohorts

    def tsnr(path):
        bold, _ = load(path)
        brain = bold.mean(axis=3) > 0.6 * bold.mean(axis=3).max()
        series = bold[brain]
        return np.median(series.mean(axis=1) / np.diff(series, axis=1).std(axis=1))

    noisy = tsnr(root / "raw/sub-002/func/sub-002_task-motor_bold.nii.gz")  # tsnr 10
    clean = tsnr(plain / "raw/sub-002/func/sub-002_task-motor_bold.nii.gz")  # tsnr 80
    assert noisy < 0.4 * clean


def test_site_smoothing_and_bias_gradient(tmp_path):
    sites = [{"name": "sharp"}, {"name": "smooth", "smoothing_fwhm_mm": 12.0,
                                 "bias_gradient": [0.3, 0.0, 0.0]}]  # fmt: skip
    params = {**TINY, "n_subjects": 2, "sites": sites}
    write_subject(params, "sub-002", tmp_path / "s")
    write_subject(TINY, "sub-002", tmp_path / "p")
    smooth, img = load(tmp_path / "s/raw/sub-002/anat/sub-002_T1w.nii.gz")
    sharp, _ = load(tmp_path / "p/raw/sub-002/anat/sub-002_T1w.nii.gz")
    head = sharp > 100
    roughness = [np.abs(np.diff(v, axis=0))[head[1:]].mean() for v in (smooth, sharp)]
    assert roughness[0] < 0.7 * roughness[1]
    x = np.arange(sharp.shape[0])
    left, right = x < sharp.shape[0] // 3, x > 2 * sharp.shape[0] // 3  # RAS: +x is right
    ratio = smooth / np.where(head, sharp, 1)
    assert np.median(ratio[right][head[right]]) > 1.2 * np.median(ratio[left][head[left]])


def test_sites_setting_is_checked_and_absent_by_default():
    assert "sites" not in SyntheticParams.from_dict(TINY).to_dict()
    with pytest.raises(ValueError, match=r"sites\[1\]\.age_range"):
        SyntheticParams.from_dict(
            {**TINY, "sites": [{"name": "A"}, {"name": "B", "age_range": [10, 30]}]}
        )
    with pytest.raises(ValueError, match="distinct"):
        SyntheticParams.from_dict({**TINY, "sites": [{"name": "A"}, {"name": "A"}]})
    with pytest.raises(ValueError, match=r"sites\[0\]: unknown key"):
        SyntheticParams.from_dict({**TINY, "sites": [{"name": "A", "scale": 2}]})


def abide_like(root):
    """An ABIDE-like BIDS tree: numeric subject ids, a SITE_ID column."""
    ds = make_openneuro(root, subjects=("0050002", "0050003", "0051456"))
    table = pd.read_csv(ds / "participants.tsv", sep="\t", dtype={"participant_id": str})
    table["SITE_ID"] = ["PITT", "PITT", "NYU"]
    table.to_csv(ds / "participants.tsv", sep="\t", index=False)
    return ds


def test_bids_site_comes_from_a_participants_column(tmp_path):
    ds = abide_like(tmp_path / "abide")
    params = {
        "path": str(ds),
        "task": "rest",
        "atlas": tiny_atlas(tmp_path),
        "site_column": "SITE_ID",
    }
    get_source("bids").write_cohort(params, tmp_path / "out")
    table = pd.read_csv(tmp_path / "out/raw/participants.tsv", sep="\t", dtype=str)
    assert table.set_index("participant_id")["site"].to_dict() == {
        "sub-0050002": "PITT", "sub-0050003": "PITT", "sub-0051456": "NYU",
    }  # fmt: skip
    with pytest.raises(Exception, match="SITE"):
        get_source("bids").write_cohort({**params, "site_column": "SITE"}, tmp_path / "o2")


def test_bids_site_comes_from_the_session_entity_when_told(tmp_path):
    ds = tmp_path / "ds"
    make_openneuro(ds, subjects=("01", "02"), ses="siemens")
    make_openneuro(ds, subjects=("03",), ses="ge")
    pd.DataFrame({"participant_id": ["sub-01", "sub-02", "sub-03"], "age": [20, 30, 40]}).to_csv(
        ds / "participants.tsv", sep="\t", index=False
    )
    params = {"path": str(ds), "task": "rest", "atlas": tiny_atlas(tmp_path), "site_from": "ses"}
    get_source("bids").write_cohort(params, tmp_path / "out")
    table = pd.read_csv(tmp_path / "out/raw/participants.tsv", sep="\t")
    assert table["site"].tolist() == ["siemens", "siemens", "ge"]
    with pytest.raises(Exception, match="acq"):  # no acq entity to take it from
        get_source("bids").write_cohort({**params, "site_from": "acq"}, tmp_path / "o2")


def test_split_by_site_holds_out_whole_sites_and_never_puts_a_site_in_two_splits():
    rng = np.random.default_rng(0)
    subjects = [f"sub-{i:03d}" for i in range(1, 41)]
    sites = {s: f"site{rng.integers(4)}" for s in subjects}
    fractions = {"train": 0.6, "val": 0.2, "test": 0.2}
    for held in sorted(set(sites.values())):
        splits = split_subjects(subjects, fractions, 0, "site", sites, held)
        by_split = {name: {sites[s] for s in members} for name, members in splits.items()}
        assert by_split["test"] == {held}
        assert not by_split["train"] & by_split["val"] and not by_split["val"] & {held}
        assert held not in by_split["train"] and by_split["val"] and by_split["train"]
        assert sorted(sum(splits.values(), [])) == subjects
    with pytest.raises(ValueError, match="not a site"):
        split_subjects(subjects, fractions, 0, "site", sites, "elsewhere")


def site_inputs(root, tr_of=lambda k: 2.0):
    """12 subjects at 3 sites (round robin) with a planted site shift of the structural
    features and connectivity, and an age effect on the features."""
    subjects, parc, anat, sites, ages = [], [], [], [], []
    rng = np.random.default_rng(0)
    for k in range(12):
        sid, site, age = f"sub-{k + 1:03d}", f"s{k % 3}", 20.0 + 5 * k
        shift = {"s0": 0.0, "s1": 2.0, "s2": -1.5}[site]
        path = root / "parcellated" / f"{sid}.npz"
        path.parent.mkdir(parents=True, exist_ok=True)
        conn = np.full((4, 4), 0.2 + 0.1 * shift, np.float32) + 0.02 * rng.standard_normal((4, 4))
        conn = ((conn + conn.T) / 2).astype(np.float32)
        np.fill_diagonal(conn, 1.0)
        np.savez(
            path, roi_timeseries=(3.0 + k) * rng.standard_normal((24, 4)).astype(np.float32),
            connectivity=conn, feature_names=np.array(["a", "b"]), roi_labels=np.arange(1, 5),
            structural_features=(0.05 * age + shift + 0.3 * rng.standard_normal((4, 2))).astype(np.float32),
            tr=tr_of(k),
        )  # fmt: skip
        img = root / "preproc" / f"{sid}_T1w.nii.gz"
        img.parent.mkdir(parents=True, exist_ok=True)
        nib.save(nib.Nifti1Image(np.full((4, 4, 4), k, np.float32), np.eye(4)), img)
        subjects.append(sid), parc.append(path), anat.append(img), sites.append(site)
        ages.append(age)
    tsv = root / "participants.tsv"
    pd.DataFrame({"participant_id": subjects, "age": ages, "site": sites}).to_csv(
        tsv, sep="\t", index=False
    )
    return subjects, parc, anat, tsv


SITE_SHARDS = {
    "fractions": {"train": 0.6, "val": 0.2, "test": 0.2}, "window": 8, "stride": 8,
    "split_by": "site", "test_site": "s2",
}  # fmt: skip


def test_write_shards_holds_out_the_test_site_and_combat_removes_the_site_shift(tmp_path):
    from modalmerge.data.shards.split_arrays import read_manifest

    subjects, parc, anat, tsv = site_inputs(tmp_path)
    write_shards(subjects, parc, anat, tsv, None, tmp_path / "none", SITE_SHARDS)
    write_shards(subjects, parc, anat, tsv, None, tmp_path / "combat",
                 {**SITE_SHARDS, "harmonize": "combat"})  # fmt: skip
    manifest = read_manifest(tmp_path / "combat")
    assert manifest["splits"]["test"] == [s for k, s in enumerate(subjects) if k % 3 == 2]
    assert (
        manifest["params"]["harmonize"] == "combat" and "site" not in manifest["tabular"]["columns"]
    )
    assert "harmonize" not in read_manifest(tmp_path / "none")["params"]  # default: unrecorded

    site = {s: f"s{k % 3}" for k, s in enumerate(subjects)}
    ages = {s: 20.0 + 5 * k for k, s in enumerate(subjects)}
    for folder, expect_gap in (("none", True), ("combat", False)):
        feats, ids = [], []
        for split in ("train", "val", "test"):
            with h5py.File(next((tmp_path / folder).glob(f"{split}-*.h5")), "r") as h5:
                feats.append(h5["subjects/structural_features"][:].mean(axis=(1, 2)))
                ids += [v.decode() if isinstance(v, bytes) else v for v in h5["subjects/id"][:]]
        residual = np.concatenate(feats) - 0.05 * np.array([ages[s] for s in ids])
        means = {g: residual[[site[s] == g for s in ids]].mean() for g in ("s0", "s1", "s2")}
        spread = max(means.values()) - min(means.values())
        assert (spread > 2.5) if expect_gap else (spread < 0.5), (folder, means)
    with h5py.File(next((tmp_path / "combat").glob("test-*.h5")), "r") as h5:
        series = h5["samples/time_series"][:]
    assert np.all(np.abs(series.std(axis=1) - 1) < 0.5)  # z-scored per subject, not 3-14


def test_combat_with_subject_splits_keeps_site_in_the_table_and_sex_as_a_covariate(tmp_path):
    subjects, parc, anat, tsv = site_inputs(tmp_path)
    table = pd.read_csv(tsv, sep="\t")
    table["sex"] = ["F", "M"] * 6
    table.to_csv(tsv, sep="\t", index=False)
    params = {**SITE_SHARDS, "split_by": "subject", "test_site": None, "harmonize": "combat"}
    write_shards(subjects, parc, anat, tsv, None, tmp_path / "out", params)
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert sorted(manifest["tabular"]["categorical"]) == ["sex", "site"]


def test_write_shards_refuses_runs_of_different_trs_without_a_common_tr(tmp_path):
    subjects, parc, anat, tsv = site_inputs(tmp_path, tr_of=lambda k: 2.0 if k % 3 else 1.5)
    with pytest.raises(InputError, match="differs from the other subjects.*shard.tr"):
        write_shards(subjects, parc, anat, tsv, None, tmp_path / "out", SITE_SHARDS)


def test_resample_series_keeps_slow_signal_and_removes_what_would_alias():
    from modalmerge.data.resample import resample_factors, resample_series, resampled_length

    t = np.arange(250) * 0.8  # 200 s at TR 0.8 -> 100 volumes at TR 2
    slow = np.sin(2 * np.pi * 0.05 * t)
    fast = np.sin(2 * np.pi * 0.45 * t)  # above the 0.25 Hz Nyquist of TR 2; aliases to 0.05
    out = resample_series(np.stack([slow, fast], axis=1), 0.8, 2.0)
    assert out.shape == (100, 2) == (resampled_length(250, 0.8, 2.0), 2)
    inner = slice(5, -5)
    expected = np.sin(2 * np.pi * 0.05 * np.arange(100) * 2.0)  # same origin: volume 0 at 0 s
    assert np.abs(out[inner, 0] - expected[inner]).max() < 0.01
    assert np.abs(out[inner, 1]).max() < 0.02  # plain decimation would keep amplitude 1
    up = resample_series(out, 2.0, 0.8)
    assert up.shape == (250, 2)
    assert resample_series(out, 2.0, 2.0004) is not None and resample_factors(0.72, 2.0) == (9, 25)
    with pytest.raises(ValueError, match="not a fraction"):
        resample_factors(0.7071, 2.0)


def test_write_shards_resamples_sites_of_different_trs_to_shard_tr(tmp_path):
    """Sites at TR 1.0 and 2.0: with shard.tr 2.0 every window spans 16 s, the TR-1.0
    subjects have half as many volumes once resampled, the manifest records each TR."""
    from modalmerge.data.shards.split_arrays import read_manifest

    subjects, parc, anat, tsv = site_inputs(tmp_path, tr_of=lambda k: 1.0 if k % 3 == 2 else 2.0)
    params = {**SITE_SHARDS, "tr": 2.0}
    write_shards(subjects, parc, anat, tsv, None, tmp_path / "out", params)
    manifest = read_manifest(tmp_path / "out")
    assert manifest["tr"] == 2.0 and manifest["params"]["tr"] == 2.0
    assert manifest["native_tr"] == {
        s: (1.0 if k % 3 == 2 else 2.0) for k, s in enumerate(subjects)
    }
    with h5py.File(next((tmp_path / "out").glob("test-*.h5")), "r") as h5:  # site s2: TR 1.0
        starts = h5["samples/window_start"][:]
        n_test = len(h5["subjects/id"])
    # 24 volumes at 1 s = 12 at 2 s: one window of 8 per subject (starts 0), not two (0, 8)
    assert n_test == 4 and list(starts) == [0] * 4
    with h5py.File(next((tmp_path / "out").glob("train-*.h5")), "r") as h5:  # 24 at 2 s: 3
        assert sorted(set(h5["samples/window_start"][:].tolist())) == [0, 8, 16]


def test_write_shards_refuses_to_resample_a_censored_run(tmp_path):
    subjects, parc, anat, tsv = site_inputs(tmp_path, tr_of=lambda k: 1.0 if k % 3 == 2 else 2.0)
    with np.load(parc[2]) as npz:
        arrays = dict(npz)
    arrays.update(
        roi_timeseries=arrays["roi_timeseries"][:-2],
        volume_index=np.arange(24)[2:],
        n_volumes=24,
    )
    np.savez(parc[2], **arrays)
    with pytest.raises(InputError, match="sub-003.*censored volumes.*bridge"):
        write_shards(subjects, parc, anat, tsv, None, tmp_path / "out", {**SITE_SHARDS, "tr": 2.0})


def test_the_dag_check_counts_the_window_in_volumes_of_shard_tr():
    from modalmerge.data import checks

    shard = {"window": 30, "tr": 2.0}
    checks.check_run_settings("run", 75, 0.8, {}, shard)  # 60 s = 30 volumes of 2 s
    with pytest.raises(InputError, match="74 volumes at TR 0.8 s are 30"):
        checks.check_run_settings("run", 74, 0.8, {}, {"window": 31, "tr": 2.0})


def fold_record(site_index: int, harmonized: bool) -> dict:
    rng = np.random.default_rng(site_index)
    units = [f"sub-{site_index}{k:02d}" for k in range(6)]
    model = rng.uniform(0.3, 0.5, 6) + (0.1 if harmonized else 0.0)
    base = rng.uniform(0.1, 0.2, 6)
    return {
        "experiment": "image_to_ts", "condition": "image", "target": "time_series",
        "method": "cross_attention", "n_test_subjects": 6,
        "scores": {"model": {"pearson_r": float(model.mean())},
                   "group_mean": {"pearson_r": float(base.mean())}},
        "per_unit": {"units": units, "model": {"pearson_r": model.tolist()},
                     "group_mean": {"pearson_r": base.tolist()}},
    }  # fmt: skip


def test_site_summary_covers_every_held_out_site_with_intervals_and_the_combat_difference(
    tmp_path,
):
    from modalmerge.evaluation.summary import write_metrics
    from modalmerge.stages.sites import write_site_summary

    for k, site in enumerate(("siteA", "siteB", "siteC")):
        for harmonize in ("none", "combat"):
            record = fold_record(k, harmonize == "combat")
            write_metrics(
                tmp_path / "folds" / harmonize / site / "image_to_ts" / "metrics.json", record
            )
    csv, png = write_site_summary(
        tmp_path / "folds", tmp_path / "s.csv", tmp_path / "s.png", dpi=40
    )
    table = pd.read_csv(csv)
    rows = table[(table.model == "model") & (table.metric == "pearson_r")]
    assert sorted(rows.test_site.unique()) == ["siteA", "siteB", "siteC"]
    folds = rows[rows.harmonize != "combat-none"]
    assert len(folds) == 6 and (folds.ci_low < folds.value).all()
    beats = table[table.model == "model-group_mean"]
    assert (beats.verdict == "beats").all() and len(beats) == 6
    combat = table[(table.harmonize == "combat-none") & (table.model == "model")]
    assert len(combat) == 3
    np.testing.assert_allclose(combat.value, 0.1, atol=1e-9)
    assert png.stat().st_size > 1000


def test_a_subject_depends_only_on_its_own_site_so_editing_another_site_reruns_nothing(tmp_path):
    source = get_source("synthetic")
    params = {**TINY, "sites": SITES}
    edited = {**TINY, "sites": [{"name": "A", "tsnr": 5.0}, SITES[1]]}
    own = source.subject_params(params, "sub-002")
    assert own == source.subject_params(edited, "sub-002")  # sub-002 is at site B
    assert own["sites"][0] == {"name": "A"}
    assert source.subject_params(params, "sub-001") != source.subject_params(edited, "sub-001")
    write_subject(own, "sub-002", tmp_path / "own")
    write_subject(params, "sub-002", tmp_path / "full")
    for path in ("raw/sub-002/anat/sub-002_T1w.nii.gz", "truth/sub-002.npz"):
        assert (tmp_path / "own" / path).read_bytes() == (tmp_path / "full" / path).read_bytes()


def test_the_multisite_config_is_valid_and_no_site_outlasts_every_other():
    """Sites differ in TR and run length; the shard stage resamples to shard.tr, and the
    longest run (in seconds) is shared by two sites (the group mean needs training runs as
    long as a held-out one)."""
    import yaml

    from modalmerge.data.resample import resampled_length
    from modalmerge.data.synthetic.sites import with_site_protocol
    from modalmerge.settings import from_config

    config = yaml.safe_load(open("configs/multisite.yaml"))
    settings = from_config(config)
    shard = settings.shard
    assert (shard.split_by, shard.test_site, shard.harmonize) == ("site", "all", "both")
    p = SyntheticParams.from_dict(config["dataset"]["params"])
    runs = [with_site_protocol(p, k + 1) for k in range(len(p.sites))]
    assert len({q.tr for q in runs}) > 1
    lengths = [resampled_length(q.n_timepoints, q.tr, shard.tr) for q in runs]
    assert len(set(lengths)) > 1 and lengths.count(max(lengths)) >= 2
    assert min(lengths) >= shard.window


def test_evaluate_resamples_the_truth_onto_the_shards_common_tr(tmp_path):
    """A subject recorded at TR 1 s whose shards hold 2 s volumes: its evoked truth is
    resampled like the observed series, so row k of both is the same second."""
    from modalmerge.data.resample import resample_series
    from modalmerge.stages.evaluate import load_truth

    evoked = np.cumsum(np.random.default_rng(0).standard_normal((40, 3)), axis=0)
    truth = tmp_path / "truth"
    truth.mkdir()
    np.savez(truth / "sub-001.npz", evoked=evoked.astype(np.float32))
    np.savez(truth / "sub-002.npz", evoked=evoked.astype(np.float32))
    grid = ({"sub-001": 1.0, "sub-002": 2.0}, 2.0)
    out = load_truth(truth, ["sub-001", "sub-002"], grid=grid, columns=np.array([0, 2]))
    assert out["sub-001"].evoked.shape == (20, 2)
    np.testing.assert_allclose(
        out["sub-001"].evoked, resample_series(evoked[:, [0, 2]], 1.0, 2.0), rtol=1e-5
    )
    assert out["sub-002"].evoked.shape == (40, 2)  # already at the common TR: untouched
    assert load_truth(truth, ["sub-001"])["sub-001"].evoked.shape == (40, 3)


def test_time_series_harmonisation_removes_a_site_scale_and_reads_no_other_subject(tmp_path):
    """harmonize: combat z-scores each ROI series over its own run: a held-out subject's
    windows are the same whatever the training subjects' series are (nothing is fitted
    on the held-out site, nor on the cohort), and a site gain of 10 leaves no trace."""
    subjects, parc, anat, tsv = site_inputs(tmp_path)
    params = {**SITE_SHARDS, "harmonize": "combat"}
    write_shards(subjects, parc, anat, tsv, None, tmp_path / "a", params)
    for k in (0, 1, 3, 4):  # training / validation sites s0, s1: rescale their series x10
        with np.load(parc[k]) as npz:
            arrays = dict(npz)
        arrays["roi_timeseries"] = arrays["roi_timeseries"] * 10.0 + 3.0
        np.savez(parc[k], **arrays)
    write_shards(subjects, parc, anat, tsv, None, tmp_path / "b", params)

    def windows(folder, split):
        with h5py.File(next((tmp_path / folder).glob(f"{split}-*.h5")), "r") as h5:
            return h5["samples/time_series"][:]

    np.testing.assert_array_equal(windows("a", "test"), windows("b", "test"))
    train_a, train_b = windows("a", "train"), windows("b", "train")
    np.testing.assert_allclose(train_a, train_b, atol=1e-5)  # the x10 gain and offset are gone


def test_the_dag_checks_each_sites_run_against_the_window_in_seconds(tmp_path):
    """Each site's protocol is checked on its own: a 0.8 s site of 70 volumes (56 s) is 28
    volumes at shard.tr 2 s, too short for a 30-volume window, although 70 >= 30."""
    from modalmerge.stages.acquire import check_settings

    params = {**TINY, "sites": [{"name": "A"}, {"name": "B", "tr": 0.8, "n_timepoints": 70}]}
    assert get_source("synthetic").planned_runs(params) == [(60, 2.0), (70, 0.8)]
    config = {
        "dataset": {"name": "d", "kind": "synthetic", "params": params},
        "preprocess": {"high_pass": None, "low_pass": None},
        "shard": {"window": 30, "tr": 2.0},
    }
    with pytest.raises(InputError, match="70 volumes at TR 0.8 s are 28 at shard.tr 2 s"):
        check_settings(config, [], tmp_path)
    config["shard"]["window"] = 28
    check_settings(config, [], tmp_path)
