"""BraTS cases: four co-registered MRI contrasts and a tumour segmentation, no BOLD.

Layout read (``naming: brats2020``, the default)::

    <path>/<case>/<case>_{t1,t1ce,t2,flair,seg}.nii.gz

or (``naming: brats2023``) ``<case>/<case>-{t1n,t1c,t2w,t2f,seg}.nii.gz``.

Written per case (subject ``sub-<case without non-alphanumerics>``)::

    raw/sub-X/anat/sub-X_T1w.nii.gz  sub-X_ce-gd_T1w.nii.gz  sub-X_T2w.nii.gz
    raw/sub-X/anat/sub-X_FLAIR.nii.gz  sub-X_dseg.nii.gz  sub-X_dseg.tsv

so any contrast can condition another (image -> image) or the segmentation
(image -> segmentation). All five images must share one grid; the
segmentation must hold only the BraTS labels.

Parameters: ``path``, ``subjects`` (case names or labels), ``naming``,
``participants`` (a CSV with a ``BraTS_2020_subject_ID``-like id column named
by ``participants_id_column``, default the first column; ``Age`` and
``Grade`` become age and group), ``place``, ``on_error``, ``atlas``
(default none).
"""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd

from modalmerge.data.nifti import check_same_grid
from modalmerge.data.sources import _common, validate
from modalmerge.data.sources._common import Source, SubjectFiles
from modalmerge.io import InputError, require_file

#: file tag -> contract suffix, per naming scheme; the segmentation is last.
NAMING = {
    "brats2020": (
        "_",
        {"t1": "T1w", "t1ce": "ce-gd_T1w", "t2": "T2w", "flair": "FLAIR", "seg": "dseg"},
    ),
    "brats2023": (
        "-",
        {"t1n": "T1w", "t1c": "ce-gd_T1w", "t2w": "T2w", "t2f": "FLAIR", "seg": "dseg"},
    ),
}
#: label value -> name, per naming scheme.
SEG_LABELS = {
    "brats2020": {0: "background", 1: "necrotic_core", 2: "edema", 4: "enhancing_tumor"},
    "brats2023": {0: "background", 1: "necrotic_core", 2: "edema", 3: "enhancing_tumor"},
}
KEYS = {"naming", "participants", "participants_id_column"}


def _naming(params: dict) -> str:
    naming = params.get("naming", "brats2020")
    if naming not in NAMING:
        raise ValueError(f"dataset.params.naming must be one of {sorted(NAMING)}, not {naming!r}")
    return naming


def _cases(params: dict) -> dict[str, Path]:
    path = _common.dataset_path(params)
    sep = NAMING[_naming(params)][0]
    return {
        "sub-" + _common.bids_label(p.name): p
        for p in sorted(path.iterdir())
        if p.is_dir() and any(p.glob(f"{p.name}{sep}*.nii.gz"))
    }


def _on_disk(params: dict) -> list[str]:
    wanted = _common.subject_filter(params)
    if wanted is not None:  # accept raw case names in the filter too
        wanted |= {"sub-" + _common.bids_label(_common.strip_prefix(s, "sub")) for s in wanted}
    return [s for s in _cases(params) if wanted is None or s in wanted]


def check_segmentation(path: Path, img: nib.Nifti1Image, allowed: set[int]) -> None:
    """Require integer labels from ``allowed`` only."""
    values = np.unique(np.asarray(img.dataobj))
    if not np.all(np.equal(np.mod(values, 1), 0)):
        raise InputError(path, "segmentation holds non-integer values")
    extra = sorted(set(values.astype(int).tolist()) - allowed)
    if extra:
        raise InputError(
            path, f"segmentation holds label(s) {extra[:5]}, expected {sorted(allowed)}"
        )


def _collect(params: dict, subject: str) -> SubjectFiles:
    cases = _cases(params)
    if subject not in cases:
        raise InputError(_common.dataset_path(params) / subject, "BraTS case folder is missing")
    case = cases[subject]
    naming = _naming(params)
    sep, tags = NAMING[naming]
    files = SubjectFiles(subject)
    ref = None
    for tag, suffix in tags.items():
        path = case / f"{case.name}{sep}{tag}.nii.gz"
        img = validate.load_header(path, f"{tag} image")
        validate.require_ndim(path, img, 3, f"{tag} image")
        if ref is None:
            ref = (path, img)
        else:
            check_same_grid(img, ref[1], path, f"{tag} image", f"the grid of {ref[0].name}", "")
        files.anat[suffix] = path
    seg = files.anat["dseg"]
    labels = SEG_LABELS[naming]
    try:
        check_segmentation(seg, nib.load(seg), set(labels))
    except (EOFError, OSError, ValueError) as err:
        if isinstance(err, InputError):
            raise
        raise InputError(seg, f"truncated or corrupt image data ({type(err).__name__})") from None
    table = pd.DataFrame({"index": list(labels), "name": list(labels.values())})
    files.anat_extra["dseg.tsv"] = table.to_csv(sep="\t", index=False)
    return files


def _participants(params: dict) -> pd.DataFrame | None:
    if not params.get("participants"):
        return None
    csv = require_file(Path(params["participants"]).expanduser(), "participants CSV")
    raw = pd.read_csv(csv)
    column = params.get("participants_id_column", raw.columns[0])
    if column not in raw:
        raise InputError(csv, f"has no {column} column")
    table = pd.DataFrame(
        {"participant_id": ["sub-" + _common.bids_label(str(s)) for s in raw[column]]}
    )
    table["age"] = pd.to_numeric(raw["Age"], errors="coerce") if "Age" in raw else np.nan
    table["sex"] = pd.NA
    table["group"] = raw["Grade"] if "Grade" in raw else pd.NA
    table.attrs["source"] = str(csv)
    return table


SOURCE = Source(
    kind="brats",
    keys=KEYS,
    on_disk=_on_disk,
    participants=_participants,
    collect=_collect,
    default_atlas=None,
    complete_table=False,
    writes_bold=False,  # anatomy only: the workflow runs no BOLD stages for it
    # anatomy besides the T1w (anat/sub-X_<name>.nii.gz), travelling as image channels;
    # the label image among them is resampled nearest-neighbour and never normalised
    extra_anatomy=("ce-gd_T1w", "T2w", "FLAIR", "dseg"),
    label_anatomy=("dseg",),
)


# the interface the workflow calls (modalmerge.data.sources)
subject_ids, write_cohort, write_subject = (
    SOURCE.subject_ids,
    SOURCE.write_cohort,
    SOURCE.write_subject,
)
