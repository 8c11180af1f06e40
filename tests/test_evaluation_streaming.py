"""Baselines fitted by streaming over the training split equal the in-memory fits (issue 14)."""

from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pytest
from sklearn.decomposition import PCA
from sklearn.linear_model import RidgeCV
from sklearn.preprocessing import StandardScaler

from modalmerge.evaluation.baselines import GroupMeanBaseline, RidgeBaseline
from modalmerge.evaluation.streaming import (
    StreamingRidge,
    SubjectWindows,
    running_group_mean,
    subject_groups,
)
from modalmerge.io import InputError
from tests._model_fixtures import TINY_IMAGE_TO_SERIES

ALPHAS = [0.1, 1.0, 10.0, 100.0, 1000.0, 10000.0]


def _rows(X, Y, step):
    return lambda: ((X[i : i + step], Y[i : i + step]) for i in range(0, len(X), step))


def _relative(a, b):
    return np.abs(a - b).max() / np.abs(a).max()


@pytest.mark.parametrize(
    ("n", "d", "p", "k"),
    [(30, 2000, 40, 20), (40, 600, 30, None), (200, 8, 5, None)],
    ids=["pca-20", "pca-all", "narrow-no-pca"],
)
def test_streaming_ridge_predicts_what_the_in_memory_ridge_predicts(n, d, p, k):
    rng = np.random.default_rng(n)
    X = rng.standard_normal((n, d)) * rng.uniform(0.5, 3, d) + 5  # off-centre, unequal scales
    X[:, 0] = 2.0  # a constant column: StandardScaler's scale 1
    Y = X @ (rng.standard_normal((d, p)) * 0.05) + rng.standard_normal((n, p)) + 2
    x_test = rng.standard_normal((7, d)) * 2 + 5
    components = min(k or n, n - 1)
    ref = RidgeBaseline(alphas=ALPHAS, n_components=components).fit(X, Y)
    streamed = StreamingRidge(ALPHAS, n_components=components, block_rows=7)
    streamed.fit(_rows(X, Y, 3))  # blocks of 7 rows out of pieces of 3: blocks cut pieces
    assert streamed.alpha_ == ref.alpha_
    assert _relative(ref.predict(x_test), streamed.predict(x_test)) <= 1e-8


def test_streaming_ridge_leave_one_out_errors_are_ridgecvs():
    rng = np.random.default_rng(1)
    factors = rng.standard_normal((40, 3))  # low rank: the top components carry the signal
    X = factors @ rng.standard_normal((3, 600)) + 0.5 * rng.standard_normal((40, 600)) + 3
    Y = factors @ rng.standard_normal((3, 30)) + rng.standard_normal((40, 30))
    Z = PCA(n_components=20, svd_solver="full").fit_transform(StandardScaler().fit_transform(X))
    cv = RidgeCV(alphas=ALPHAS, store_cv_results=True).fit(Z, StandardScaler().fit_transform(Y))
    streamed = StreamingRidge(ALPHAS, n_components=20, block_rows=6).fit(lambda: [(X, Y)])
    expected = cv.cv_results_.mean(axis=(0, 1))
    assert _relative(expected, streamed.cv_errors_) <= 1e-10
    assert streamed.alpha_ == cv.alpha_ != ALPHAS[-1]  # not merely the largest penalty


def test_streaming_ridge_refuses_bad_rows():
    with pytest.raises(ValueError, match="at least 3 rows"):
        StreamingRidge(ALPHAS).fit(lambda: [(np.ones((2, 3)), np.ones((2, 1)))])
    bad = np.ones((5, 3))
    bad[2, 1] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        StreamingRidge(ALPHAS).fit(lambda: [(bad, np.ones((5, 1)))])
    with pytest.raises(RuntimeError, match="not fitted"):
        StreamingRidge(ALPHAS).predict(np.ones((1, 3)))


def _parts(rng, n_subjects=9, length=30, width=8, stride=3, rois=4):
    parts = []
    for i in range(n_subjects):
        starts = np.arange(0, length - width + 1 - (i % 3), stride)  # ragged run lengths
        target = rng.standard_normal((len(starts), width, rois)).astype(np.float32)
        features = np.repeat(rng.standard_normal((1, 5)), len(starts), axis=0)
        parts.append(SubjectWindows(f"sub-{i:02d}", starts, features, target))
    return parts


@pytest.mark.parametrize("by_time", [False, True])
def test_running_group_mean_is_the_in_memory_group_mean_to_the_last_bit(by_time):
    parts = _parts(np.random.default_rng(2))
    target = np.concatenate([p.target for p in parts])
    starts = np.concatenate([p.window_start for p in parts])
    ref = GroupMeanBaseline("time_series")
    ref.fit(None, target, time_offsets=None if by_time else starts)
    streamed = running_group_mean(lambda: iter(parts), by_time)
    np.testing.assert_array_equal(streamed.template_, ref.template_)
    np.testing.assert_array_equal(streamed.covered_, ref.covered_)
    assert streamed.window_ == ref.window_
    with pytest.raises(ValueError, match="no samples"):
        running_group_mean(lambda: iter([]), by_time)


def test_subject_groups_joins_a_subject_across_batches_and_refuses_a_split_subject():
    def batch(subjects, first):
        n = len(subjects)
        return subjects, np.arange(first, first + n), np.zeros((n, 2)), np.zeros((n, 3, 1))

    groups = list(subject_groups([batch(["a", "a", "b"], 0), batch(["b", "c"], 3)]))
    assert [(g[0], g[1].tolist()) for g in groups] == [("a", [0, 1]), ("b", [2, 3]), ("c", [4])]
    with pytest.raises(ValueError, match="samples of a are not contiguous"):
        list(subject_groups([batch(["a", "b"], 0), batch(["a"], 2)]))


# --- the evaluate stage: streamed == in memory on a tiny cohort --------------------------


def _cohort(root, n=14, n_time=40, n_roi=5, side=6):
    """Random subjects written into shards (image conditions, parcel features)."""
    from modalmerge.data.shards.subjects import write_shards

    rng = np.random.default_rng(7)
    subjects = [f"sub-{i:03d}" for i in range(1, n + 1)]
    parc, anat = [], []
    shared = rng.standard_normal((n_time, n_roi))
    for sid in subjects:
        p = root / f"{sid}.npz"
        series = shared + 0.7 * rng.standard_normal((n_time, n_roi))
        np.savez(
            p, roi_timeseries=series.astype(np.float32),
            connectivity=np.eye(n_roi, dtype=np.float32),
            structural_features=rng.standard_normal((n_roi, 3)).astype(np.float32),
            feature_names=np.array(list("abc")), roi_labels=np.arange(1, n_roi + 1), tr=2.0,
        )  # fmt: skip
        a = root / f"{sid}_T1w.nii"
        nib.save(nib.Nifti1Image(rng.standard_normal((side,) * 3, np.float32), np.eye(4)), a)
        parc.append(p), anat.append(a)
    tsv = root / "participants.tsv"
    tsv.write_text("participant_id\tage\n" + "".join(f"{s}\t30\n" for s in subjects))
    params = {"window": 10, "stride": 5, "subjects_per_shard": 3, "seed": 1,
              "fractions": {"train": 0.6, "val": 0.15, "test": 0.25}}  # fmt: skip
    write_shards(subjects, parc, anat, tsv, None, root / "shards", params)
    return root / "shards"


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    from modalmerge.stages.train import train_experiment

    root = tmp_path_factory.mktemp("streamed")
    shards = _cohort(root)
    experiment = TINY_IMAGE_TO_SERIES
    settings = {"seed": 0, "epochs": 1, "batch_size": 8, "lr": 0.003, "patience": 5}
    model = train_experiment(shards, experiment, settings, root / "model")
    return root, shards, experiment, model


def _evaluate(trained, name, **settings):
    from modalmerge.stages.evaluate import evaluate_experiment

    root, shards, experiment, model = trained
    out = root / name
    settings = {"ridge_alphas": ALPHAS, "pca_components": 4, **settings}
    evaluate_experiment(model, shards, experiment, settings, out / "m.json", out / "p.npz")
    return json.loads((out / "m.json").read_text()), dict(np.load(out / "p.npz"))


@pytest.mark.parametrize("threshold", [0, 0.01], ids=["zero", "tiny"])
def test_the_evaluate_stage_scores_the_same_when_it_streams_the_train_split(
    trained, caplog, threshold
):
    """``evaluate.in_memory_mb`` (default 32 MB) is a setting: a tiny threshold makes this
    tiny experiment (~0.1 MB of training windows) stream, with the same scores."""
    from modalmerge.settings import EvaluateSettings

    assert EvaluateSettings().in_memory_mb == 32.0  # the default: this experiment fits in memory
    with caplog.at_level("INFO", logger="modalmerge.stages.evaluate"):
        memory, memory_arrays = _evaluate(trained, "memory")
    assert "streaming the train split" not in caplog.text
    with caplog.at_level("INFO", logger="modalmerge.stages.evaluate"):
        streamed, streamed_arrays = _evaluate(trained, "streamed", in_memory_mb=threshold)
    assert "streaming the train split" in caplog.text
    assert set(memory_arrays) == set(streamed_arrays) >= {"ridge", "ridge_parcel", "group_mean"}
    for key, value in memory_arrays.items():
        if np.issubdtype(value.dtype, np.floating):
            assert _relative(value, streamed_arrays[key]) <= 1e-8, key
        else:
            np.testing.assert_array_equal(value, streamed_arrays[key])
    assert set(memory["scores"]) == set(streamed["scores"]) >= {"ridge", "ridge_parcel"}
    for name, scores in memory["scores"].items():
        for metric, value in scores.items():
            assert streamed["scores"][name][metric] == pytest.approx(value, rel=1e-8, abs=1e-12)
    np.testing.assert_array_equal(memory_arrays["group_mean"], streamed_arrays["group_mean"])


def test_a_broken_or_empty_train_shard_is_named_when_streaming(trained, tmp_path):
    import shutil

    from modalmerge.stages.evaluate_stream import train_stream

    _, shards, experiment, _ = trained
    copy = tmp_path / "shards"
    shutil.copytree(shards, copy)
    manifest = json.loads((copy / "manifest.json").read_text())
    train_file = next(e["file"] for e in manifest["shards"] if e["split"] == "train")
    (copy / train_file).write_bytes(b"not an HDF5 file")
    from modalmerge.settings import ExperimentSettings

    settings = ExperimentSettings.coerce(experiment)
    with pytest.raises(InputError, match=train_file.split("/")[-1]):
        list(train_stream(copy, settings, None, None, parcel=False)())
    manifest["shards"] = [e for e in manifest["shards"] if e["split"] != "train"]
    (copy / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(InputError, match="train split has no samples"):
        list(train_stream(copy, settings, None, None, parcel=False)())


# --- the time-series scorer on arrays: streamed == in memory, every condition path --------


def _split(rng, subjects, n_windows=6, width=8, stride=4, rois=4, cond_shape=(8, 3)):
    from modalmerge.stages.common import SplitArrays

    names = [s for s in subjects for _ in range(n_windows)]
    starts = np.tile(np.arange(n_windows) * stride, len(subjects))
    target = rng.standard_normal((len(names), width, rois)).astype(np.float32)
    condition = rng.standard_normal((len(names), *cond_shape)).astype(np.float32)
    if cond_shape != (width, 3):  # a subject-level condition: the same for its windows
        condition = np.repeat(condition[::n_windows], n_windows, axis=0)
    return SplitArrays(names, starts, condition, target, prediction=target + 0.5)


@pytest.mark.parametrize(
    ("condition", "by_time"), [("time_series", False), ("time_series", True), ("tabular", False)]
)
def test_the_time_series_scorer_scores_the_same_from_a_streamed_train_split(condition, by_time):
    from modalmerge.evaluation.scoring import BaselineSettings, ScoringInput, condition_features
    from modalmerge.evaluation.time_series import score_time_series
    from modalmerge.stages.common import SplitArrays

    rng = np.random.default_rng(5)
    shape = (8, 3) if condition == "time_series" else (6,)
    train = _split(rng, [f"sub-{i:02d}" for i in range(12)], cond_shape=shape)
    test = _split(rng, ["sub-90", "sub-91", "sub-92"], cond_shape=shape)
    settings = BaselineSettings(alphas=np.asarray(ALPHAS), n_components=4)
    x_test = condition_features(condition, test.condition, None)

    def stream():
        for s in dict.fromkeys(train.subjects):
            rows = np.flatnonzero(np.asarray(train.subjects) == s)
            yield SubjectWindows(s, train.window_start[rows],
                                 condition_features(condition, train.condition[rows], None),
                                 train.target[rows], condition=train.condition[rows])  # fmt: skip

    memory = ScoringInput(condition, train, test, condition_features(condition, train.condition,
                          None), x_test, settings)  # fmt: skip
    streamed = ScoringInput(condition, SplitArrays(), test, None, x_test, settings,
                            train_stream=stream)  # fmt: skip
    a = score_time_series(memory, by_time=by_time)
    b = score_time_series(streamed, by_time=by_time)
    assert set(a.scores) == set(b.scores) >= {"group_mean", "ridge"}
    for name, scores in a.scores.items():
        for metric, value in scores.items():
            assert b.scores[name][metric] == pytest.approx(value, rel=1e-8, abs=1e-12), (
                name,
                metric,
            )
    for key, value in a.arrays.items():
        if value.dtype.kind == "f":
            assert _relative(value, b.arrays[key]) <= 1e-8, key
        else:
            np.testing.assert_array_equal(value, b.arrays[key])
