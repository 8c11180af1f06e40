"""The synthetic generator as a data source (``dataset.kind: synthetic``).

A thin adapter: :mod:`modalmerge.data.synthetic.cohort` writes ``raw/`` (and
``truth/``, ``atlas/``) itself; this module says what it writes. The generator
is imported only when something is written, so building the workflow's DAG
(subject ids, task, capabilities) stays cheap.
"""

from __future__ import annotations

from pathlib import Path

from modalmerge.data.sources._common import Source


def _subject_ids(params: dict) -> list[str]:
    from modalmerge.data.synthetic.params import subject_ids

    return subject_ids(params)


def _task(params: dict) -> str:
    from modalmerge.data.synthetic.params import SyntheticParams

    return SyntheticParams.from_dict(params).task


def _planned_runs(params: dict) -> list[tuple[int, float]]:
    """Run length and TR of every run protocol the settings are checked against: the
    cohort's, or with ``sites`` each site's (sites may differ in both)."""
    from modalmerge.data.synthetic.params import SyntheticParams
    from modalmerge.data.synthetic.sites import with_site_protocol

    p = SyntheticParams.from_dict(params)
    runs = [with_site_protocol(p, k + 1) for k in range(max(1, len(p.sites)))]
    return sorted({(q.n_timepoints, q.tr) for q in runs})


def _subject_params(params: dict, subject: str) -> dict:
    """The generator's params of one subject: a subject is a function of the params and
    its index alone (:mod:`modalmerge.data.synthetic.cohort`), so ``n_subjects`` is
    replaced by the smallest cohort that holds ``subject`` under the same id width: the
    cohort growing from 64 to 65 changes no written subject's params; with ``sites``,
    the other sites keep only their names (the round-robin assignment needs their
    number and order, not their effects)."""
    digits = subject.removeprefix("sub-")
    index = int(digits)
    smallest = index if len(digits) <= 3 else max(index, 10 ** (len(digits) - 1))
    out = {**params, "n_subjects": smallest}
    if params.get("sites"):  # only the subject's own site's effects: editing one site
        own = (index - 1) % len(params["sites"])  # reruns only that site's subjects
        out["sites"] = [
            site if k == own or not isinstance(site, dict) else {"name": site.get("name")}
            for k, site in enumerate(params["sites"])
        ]
    return out


def _anatomy(params: dict) -> tuple[str, ...]:
    """``dseg`` (the atlas labels per subject) with ``atlas_channel: true``, else nothing."""
    from modalmerge.data.synthetic.params import SyntheticParams

    return ("dseg",) if SyntheticParams.from_dict(params).atlas_channel else ()


def _point_cloud(params: dict) -> bool:
    """``surface_points > 0``: a grey/white boundary point cloud per subject."""
    from modalmerge.data.synthetic.params import SyntheticParams

    return SyntheticParams.from_dict(params).surface_points > 0


def _connectome(params: dict) -> bool:
    """``connectome: true``: a structural connectome TSV per subject."""
    from modalmerge.data.synthetic.params import SyntheticParams

    return SyntheticParams.from_dict(params).connectome


def _write_cohort(params: dict, root: Path) -> None:
    from modalmerge.data.synthetic.cohort import write_cohort

    write_cohort(params, root)


def _write_subject(params: dict, subject: str, root: Path) -> None:
    from modalmerge.data.synthetic.cohort import write_subject

    write_subject(params, subject, root)


SOURCE = Source(
    kind="synthetic",
    task=_task,
    default_atlas=None,  # the generator writes its own atlas
    writes_text=True,  # a description per subject; no confounds (nothing to regress)
    planned_runs=_planned_runs,
    own_subject_ids=_subject_ids,
    own_write_cohort=_write_cohort,
    own_write_subject=_write_subject,
    own_subject_params=_subject_params,
    extra_anatomy=("dseg",),  # only with atlas_channel: true (anatomy_for)
    label_anatomy=("dseg",),
    anatomy_for=_anatomy,
    point_cloud_for=_point_cloud,
    connectome_for=_connectome,
)

# the interface the workflow calls (modalmerge.data.sources)
subject_ids, write_cohort, write_subject = (
    SOURCE.subject_ids,
    SOURCE.write_cohort,
    SOURCE.write_subject,
)
