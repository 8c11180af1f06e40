"""Where ADNI's download channels put the T1w images, and which visit each one is.

``layout: ida`` — the NIfTI trees of LONI IDA's "Advanced download"::

    <path>[/ADNI]/<PTID>/<description>/<YYYY-MM-DD_HH_MM_SS.0>/I<image id>/ADNI_<PTID>_MR_<...>_I<image id>.nii

An image is placed at a visit when ADNIMERGE's ``IMAGEUID`` for that subject names
its image id; otherwise the scan date (the date folder) goes to the subject's
nearest ``EXAMDATE`` within :data:`MAX_DAYS` days. ``description`` keeps the series
folders whose name holds it (``MPRAGE``, ``N3``; a glob such as ``MPR*Scaled``).

``layout: clinica`` — ``clinica convert adni-to-bids``::

    <path>/sub-ADNI002S0295/ses-M000/anat/sub-ADNI002S0295_ses-M000_T1w.nii.gz

``sub-ADNI002S0295`` is PTID ``002_S_0295``; ``ses-M000`` is ``bl``, ``ses-M012`` is ``m12``.

A DICOM download (``.dcm`` files and no NIfTI) stops with the conversion to run.
"""

from __future__ import annotations

import fnmatch
import re
from pathlib import Path

import pandas as pd

from modalmerge.io import InputError

#: The farthest a scan date may lie from the EXAMDATE it is matched to.
MAX_DAYS = 90
_DATE = re.compile(r"(\d{4}-\d{2}-\d{2})_")
_CLINICA_SUB = re.compile(r"sub-ADNI(\d{3})S(\d{4})")
_CLINICA_SES = re.compile(r"ses-M(\d+)")


def viscode(session: str) -> str:
    """Clinica's ``ses-M000`` -> ``bl``, ``ses-M012`` -> ``m12``, ``ses-M006`` -> ``m06``."""
    match = _CLINICA_SES.fullmatch(session)
    if match is None:
        raise ValueError(f"{session!r} is not a Clinica ADNI session (ses-M<months>)")
    months = int(match[1])
    return "bl" if months == 0 else f"m{months:02d}"


def clinica_images(root: Path, visit: str) -> dict[str, list[Path]]:
    """PTID -> T1w images of ``visit`` in a Clinica ADNI-to-BIDS tree."""
    found: dict[str, list[Path]] = {}
    for path in sorted(root.glob("sub-ADNI*/ses-M*/anat/*_T1w.nii*")):
        sub, ses = path.parts[-4], path.parts[-3]
        match = _CLINICA_SUB.fullmatch(sub)
        if match is None or viscode(ses) != visit:
            continue
        found.setdefault(f"{match[1]}_S_{match[2]}", []).append(path)
    return found


def ida_root(root: Path) -> Path:
    """``path`` or its ``ADNI/`` folder (IDA's zips unpack to ``ADNI/<PTID>/...``)."""
    return root / "ADNI" if (root / "ADNI").is_dir() else root


def _wanted(description: str | None, folder: str) -> bool:
    if not description:
        return True
    if any(c in description for c in "*?["):
        return fnmatch.fnmatch(folder.lower(), description.lower())
    return description.lower() in folder.lower()


def ida_visit(ptid: str, image_id: str, date: str | None, clinical: pd.DataFrame) -> str | None:
    """The VISCODE of one IDA image: by ``IMAGEUID``, else the nearest ``EXAMDATE``."""
    rows = clinical[clinical["PTID"].astype(str) == ptid]
    if "IMAGEUID" in rows and image_id.isdigit():
        uid = pd.to_numeric(rows["IMAGEUID"], errors="coerce")
        hit = rows[uid == int(image_id)]
        if len(hit):
            return str(hit["VISCODE"].iloc[0])
    if date is None or "EXAMDATE" not in rows or rows.empty:
        return None
    gap = (pd.to_datetime(rows["EXAMDATE"], errors="coerce") - pd.Timestamp(date)).abs()
    if gap.isna().all() or gap.min().days > MAX_DAYS:
        return None
    return str(rows.loc[gap.idxmin(), "VISCODE"])


def ida_images(root: Path, visit: str, description: str | None,
               clinical: pd.DataFrame) -> dict[str, list[Path]]:  # fmt: skip
    """PTID -> NIfTI images of ``visit`` (and ``description``) in an IDA tree."""
    root = ida_root(root)
    found: dict[str, list[Path]] = {}
    for image in sorted(root.glob("*_S_*/*/*/I*/*.nii*")):
        ptid, series, stamp, folder = image.relative_to(root).parts[:4]
        if not _wanted(description, series):
            continue
        date = _DATE.match(stamp)
        if ida_visit(ptid, folder[1:], date[1] if date else None, clinical) == visit:
            found.setdefault(ptid, []).append(image)
    if not found:
        dicom_check(root)
    return found


def dicom_check(root: Path) -> None:
    """Raise when the download holds DICOM series and no NIfTI: say how to convert."""
    dcm = next(iter(root.glob("*_S_*/*/*/I*/*.dcm")), None)
    if dcm is not None and next(iter(root.glob("*_S_*/*/*/I*/*.nii*")), None) is None:
        raise InputError(dcm.parents[3], "this ADNI download is DICOM, which is not read: convert "
                         "it with `clinica convert adni-to-bids <ADNI dir> <clinical dir> <out>` "
                         "and set layout: clinica, or per series with `dcm2niix -z y -f "
                         "ADNI_%i_I%j <series dir>` into the image-ID folder (layout: ida)")  # fmt: skip


def several(ptid: str, images: list[Path]) -> str:
    """The error for several images of one subject and visit: their series and ids."""
    shown = ", ".join("/".join(p.parts[-4:-2:]) + "/" + p.parts[-2] for p in images[:4])
    return (f"{len(images)} images of {ptid} match this visit ({shown}): set "
            "dataset.params.description to one series")  # fmt: skip
