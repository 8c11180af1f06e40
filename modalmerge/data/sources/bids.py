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
    Keep this run index (matched numerically: ``1`` finds ``run-001``).
entities : dict, optional
    Filter on the BOLD's other entities, e.g. ``{echo: 1}``, ``{dir: AP}``,
    ``{acq: mb4, part: mag}`` (keys: acq, ce, dir, echo, part, rec, res, space,
    inv, den; a value of null requires the entity to be absent).
t1w_entities : dict, optional
    The same for the T1w. Several T1w left: the BOLD's session first, then
    no ``acq``, no ``rec``, no ``ce``, then the lowest run, then ``.nii.gz``.
subjects : list of str, optional
    Keep these subjects (``sub-`` prefix optional).
same_grid : bool, default False
    Require T1w, BOLD and a label-image atlas to share one voxel grid.
place : {"symlink", "copy"}, default "symlink"
on_error : {"stop", "exclude"}, default "stop"
atlas : dict, default ``{"kind": "dk"}``
    See :func:`modalmerge.data.parcellation.atlases.load_atlas`.
site_from : {"participants", "ses", "acq"}, default "participants"
    Where each subject's acquisition site (``raw/participants.tsv``'s ``site``
    column: ``shard.split_by: site``, ``shard.harmonize``) comes from: a column
    of ``participants.tsv`` (``site_column``), or the ``ses`` / ``acq`` entity
    of the subject's BOLD run (multi-site collections that name the scanner in
    the session or acquisition label).
site_column : str, default "site"
    ``site_from: participants``: the column holding the site (ABIDE: ``SITE_ID``);
    renamed ``site``. A table without that column gives no site (unless it is
    the default ``site``, when nothing is required).

Images may be ``.nii.gz`` or ``.nii``. A header TR that disagrees with the
sidecar is a warning (the sidecar wins, ``TRWarning`` in the placed sidecar).
Subjects that ``participants.tsv`` lists but the download lacks, and subjects
without a BOLD run matching the filters, are left out at planning with a warning.

Why not pybids: it installs and imports here beside Snakemake 9, but brings 11
packages (SQLAlchemy index, formulaic, num2words, bids-validator ...) and
indexes every file into a database on first use, while a source needs four
globs and an entity parser; see docs/data-sources.md.
"""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import nibabel as nib
import pandas as pd

from modalmerge.data.nifti import check_same_grid
from modalmerge.data.sources import _common, _entities, validate
from modalmerge.data.sources._common import Source, SubjectFiles
from modalmerge.io import InputError, atomic_path

# the entity helpers, re-exported: other sources call bids.find / bids.one / bids.parse_name
parse_name, find, one = _entities.parse_name, _entities.find, _entities.one
log = logging.getLogger(__name__)


def run_filters(params: dict) -> dict:
    """The ``task``/``sessions``/``run`` filters and the ``entities`` filter as constraints.

    Run indices match numerically (``run: 1`` finds ``run-001``).
    """
    task = params.get("task")
    if not task:
        raise ValueError("dataset.params.task is required (e.g. 'rest')")
    sessions = _common.as_list(params.get("sessions"))
    return {
        "task": [str(task)],
        "ses": None if sessions is None else [_common.strip_prefix(s, "ses") for s in sessions],
        "run": _common.as_list(params.get("run")),
        **_entities.entity_filter(params, "entities"),
    }


def sidecar_metadata(root: Path, image: Path) -> tuple[dict, Path | None]:
    """Merged JSON metadata for ``image`` by BIDS inheritance, and the last sidecar read.

    Looks for ``<stem>.json`` beside the image, then files named with a subset
    of its entities in the session, subject and dataset directories
    (most specific wins).
    """
    stem = image.name.split(".")[0]
    merged: dict = {}
    last = None
    for path in inherited_sidecars(root, image):
        try:
            merged.update(json.loads(path.read_text()))
        except json.JSONDecodeError as err:
            raise InputError(path, f"sidecar is not valid JSON ({err.msg})") from None
        last = path
    exact = image.with_name(stem + ".json")
    return merged, (last or (exact if exact.exists() else None))


def inherited_sidecars(root: Path, image: Path) -> list[Path]:
    """The JSON sidecars that apply to ``image`` by BIDS inheritance, least specific first
    (dataset, subject, session directories, then beside the image): names only, none read."""
    entities, suffix, _ = parse_name(image.name)
    levels = [root]
    rel = image.relative_to(root).parts
    for depth in range(1, len(rel) - 1):
        levels.append(root.joinpath(*rel[:depth]))
    found = []
    for directory in levels + [image.parent]:
        for path in sorted(directory.glob(f"*{suffix}.json")):
            parsed = parse_name(path.name)
            if parsed is None or parsed[1] != suffix:
                continue
            if all(entities.get(k) == v for k, v in parsed[0].items()):
                found.append(path)
    return found


def sidecar_tr(
    bold: Path, img: nib.Nifti1Image, meta: dict, sidecar: Path | None
) -> tuple[float, str]:
    """TR in seconds and a note: the sidecar wins over a header that disagrees (as in fMRIPrep).

    The note is '' when the header agrees (or states no TR); otherwise it says both
    values, is logged as a warning and goes into the placed sidecar (``TRWarning``).
    """
    try:
        return validate.check_tr(bold, img, meta.get("RepetitionTime"), sidecar), ""
    except InputError as err:
        if sidecar is None or "inconsistent" not in err.problem:
            raise
        problem = err.problem
    tr = float(meta["RepetitionTime"])
    note = (f"{problem}; the sidecar's {tr:g} s is used (BIDS: the sidecar is "
            "authoritative)")  # fmt: skip
    log.warning("%s: %s", bold, note)
    return tr, note


def read_tr(root: Path, bold: Path, img: nib.Nifti1Image) -> tuple[float, str]:
    """TR in seconds from the sidecar (required by BIDS) and a mismatch note (:func:`sidecar_tr`)."""
    meta, sidecar = sidecar_metadata(root, bold)
    if sidecar is None:
        raise InputError(bold, "no JSON sidecar gives RepetitionTime (BIDS requires one)")
    return sidecar_tr(bold, img, meta, sidecar)


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


KEYS = {"task", "sessions", "run", "same_grid", "entities", "t1w_entities"}
KEYS |= {"site_from", "site_column"}
SITE_FROM = ("participants", "ses", "acq")


def with_site(table: pd.DataFrame | None, root: Path, params: dict) -> pd.DataFrame | None:
    """``table`` with each subject's site in a ``site`` column (see ``site_from``)."""
    mode = params.get("site_from", "participants")
    if mode not in SITE_FROM:
        raise ValueError(f"dataset.params.site_from must be one of {SITE_FROM}, got {mode!r}")
    if mode == "participants":
        column = params.get("site_column", "site")
        if column == "site":
            return table
        if table is None or column not in table:
            raise InputError(
                root / "participants.tsv", f"has no {column!r} column (dataset.params.site_column)"
            )
        return table.drop(columns="site", errors="ignore").rename(columns={column: "site"})
    site = {}
    for subject in subjects_on_disk(root, params):
        runs = find(root / subject, "func", "bold", **run_filters(params))
        if not runs:
            continue  # left out at planning (with_task)
        bold = one(runs, root / subject, "BOLD run", run_filters(params))
        value = parse_name(bold.name)[0].get(mode)
        if value is None:
            raise InputError(bold, f"has no {mode} entity to take the site from (site_from)")
        site[subject] = value
    if table is None:
        table = pd.DataFrame({"participant_id": sorted(site)})
        table.attrs["source"] = str(root)
    table = table.copy()
    table["site"] = table["participant_id"].map(site)
    return table


def with_task(path: Path, params: dict, subjects: list[str], **extra) -> list[str]:
    """``subjects`` that have a BOLD run matching the filters; the others are dropped
    with a warning at planning (a subject without the task, a partial download)."""
    filters = {**run_filters(params), **extra}
    kept = [s for s in subjects if find(path / s, "func", "bold", **filters)]
    missing = [s for s in subjects if s not in kept]
    if missing:
        shown = {k: v for k, v in filters.items() if v is not None}
        log.warning("%s: %d subject(s) have no BOLD run matching %s and are left out: %s",
                    path, len(missing), shown, ", ".join(missing))  # fmt: skip
    return kept


def listed_absent(table: pd.DataFrame | None, path: Path, params: dict) -> pd.DataFrame | None:
    """Warn about subjects ``participants.tsv`` lists but the download lacks (left out)."""
    if table is None:
        return None
    wanted = _common.subject_filter(params)
    present = {p.name for p in path.glob("sub-*") if p.is_dir()}
    absent = [
        s for s in table["participant_id"] if s not in present and (wanted is None or s in wanted)
    ]
    if absent:
        log.warning("%s lists %d subject(s) with no folder (partial download?), left out: %s",
                    table.attrs.get("source"), len(absent), ", ".join(absent[:10]))  # fmt: skip
    return table


def choose_t1w(sub_dir: Path, params: dict, session: str | None, **extra) -> Path:
    """The subject's T1w: the BOLD's session first, ``t1w_entities`` applied, then the
    preference rule of :func:`._entities.prefer` (no acq/rec/ce first, then lowest run)."""
    wanted = {**_entities.entity_filter(params, "t1w_entities"), **extra}
    t1s = find(sub_dir, "anat", "T1w", ses=session, **wanted) or find(
        sub_dir, "anat", "T1w", **wanted
    )
    return _entities.prefer(t1s, sub_dir, "T1w image", {"ses": session, **wanted})


def _collect(params: dict, subject: str) -> SubjectFiles:
    root = _common.dataset_path(params)
    sub_dir = root / subject
    filters = run_filters(params)
    bold = one(find(sub_dir, "func", "bold", **filters), sub_dir, "BOLD run", filters)
    entities = parse_name(bold.name)[0]
    t1 = choose_t1w(sub_dir, params, entities.get("ses"))
    t1_img = validate.load_header(t1, "T1w image")
    bold_img = validate.load_header(bold, "BOLD run")
    validate.require_ndim(t1, t1_img, 3, "T1w image")
    validate.require_ndim(bold, bold_img, 4, "BOLD run")
    tr, note = read_tr(root, bold, bold_img)
    if params.get("same_grid", False):
        check_same_grid(t1_img, bold_img, t1, "T1w image", f"the grid of {bold.name}", "")
        atlas_grid_check(params, bold, bold_img)
    files = SubjectFiles(subject, anat={"T1w": t1}, bold=bold)
    files.reads = inherited_sidecars(root, bold)
    files.bold_json = {
        "RepetitionTime": tr,
        "TaskName": params["task"],
        "Sources": [str(bold), str(t1)],
    }
    if note:
        files.bold_json["TRWarning"] = note
    stem = bold.name[: -len(parse_name(bold.name)[2])]
    events = bold.with_name(stem.removesuffix("_bold") + "_events.tsv")
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
    on_disk=lambda params: with_task(_common.dataset_path(params), params, _on_disk(params)),
    participants=lambda params: with_site(
        listed_absent(
            participants_table(_common.dataset_path(params) / "participants.tsv"),
            _common.dataset_path(params),
            params,
        ),
        _common.dataset_path(params),
        params,
    ),
    #: a partial download lists more subjects than it holds: listed-but-absent
    #: subjects are warned about and left out (see listed_absent), not a fault
    complete_table=False,
    collect=_collect,
    task=lambda params: params["task"],
    cohort_extra=lambda params, raw: _copy_events(params, raw),
    cohort_files=lambda params: [
        _common.dataset_path(params) / f"task-{params['task']}_events.tsv"
    ],
)


# the interface the workflow calls (modalmerge.data.sources)
subject_ids, write_cohort, write_subject = (
    SOURCE.subject_ids,
    SOURCE.write_cohort,
    SOURCE.write_subject,
)
