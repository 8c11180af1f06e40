"""ADNI-style data: a T1w NIfTI per subject and visit plus an ADNIMERGE-like clinical CSV.

Layouts read (``layout``; see :mod:`.adni_layouts`)::

    template  <path>/{subject}/{visit}/<one .nii or .nii.gz>    (``images``)
    ida       <path>[/ADNI]/002_S_0295/MPR__GradWarp__B1_Correction__N3__Scaled/
                  2006-11-02_08_16_44.0/I40966/ADNI_002_S_0295_MR_..._I40966.nii
    clinica   <path>/sub-ADNI002S0295/ses-M000/anat/sub-ADNI002S0295_ses-M000_T1w.nii.gz
    <path>/ADNIMERGE.csv or ADNIMERGE_<date>.csv       (``clinical``)

A DICOM download stops with the conversion to run (dcm2niix or clinica).

Parameters (``dataset.params``)
-------------------------------
path : str
layout : {"template", "ida", "clinica"}, default ``"template"``
description : str, optional
    ``ida``: keep series folders whose name holds it (``MPRAGE``) or matches a glob.
clinical : str, default ``ADNIMERGE.csv``, else the newest ``ADNIMERGE*.csv`` under ``path``
    Columns used: the id column, ``VISCODE``, ``AGE`` (at baseline; plus
    ``Years_bl`` at later visits), ``PTGENDER``, ``DX`` (or ``DX_bl``), and the
    ``tabular`` columns.
id_column : str, default ``"PTID"``
    The column naming subject folders; the subject id is ``sub-`` plus its
    alphanumerics (``002_S_0295`` -> ``sub-002S0295``).
visit : str, default ``"bl"``
    The ``VISCODE`` whose image and clinical row are used.
images : str, default ``"{subject}/{visit}/*.nii*"``
    Glob template; exactly one file must match per subject.
tabular : list of str, default those of ``MMSE, CDRSB, ADAS13, PTEDUCAT, APOE4`` present
    Clinical columns carried into ``participants.tsv`` after the contract
    columns (age, sex, group): the tabular modality.

Only anatomy is written (``raw/sub-X/anat/sub-X_T1w.nii.gz``); ADNI has no BOLD here.
"""

from __future__ import annotations

import functools
import logging
from pathlib import Path

import numpy as np
import pandas as pd

from modalmerge.data.sources import _common, adni_layouts, validate
from modalmerge.data.sources._common import Source, SubjectFiles
from modalmerge.io import InputError, require_file

KEYS = {"clinical", "id_column", "visit", "images", "tabular", "layout", "description"}
LAYOUTS = ("template", "ida", "clinica")
log = logging.getLogger(__name__)
DEFAULT_TABULAR = ["MMSE", "CDRSB", "ADAS13", "PTEDUCAT", "APOE4"]
SEX = {"male": "M", "female": "F", "m": "M", "f": "F"}


def _template(params: dict) -> str:
    return str(params.get("images", "{subject}/{visit}/*.nii*"))


def _visit(params: dict) -> str:
    return str(params.get("visit", "bl"))


def _clinical_path(params: dict) -> Path:
    """``clinical``, or ``ADNIMERGE.csv``, or the newest dated ``ADNIMERGE_<date>.csv`` under ``path``."""
    root = _common.dataset_path(params)
    if params.get("clinical"):
        path = Path(params["clinical"]).expanduser()
        return path if path.is_absolute() else root / path
    if (root / "ADNIMERGE.csv").exists():
        return root / "ADNIMERGE.csv"
    dated = sorted(root.glob("ADNIMERGE*.csv"), key=lambda p: p.stat().st_mtime)
    if len(dated) > 1:
        log.info("%s: %d ADNIMERGE tables; using the newest, %s", root, len(dated), dated[-1].name)
    return dated[-1] if dated else root / "ADNIMERGE.csv"


@functools.lru_cache(maxsize=4)
def _read_clinical(csv: str, mtime_ns: int) -> pd.DataFrame:
    """ADNIMERGE, read once per file version (the IDA layout consults it for every subject)."""
    return pd.read_csv(csv, low_memory=False)


def _layout(params: dict) -> str:
    layout = params.get("layout", "template")
    if layout not in LAYOUTS:
        raise ValueError(f"dataset.params.layout must be one of {list(LAYOUTS)}, not {layout!r}")
    return layout


def _images_by_subject(params: dict) -> dict[str, list[Path]]:
    """Subject (PTID) -> matching image files for the visit, per ``layout``."""
    root = _common.dataset_path(params)
    layout = _layout(params)
    if layout == "clinica":
        return adni_layouts.clinica_images(root, _visit(params))
    if layout == "ida":
        csv = require_file(
            _clinical_path(params), "clinical CSV (ADNIMERGE, maps images to visits)"
        )
        clinical = _read_clinical(str(csv), csv.stat().st_mtime_ns)
        return adni_layouts.ida_images(root, _visit(params), params.get("description"), clinical)
    parts = _template(params).replace("{visit}", _visit(params)).split("/")
    if "{subject}" not in parts:
        raise ValueError("dataset.params.images must have '{subject}' as one whole path component")
    position = parts.index("{subject}")
    pattern = "/".join("*" if p == "{subject}" else p for p in parts)
    found: dict[str, list[Path]] = {}
    for path in sorted(root.glob(pattern)):
        found.setdefault(path.relative_to(root).parts[position], []).append(path)
    if not found:
        adni_layouts.dicom_check(adni_layouts.ida_root(root))
    return found


def _label(name: str) -> str:
    return "sub-" + _common.bids_label(str(name))


def _on_disk(params: dict) -> list[str]:
    wanted = _common.subject_filter(params)
    if wanted is not None:
        wanted |= {_label(_common.strip_prefix(s, "sub")) for s in wanted}
    found = sorted({_label(name) for name in _images_by_subject(params)})
    return [s for s in found if wanted is None or s in wanted]


def _participants(params: dict) -> pd.DataFrame:
    csv = require_file(_clinical_path(params), "clinical CSV")
    raw = pd.read_csv(csv, low_memory=False)
    id_column = params.get("id_column", "PTID")
    missing = [c for c in (id_column, "VISCODE") if c not in raw]
    if missing:
        raise InputError(csv, f"has no column(s) {missing}")
    rows = raw[raw["VISCODE"].astype(str) == _visit(params)].reset_index(drop=True)
    table = pd.DataFrame({"participant_id": [_label(v) for v in rows[id_column]]})
    age = pd.to_numeric(rows["AGE"], errors="coerce") if "AGE" in rows else np.nan
    if "Years_bl" in rows:
        age = age + pd.to_numeric(rows["Years_bl"], errors="coerce").fillna(0.0)
    table["age"] = age
    table["sex"] = (
        rows["PTGENDER"].astype(str).str.lower().map(SEX) if "PTGENDER" in rows else pd.NA
    )
    dx = "DX" if "DX" in rows else ("DX_bl" if "DX_bl" in rows else None)
    table["group"] = rows[dx] if dx else pd.NA
    columns = params.get("tabular")
    if columns is None:
        columns = [c for c in DEFAULT_TABULAR if c in rows]
    absent = [c for c in columns if c not in rows]
    if absent:
        raise InputError(csv, f"has no tabular column(s) {absent}")
    for column in columns:
        table[column] = rows[column].to_numpy()
    table.attrs["source"] = str(csv)
    return table


def _collect(params: dict, subject: str) -> SubjectFiles:
    found = _images_by_subject(params)
    images = {_label(k): (k, v) for k, v in found.items()}
    where = _common.dataset_path(params)
    if _layout(params) == "template":
        where = where / _template(params).replace("{visit}", _visit(params))
    if subject not in images:
        raise InputError(where, f"no image for {subject} at visit {_visit(params)!r}")
    ptid, paths = images[subject]
    if len(paths) > 1:
        raise InputError(paths[0].parent, adni_layouts.several(ptid, paths))
    t1 = paths[0]
    validate.require_ndim(t1, validate.load_header(t1, "T1w image"), 3, "T1w image")
    return SubjectFiles(subject, anat={"T1w": t1})


SOURCE = Source(
    kind="adni",
    keys=KEYS,
    on_disk=_on_disk,
    participants=_participants,
    collect=_collect,
    default_atlas={"kind": "dk", "resolution_mm": 2},  # as every real source (_common)
    complete_table=False,
    writes_bold=False,  # anatomy only: the workflow runs no BOLD stages for it
)


# the interface the workflow calls (modalmerge.data.sources)
subject_ids, write_cohort, write_subject = (
    SOURCE.subject_ids,
    SOURCE.write_cohort,
    SOURCE.write_subject,
)
