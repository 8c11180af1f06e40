"""BIDS raw datasets (OpenNeuro): a small, strict layout reader and the ``bids`` source.

Parameters (``dataset.params``)
-------------------------------
path : str
    The BIDS root (holds ``dataset_description.json``, ``participants.tsv``, ``sub-*``).
task : str
    The task whose BOLD run is placed (required), e.g. ``rest``.
sessions : list of str, optional
    Keep runs from these sessions (``ses-`` labels, prefix optional).
run : int or str, optional
    Keep this run index.
subjects : list of str, optional
    Keep these subjects (``sub-`` prefix optional).
same_grid : bool, default False
    Require T1w, BOLD and a label-image atlas to share one voxel grid.
place : {"symlink", "copy"}, default "symlink"
on_error : {"stop", "exclude"}, default "stop"
atlas : dict, default ``{"kind": "dk"}``
    See :func:`modalmerge.data.parcellation.atlases.load_atlas`.

Why not pybids: it installs and imports here beside Snakemake 9, but brings 11
packages (SQLAlchemy index, formulaic, num2words, bids-validator ...) and
indexes every file into a database on first use, while a source needs four
globs and an entity parser; see docs/data-sources.md.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import nibabel as nib
import pandas as pd

from modalmerge.data.nifti import check_same_grid
from modalmerge.data.sources import _common, validate
from modalmerge.data.sources._common import Source, SubjectFiles
from modalmerge.io import InputError, atomic_path

_NAME = re.compile(
    r"(?P<entities>(?:[a-zA-Z]+-[a-zA-Z0-9]+_)*)(?P<suffix>[a-zA-Z0-9]+)(?P<ext>\.[a-z.]+)"
)


def parse_name(name: str) -> tuple[dict[str, str], str, str] | None:
    """Split a BIDS file name into entities, suffix and extension.

    ``sub-01_ses-2_task-rest_bold.nii.gz`` -> ``({"sub": "01", "ses": "2",
    "task": "rest"}, "bold", ".nii.gz")``; None when the name is not BIDS.
    """
    match = _NAME.fullmatch(name)
    if match is None:
        return None
    pairs = [p.split("-", 1) for p in match["entities"].split("_") if p]
    return dict(pairs), match["suffix"], match["ext"]


def find(
    subject_dir: Path,
    datatype: str,
    suffix: str,
    ext: str = ".nii.gz",
    **entities: list[str] | str | None,
) -> list[Path]:
    """Files ``<subject_dir>[/ses-*]/<datatype>/*_<suffix><ext>`` whose entities match.

    An entity given as None is unconstrained; a list keeps any of its values;
    the string ``"<absent>"`` requires the entity to be missing.
    """
    found = []
    for path in sorted(
        list(subject_dir.glob(f"{datatype}/*{ext}"))
        + list(subject_dir.glob(f"ses-*/{datatype}/*{ext}"))
    ):
        parsed = parse_name(path.name)
        if parsed is None or parsed[1] != suffix or parsed[2] != ext:
            continue
        have = parsed[0]
        ok = True
        for key, want in entities.items():
            if want is None:
                continue
            if want == "<absent>":
                ok &= key not in have
            else:
                ok &= have.get(key) in ([want] if isinstance(want, str) else want)
        if ok:
            found.append(path)
    return found


def run_filters(params: dict) -> dict[str, list[str] | None]:
    """The ``task``/``sessions``/``run`` filters as entity constraints."""
    task = params.get("task")
    if not task:
        raise ValueError("dataset.params.task is required (e.g. 'rest')")
    sessions = _common.as_list(params.get("sessions"))
    runs = _common.as_list(params.get("run"))
    return {
        "task": [str(task)],
        "ses": None if sessions is None else [_common.strip_prefix(s, "ses") for s in sessions],
        "run": None
        if runs is None
        else sorted({r for v in runs for r in (v, v.zfill(2), v.lstrip("0"))}),
    }


def one(candidates: list[Path], where: Path, what: str, filters: dict) -> Path:
    """The single match, or an InputError saying none or which ones compete."""
    if not candidates:
        shown = {k: v for k, v in filters.items() if v is not None}
        raise InputError(where, f"no {what} matches {shown}")
    if len(candidates) > 1:
        names = ", ".join(p.name for p in candidates[:4])
        raise InputError(
            where, f"{len(candidates)} {what} files match ({names}); narrow sessions/run"
        )
    return candidates[0]


def sidecar_metadata(root: Path, image: Path) -> tuple[dict, Path | None]:
    """Merged JSON metadata for ``image`` by BIDS inheritance, and the last sidecar read.

    Looks for ``<stem>.json`` beside the image, then files named with a subset
    of its entities in the session, subject and dataset directories
    (most specific wins).
    """
    entities, suffix, _ = parse_name(image.name)
    stem = image.name.split(".")[0]
    levels = [root]
    rel = image.relative_to(root).parts
    for depth in range(1, len(rel) - 1):
        levels.append(root.joinpath(*rel[:depth]))
    merged: dict = {}
    last = None
    for directory in levels + [image.parent]:
        for path in sorted(directory.glob(f"*{suffix}.json")):
            parsed = parse_name(path.name)
            if parsed is None or parsed[1] != suffix:
                continue
            if all(entities.get(k) == v for k, v in parsed[0].items()):
                try:
                    merged.update(json.loads(path.read_text()))
                except json.JSONDecodeError as err:
                    raise InputError(path, f"sidecar is not valid JSON ({err.msg})") from None
                last = path
    exact = image.with_name(stem + ".json")
    return merged, (last or (exact if exact.exists() else None))


def read_tr(root: Path, bold: Path, img: nib.Nifti1Image) -> float:
    """TR in seconds from the sidecar (required by BIDS), checked against the header."""
    meta, sidecar = sidecar_metadata(root, bold)
    if sidecar is None:
        raise InputError(bold, "no JSON sidecar gives RepetitionTime (BIDS requires one)")
    return validate.check_tr(bold, img, meta.get("RepetitionTime"), sidecar)


def read_description(root: Path) -> dict | None:
    """``dataset_description.json`` of a BIDS root (None when absent); its REQUIRED
    ``Name`` and ``BIDSVersion`` must be there and the file valid JSON."""
    path = root / "dataset_description.json"
    if not path.exists():
        return None
    try:
        description = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise InputError(path, f"is not valid JSON ({type(err).__name__})") from None
    if not isinstance(description, dict):
        raise InputError(path, "must hold a JSON object")
    missing = [k for k in ("Name", "BIDSVersion") if k not in description]
    if missing:
        raise InputError(path, f"lacks the REQUIRED field(s) {missing}")
    return description


def require_description(root: Path) -> None:
    """A raw BIDS root must have ``dataset_description.json`` (BIDS REQUIRES it; without
    one, ``path`` most likely points at a folder inside the dataset or at another one)."""
    if read_description(root) is None:
        raise InputError(
            root / "dataset_description.json",
            "is missing: BIDS requires it at the dataset root (is dataset.params.path the root?)",
        )


def subjects_on_disk(path: Path, params: dict) -> list[str]:
    """``sub-*`` directories of a BIDS root, after the subject filter."""
    wanted = _common.subject_filter(params)
    found = sorted(p.name for p in path.glob("sub-*") if p.is_dir())
    return [s for s in found if wanted is None or s in wanted]


def participants_table(tsv: Path) -> pd.DataFrame | None:
    """A BIDS ``participants.tsv`` (``participant_id`` column required), or None if absent."""
    if not tsv.exists():
        return None
    table = validate.read_tsv(tsv, "participants table")
    if "participant_id" not in table:
        raise InputError(tsv, "has no participant_id column")
    table["participant_id"] = table["participant_id"].astype(str)
    table.attrs["source"] = str(tsv)
    return table


def atlas_grid_check(params: dict, ref_path: Path, ref: nib.Nifti1Image) -> None:
    """With ``same_grid``, require the configured label atlas on ``ref``'s grid."""
    from modalmerge.data.parcellation import atlases

    path = atlases.atlas_image_path(params.get("atlas", {"kind": "dk"}))
    if path is not None:
        atlas = validate.load_header(path, "atlas")
        check_same_grid(atlas, ref, path, "atlas", f"the grid of {ref_path.name}", "")


KEYS = {"task", "sessions", "run", "same_grid"}


def _collect(params: dict, subject: str) -> SubjectFiles:
    root = _common.dataset_path(params)
    sub_dir = root / subject
    filters = run_filters(params)
    bold = one(find(sub_dir, "func", "bold", **filters), sub_dir, "BOLD run", filters)
    entities = parse_name(bold.name)[0]
    t1s = find(sub_dir, "anat", "T1w", ses=entities.get("ses")) or find(sub_dir, "anat", "T1w")
    t1 = one(t1s, sub_dir, "T1w image", {"ses": entities.get("ses")})
    t1_img = validate.load_header(t1, "T1w image")
    bold_img = validate.load_header(bold, "BOLD run")
    validate.require_ndim(t1, t1_img, 3, "T1w image")
    validate.require_ndim(bold, bold_img, 4, "BOLD run")
    tr = read_tr(root, bold, bold_img)
    if params.get("same_grid", False):
        check_same_grid(t1_img, bold_img, t1, "T1w image", f"the grid of {bold.name}", "")
        atlas_grid_check(params, bold, bold_img)
    files = SubjectFiles(subject, anat={"T1w": t1}, bold=bold)
    files.bold_json = {"RepetitionTime": tr, "TaskName": params["task"], "Sources": [str(bold)]}
    events = bold.with_name(bold.name.replace("_bold.nii.gz", "_events.tsv"))
    if events.exists():
        files.func_extra["events.tsv"] = events
    return files


def _copy_events(params: dict, raw: Path) -> None:
    root = _common.dataset_path(params)
    name = f"task-{params['task']}_events.tsv"
    if (root / name).exists():
        with atomic_path(raw / name) as tmp:
            shutil.copyfile(root / name, tmp)


def _on_disk(params: dict) -> list[str]:
    root = _common.dataset_path(params)
    require_description(root)  # dataset-level: stops planning, whatever on_error says
    return subjects_on_disk(root, params)


SOURCE = Source(
    kind="bids",
    keys=KEYS,
    on_disk=lambda params: _on_disk(params),
    participants=lambda params: participants_table(
        _common.dataset_path(params) / "participants.tsv"
    ),
    collect=_collect,
    task=lambda params: params["task"],
    cohort_extra=lambda params, raw: _copy_events(params, raw),
)


# the interface the workflow calls (modalmerge.data.sources)
subject_ids, write_cohort, write_subject = (
    SOURCE.subject_ids,
    SOURCE.write_cohort,
    SOURCE.write_subject,
)
