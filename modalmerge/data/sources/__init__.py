"""Dataset sources: each maps data onto the ``raw/`` contract.

A source is a :class:`~modalmerge.data.sources._common.Source`, the ``SOURCE``
of the module that :data:`SOURCES` registers for a ``dataset.kind``. It says
once what it can do — its capability attributes (``writes_bold``,
``writes_confounds``, ``writes_text``, ``extra_anatomy``, ``label_anatomy``,
``sample_unit``) and :meth:`~modalmerge.data.sources._common.Source.task_label` —
and offers the interface the workflow calls (docs/architecture.md §2,
docs/data-sources.md):

``subject_ids(params) -> list[str]``
    The subjects (``sub-<label>``) the workflow will process, after the
    subject/session/task filters and, with ``on_error: exclude``, without the
    subjects that fail validation.
``write_cohort(params, root) -> None``
    ``raw/participants.tsv``, ``raw/dataset_description.json`` (and, with
    ``on_error: exclude``, ``raw/excluded.tsv``) plus ``atlas/`` from the
    configured atlas.
``write_subject(params, subject, root) -> None``
    ``raw/sub-XXX/anat|func/...`` with BIDS names, written atomically.

The synthetic generator (:mod:`.synthetic`, an adapter over
:mod:`modalmerge.data.synthetic.cohort`) and the packaged brainspace data are
sources like the layouts on disk.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from modalmerge.data.sources._common import Source

#: ``dataset.kind`` -> the module whose ``SOURCE`` implements it (imported on use, so
#: the workflow's code fingerprint of a source covers that module only).
SOURCES: dict[str, str] = {
    "synthetic": "modalmerge.data.sources.synthetic",
    "bids": "modalmerge.data.sources.bids",
    "fmriprep": "modalmerge.data.sources.fmriprep",
    "hcp": "modalmerge.data.sources.hcp",
    "brats": "modalmerge.data.sources.brats",
    "adni": "modalmerge.data.sources.adni",
    "brainspace": "modalmerge.data.sources.brainspace",
    "brainspace_group": "modalmerge.data.sources.brainspace_group",
}


def get_source(kind: str) -> Source:
    """Return the source that implements ``dataset.kind``.

    Parameters
    ----------
    kind : str
        One of :data:`SOURCES` (``synthetic``, ``bids``, ``fmriprep``, ``hcp``,
        ``brats``, ``adni``, ``brainspace``, ``brainspace_group``).

    Returns
    -------
    Source
        Its capabilities, ``subject_ids``, ``write_cohort`` and ``write_subject``.

    Raises
    ------
    ValueError
        If ``kind`` names no source.
    """
    if kind not in SOURCES:
        raise ValueError(f"dataset.kind {kind!r} is not one of {sorted(SOURCES)}")
    return importlib.import_module(SOURCES[kind]).SOURCE


__all__ = ["SOURCES", "get_source"]
