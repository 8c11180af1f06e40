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
    source_module(dataset["kind"]).write_subject(dataset.get("params", {}), subject, Path(root))
