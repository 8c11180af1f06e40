"""Dataset sources: each maps a layout on disk onto the ``raw/`` contract.

A source is a module selected by ``dataset.kind`` in the configuration. Every
source exposes the interface of the synthetic generator, so the rest of the
workflow runs unchanged (docs/architecture.md §2, docs/data-sources.md):

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
"""

from __future__ import annotations

import importlib
from types import ModuleType

#: ``dataset.kind`` -> module implementing it.
SOURCES: dict[str, str] = {
    "synthetic": "modalmerge.data.synthetic.cohort",
    "bids": "modalmerge.data.sources.bids",
    "fmriprep": "modalmerge.data.sources.fmriprep",
    "hcp": "modalmerge.data.sources.hcp",
    "brats": "modalmerge.data.sources.brats",
    "adni": "modalmerge.data.sources.adni",
    "brainspace": "modalmerge.data.sources.brainspace",
    "brainspace_group": "modalmerge.data.sources.brainspace_group",
}


def get_source(kind: str) -> ModuleType:
    """Return the module that implements ``dataset.kind``.

    Parameters
    ----------
    kind : str
        One of :data:`SOURCES` (``synthetic``, ``bids``, ``fmriprep``, ``hcp``,
        ``brats``, ``adni``, ``brainspace``, ``brainspace_group``).

    Returns
    -------
    module
        A module with ``subject_ids``, ``write_cohort`` and ``write_subject``.

    Raises
    ------
    ValueError
        If ``kind`` names no source.
    """
    if kind not in SOURCES:
        raise ValueError(f"dataset.kind {kind!r} is not one of {sorted(SOURCES)}")
    return importlib.import_module(SOURCES[kind])


__all__ = ["SOURCES", "get_source"]
