"""Acquire: map a data source onto the ``raw/`` BIDS contract.

``dataset.kind`` picks the :class:`~modalmerge.data.sources._common.Source`
registered in :mod:`modalmerge.data.sources` (``synthetic``, the generator, or
one of the real-data sources). What a source writes is declared once, as
attributes of its ``Source``; the functions below are what
``workflow/rules/common.smk`` asks when it builds the DAG, and the two
subcommands' entry points.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from modalmerge.data import sources
from modalmerge.data.sources._common import (
    EXCLUDED_COLUMNS,
    Source,
    on_error_mode,
    write_tsv,
)
from modalmerge.io import atomic_path


def source_module(kind: str) -> Source:
    """The source that maps data of ``kind`` onto ``raw/`` (a ``Source``, not a module:
    the name stays for the workflow's callers)."""
    return sources.get_source(kind)


def source_module_name(kind: str) -> str:
    """Dotted name of the module that defines it (the acquire rules fingerprint its code)."""
    if kind not in sources.SOURCES:
        raise ValueError(f"dataset.kind {kind!r} is not one of {sorted(sources.SOURCES)}")
    return sources.SOURCES[kind]


def source_subject_ids(dataset: dict) -> list[str]:
    """Subjects of the configured dataset (called when the workflow's DAG is built)."""
    return source_module(dataset["kind"]).subject_ids(dataset.get("params", {}))


def source_writes(dataset: dict) -> dict[str, bool]:
    """Which optional per-subject files the source writes: ``bold``, ``text``, ``confounds``
    (``Source.writes_bold``, ``writes_text``, ``writes_confounds``)."""
    return source_module(dataset["kind"]).writes()


def source_anatomy(dataset: dict) -> tuple[list[str], list[str]]:
    """Anatomy images besides the T1w that the source writes (``anat/sub-X_<name>.nii.gz``),
    and which of them are label images: BraTS's contrasts and segmentation. They travel
    into the shards as further channels of the image (the T1w is channel 0)."""
    return source_module(dataset["kind"]).anatomy(dataset.get("params") or {})


def source_point_cloud(dataset: dict) -> bool:
    """Whether the source writes a surface point cloud per subject
    (``anat/sub-X_desc-white_pointcloud.npz``; ``Source.point_cloud_for``)."""
    return source_module(dataset["kind"]).writes_point_cloud(dataset.get("params") or {})


def source_connectome(dataset: dict) -> bool:
    """Whether the source writes a structural connectome per subject
    (``raw/derivatives/connectome/sub-X_desc-sc_connectome.tsv``; ``Source.connectome_for``)."""
    return source_module(dataset["kind"]).writes_connectome(dataset.get("params") or {})


def source_sample_unit(dataset: dict) -> str:
    """``"subject"`` (the subject DAG) or ``"region"`` (sources of group data whose
    samples are regions, ``Source.sample_unit``)."""
    return source_module(dataset["kind"]).sample_unit


def source_task(dataset: dict) -> str:
    """The BIDS task label of the functional runs the source writes."""
    return source_module(dataset["kind"]).task_label(dataset.get("params", {}))


def source_subject_params(dataset: dict, subject: str) -> dict:
    """``dataset`` with only the params that concern ``subject`` (``Source.subject_params``):
    what ``acquire_subject`` is given, so a cohort change reruns no written subject."""
    params = dataset.get("params") or {}
    return {**dataset, "params": source_module(dataset["kind"]).subject_params(params, subject)}


def source_input_files(dataset: dict, subject: str) -> list[str]:
    """The source files ``acquire_subject`` reads for ``subject`` (``Source.input_files``)."""
    return source_module(dataset["kind"]).input_files(dataset.get("params") or {}, subject)


def source_cohort_files(dataset: dict, part: str = "table") -> list[str]:
    """The source files ``acquire_cohort`` (part ``table``) or ``acquire_atlas`` (part
    ``atlas``) reads (``Source.cohort_input_files``)."""
    params = dataset.get("params") or {}
    return source_module(dataset["kind"]).cohort_input_files(params, part)


def source_atlas_dataset(dataset: dict) -> dict:
    """``dataset`` with only the params that decide ``atlas/`` (``Source.atlas_params``)."""
    params = dataset.get("params") or {}
    return {**dataset, "params": source_module(dataset["kind"]).atlas_params(params)}


def acquire_cohort(
    dataset: dict, root: str | Path, parts: tuple[str, ...] = ("table", "atlas")
) -> None:
    """Write the cohort-level files: participants, dataset description, events and
    ``raw/excluded.tsv`` (part ``table``), the atlas (part ``atlas``).

    ``raw/excluded.tsv`` (``participant_id``, ``reason``) always exists after part
    ``table``: the source's own with ``on_error: exclude``, otherwise (``on_error: stop``,
    or a source without that mode, e.g. synthetic) a header-only table, so the workflow
    can declare it as an output and show it in the report."""
    params = dataset.get("params") or {}
    source = source_module(dataset["kind"])
    source.write_cohort(params, Path(root), parts=tuple(parts))
    if "table" in parts:
        excluded = Path(root) / "raw" / "excluded.tsv"
        # never a table left by an earlier `on_error: exclude` run of this dataset
        if on_error_mode(params) != "exclude" or not excluded.exists():
            with atomic_path(excluded) as tmp:
                write_tsv(pd.DataFrame(columns=list(EXCLUDED_COLUMNS)), tmp)


def acquire_subject(dataset: dict, subject: str, root: str | Path) -> None:
    """Write one subject's anatomy, functional run, description text (and truth, if synthetic)."""
    from modalmerge.data.checks import check_subject_label

    check_subject_label(subject, "--subject")  # never a path: no separators, no '..'
    source_module(dataset["kind"]).write_subject(dataset.get("params", {}), subject, Path(root))


def check_settings(config: dict, subjects: list[str], root: str | Path) -> None:
    """The settings against the data, when the workflow's DAG is built (issue 11).

    Each BOLD run must be long enough for the band-pass filter
    (``preprocess.high_pass``/``low_pass``) and for one shard window
    (``shard.window``), and its TR must put the Nyquist frequency above the
    cutoffs (:func:`modalmerge.data.checks.check_run_settings`). The data
    allow it here for the synthetic source (length and TR are settings) and
    for real runs already placed under ``root/raw/`` (a header and a sidecar
    read per subject, no voxels); a run not yet acquired is checked for the
    filter and TR at the start of preprocess, and for the window at the shard
    stage.
    """
    from modalmerge.data import checks

    dataset = config["dataset"]
    from modalmerge.settings import PreprocessSettings, ShardSettings

    preprocess = PreprocessSettings.coerce(config.get("preprocess") or {})
    shard = ShardSettings.coerce(config.get("shard") or {})
    planned = source_module(dataset["kind"]).planned_runs
    if planned is not None:  # length and TR are settings of the source (the generator)
        where = f"dataset.params ({dataset['kind']})"
        for n_volumes, tr in planned(dataset.get("params") or {}):
            checks.check_run_settings(where, n_volumes, tr, preprocess, shard)
        return
    if not source_writes(dataset)["bold"] or source_sample_unit(dataset) != "subject":
        return
    import json

    import nibabel as nib

    task = source_task(dataset)
    for subject in subjects:
        bold = Path(root) / "raw" / subject / "func" / f"{subject}_task-{task}_bold.nii.gz"
        if not bold.exists():
            continue
        sidecar = bold.with_name(bold.name.replace(".nii.gz", ".json"))
        try:  # raw/ is written by the acquire stage, atomically; anything odd: preprocess sees it
            shape = nib.load(bold).shape
            tr = float(json.loads(sidecar.read_text())["RepetitionTime"])
        except (OSError, ValueError, KeyError, TypeError):
            continue
        if len(shape) == 4:
            checks.check_run_settings(bold, shape[3], tr, preprocess, shard)
