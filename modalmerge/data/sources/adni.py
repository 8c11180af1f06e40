"""ADNI-style data: a T1w NIfTI per subject and visit plus an ADNIMERGE-like clinical CSV.

Layout read (``images`` template, relative to ``path``)::

    <path>/{subject}/{visit}/<one .nii or .nii.gz>     e.g. 002_S_0295/bl/MPRAGE.nii.gz
    <path>/ADNIMERGE.csv                               (``clinical``)

Parameters (``dataset.params``)
-------------------------------
path : str
clinical : str, default ``"ADNIMERGE.csv"`` (relative to ``path`` unless absolute)
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

from pathlib import Path

import numpy as np
import pandas as pd

from modalmerge.data.sources import _common, validate
from modalmerge.data.sources._common import Source, SubjectFiles
from modalmerge.io import InputError, require_file

KEYS = {"clinical", "id_column", "visit", "images", "tabular"}
DEFAULT_TABULAR = ["MMSE", "CDRSB", "ADAS13", "PTEDUCAT", "APOE4"]
SEX = {"male": "M", "female": "F", "m": "M", "f": "F"}


def _template(params: dict) -> str:
    return str(params.get("images", "{subject}/{visit}/*.nii*"))


def _visit(params: dict) -> str:
    return str(params.get("visit", "bl"))


def _clinical_path(params: dict) -> Path:
    path = Path(params.get("clinical", "ADNIMERGE.csv")).expanduser()
    return path if path.is_absolute() else _common.dataset_path(params) / path


def _images_by_subject(params: dict) -> dict[str, list[Path]]:
    """Subject folder name -> matching image files for the visit."""
    root = _common.dataset_path(params)
    parts = _template(params).replace("{visit}", _visit(params)).split("/")
    if "{subject}" not in parts:
        raise ValueError("dataset.params.images must have '{subject}' as one whole path component")
    position = parts.index("{subject}")
    pattern = "/".join("*" if p == "{subject}" else p for p in parts)
    found: dict[str, list[Path]] = {}
    for path in sorted(root.glob(pattern)):
        found.setdefault(path.relative_to(root).parts[position], []).append(path)
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
    images = {_label(k): v for k, v in _images_by_subject(params).items()}
    where = _common.dataset_path(params) / _template(params).replace("{visit}", _visit(params))
    if subject not in images:
        raise InputError(where, f"no image for {subject} at visit {_visit(params)!r}")
    if len(images[subject]) > 1:
        names = ", ".join(p.name for p in images[subject][:4])
        raise InputError(
            images[subject][0].parent, f"{len(images[subject])} images match ({names})"
        )
    t1 = images[subject][0]
    validate.require_ndim(t1, validate.load_header(t1, "T1w image"), 3, "T1w image")
    return SubjectFiles(subject, anat={"T1w": t1})


SOURCE = Source(
    kind="adni",
    keys=KEYS,
    on_disk=_on_disk,
    participants=_participants,
    collect=_collect,
    default_atlas={"kind": "dk"},
    complete_table=False,
    writes_bold=False,  # anatomy only: the workflow runs no BOLD stages for it
)


# the interface the workflow calls (modalmerge.data.sources)
subject_ids, write_cohort, write_subject = (
    SOURCE.subject_ids,
    SOURCE.write_cohort,
    SOURCE.write_subject,
)
