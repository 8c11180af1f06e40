"""BraTS cases: four co-registered MRI contrasts and a tumour segmentation, no BOLD.

Layout read (``naming: brats2020``, the default)::

    <path>/<case>/<case>_{t1,t1ce,t2,flair,seg}.nii[.gz]     (the 2020 mirrors ship .nii)

or (``naming: brats2023`` / ``brats2024``) ``<case>/<case>-{t1n,t1c,t2w,t2f,seg}.nii.gz``.
A case whose segmentation has another name (2020's case 355, ``W39_1998.09.19_Segm.nii``)
uses its one ``*seg*``/``*Segm*`` file. ``require_seg: false`` (validation sets) reads
and places no segmentation. ``brats2024`` adds label 4 (resection cavity); ``labels``
(``{value: name}``) sets any other label set.

Written per case (subject ``sub-<case without non-alphanumerics>``)::

    raw/sub-X/anat/sub-X_T1w.nii.gz  sub-X_ce-gd_T1w.nii.gz  sub-X_T2w.nii.gz
    raw/sub-X/anat/sub-X_FLAIR.nii.gz  sub-X_dseg.nii.gz  sub-X_dseg.tsv

so any contrast can condition another (image -> image) or the segmentation
(image -> segmentation). All five images must share one grid; the
segmentation must hold only the BraTS labels.

Parameters: ``path``, ``subjects`` (case names or labels), ``naming``,
``require_seg``, ``labels``, ``participants`` (one CSV or a list: ``name_mapping.csv``,
``survival_info.csv``; the id column is the one whose values match the case folders,
or ``participants_id_column``; ``Age`` and ``Grade`` become age and group; a case a
table lacks gets NA with a warning), ``place``, ``on_error``, ``atlas`` (default none).
"""

from __future__ import annotations

import logging
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd

from modalmerge.data.nifti import check_same_grid
from modalmerge.data.sources import _common, validate
from modalmerge.data.sources._common import Source, SubjectFiles
from modalmerge.io import InputError, require_file

#: file tag -> contract suffix, per naming scheme; the segmentation is last.
_2023 = ("-", {"t1n": "T1w", "t1c": "ce-gd_T1w", "t2w": "T2w", "t2f": "FLAIR", "seg": "dseg"})
NAMING = {
    "brats2020": (
        "_",
        {"t1": "T1w", "t1ce": "ce-gd_T1w", "t2": "T2w", "flair": "FLAIR", "seg": "dseg"},
    ),
    "brats2023": _2023,
    "brats2024": _2023,  # the post-treatment glioma set: 2023's names, one label more
}
#: label value -> name, per naming scheme.
SEG_LABELS = {
    "brats2020": {0: "background", 1: "necrotic_core", 2: "edema", 4: "enhancing_tumor"},
    "brats2023": {0: "background", 1: "necrotic_core", 2: "edema", 3: "enhancing_tumor"},
    "brats2024": {
        0: "background",
        1: "non_enhancing_tumor_core",
        2: "surrounding_fluid_hyperintensity",
        3: "enhancing_tumor",
        4: "resection_cavity",
    },  # fmt: skip
}
KEYS = {"naming", "participants", "participants_id_column", "require_seg", "labels"}
EXTS = (".nii.gz", ".nii")
log = logging.getLogger(__name__)


def _naming(params: dict) -> str:
    naming = params.get("naming", "brats2020")
    if naming not in NAMING:
        raise ValueError(f"dataset.params.naming must be one of {sorted(NAMING)}, not {naming!r}")
    return naming


def labels(params: dict) -> dict[int, str]:
    """The segmentation's labels: ``labels`` (``{value: name}``) or the naming's set."""
    given = params.get("labels")
    if given is None:
        return SEG_LABELS[_naming(params)]
    if not isinstance(given, dict) or not given:
        raise ValueError(
            "dataset.params.labels must map label values to names, e.g. {0: background, 4: resection_cavity}"
        )
    return {0: "background", **{int(k): str(v) for k, v in given.items()}}


def _cases(params: dict) -> dict[str, Path]:
    path = _common.dataset_path(params)
    sep = NAMING[_naming(params)][0]
    return {
        "sub-" + _common.bids_label(p.name): p
        for p in sorted(path.iterdir())
        if p.is_dir() and any(p.glob(f"{p.name}{sep}*.nii*"))
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
            path,
            f"segmentation holds label(s) {extra[:5]}, expected {sorted(allowed)}"
            " (set dataset.params.labels, or naming: brats2024 for the resection cavity, 4)",
        )


def image(case: Path, sep: str, tag: str) -> Path:
    """``<case>/<case><sep><tag>.nii.gz``, or ``.nii`` (BraTS 2020 mirrors); for the
    segmentation, else the one ``*seg*``/``*Segm*`` file (case 355's ``W39_..._Segm.nii``)."""
    for ext in EXTS:
        path = case / f"{case.name}{sep}{tag}{ext}"
        if path.exists():
            return path
    if tag == "seg":
        odd = [
            p for p in sorted(case.iterdir()) if "seg" in p.name.lower() and p.name.endswith(EXTS)
        ]
        if len(odd) == 1:
            return odd[0]
        if odd:
            raise InputError(
                case, f"{len(odd)} segmentation files ({', '.join(p.name for p in odd)}); keep one"
            )
    return case / f"{case.name}{sep}{tag}{EXTS[0]}"  # missing: load_header names it


def _collect(params: dict, subject: str) -> SubjectFiles:
    cases = _cases(params)
    if subject not in cases:
        raise InputError(_common.dataset_path(params) / subject, "BraTS case folder is missing")
    case = cases[subject]
    sep, tags = NAMING[_naming(params)]
    files = SubjectFiles(subject)
    ref = None
    wanted = _anatomy(params)
    for tag, suffix in tags.items():
        if suffix not in ("T1w", *wanted):
            continue
        path = image(case, sep, tag)
        img = validate.load_header(path, f"{tag} image")
        validate.require_ndim(path, img, 3, f"{tag} image")
        if ref is None:
            ref = (path, img)
        else:
            check_same_grid(img, ref[1], path, f"{tag} image", f"the grid of {ref[0].name}", "")
        files.anat[suffix] = path
    if "dseg" not in files.anat:
        return files
    seg, table = files.anat["dseg"], labels(params)
    try:
        check_segmentation(seg, nib.load(seg), set(table))
    except (EOFError, OSError, ValueError) as err:
        if isinstance(err, InputError):
            raise
        raise InputError(seg, f"truncated or corrupt image data ({type(err).__name__})") from None
    frame = pd.DataFrame({"index": list(table), "name": list(table.values())})
    files.anat_extra["dseg.tsv"] = frame.to_csv(sep="\t", index=False)
    return files


def _anatomy(params: dict) -> tuple[str, ...]:
    """``require_seg: false`` (validation sets) places no segmentation for any case."""
    extra = ("ce-gd_T1w", "T2w", "FLAIR", "dseg")
    return extra if params.get("require_seg", True) else extra[:-1]


def id_column(raw: pd.DataFrame, cases: set[str], given: str | None, csv: Path) -> str:
    """The column naming the cases: ``given``, else the one whose values match most
    case folders (``name_mapping.csv`` starts with ``Grade``)."""
    if given is not None:
        if given not in raw:
            raise InputError(csv, f"has no {given} column")
        return given
    hits = {c: raw[c].astype(str).map(lambda v: "sub-" + _common.bids_label(v) if v.strip("_- ") else "").isin(cases).sum()
            for c in raw.columns}  # fmt: skip
    best = max(hits, key=hits.get)
    if hits[best] == 0:
        raise InputError(csv, f"no column holds the case names ({sorted(cases)[:2]} ...): set "
                         "dataset.params.participants_id_column")  # fmt: skip
    return best


def _table(csv: Path, cases: set[str], given: str | None) -> pd.DataFrame:
    raw = pd.read_csv(require_file(csv, "participants CSV"))
    column = id_column(raw, cases, given, csv)
    ids = raw[column].astype(str).map(lambda v: "sub-" + _common.bids_label(v))
    out = pd.DataFrame({"participant_id": ids})
    if "Age" in raw:
        out["age"] = pd.to_numeric(raw["Age"], errors="coerce")
    if "Grade" in raw:
        out["group"] = raw["Grade"]
    out = out.drop_duplicates("participant_id").set_index("participant_id")
    missing = sorted(cases - set(out.index))
    if missing:
        log.warning("%s lists %d of %d cases; the other %d get NA (e.g. %s)", csv,
                    len(cases) - len(missing), len(cases), len(missing), ", ".join(missing[:3]))  # fmt: skip
    return out


def _participants(params: dict) -> pd.DataFrame | None:
    """The cases with ``Age`` and ``Grade`` from one or several CSVs (``name_mapping.csv``,
    ``survival_info.csv``); a case a table lacks gets NA, with a warning."""
    csvs = _common.as_list(params.get("participants"))
    if not csvs:
        return None
    cases = set(_on_disk(params))
    table = pd.DataFrame(index=pd.Index(sorted(cases), name="participant_id"))
    for csv in csvs:
        part = _table(Path(csv).expanduser(), cases, params.get("participants_id_column"))
        table = table.join(part[[c for c in part if c not in table]], how="left")
    table = table.reset_index()
    for column in ("age", "sex", "group"):
        if column not in table:
            table[column] = pd.NA
    table.attrs["source"] = ", ".join(csvs)
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
    anatomy_for=_anatomy,
)


# the interface the workflow calls (modalmerge.data.sources)
subject_ids, write_cohort, write_subject = (
    SOURCE.subject_ids,
    SOURCE.write_cohort,
    SOURCE.write_subject,
)
