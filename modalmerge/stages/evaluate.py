"""Evaluate one trained experiment on held-out test subjects, against baselines.

Predictors, all scored on the same test subjects of the same split:

- ``model`` — the trained experiment;
- ``group_mean`` — fitted on the training subjects only: the average training
  target at the same absolute time points (time series) or the mean / majority
  target (other modalities);
- ``ridge`` — scikit-learn ``RidgeCV`` from the condition's features (image
  voxels through a train-only PCA, table columns one-hot, word counts; for a
  time-series condition the condition ROIs at each volume -> the target ROIs at
  the same volume), fitted on the training subjects only;

With ``shard.split_by: time`` (blocks of the same runs), ``group_mean`` is the
mean training window (nothing else is known about later volumes), and a
time-series -> time-series cross-attention model between two ROI views whose
names pair up (left/right homologs) also reports
``homolog_attention_fraction``: the fraction of target ROIs whose attention,
averaged over heads and test windows, peaks on their homolog. An image condition
encoded as atlas-region tokens (``region_cnn``) on a cohort with planted links
(``raw/planted_links.tsv`` beside ``truth/``) reports ``planted_link_top1`` and
its permutation null (:mod:`modalmerge.evaluation.planted`).
- ``ridge_parcel`` — image conditions whose shards hold parcel structural
  features (``/subjects/structural_features``, R regions × F features per
  subject, flattened): the same ridge on those features instead of the voxels;
- ``oracle`` — synthetic data only (time-series targets): the subject's
  noise-free run (``truth/<subject>_bold-noisefree.nii.gz``) sent through the
  same :func:`~modalmerge.data.preprocess.preprocess_subject` and
  :func:`~modalmerge.data.parcellation.parcellate.parcellate_subject` with the
  same settings as the observed run (:func:`load_truth`), cut into the test windows;
- ``noise_ceiling`` — synthetic data only: per subject, the correlation of that
  processed noise-free run with the observed processed run at the scored
  volumes (equal to ``oracle``'s r); ``regional_truth`` is the older, looser
  correlation of the regional evoked truth with the observed series (not a bound).

Time-series targets are scored per subject on the whole run, rebuilt from the
sliding windows (overlaps averaged). The scoring itself lives in
:mod:`modalmerge.evaluation` (one scorer per target modality, returning its
result); this stage loads the model and the splits, dispatches on the target
modality and writes. Outputs: ``metrics.json`` (schema in
:mod:`modalmerge.evaluation.summary`) and ``predictions.npz`` (per test subject:
``subjects``, ``prediction``, ``target``, ``group_mean``, ``ridge``,
``ridge_parcel`` for image conditions, and for time series ``time_index``,
``truth_evoked`` when known). Every scorer also gives per held-out unit scores
(``metrics.json`` ``per_unit``), from which ``summarize`` draws intervals and
paired differences (:mod:`modalmerge.evaluation.intervals`).
"""

from __future__ import annotations

import functools
import logging
import shutil
import tempfile
from pathlib import Path

import numpy as np
import torch
from threadpoolctl import threadpool_limits

from modalmerge.data.shards.split_arrays import (
    load_split_arrays,
    read_manifest,
    roi_columns,
    roi_labels,
    roi_names,
)
from modalmerge.evaluation.decoding import roi_windows, score_decoding, task_condition_names
from modalmerge.evaluation.graph_targets import score_graph
from modalmerge.evaluation.image import score_image
from modalmerge.evaluation.planted import LINKS_FILE, planted_link_attention, read_planted_links
from modalmerge.evaluation.point_cloud import score_point_cloud
from modalmerge.evaluation.region_profiles import profile_table, score_region_profiles
from modalmerge.evaluation.scoring import (
    BaselineSettings,
    Scored,
    ScoringInput,
    condition_features,
)
from modalmerge.evaluation.summary import write_metrics
from modalmerge.evaluation.tabular import score_tabular, score_text
from modalmerge.evaluation.time_series import RunTruth, score_time_series
from modalmerge.evaluation.volume_series import score_volume_series
from modalmerge.io import InputError, atomic_path, require_file
from modalmerge.models.conditioning import returns_attention
from modalmerge.models.ensemble import ModelEnsemble
from modalmerge.settings import (
    EvaluateSettings,
    ExperimentSettings,
    ParcellateSettings,
    PreprocessSettings,
)
from modalmerge.stages import evaluate_stream
from modalmerge.stages.common import SplitArrays, collect_split, load_experiment_model
from modalmerge.stages.evaluate_samples import add_samples, held_out_split

log = logging.getLogger(__name__)


def evaluate_experiment(
    model_path: str | Path,
    shard_dir: str | Path,
    experiment: ExperimentSettings | dict,
    settings: EvaluateSettings | dict,
    out_metrics: str | Path,
    out_predictions: str | Path,
    truth_dir: str | Path | None = None,
    preprocess: PreprocessSettings | dict | None = None,
    parcellate: ParcellateSettings | dict | None = None,
    split: str = "test",
) -> dict:
    """Score a trained experiment on the test split; write metrics.json and predictions.npz.

    Parameters
    ----------
    model_path : path
        ``models/<experiment>/model.pt`` written by the train stage.
    shard_dir : path
        ``shards/`` with ``manifest.json``.
    experiment : ExperimentSettings or dict
        The experiment's entry in ``config.yaml``.
    settings : EvaluateSettings or dict
        ``config['evaluate']``: ``ridge_alphas``, ``pca_components``, ... and
        ``in_memory_mb``: a time-series target whose training windows hold more (MB, as
        read) has its baselines fitted by streaming over the training shards
        (:mod:`modalmerge.stages.evaluate_stream`); 0 always streams.
    truth_dir : path, optional
        ``truth/`` of a synthetic dataset; when it holds ``<subject>.npz`` with
        ``evoked``, ``regional_truth`` is reported, and with
        ``<subject>_bold-noisefree.nii.gz`` and both ``preprocess`` and
        ``parcellate`` settings the ``oracle`` and the ``noise_ceiling``.
    preprocess, parcellate : settings, optional
        ``config['preprocess']`` and ``config['parcellate']``: the settings the
        observed runs were processed with, applied to the noise-free runs.
    split : {"test", "val"}
        The held-out split scored: the workflow scores test; ``"val"`` serves
        setting choices (``benchmarks/real_demo_window_sweep.py``), never test.

    Returns
    -------
    dict
        The metrics record written to ``out_metrics``.
    """
    require_file(model_path, "trained model")
    experiment = ExperimentSettings.coerce(experiment)
    settings = EvaluateSettings.coerce(settings)
    # One thread for torch and BLAS: float sums then do not depend on the machine's core
    # count, so a cluster node reproduces a workstation's metrics (to the last bit or so).
    torch.set_num_threads(1)
    processing = None
    if preprocess is not None and parcellate is not None:
        processing = (PreprocessSettings.coerce(preprocess), ParcellateSettings.coerce(parcellate))
    with threadpool_limits(limits=1):
        return _evaluate(
            model_path,
            shard_dir,
            experiment,
            settings,
            out_metrics,
            out_predictions,
            (truth_dir, processing),
            split,
        )


def _evaluate(
    model_path,
    shard_dir,
    experiment,
    settings,
    out_metrics,
    out_predictions,
    truth,
    split,
) -> dict:
    model, tokenizer = load_experiment_model(model_path, experiment.plugins)
    condition, target, method = experiment.condition, experiment.target, experiment.method
    manifest = read_manifest(shard_dir)
    # left/right-style ROI views and region columns: the test pass also averages the attention
    weighted = returns_attention(method)  # cross_attention, spatial_mix, diffusion
    homologs = condition == target == "time_series" and weighted
    regions = manifest.get("sample_unit") == "region" and target == "tabular"
    links = _planted_links(model, truth[0]) if weighted else None
    attention = homologs or links is not None or (regions and weighted and condition == "tabular")
    vocab = tokenizer.vocab_size if tokenizer is not None else None
    parcels = condition == "image" and not regions
    in_memory_mb = settings.in_memory_mb
    train, stream = _train_split(shard_dir, experiment, tokenizer, model, parcels, in_memory_mb)
    held_out = (shard_dir, split, experiment, tokenizer)
    test, samples = held_out_split(*held_out, model, attention, settings, train)
    if not test.subjects:
        raise InputError(shard_dir, f"the {split} split has no samples")
    n_subjects = len(set(test.subjects))
    log.info("evaluating %s on %d test samples of %d subjects", experiment.name,
             len(test.subjects), n_subjects)  # fmt: skip
    data = _scoring_input(condition, (train, test, stream), settings, vocab)
    if parcels:
        if not stream:
            data.parcel_train = parcel_features(shard_dir, "train", train.subjects)
        data.parcel_test = parcel_features(shard_dir, split, test.subjects)
    scored = _score(data, experiment, manifest, model, shard_dir, truth, settings.time_units, split)
    if samples is not None:  # a generative model: score its samples too
        add_samples(scored, samples, target, test, train, float(manifest.get("tr") or 1.0), model)
    if links is not None:
        labels = roi_labels(manifest, roi_columns(manifest, experiment.target_rois))
        _add_planted(scored, planted_link_attention(test.attention, labels, links))
    record = {
        "experiment": experiment.name,
        "condition": condition,
        "target": target,
        "method": method,
        "n_test_subjects": n_subjects,
        "n_parameters": model.n_parameters(),  # an ensemble's: all its members'
        **({"ensemble_members": len(model)} if isinstance(model, ModelEnsemble) else {}),
        "scores": scored.scores,
        **({"per_roi": scored.per_roi} if scored.per_roi else {}),
        **({"per_unit": scored.per_unit} if scored.per_unit else {}),
        **scored.extra,
        **({"scored_split": split} if split != "test" else {}),
    }
    write_metrics(out_metrics, record)
    with atomic_path(out_predictions) as tmp, open(tmp, "wb") as fh:
        np.savez_compressed(fh, **scored.arrays)
    log.info("scores: %s", record["scores"])
    return record


def _scoring_input(condition, splits, settings, vocab) -> ScoringInput:
    """The scorers' input from ``splits`` = (train, test, train stream or None)."""
    train, test, stream = splits
    return ScoringInput(
        condition=condition,
        train=train,
        test=test,
        x_train=None
        if stream or train.condition is None
        else condition_features(condition, train.condition, vocab),
        x_test=condition_features(condition, test.condition, vocab),
        baselines=BaselineSettings(
            alphas=np.asarray(settings.ridge_alphas, dtype=float),
            n_components=settings.pca_components,
        ),
        train_stream=stream,
    )


def _train_split(shard_dir, experiment, tokenizer, model, parcels: bool, in_memory_mb: float):
    """The training split in memory (``SplitArrays``, stream None), or, for a time-series
    target whose training windows exceed ``in_memory_mb``, an empty ``SplitArrays`` and the
    split as a stream (:func:`modalmerge.stages.evaluate_stream.train_stream`, issue 14).

    A decoding experiment (``target_data: task_condition``) gets an empty ``SplitArrays``:
    its scorer and baselines read the training split's ROI series and codes only
    (:func:`~modalmerge.evaluation.decoding.roi_windows`), not its volumes."""
    if experiment.target_data == "task_condition":
        return SplitArrays(), None
    if experiment.target == "time_series" and not model.generative:
        size = evaluate_stream.train_bytes(shard_dir, experiment, tokenizer)
        if size > in_memory_mb * 2**20:
            vocab = tokenizer.vocab_size if tokenizer is not None else None
            log.info("streaming the train split (%.0f MB of windows)", size / 2**20)
            stream = evaluate_stream.train_stream(shard_dir, experiment, tokenizer, vocab, parcels)
            return SplitArrays(), stream
    return collect_split(shard_dir, "train", experiment, tokenizer), None


def _planted_links(model, truth_dir):
    """The planted links of a synthetic cohort (``raw/planted_links.tsv`` beside ``truth/``)
    when the model's condition tokens are atlas regions (``region_cnn``); else None."""
    if truth_dir is None or model.condition_provenance().kind != "region":
        return None
    return read_planted_links(Path(truth_dir).parent / "raw" / LINKS_FILE)


def _add_planted(scored: Scored, found) -> None:
    """``planted_link_top1`` and its null into the model's scores, the record into metrics."""
    if found is not None:
        scored.scores["model"].update(found[0])
        scored.extra["planted_links"] = found[1]


def _score(data, experiment, manifest, model, shard_dir, truth, time_units=1, split="test"):
    """Dispatch on the target modality to its scorer in :mod:`modalmerge.evaluation`
    (``split``: the held-out split, ``data.test``); returns its :class:`Scored`."""
    target = experiment.target
    if experiment.target_data == "task_condition":  # brain decoding: per-volume conditions
        rois = {s: roi_windows(shard_dir, s) for s in ("train", "val")}
        rois["test"] = roi_windows(shard_dir, split)
        return score_decoding(data, rois, task_condition_names(manifest, shard_dir))
    if target == "time_series":
        views = None
        if data.test.attention is not None and data.condition == "time_series":  # two ROI views
            views = tuple(
                roi_names(manifest, roi_columns(manifest, getattr(experiment, f"{role}_rois")))
                for role in ("target", "condition")
            )
        truth_dir, processing = truth
        return score_time_series(
            data,
            by_time=manifest.get("split_by") == "time",
            truth=functools.partial(
                load_truth,
                truth_dir,
                processing=processing,
                columns=roi_columns(manifest, experiment.target_rois),
                grid=(manifest["native_tr"], manifest["tr"]) if "native_tr" in manifest else None,
            ),
            roi_views=views,
            time_units=time_units,
        )
    if target == "image":
        channels = experiment.target_channels
        channels = [channels] if isinstance(channels, str) else list(channels or ["T1w"])
        labels = set(channels) <= set(manifest.get("label_channels", []))
        return score_image(data, segmentation=labels)
    if target == "tabular":
        scored = score_tabular(data, n_categorical=len(model.table_schema("target")[1]))
        regions = manifest.get("sample_unit") == "region"
        table = profile_table(manifest, experiment, shard_dir) if regions else None
        if table is None:
            return scored
        return score_region_profiles(scored, table, data.test.attention)
    if target == "text":
        return score_text(data)
    if target == "graph":  # the physics baseline: an SC condition, an FC target
        physics = experiment.condition_graph == "sc" and experiment.target_graph in (None, "fc")
        # local sub-graphs of region data: per-edge baselines from the nodes' positions
        subgraphs = manifest.get("subgraphs") if experiment.condition_graph == "mpc" else None
        coordinates = subgraphs["coordinate_columns"] if subgraphs else None
        return score_graph(
            data, physics=physics and data.condition == "graph", coordinates=coordinates
        )
    if target == "point_cloud":
        return score_point_cloud(data)
    if target == "volume_series":  # BOLD windows (T, D, H, W): voxel-wise r over time, MSE
        return score_volume_series(data)
    raise ValueError(f"unknown target modality {target!r}")  # pragma: no cover - schema


def parcel_features(shard_dir, split: str, subjects: list[str]) -> np.ndarray | None:
    """The parcel structural features of each sample's subject, flattened ``(n, R * F)``
    (the ``ridge_parcel`` baseline's input); None when the shards hold none."""
    if "structural_features" not in read_manifest(shard_dir).get("shapes", {}):
        return None
    table = load_split_arrays(shard_dir, split, "structural_features")
    row = {s: i for i, s in enumerate(table["subject"])}
    if not set(subjects) <= set(row):
        return None
    features = np.asarray(table["data"], dtype=np.float64)
    return features[[row[s] for s in subjects]].reshape(len(subjects), -1)


def load_truth(
    truth_dir,
    subjects: list[str],
    *,
    processing: tuple[PreprocessSettings, ParcellateSettings] | None = None,
    columns: np.ndarray | None = None,
    grid: tuple[dict[str, float], float] | None = None,
) -> dict[str, RunTruth] | None:
    """Each test subject's synthetic truth (:class:`~modalmerge.evaluation.time_series.RunTruth`)
    on the target ROIs ``columns`` (None: all); None without a ``truth/`` directory or a
    subject's ``<subject>.npz``.

    With ``processing`` (the preprocess and parcellate settings of the observed
    runs) and ``truth/<subject>_bold-noisefree.nii.gz``, the noise-free run goes
    through :func:`~modalmerge.data.preprocess.preprocess_subject` and
    :func:`~modalmerge.data.parcellation.parcellate.parcellate_subject` with those
    settings, the subject's raw T1, the observed run's sidecar (TR, ``SampleMask``)
    and confounds if any, the dataset's atlas and labels, in a temporary folder:
    ``RunTruth.noisefree`` is its parcellated series.

    ``grid``: ``(native TR by subject, common TR)`` of shards written with
    ``shard.tr`` (the manifest's ``native_tr`` and ``tr``): the evoked truth and
    the noise-free series are resampled as the shard stage resampled the observed
    series (:func:`modalmerge.data.resample.resample_series`).
    """
    if truth_dir is None or not Path(truth_dir).is_dir():
        return None
    out = {}
    for s in subjects:
        path = Path(truth_dir) / f"{s}.npz"
        if not path.exists():
            return None
        with np.load(path, allow_pickle=False) as truth:
            if "evoked" not in truth:
                raise InputError(path, "synthetic truth has no 'evoked' array")
            evoked = truth["evoked"].astype(np.float32)
        if columns is not None:
            evoked = evoked[:, columns]
        resample = _truth_resampler(grid, s)
        evoked = resample(evoked)
        clean = Path(truth_dir) / f"{s}_bold-noisefree.nii.gz"
        if processing is None or not clean.exists():
            out[s] = RunTruth(evoked=evoked)
            continue
        series, volume_index = process_noise_free(clean, Path(truth_dir).parent, s, *processing)
        if columns is not None:
            series = series[:, columns]
        if grid is not None and s in grid[0]:  # the shards' rows: volumes of the common TR
            series = resample(series)
            volume_index = np.arange(len(series), dtype=np.int64)
        out[s] = RunTruth(evoked=evoked, noisefree=series, volume_index=volume_index)
    return out


def _truth_resampler(grid, subject: str):
    """A function resampling subject's truth series to the shards' common TR (identity
    without ``grid`` or when its TR is the common one)."""
    if grid is None or subject not in grid[0]:
        return lambda series: series
    from modalmerge.data.resample import resample_series

    native, common = grid[0][subject], grid[1]
    return lambda series: resample_series(series, native, common)


def process_noise_free(
    clean: Path,
    root: Path,
    subject: str,
    preprocess: PreprocessSettings,
    parcellate: ParcellateSettings,
) -> tuple[np.ndarray, np.ndarray]:
    """Preprocess and parcellate one noise-free run exactly as the observed run of
    ``subject`` under the dataset ``root`` (raw/, atlas/); returns its ROI series
    ``(T_kept, R)`` float32 (as the shards hold the observed one) and the original
    volume of each row."""
    from modalmerge.data.parcellation.parcellate import parcellate_subject
    from modalmerge.data.preprocess import preprocess_subject

    func = root / "raw" / subject / "func"
    sidecars = sorted(func.glob(f"{subject}_task-*_bold.json"))
    if len(sidecars) != 1:
        raise InputError(func, f"expected one BOLD sidecar of {subject}, found {len(sidecars)}")
    confounds = sorted(func.glob(f"{subject}_task-*_desc-confounds_timeseries.tsv"))
    atlas, labels = root / "atlas" / "atlas.nii.gz", root / "atlas" / "labels.tsv"
    with tempfile.TemporaryDirectory(prefix="modalmerge-noisefree-") as tmp:
        tmp = Path(tmp)
        bold = tmp / f"{subject}_bold.nii.gz"  # the observed run's sidecar beside it
        bold.symlink_to(clean.resolve())
        shutil.copyfile(sidecars[0], tmp / f"{subject}_bold.json")
        t1, cleaned, npz = tmp / "t1.nii.gz", tmp / "bold-clean.nii.gz", tmp / "parc.npz"
        t1_raw = root / "raw" / subject / "anat" / f"{subject}_T1w.nii.gz"
        preprocess_subject(
            t1_raw,
            bold,
            atlas,
            t1,
            cleaned,
            preprocess,
            confounds_path=confounds[0] if confounds else None,
        )
        parcellate_subject(t1, cleaned, atlas, labels, npz, parcellate)
        with np.load(npz, allow_pickle=False) as parc:
            series = parc["roi_timeseries"].astype(np.float32)  # as the shards hold it
            index = parc["volume_index"].astype(np.int64)
    return series, index
