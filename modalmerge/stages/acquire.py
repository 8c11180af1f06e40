"""Acquire: map a data source onto the ``raw/`` BIDS contract.

``dataset.kind`` picks the source module: ``synthetic`` (the generator) or one of
the real-data layouts in :mod:`modalmerge.data.sources`. Every source module has
the same three functions: ``subject_ids(params)``, ``write_cohort(params, root)``
and ``write_subject(params, subject, root)``.
"""

from __future__ import annotations

from pathlib import Path
from types import ModuleType

from modalmerge.data import sources


def source_module(kind: str) -> ModuleType:
    """The module that maps data of ``kind`` onto ``raw/``."""
    return sources.get_source(kind)


def source_module_name(kind: str) -> str:
    """Dotted name of that module (the acquire rules fingerprint its code)."""
    if kind not in sources.SOURCES:
        raise ValueError(f"dataset.kind {kind!r} is not one of {sorted(sources.SOURCES)}")
    return sources.SOURCES[kind]


def source_subject_ids(dataset: dict) -> list[str]:
    """Subjects of the configured dataset (called when the workflow's DAG is built)."""
    if dataset["kind"] == "synthetic":  # cheap: no imaging libraries at DAG-building time
        from modalmerge.data.synthetic.params import subject_ids

        return subject_ids(dataset.get("params", {}))
    return list(source_module(dataset["kind"]).subject_ids(dataset.get("params", {})))


def source_writes(dataset: dict) -> dict[str, bool]:
    """Which optional per-subject files the source writes: ``bold``, ``text``, ``confounds``.

    A source module that writes a confounds TSV beside every BOLD run says so
    with ``WRITES_CONFOUNDS = True``, one without BOLD runs (anatomy only: ADNI,
    BraTS) with ``WRITES_BOLD = False``; only the synthetic generator writes texts.
    """
    kind = dataset["kind"]
    if kind == "synthetic":  # cheap: no imaging libraries at DAG-building time
        return {"bold": True, "text": True, "confounds": False}
    module = source_module(kind)
    return {
        "bold": bool(getattr(module, "WRITES_BOLD", True)),
        "text": False,
        "confounds": bool(getattr(module, "WRITES_CONFOUNDS", False)),
    }


def source_anatomy(dataset: dict) -> tuple[list[str], list[str]]:
    """Anatomy images besides the T1w that the source writes (``anat/sub-X_<name>.nii.gz``),
    and which of them are label images: BraTS's contrasts and segmentation. They travel
    into the shards as further channels of the image (the T1w is channel 0)."""
    if dataset["kind"] == "synthetic":
        return [], []
    module = source_module(dataset["kind"])
    extra = [str(n) for n in getattr(module, "EXTRA_ANATOMY", ())]
    return extra, [str(n) for n in getattr(module, "LABEL_ANATOMY", ()) if n in extra]


def source_sample_unit(dataset: dict) -> str:
    """``"subject"`` (the subject DAG) or ``"region"`` (sources of group data whose
    samples are regions; the module says so with ``SAMPLE_UNIT = "region"``)."""
    if dataset["kind"] == "synthetic":
        return "subject"
    return str(getattr(source_module(dataset["kind"]), "SAMPLE_UNIT", "subject"))


def source_task(dataset: dict) -> str:
    """The BIDS task label of the functional runs the source writes."""
    params = dataset.get("params", {})
    if dataset["kind"] == "synthetic":
        from modalmerge.data.synthetic.params import SyntheticParams

        return SyntheticParams.from_dict(params).task
    module = source_module(dataset["kind"])
    if hasattr(module, "task_label"):
        return module.task_label(params)
    return str(params.get("task", "rest"))


def acquire_cohort(dataset: dict, root: str | Path) -> None:
    """Write the cohort-level files: participants, dataset description, events, atlas."""
    source_module(dataset["kind"]).write_cohort(dataset.get("params", {}), Path(root))


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
    preprocess, shard = config.get("preprocess") or {}, config.get("shard") or {}
    if dataset["kind"] == "synthetic":
        from modalmerge.data.synthetic.params import SyntheticParams

        p = SyntheticParams.from_dict(dataset.get("params", {}))
        checks.check_run_settings(
            "dataset.params (synthetic)", p.n_timepoints, p.tr, preprocess, shard
        )
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
