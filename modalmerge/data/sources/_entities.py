"""BIDS file names: entities, matching with filters, and choosing one file among several.

Shared by the ``bids`` and ``fmriprep`` sources. Entity values match as text
or, when both are integers, numerically (``run-001`` is run 1, ``echo-01`` is
echo 1). A filter is ``{entity: None | value | [values] | "<absent>"}``.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

from modalmerge.io import InputError

log = logging.getLogger(__name__)

_NAME = re.compile(
    r"(?P<entities>(?:[a-zA-Z]+-[a-zA-Z0-9]+_)*)(?P<suffix>[a-zA-Z0-9]+)(?P<ext>\.[a-z.]+)"
)
#: The image extensions BIDS allows, in order of preference.
IMAGE_EXTS = (".nii.gz", ".nii")
#: Entities a user may set for a BOLD run (``entities:``) or a T1w (``t1w_entities:``).
SETTABLE = ("acq", "ce", "dir", "echo", "part", "rec", "res", "space", "inv", "den")
#: The setting that narrows each entity, named in ambiguity messages.
_SETTING = {"ses": "sessions", "run": "run", "task": "task", "space": "space"}


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


def same_value(have: str | None, want: str) -> bool:
    """Entity values equal as text, or as integers when both are (``001`` == ``1``)."""
    if have is None:
        return False
    if have.isdigit() and str(want).isdigit():
        return int(have) == int(want)
    return have == str(want)


def matches(have: dict[str, str], entities: dict) -> bool:
    """Whether a file's entities satisfy every constraint of ``entities``."""
    for key, want in entities.items():
        if want is None:
            continue
        if want == "<absent>":
            if key in have:
                return False
        elif not any(
            same_value(have.get(key), w) for w in ([want] if isinstance(want, str) else want)
        ):
            return False
    return True


def find(subject_dir: Path, datatype: str, suffix: str, ext: str | tuple[str, ...] = IMAGE_EXTS,
         **entities) -> list[Path]:  # fmt: skip
    """Files ``<subject_dir>[/ses-*]/<datatype>/*_<suffix><ext>`` whose entities match.

    ``ext`` is one extension or several (images: ``.nii.gz`` and ``.nii``).
    An entity given as None is unconstrained; a list keeps any of its values;
    the string ``"<absent>"`` requires the entity to be missing.
    """
    exts = (ext,) if isinstance(ext, str) else tuple(ext)
    paths: set[Path] = set()
    for e in exts:
        paths.update(subject_dir.glob(f"{datatype}/*{e}"))
        paths.update(subject_dir.glob(f"ses-*/{datatype}/*{e}"))
    found = []
    for path in sorted(paths):
        parsed = parse_name(path.name)
        if parsed is None or parsed[1] != suffix or parsed[2] not in exts:
            continue
        if matches(parsed[0], entities):
            found.append(path)
    return found


def entity_filter(params: dict, key: str = "entities") -> dict[str, list[str]]:
    """``params[key]`` (``{echo: 1, dir: AP}``) as entity constraints; unknown entities raise."""
    given = params.get(key) or {}
    if not isinstance(given, dict):
        raise ValueError(f"dataset.params.{key} must be a mapping such as {{echo: 1, dir: AP}}")
    unknown = sorted(set(given) - set(SETTABLE))
    if unknown:
        raise ValueError(
            f"dataset.params.{key}: unknown entity(ies) {unknown}; known: {list(SETTABLE)}"
        )
    out: dict = {}
    for entity, value in given.items():
        values = value if isinstance(value, list | tuple) else [value]
        out[entity] = "<absent>" if value is None else [str(v) for v in values]
    return out


def differing(candidates: list[Path]) -> dict[str, list[str]]:
    """Entities (and ``extension``) whose values differ among ``candidates`` -> sorted values."""
    parsed = [parse_name(p.name) for p in candidates]
    keys = sorted({k for ent, _, _ in parsed for k in ent})
    out = {}
    for key in keys:
        values = {ent.get(key, "none") for ent, _, _ in parsed}
        if len(values) > 1:
            out[key] = sorted(values, key=lambda v: (not v.isdigit(), int(v) if v.isdigit() else v))
    exts = {ext for _, _, ext in parsed}
    if len(exts) > 1:
        out["extension"] = sorted(exts)
    return out


def ambiguity(candidates: list[Path], what: str, setting: str = "entities") -> str:
    """``3 BOLD run files match (...); they differ in echo (1, 2, 3): set dataset.params.entities.echo``."""
    names = ", ".join(p.name for p in candidates[:4]) + (", ..." if len(candidates) > 4 else "")
    head = f"{len(candidates)} {what} files match ({names})"
    diff = differing(candidates)
    if not diff:
        return f"{head}; narrow sessions/run"
    said = "; ".join(f"{k} ({', '.join(v)})" for k, v in diff.items())
    hints = []
    for key in diff:
        if key == "extension":
            hints.append("keep one of the .nii/.nii.gz copies")
        else:
            hints.append("set dataset.params." + _SETTING.get(key, f"{setting}.{key}"))
    return f"{head}; they differ in {said}: {', or '.join(dict.fromkeys(hints))}"


def one(candidates: list[Path], where: Path, what: str, filters: dict,
        setting: str = "entities") -> Path:  # fmt: skip
    """The single match, or an InputError saying none, or which entity separates the matches."""
    if not candidates:
        shown = {k: v for k, v in filters.items() if v is not None}
        raise InputError(where, f"no {what} matches {shown}")
    if len(candidates) > 1:
        raise InputError(where, ambiguity(candidates, what, setting))
    return candidates[0]


def t1w_rank(path: Path) -> tuple:
    """Preference among T1w images: no ``acq``, no ``rec``, no ``ce``, lowest run, ``.nii.gz``."""
    ent, _, ext = parse_name(path.name)
    run = ent.get("run", "0")
    return ("acq" in ent, "rec" in ent, "ce" in ent, int(run) if run.isdigit() else 0,
            ext != ".nii.gz")  # fmt: skip


def prefer(candidates: list[Path], where: Path, what: str, filters: dict,
           setting: str = "t1w_entities") -> Path:  # fmt: skip
    """The best-ranked of several T1w images (:func:`t1w_rank`); a tie is an ambiguity error."""
    if len(candidates) <= 1:
        return one(candidates, where, what, filters, setting)
    best = min(t1w_rank(p) for p in candidates)
    top = [p for p in candidates if t1w_rank(p) == best]
    chosen = one(top, where, what, filters, setting)
    log.info("%s: %d %s files match; using %s (no acq/rec first, then lowest run)",
             where, len(candidates), what, chosen.name)  # fmt: skip
    return chosen
